//! Wiring of the operator process: client, metrics server, leader election, controller and
//! graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use thiserror::Error;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::builders::BuildSettings;
use crate::cli::RunArgs;
use crate::controller::{self, Context};
use crate::crd::RealtimeNamespace;
use crate::lease::{LeaderElector, LeaseConfig};
use crate::metrics::{self, Metrics};

/// Reasons the operator process stops with an error.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("failed to create a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("failed to serve metrics on {address}: {source}")]
    Metrics {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("lost the leader lease; exiting so that the pod restarts as a candidate")]
    LostLeadership,
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
}

/// Runs the operator until SIGTERM or ctrl-c, or until it loses the leader lease.
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    if args.leader_election && args.lease_renew_seconds * 2 > args.lease_duration_seconds {
        return Err(RunError::InvalidSetting(format!(
            "--lease-renew-seconds {} must be at most half of --lease-duration-seconds {}",
            args.lease_renew_seconds, args.lease_duration_seconds
        )));
    }
    let client = Client::try_default().await.map_err(RunError::Client)?;
    let metrics = Arc::new(Metrics::default());

    let (stop_sender, stop) = watch::channel(false);
    tokio::spawn(forward_signals(stop_sender));

    let metrics_server = tokio::spawn(metrics::serve(
        args.metrics_address,
        metrics.clone(),
        wait_for(stop.clone()),
    ));
    metrics.ready.store(true, Ordering::Relaxed);
    info!(address = %args.metrics_address, "serving metrics and health checks");

    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let elector = args.leader_election.then(|| {
        let namespace = args.lease_namespace.clone().unwrap_or_else(|| pod_namespace(&client));
        let config = LeaseConfig {
            name: args.lease_name.clone(),
            identity: identity.clone(),
            duration: Duration::from_secs(args.lease_duration_seconds),
            renew_interval: Duration::from_secs(args.lease_renew_seconds),
        };
        LeaderElector::new(Api::<Lease>::namespaced(client.clone(), &namespace), namespace, config)
    });

    let (leading_sender, leading) = watch::channel(true);
    if let Some(elector) = &elector {
        info!(identity = %identity, "waiting for the leader lease");
        tokio::select! {
            _ = elector.acquire() => {}
            _ = wait_for(stop.clone()) => {
                info!("stopped before becoming leader");
                return Ok(());
            }
        }
        metrics.leader.set(1);
    }

    let renewing = elector.as_ref().map(|elector| elector.keep_renewing(leading_sender));
    let controller = run_controller(
        &args,
        client.clone(),
        metrics.clone(),
        &identity,
        stop.clone(),
        leading.clone(),
    );
    match renewing {
        Some(renewing) => {
            tokio::select! {
                _ = controller => {}
                _ = renewing => {
                    // keep_renewing only returns after it sent `false`; let the controller finish
                    // its running reconciles, which end at the next shutdown check.
                }
            }
        }
        None => controller.await,
    }
    metrics.leader.set(0);

    let lost = !*leading.borrow();
    if let Some(elector) = &elector
        && !lost
    {
        elector.release().await;
    }
    let _ = metrics_server.await;
    if lost {
        return Err(RunError::LostLeadership);
    }
    info!("operator stopped");
    Ok(())
}

async fn run_controller(
    args: &RunArgs,
    client: Client,
    metrics: Arc<Metrics>,
    identity: &str,
    stop: watch::Receiver<bool>,
    leading: watch::Receiver<bool>,
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: crate::FIELD_MANAGER.to_owned(),
            instance: Some(identity.to_owned()),
        },
    );
    let settings = BuildSettings {
        gateway_image: args.gateway_image.clone(),
    };
    let context = Arc::new(Context::new(
        client.clone(),
        settings,
        recorder,
        metrics,
        Duration::from_secs(args.resync_seconds),
        controller::network_redis_checker(),
    ));

    let (resources, deployments, services, autoscalers, budgets) = match &args.watch_namespace {
        Some(namespace) => (
            Api::<RealtimeNamespace>::namespaced(client.clone(), namespace),
            Api::<Deployment>::namespaced(client.clone(), namespace),
            Api::<Service>::namespaced(client.clone(), namespace),
            Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), namespace),
            Api::<PodDisruptionBudget>::namespaced(client.clone(), namespace),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    // Only objects the operator labelled are watched, so unrelated Deployments cost nothing.
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=socketfleet-operator");

    let shutdown = async move {
        tokio::select! {
            _ = wait_for(stop) => {}
            _ = wait_for_false(leading) => {}
        }
    };
    info!("starting controller");
    Controller::new(resources, watcher::Config::default())
        .owns(deployments, owned.clone())
        .owns(services, owned.clone())
        .owns(autoscalers, owned.clone())
        .owns(budgets, owned)
        .graceful_shutdown_on(shutdown)
        .run(controller::reconcile, controller::error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %err, "controller event");
            }
        })
        .await;
}

/// Sends `true` on SIGTERM or ctrl-c.
async fn forward_signals(stop: watch::Sender<bool>) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                warn!(error = %err, "failed to listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("received ctrl-c; shutting down"),
        _ = terminate => info!("received SIGTERM; shutting down"),
    }
    let _ = stop.send(true);
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

async fn wait_for_false(mut leading: watch::Receiver<bool>) {
    let _ = leading.wait_for(|leading| !*leading).await;
}

fn default_identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("socketfleet-operator-{}", std::process::id()))
}

fn pod_namespace(client: &Client) -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .map(|text| text.trim().to_owned())
        .ok()
        .filter(|namespace| !namespace.is_empty())
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| client.default_namespace().to_owned())
}
