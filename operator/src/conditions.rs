//! Status conditions of a RealtimeNamespace: Ready, Progressing, Degraded and RedisReachable.
//!
//! [`desired_conditions`] derives each condition from what the reconcile observed, and
//! [`merge_conditions`] carries `lastTransitionTime` over from the previous status unless the
//! condition's status flipped. Together they keep a steady fleet's status byte-for-byte equal
//! between passes, so the operator writes nothing and triggers no further reconcile.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Condition types in the order they appear in `status.conditions`.
pub const TYPES: [&str; 4] = [READY, PROGRESSING, DEGRADED, REDIS_REACHABLE];

/// The fleet serves sockets: at least one gateway pod is ready.
pub const READY: &str = "Ready";
/// A rollout or scale change of the gateway Deployment is under way.
pub const PROGRESSING: &str = "Progressing";
/// Something needs a person's attention although the fleet may still serve sockets.
pub const DEGRADED: &str = "Degraded";
/// The operator reached the Redis binding with PING (and CLUSTER INFO in cluster mode).
pub const REDIS_REACHABLE: &str = "RedisReachable";

/// Result of the operator's own Redis check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisCheck {
    /// PING succeeded, and in cluster mode CLUSTER INFO reported `cluster_state:ok`.
    Reachable { message: String },
    /// The check failed; `reason` is a CamelCase cause such as `ConnectFailed`.
    Unreachable { reason: &'static str, message: String },
    /// The check did not run, for example because the reconcile stopped before it.
    NotChecked,
    /// The operator cannot run this check; `reason` is a CamelCase cause such as `TlsNotChecked`.
    Skipped { reason: &'static str, message: String },
}

/// Rollout state of the gateway Deployment as the reconcile observed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutObservation {
    /// Pods the Deployment should have (its `spec.replicas`).
    pub desired: i32,
    /// Pods that exist (`status.replicas`).
    pub replicas: i32,
    /// Pods of the current template (`status.updatedReplicas`).
    pub updated: i32,
    /// Pods that pass their readiness probe (`status.readyReplicas`).
    pub ready: i32,
    /// Whether the Deployment controller has seen the latest Deployment spec.
    pub generation_observed: bool,
    /// Whether the Deployment reports `ProgressDeadlineExceeded`.
    pub deadline_exceeded: bool,
}

/// Everything the conditions are derived from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// `metadata.generation` of the RealtimeNamespace the reconcile applied.
    pub generation: Option<i64>,
    /// The gateway Deployment, or `None` when it does not exist yet.
    pub rollout: Option<RolloutObservation>,
    pub redis: RedisCheck,
    /// Warning from rendering the PodDisruptionBudget, if any.
    pub disruption_warning: Option<String>,
}

/// The content of a condition before it gets a transition time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionState {
    pub type_: &'static str,
    pub status: ConditionStatus,
    pub reason: &'static str,
    pub message: String,
}

/// Status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

fn state(
    type_: &'static str,
    status: ConditionStatus,
    reason: &'static str,
    message: impl Into<String>,
) -> ConditionState {
    ConditionState {
        type_,
        status,
        reason,
        message: message.into(),
    }
}

/// Derives the four conditions from an observation, in [`TYPES`] order.
pub fn desired_conditions(observation: &Observation) -> Vec<ConditionState> {
    use ConditionStatus::{False, True, Unknown};

    let ready = match &observation.rollout {
        None => state(
            READY,
            False,
            "DeploymentMissing",
            "the gateway Deployment does not exist yet",
        ),
        Some(rollout) if rollout.ready >= 1 => state(
            READY,
            True,
            "PodsReady",
            format!("{} of {} gateway pods are ready", rollout.ready, rollout.desired),
        ),
        Some(rollout) if rollout.desired == 0 => state(READY, False, "ScaledToZero", "the fleet has 0 replicas"),
        Some(rollout) => state(
            READY,
            False,
            "NoPodReady",
            format!("0 of {} gateway pods are ready", rollout.desired),
        ),
    };

    let progressing = match &observation.rollout {
        None => state(PROGRESSING, True, "Creating", "creating the gateway Deployment"),
        Some(rollout) if !rollout.generation_observed => state(
            PROGRESSING,
            True,
            "RolloutPending",
            "the Deployment controller has not seen the new spec yet",
        ),
        Some(rollout) if rollout.updated < rollout.desired || rollout.replicas > rollout.updated => state(
            PROGRESSING,
            True,
            "RollingOut",
            format!(
                "{} of {} gateway pods run the current spec, {} pods in total",
                rollout.updated, rollout.desired, rollout.replicas
            ),
        ),
        Some(rollout) if rollout.ready < rollout.desired => state(
            PROGRESSING,
            True,
            "PodsStarting",
            format!("{} of {} gateway pods are ready", rollout.ready, rollout.desired),
        ),
        Some(_) => state(
            PROGRESSING,
            False,
            "RolloutComplete",
            "every gateway pod runs the current spec and is ready",
        ),
    };

    let redis = match &observation.redis {
        RedisCheck::Reachable { message } => state(REDIS_REACHABLE, True, "Reachable", message.clone()),
        RedisCheck::Unreachable { reason, message } => state(REDIS_REACHABLE, False, reason, message.clone()),
        RedisCheck::NotChecked => state(REDIS_REACHABLE, Unknown, "NotChecked", "Redis has not been checked yet"),
        RedisCheck::Skipped { reason, message } => state(REDIS_REACHABLE, Unknown, reason, message.clone()),
    };

    // Degraded lists every problem so a person can read all of them at once. The reason names
    // the most severe one.
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    if let Some(rollout) = &observation.rollout
        && rollout.deadline_exceeded
    {
        problems.push((
            "ProgressDeadlineExceeded",
            "the gateway Deployment exceeded its progress deadline".to_owned(),
        ));
    }
    if let RedisCheck::Unreachable { message, .. } = &observation.redis {
        problems.push(("RedisUnreachable", format!("Redis is unreachable: {message}")));
    }
    if let Some(warning) = &observation.disruption_warning {
        problems.push(("DisruptionBudgetSkipped", warning.clone()));
    }
    let degraded = match problems.first() {
        None => state(DEGRADED, False, "AsExpected", "no problem found"),
        Some((reason, _)) => {
            let message = problems
                .iter()
                .map(|(_, message)| message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            state(DEGRADED, True, reason, message)
        }
    };

    vec![ready, progressing, degraded, redis]
}

/// Turns desired condition states into conditions, keeping each previous `lastTransitionTime`
/// unless that condition's status changed. Conditions of types the operator does not own are
/// kept as they are.
pub fn merge_conditions(
    previous: &[Condition],
    desired: &[ConditionState],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> = desired
        .iter()
        .map(|state| {
            let status = state.status.as_str();
            let last_transition_time = previous
                .iter()
                .find(|old| old.type_ == state.type_ && old.status == status)
                .map(|old| old.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: state.type_.to_owned(),
                status: status.to_owned(),
                reason: state.reason.to_owned(),
                message: state.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect();

    for old in previous {
        if !desired.iter().any(|state| state.type_ == old.type_) {
            merged.push(old.clone());
        }
    }
    merged
}

/// A condition whose status differs from the previous one, for an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub type_: String,
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
    pub message: String,
}

impl Transition {
    /// Whether a person should look: the fleet stopped serving, broke, or lost Redis.
    pub fn is_warning(&self) -> bool {
        match self.type_.as_str() {
            READY | REDIS_REACHABLE => self.to == "False",
            DEGRADED => self.to == "True",
            _ => false,
        }
    }
}

/// Lists the conditions whose status flipped between two condition lists.
pub fn transitions(previous: &[Condition], current: &[Condition]) -> Vec<Transition> {
    current
        .iter()
        .filter_map(|condition| {
            let old = previous.iter().find(|old| old.type_ == condition.type_);
            if old.is_some_and(|old| old.status == condition.status) {
                return None;
            }
            let transition = Transition {
                type_: condition.type_.clone(),
                from: old.map(|old| old.status.clone()),
                to: condition.status.clone(),
                reason: condition.reason.clone(),
                message: condition.message.clone(),
            };
            // A condition's first value is news only when it needs a person's attention.
            if old.is_none() && !transition.is_warning() {
                return None;
            }
            Some(transition)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn steady_rollout(pods: i32) -> RolloutObservation {
        RolloutObservation {
            desired: pods,
            replicas: pods,
            updated: pods,
            ready: pods,
            generation_observed: true,
            deadline_exceeded: false,
        }
    }

    fn observation(rollout: Option<RolloutObservation>) -> Observation {
        Observation {
            generation: Some(3),
            rollout,
            redis: RedisCheck::Reachable { message: "PONG".into() },
            disruption_warning: None,
        }
    }

    fn find<'a>(conditions: &'a [ConditionState], type_: &str) -> &'a ConditionState {
        conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn steady_fleet_is_ready_and_not_progressing() {
        let conditions = desired_conditions(&observation(Some(steady_rollout(3))));
        assert_eq!(find(&conditions, READY).status, ConditionStatus::True);
        assert_eq!(find(&conditions, PROGRESSING).status, ConditionStatus::False);
        assert_eq!(find(&conditions, PROGRESSING).reason, "RolloutComplete");
        assert_eq!(find(&conditions, DEGRADED).status, ConditionStatus::False);
        assert_eq!(find(&conditions, REDIS_REACHABLE).status, ConditionStatus::True);
    }

    #[test]
    fn conditions_come_in_fixed_order() {
        let conditions = desired_conditions(&observation(None));
        let types: Vec<&str> = conditions.iter().map(|c| c.type_).collect();
        assert_eq!(types, TYPES);
    }

    #[test]
    fn missing_deployment_is_not_ready_and_progressing() {
        let conditions = desired_conditions(&observation(None));
        assert_eq!(find(&conditions, READY).status, ConditionStatus::False);
        assert_eq!(find(&conditions, READY).reason, "DeploymentMissing");
        assert_eq!(find(&conditions, PROGRESSING).status, ConditionStatus::True);
    }

    #[test]
    fn rolling_update_is_progressing_but_ready() {
        let rollout = RolloutObservation {
            replicas: 4,
            updated: 1,
            ready: 3,
            ..steady_rollout(3)
        };
        let conditions = desired_conditions(&observation(Some(rollout)));
        assert_eq!(find(&conditions, READY).status, ConditionStatus::True);
        assert_eq!(find(&conditions, PROGRESSING).status, ConditionStatus::True);
        assert_eq!(find(&conditions, PROGRESSING).reason, "RollingOut");
    }

    #[test]
    fn unobserved_generation_is_progressing() {
        let rollout = RolloutObservation {
            generation_observed: false,
            ..steady_rollout(2)
        };
        let conditions = desired_conditions(&observation(Some(rollout)));
        assert_eq!(find(&conditions, PROGRESSING).reason, "RolloutPending");
    }

    #[test]
    fn zero_replicas_is_not_ready_with_its_own_reason() {
        let conditions = desired_conditions(&observation(Some(steady_rollout(0))));
        assert_eq!(find(&conditions, READY).status, ConditionStatus::False);
        assert_eq!(find(&conditions, READY).reason, "ScaledToZero");
        assert_eq!(find(&conditions, PROGRESSING).status, ConditionStatus::False);
    }

    #[test]
    fn no_ready_pod_is_not_ready() {
        let rollout = RolloutObservation {
            ready: 0,
            ..steady_rollout(2)
        };
        let conditions = desired_conditions(&observation(Some(rollout)));
        assert_eq!(find(&conditions, READY).reason, "NoPodReady");
        assert_eq!(find(&conditions, PROGRESSING).reason, "PodsStarting");
    }

    #[test]
    fn unreachable_redis_degrades_the_fleet() {
        let mut observed = observation(Some(steady_rollout(2)));
        observed.redis = RedisCheck::Unreachable {
            reason: "ConnectFailed",
            message: "connection refused".into(),
        };
        let conditions = desired_conditions(&observed);
        assert_eq!(find(&conditions, REDIS_REACHABLE).status, ConditionStatus::False);
        assert_eq!(find(&conditions, REDIS_REACHABLE).reason, "ConnectFailed");
        assert_eq!(find(&conditions, DEGRADED).status, ConditionStatus::True);
        assert_eq!(find(&conditions, DEGRADED).reason, "RedisUnreachable");
    }

    #[test]
    fn unchecked_redis_is_unknown() {
        let mut observed = observation(Some(steady_rollout(2)));
        observed.redis = RedisCheck::NotChecked;
        let conditions = desired_conditions(&observed);
        assert_eq!(find(&conditions, REDIS_REACHABLE).status, ConditionStatus::Unknown);
        assert_eq!(find(&conditions, DEGRADED).status, ConditionStatus::False);
    }

    #[test]
    fn degraded_lists_every_problem() {
        let mut observed = observation(Some(RolloutObservation {
            deadline_exceeded: true,
            ..steady_rollout(2)
        }));
        observed.redis = RedisCheck::Unreachable {
            reason: "ConnectFailed",
            message: "refused".into(),
        };
        observed.disruption_warning = Some("budget skipped".into());
        let conditions = desired_conditions(&observed);
        let degraded = find(&conditions, DEGRADED);
        assert_eq!(degraded.reason, "ProgressDeadlineExceeded");
        assert!(degraded.message.contains("progress deadline"), "{}", degraded.message);
        assert!(degraded.message.contains("refused"), "{}", degraded.message);
        assert!(degraded.message.contains("budget skipped"), "{}", degraded.message);
    }

    #[test]
    fn merge_keeps_transition_time_while_status_holds() {
        let first = merge_conditions(
            &[],
            &desired_conditions(&observation(Some(steady_rollout(2)))),
            Some(3),
            at(0),
        );

        // Same status, new message: the time stays.
        let rollout = RolloutObservation {
            ready: 1,
            ..steady_rollout(2)
        };
        let second = merge_conditions(
            &first,
            &desired_conditions(&observation(Some(rollout))),
            Some(4),
            at(60),
        );
        let ready = second.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.message, "1 of 2 gateway pods are ready");
        assert_eq!(ready.last_transition_time, Time(at(0)));
        assert_eq!(ready.observed_generation, Some(4));
    }

    #[test]
    fn merge_sets_transition_time_when_status_flips() {
        let first = merge_conditions(
            &[],
            &desired_conditions(&observation(Some(steady_rollout(2)))),
            Some(3),
            at(0),
        );
        let rollout = RolloutObservation {
            ready: 0,
            ..steady_rollout(2)
        };
        let second = merge_conditions(
            &first,
            &desired_conditions(&observation(Some(rollout))),
            Some(3),
            at(60),
        );
        let ready = second.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.last_transition_time, Time(at(60)));
        let redis = second.iter().find(|c| c.type_ == REDIS_REACHABLE).unwrap();
        assert_eq!(redis.last_transition_time, Time(at(0)));
    }

    #[test]
    fn merge_of_unchanged_observation_is_identical() {
        let desired = desired_conditions(&observation(Some(steady_rollout(2))));
        let first = merge_conditions(&[], &desired, Some(3), at(0));
        let second = merge_conditions(&first, &desired, Some(3), at(3600));
        assert_eq!(first, second);
    }

    #[test]
    fn merge_keeps_foreign_conditions() {
        let foreign = Condition {
            type_: "example.com/Audited".into(),
            status: "True".into(),
            reason: "Checked".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(at(0)),
        };
        let merged = merge_conditions(
            std::slice::from_ref(&foreign),
            &desired_conditions(&observation(None)),
            Some(1),
            at(5),
        );
        assert_eq!(merged.len(), 5);
        assert_eq!(merged.last(), Some(&foreign));
    }

    #[test]
    fn transitions_report_flips_only() {
        let first = merge_conditions(
            &[],
            &desired_conditions(&observation(Some(steady_rollout(2)))),
            Some(3),
            at(0),
        );
        assert!(transitions(&first, &first).is_empty());

        let rollout = RolloutObservation {
            ready: 0,
            ..steady_rollout(2)
        };
        let second = merge_conditions(
            &first,
            &desired_conditions(&observation(Some(rollout))),
            Some(3),
            at(60),
        );
        let flipped = transitions(&first, &second);
        let types: Vec<&str> = flipped.iter().map(|t| t.type_.as_str()).collect();
        assert_eq!(types, vec![READY, PROGRESSING]);
        assert!(flipped[0].is_warning());
        assert!(!flipped[1].is_warning());
    }

    #[test]
    fn first_values_report_only_warnings() {
        let mut observed = observation(Some(RolloutObservation {
            ready: 0,
            ..steady_rollout(2)
        }));
        observed.redis = RedisCheck::NotChecked;
        let first = merge_conditions(&[], &desired_conditions(&observed), Some(1), at(0));
        let flipped = transitions(&[], &first);
        let types: Vec<&str> = flipped.iter().map(|t| t.type_.as_str()).collect();
        assert_eq!(types, vec![READY]);
        assert!(flipped[0].is_warning());
    }
}
