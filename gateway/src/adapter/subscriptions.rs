//! The set of channels this pod subscribes to, owned by the adapter rather than by redis-rs.
//!
//! redis-rs 1.8 replays its own record of subscriptions after a reconnect or a slot refresh. But it
//! sends all sharded channels of a node in one SSUBSCRIBE, which Redis rejects with CROSSSLOT when
//! they hash to different slots, and that error is not reported. It also does not subscribe again
//! after a server-sent SUNSUBSCRIBE. So this set is the source of truth: every channel is
//! (re)subscribed on its own, one SSUBSCRIBE per channel, and a lost channel is retried until it
//! is back.

use std::{
    collections::{HashMap, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    sync::{Arc, Mutex as StdMutex, Weak},
    time::Duration,
};

use redis::RedisResult;
use tokio::sync::{Mutex, Notify, Semaphore, mpsc};

use super::{
    driver::Driver,
    metrics::{LossReason, Metrics},
};

const STRIPES: usize = 256;
/// Resubscriptions in flight at once; bounded so a failover with many channels does not flood Redis.
const RESUBSCRIBE_CONCURRENCY: usize = 64;
const RESUBSCRIBE_RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelState {
    /// SSUBSCRIBE sent, no confirmation yet.
    Subscribing,
    /// The server confirmed the subscription and no push since reported it gone.
    Subscribed,
    /// The subscription is gone and waits to be subscribed again.
    Lost,
}

/// The channels this pod wants, with their subscription state.
pub struct Subscriptions {
    driver: Arc<Driver>,
    metrics: Arc<Metrics>,
    channels: StdMutex<HashMap<String, ChannelState>>,
    /// Serialises subscribe and unsubscribe of one channel, so a join racing the last leave of a
    /// room cannot end with members and no subscription.
    stripes: Vec<Mutex<()>>,
    retry_tx: mpsc::UnboundedSender<String>,
    /// Woken after a channel was subscribed again, so the health check verifies it soon: redis-rs
    /// may replace a node's connection after a later slot refresh, and the subscriptions made on
    /// the replaced connection are gone without any push.
    pub resubscribed: Notify,
}

impl Subscriptions {
    /// Creates an empty set and starts the task that subscribes lost channels again.
    pub fn new(driver: Arc<Driver>, metrics: Arc<Metrics>) -> Arc<Self> {
        let (retry_tx, retry_rx) = mpsc::unbounded_channel();
        let subscriptions = Arc::new(Self {
            driver,
            metrics,
            channels: StdMutex::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            retry_tx,
            resubscribed: Notify::new(),
        });
        tokio::spawn(resubscribe_loop(Arc::downgrade(&subscriptions), retry_rx));
        subscriptions
    }

    fn stripe(&self, channel: &str) -> &Mutex<()> {
        let mut hasher = DefaultHasher::new();
        channel.hash(&mut hasher);
        &self.stripes[hasher.finish() as usize % STRIPES]
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, ChannelState>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_gauges(&self, channels: &HashMap<String, ChannelState>) {
        let lost = channels.values().filter(|s| **s == ChannelState::Lost).count();
        self.metrics.set_channels(channels.len() - lost, lost);
    }

    fn set_state(&self, channel: &str, state: Option<ChannelState>) {
        let mut channels = self.channels();
        match state {
            Some(state) => {
                channels.insert(channel.to_owned(), state);
            }
            None => {
                channels.remove(channel);
            }
        }
        self.update_gauges(&channels);
    }

    /// Subscribes to `channel` unless already subscribed, and returns once Redis confirmed it.
    pub async fn ensure(&self, channel: &str) -> RedisResult<()> {
        let _serial = self.stripe(channel).lock().await;
        let previous = self.channels().get(channel).copied();
        if previous == Some(ChannelState::Subscribed) {
            return Ok(());
        }
        if previous.is_none() {
            self.set_state(channel, Some(ChannelState::Subscribing));
        }

        match self.driver.subscribe(channel).await {
            Ok(()) => {
                if previous == Some(ChannelState::Lost) {
                    self.metrics.record_resubscribed();
                }
                self.set_state(channel, Some(ChannelState::Subscribed));
                tracing::debug!(channel, "subscribed");
                Ok(())
            }
            Err(err) => {
                if previous.is_none() {
                    self.set_state(channel, None);
                } else {
                    let _ = self.retry_tx.send(channel.to_owned());
                }
                Err(err)
            }
        }
    }

    /// Unsubscribes from `channel` unless `still_needed` (checked under the channel's lock) returns
    /// true because a local member appeared meanwhile. Returns whether it unsubscribed.
    pub async fn release_if_unused(&self, channel: &str, still_needed: impl FnOnce() -> bool) -> bool {
        let _serial = self.stripe(channel).lock().await;
        if !self.channels().contains_key(channel) || still_needed() {
            return false;
        }
        // Removed before the command, so the health check never expects a channel on its way out.
        self.set_state(channel, None);
        if let Err(err) = self.driver.unsubscribe(channel).await {
            // Messages that still arrive on it find no local member; the dispatcher unsubscribes again.
            tracing::warn!(channel, error = %err, "unsubscribe failed");
        }
        tracing::debug!(channel, "unsubscribed");
        true
    }

    /// Unsubscribes from a channel this set does not want, e.g. one a failed unsubscribe left.
    pub async fn drop_unwanted(&self, channel: &str) {
        let _serial = self.stripe(channel).lock().await;
        if self.channels().contains_key(channel) {
            return;
        }
        if let Err(err) = self.driver.unsubscribe(channel).await {
            tracing::warn!(channel, error = %err, "unsubscribe of an unwanted channel failed");
        }
    }

    /// Returns whether this pod subscribes (or is subscribing) to `channel`, so a publish there counts it.
    pub fn is_subscribed(&self, channel: &str) -> bool {
        matches!(
            self.channels().get(channel),
            Some(ChannelState::Subscribed | ChannelState::Subscribing)
        )
    }

    /// Returns whether the server confirmed this pod's subscription to `channel` and no push
    /// reported it gone since.
    pub fn is_confirmed(&self, channel: &str) -> bool {
        self.channels().get(channel) == Some(&ChannelState::Subscribed)
    }

    /// Returns whether this pod's subscription to `channel` is lost and waits to be restored.
    pub fn is_lost(&self, channel: &str) -> bool {
        self.channels().get(channel) == Some(&ChannelState::Lost)
    }

    /// Returns whether `channel` is in the set at all, lost or not.
    pub fn is_wanted(&self, channel: &str) -> bool {
        self.channels().contains_key(channel)
    }

    /// Marks one subscribed channel lost and queues it to be subscribed again.
    pub fn mark_lost(&self, channel: &str, reason: LossReason) {
        let mut channels = self.channels();
        if let Some(state @ ChannelState::Subscribed) = channels.get_mut(channel) {
            *state = ChannelState::Lost;
            self.update_gauges(&channels);
            drop(channels);
            self.metrics.record_lost(reason, 1);
            tracing::warn!(channel, ?reason, "redis subscription lost, subscribing again");
            let _ = self.retry_tx.send(channel.to_owned());
        }
    }

    /// Marks every subscribed channel in `lost` lost and queues them to be subscribed again.
    pub fn mark_many_lost(&self, lost: impl IntoIterator<Item = String>, reason: LossReason) {
        let mut queued = Vec::new();
        {
            let mut channels = self.channels();
            for channel in lost {
                if let Some(state @ ChannelState::Subscribed) = channels.get_mut(&channel) {
                    *state = ChannelState::Lost;
                    queued.push(channel);
                }
            }
            self.update_gauges(&channels);
        }
        if queued.is_empty() {
            return;
        }
        self.metrics.record_lost(reason, queued.len());
        tracing::warn!(
            count = queued.len(),
            ?reason,
            "redis subscriptions lost, subscribing again"
        );
        for channel in queued {
            let _ = self.retry_tx.send(channel);
        }
    }

    /// Marks every subscribed channel lost, e.g. after a connection closed.
    pub fn mark_all_lost(&self, reason: LossReason) {
        let all: Vec<String> = self.channels().keys().cloned().collect();
        self.mark_many_lost(all, reason);
    }

    /// Returns the channels in the confirmed state.
    pub fn subscribed(&self) -> Vec<String> {
        self.channels()
            .iter()
            .filter(|(_, state)| **state == ChannelState::Subscribed)
            .map(|(channel, _)| channel.clone())
            .collect()
    }

    /// Returns every wanted channel whose name starts with `prefix`.
    pub fn wanted_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.channels()
            .keys()
            .filter(|c| c.starts_with(prefix))
            .cloned()
            .collect()
    }

    async fn resubscribe(&self, channel: &str) -> RedisResult<bool> {
        let _serial = self.stripe(channel).lock().await;
        if self.channels().get(channel) != Some(&ChannelState::Lost) {
            return Ok(false);
        }
        self.driver.subscribe(channel).await?;
        let mut channels = self.channels();
        if let Some(state @ ChannelState::Lost) = channels.get_mut(channel) {
            *state = ChannelState::Subscribed;
            self.update_gauges(&channels);
            drop(channels);
            self.metrics.record_resubscribed();
            self.resubscribed.notify_one();
            Ok(true)
        } else {
            Ok(false)
        }
    }
}

async fn resubscribe_loop(subscriptions: Weak<Subscriptions>, mut retry_rx: mpsc::UnboundedReceiver<String>) {
    let permits = Arc::new(Semaphore::new(RESUBSCRIBE_CONCURRENCY));
    while let Some(channel) = retry_rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(subscriptions) = subscriptions.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            match subscriptions.resubscribe(&channel).await {
                Ok(true) => tracing::info!(channel, "redis subscription restored"),
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(channel, error = %err, "subscribing again failed, retrying");
                    tokio::time::sleep(RESUBSCRIBE_RETRY).await;
                    let _ = subscriptions.retry_tx.send(channel);
                }
            }
        });
    }
}
