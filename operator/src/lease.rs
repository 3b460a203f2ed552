//! Leader election with a coordination.k8s.io/v1 Lease, so that of several operator replicas
//! only one reconciles at a time.
//!
//! The holder renews the Lease every `renew_interval`. Another replica takes the Lease over only
//! when `renewTime + leaseDurationSeconds` has passed. Every write carries the `resourceVersion`
//! it read, so two replicas racing for an expired Lease cannot both win: the API server rejects
//! the second write with 409 Conflict.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use thiserror::Error;
use tokio::sync::watch;
use tracing::{info, warn};

/// Settings of one elector.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Name of the Lease object.
    pub name: String,
    /// Identity written to `holderIdentity`, normally the pod name.
    pub identity: String,
    /// How long a Lease stays valid after its last renewal.
    pub duration: Duration,
    /// Time between two renewals or acquisition attempts.
    pub renew_interval: Duration,
}

/// Reasons a Lease operation failed.
#[derive(Debug, Error)]
pub enum LeaseError {
    #[error("failed to read Lease {name}: {source}")]
    Read { name: String, source: kube::Error },
    #[error("failed to write Lease {name}: {source}")]
    Write { name: String, source: kube::Error },
    #[error("another replica wrote Lease {name} first")]
    Conflict { name: String },
}

/// Action of an elector on the Lease it read.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// No Lease exists: create one held by us.
    Create,
    /// We hold the Lease: write a new renew time.
    Renew,
    /// The holder let the Lease expire, or released it: take it over.
    TakeOver,
    /// Someone else holds a valid Lease.
    Wait { holder: String },
}

/// Decides what to do with the Lease as read at `now`. Pure, so the rules have unit tests.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp, default_duration: Duration) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration = spec
        .lease_duration_seconds
        .map(|seconds| SignedDuration::from_secs(i64::from(seconds)))
        .unwrap_or_else(|| SignedDuration::try_from(default_duration).unwrap_or(SignedDuration::MAX));
    let renewed = spec.renew_time.or(spec.acquire_time).map(|time| time.0);
    match renewed {
        Some(renewed) if renewed.saturating_add(duration).is_ok_and(|expiry| expiry > now) => Decision::Wait { holder },
        _ => Decision::TakeOver,
    }
}

/// Returns the Lease as written for `decision`, starting from what was read.
pub fn next_lease(
    read: Option<&Lease>,
    decision: &Decision,
    config: &LeaseConfig,
    namespace: &str,
    now: Timestamp,
) -> Option<Lease> {
    let duration_seconds = i32::try_from(config.duration.as_secs()).unwrap_or(i32::MAX);
    match decision {
        Decision::Wait { .. } => None,
        Decision::Create => Some(Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(duration_seconds),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        }),
        Decision::Renew => {
            let mut lease = read?.clone();
            let spec = lease.spec.get_or_insert_default();
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(duration_seconds);
            Some(lease)
        }
        Decision::TakeOver => {
            let mut lease = read?.clone();
            let spec = lease.spec.get_or_insert_default();
            spec.holder_identity = Some(config.identity.clone());
            spec.lease_duration_seconds = Some(duration_seconds);
            spec.acquire_time = Some(MicroTime(now));
            spec.renew_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            Some(lease)
        }
    }
}

/// Elector bound to one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    config: LeaseConfig,
}

impl LeaderElector {
    pub fn new(api: Api<Lease>, namespace: String, config: LeaseConfig) -> Self {
        Self { api, namespace, config }
    }

    /// Reads the Lease once and acquires or renews it when allowed. Returns whether we hold it.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaseError> {
        let name = &self.config.name;
        let read = self.api.get_opt(name).await.map_err(|source| LeaseError::Read {
            name: name.clone(),
            source,
        })?;
        let now = Timestamp::now();
        let decision = decide(read.as_ref(), &self.config.identity, now, self.config.duration);
        let Some(lease) = next_lease(read.as_ref(), &decision, &self.config, &self.namespace, now) else {
            return Ok(false);
        };

        let written = match decision {
            Decision::Create => self.api.create(&PostParams::default(), &lease).await,
            _ => self.api.replace(name, &PostParams::default(), &lease).await,
        };
        match written {
            Ok(_) => {
                if decision != Decision::Renew {
                    info!(lease = %name, identity = %self.config.identity, ?decision, "acquired leader lease");
                }
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Err(LeaseError::Conflict { name: name.clone() }),
            Err(source) => Err(LeaseError::Write {
                name: name.clone(),
                source,
            }),
        }
    }

    /// Waits until this replica holds the Lease, retrying every `renew_interval`.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(err) => warn!(error = %err, "leader lease attempt failed; retrying"),
            }
            tokio::time::sleep(self.config.renew_interval).await;
        }
    }

    /// Renews the Lease until a renewal has failed for longer than the Lease lasts, or another
    /// replica holds it, then sends `false` on `leading` and returns. After that this replica
    /// must stop writing: another one may take over at any moment.
    pub async fn keep_renewing(&self, leading: watch::Sender<bool>) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.renew_interval).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    warn!(lease = %self.config.name, "another replica holds the leader lease; stopping");
                    break;
                }
                Err(err) => {
                    warn!(error = %err, "failed to renew leader lease");
                    // Stop before the Lease can expire, so no two replicas ever write at once.
                    if last_renewal.elapsed() + self.config.renew_interval >= self.config.duration {
                        warn!(lease = %self.config.name, "leader lease could not be renewed in time; stopping");
                        break;
                    }
                }
            }
        }
        let _ = leading.send(false);
    }

    /// Gives the Lease up on shutdown so that a successor need not wait for it to expire.
    pub async fn release(&self) {
        let name = &self.config.name;
        let Ok(Some(mut lease)) = self.api.get_opt(name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => info!(lease = %name, "released leader lease"),
            Err(err) => warn!(lease = %name, error = %err, "failed to release leader lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DURATION: Duration = Duration::from_secs(15);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn config(identity: &str) -> LeaseConfig {
        LeaseConfig {
            name: "socketfleet-operator".into(),
            identity: identity.into(),
            duration: DURATION,
            renew_interval: Duration::from_secs(5),
        }
    }

    fn held_by(holder: Option<&str>, renewed_at: i64) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("socketfleet-operator".into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(15),
                acquire_time: Some(MicroTime(at(0))),
                renew_time: Some(MicroTime(at(renewed_at))),
                lease_transitions: Some(2),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn missing_lease_is_created() {
        assert_eq!(decide(None, "a", at(0), DURATION), Decision::Create);
        let lease = next_lease(None, &Decision::Create, &config("a"), "ops", at(0)).unwrap();
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(lease.metadata.namespace.as_deref(), Some("ops"));
    }

    #[test]
    fn own_lease_is_renewed_keeping_resource_version() {
        let read = held_by(Some("a"), 0);
        assert_eq!(decide(Some(&read), "a", at(5), DURATION), Decision::Renew);
        let lease = next_lease(Some(&read), &Decision::Renew, &config("a"), "ops", at(5)).unwrap();
        assert_eq!(lease.metadata.resource_version.as_deref(), Some("7"));
        let spec = lease.spec.unwrap();
        assert_eq!(spec.renew_time, Some(MicroTime(at(5))));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(spec.lease_transitions, Some(2));
    }

    #[test]
    fn valid_foreign_lease_makes_us_wait() {
        let read = held_by(Some("b"), 0);
        assert_eq!(
            decide(Some(&read), "a", at(14), DURATION),
            Decision::Wait { holder: "b".into() }
        );
        assert_eq!(
            next_lease(
                Some(&read),
                &Decision::Wait { holder: "b".into() },
                &config("a"),
                "ops",
                at(14)
            ),
            None
        );
    }

    #[test]
    fn expired_foreign_lease_is_taken_over() {
        let read = held_by(Some("b"), 0);
        assert_eq!(decide(Some(&read), "a", at(15), DURATION), Decision::TakeOver);
        let lease = next_lease(Some(&read), &Decision::TakeOver, &config("a"), "ops", at(15)).unwrap();
        assert_eq!(lease.metadata.resource_version.as_deref(), Some("7"));
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(15))));
        assert_eq!(spec.lease_transitions, Some(3));
    }

    #[test]
    fn released_lease_is_taken_over_at_once() {
        let read = held_by(None, 0);
        assert_eq!(decide(Some(&read), "a", at(1), DURATION), Decision::TakeOver);
    }

    #[test]
    fn lease_without_times_is_taken_over() {
        let mut read = held_by(Some("b"), 0);
        let spec = read.spec.as_mut().unwrap();
        spec.renew_time = None;
        spec.acquire_time = None;
        assert_eq!(decide(Some(&read), "a", at(1), DURATION), Decision::TakeOver);
    }
}
