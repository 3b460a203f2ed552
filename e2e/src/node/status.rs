//! Pod status as a kubelet reports it: phase, addresses, conditions and container statuses.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP,
    PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The state of one container as the agent tracks it.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        started_at: Timestamp,
        finished_at: Timestamp,
    },
}

impl State {
    pub fn to_api(&self, container_id: &str) -> ContainerState {
        match self {
            State::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: (!message.is_empty()).then(|| message.clone()),
                }),
                ..Default::default()
            },
            State::Running { started_at } => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started_at)),
                }),
                ..Default::default()
            },
            State::Terminated {
                exit_code,
                signal,
                reason,
                started_at,
                finished_at,
            } => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    container_id: Some(container_id.to_owned()),
                    exit_code: *exit_code,
                    signal: *signal,
                    reason: Some(reason.clone()),
                    started_at: Some(Time(*started_at)),
                    finished_at: Some(Time(*finished_at)),
                    message: None,
                }),
                ..Default::default()
            },
        }
    }
}

/// What the status of one container is built from.
#[derive(Debug, Clone)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: String,
    pub state: State,
    pub last_state: Option<State>,
    pub ready: bool,
    pub started: bool,
    pub restart_count: i32,
}

/// Condition transition times, kept across reports so a condition's time changes only when its
/// status flips.
#[derive(Debug, Default)]
pub struct ConditionClock {
    since: BTreeMap<String, (String, Timestamp)>,
}

impl ConditionClock {
    fn condition(&mut self, type_: &str, ok: bool, reason: Option<&str>, now: Timestamp) -> PodCondition {
        let status = if ok { "True" } else { "False" };
        let entry = self
            .since
            .entry(type_.to_owned())
            .or_insert_with(|| (status.to_owned(), now));
        if entry.0 != status {
            *entry = (status.to_owned(), now);
        }
        PodCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            last_transition_time: Some(Time(entry.1)),
            reason: reason.map(str::to_owned),
            ..Default::default()
        }
    }
}

/// Everything the pod status is built from.
pub struct PodView<'a> {
    pub phase: &'a str,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Timestamp,
    pub network_ready: bool,
    pub containers: &'a [ContainerView],
}

/// Builds the status sub-object. `PodScheduled` is left out: the scheduler owns it and a strategic
/// merge patch keeps it.
pub fn pod_status(view: &PodView<'_>, clock: &mut ConditionClock, now: Timestamp) -> PodStatus {
    let all_ready = !view.containers.is_empty() && view.containers.iter().all(|container| container.ready);
    let not_ready_reason = (!all_ready).then_some("ContainersNotReady");
    let conditions = vec![
        clock.condition("PodReadyToStartContainers", view.network_ready, None, now),
        clock.condition("Initialized", true, None, now),
        clock.condition("ContainersReady", all_ready, not_ready_reason, now),
        clock.condition("Ready", all_ready, not_ready_reason, now),
    ];
    let container_statuses = view
        .containers
        .iter()
        .map(|container| ContainerStatus {
            name: container.name.clone(),
            image: container.image.clone(),
            image_id: container.image_id.clone(),
            container_id: Some(container.container_id.clone()),
            ready: container.ready,
            started: Some(container.started),
            restart_count: container.restart_count,
            state: Some(container.state.to_api(&container.container_id)),
            last_state: Some(
                container
                    .last_state
                    .as_ref()
                    .map(|state| state.to_api(&container.container_id))
                    .unwrap_or_default(),
            ),
            ..Default::default()
        })
        .collect();

    PodStatus {
        phase: Some(view.phase.to_owned()),
        conditions: Some(conditions),
        container_statuses: Some(container_statuses),
        host_ip: Some(view.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: view.host_ip.clone(),
        }]),
        pod_ip: view.pod_ip.clone(),
        pod_ips: view.pod_ip.as_ref().map(|ip| vec![PodIP { ip: ip.clone() }]),
        start_time: Some(Time(view.start_time)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(ready: bool) -> ContainerView {
        ContainerView {
            name: "gateway".to_owned(),
            image: "ghcr.io/socketfleet/gateway:0.1.0".to_owned(),
            image_id: "file:///bin/gateway".to_owned(),
            container_id: "socketfleet://1".to_owned(),
            state: State::Running {
                started_at: Timestamp::UNIX_EPOCH,
            },
            last_state: None,
            ready,
            started: true,
            restart_count: 0,
        }
    }

    fn condition<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
        status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|condition| condition.type_ == type_)
            .unwrap()
    }

    #[test]
    fn ready_follows_every_container() {
        let mut clock = ConditionClock::default();
        let containers = [container(true), container(false)];
        let view = PodView {
            phase: "Running",
            pod_ip: Some("10.0.0.5".to_owned()),
            host_ip: "10.0.0.1".to_owned(),
            start_time: Timestamp::UNIX_EPOCH,
            network_ready: true,
            containers: &containers,
        };
        let status = pod_status(&view, &mut clock, Timestamp::UNIX_EPOCH);
        assert_eq!(condition(&status, "Ready").status, "False");
        assert_eq!(
            condition(&status, "ContainersReady").reason.as_deref(),
            Some("ContainersNotReady")
        );
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.5"));
    }

    #[test]
    fn transition_time_changes_only_when_status_flips() {
        let mut clock = ConditionClock::default();
        let early = Timestamp::from_second(100).unwrap();
        let later = Timestamp::from_second(200).unwrap();
        let latest = Timestamp::from_second(300).unwrap();

        assert_eq!(
            clock.condition("Ready", false, None, early).last_transition_time,
            Some(Time(early))
        );
        assert_eq!(
            clock.condition("Ready", false, None, later).last_transition_time,
            Some(Time(early))
        );
        assert_eq!(
            clock.condition("Ready", true, None, latest).last_transition_time,
            Some(Time(latest))
        );
    }
}
