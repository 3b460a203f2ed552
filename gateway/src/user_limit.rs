//! Per-user connection limit across the fleet, counted in Redis.
//!
//! Each user (JWT `sub`) has one sorted set whose members are socket ids and whose scores are
//! expiry times in Redis server milliseconds. A pod adds a member when a socket connects, removes
//! it on disconnect and pushes the expiry of its live members forward at a third of the TTL. A pod
//! that dies stops refreshing, so its members expire and stop counting within one TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{IntoConnectionInfo, RedisResult, Value};
use thiserror::Error;

use crate::adapter::{ConnectError, Topology, connect_error, tls_certificates};
use crate::config::{Config, ConfigError, RedisMode};

/// Drops expired members, then adds the socket if the user is below the limit. Uses the Redis
/// server clock so pods with skewed clocks agree on expiry.
/// KEYS[1] user set; ARGV[1] limit, ARGV[2] TTL in ms, ARGV[3] socket id. Returns 1 if added.
const ACQUIRE_SCRIPT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
";

/// Pushes the expiry of the given socket ids forward. KEYS[1] user set; ARGV[1] TTL in ms,
/// ARGV[2..] socket ids.
const REFRESH_SCRIPT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl)
return #ARGV - 1
";

/// Reasons the per-user count cannot be read or changed.
#[derive(Debug, Error)]
pub enum UserLimitError {
    #[error("invalid --redis-url: {0}")]
    InvalidUrl(redis::RedisError),
    #[error(transparent)]
    Connect(ConnectError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("Redis command failed: {0}")]
    Command(redis::RedisError),
}

#[derive(Clone)]
enum Connection {
    Cluster(ClusterConnection),
    Standalone(ConnectionManager),
}

/// Counts each user's sockets across the fleet and enforces --max-connections-per-user.
pub struct UserLimiter {
    connection: Connection,
    limit: u32,
    ttl: Duration,
    /// Sockets this pod has counted in Redis, by user.
    held: Mutex<HashMap<String, Vec<String>>>,
}

impl UserLimiter {
    /// Connects to Redis when --max-connections-per-user is set; returns `None` otherwise.
    pub async fn from_config(config: &Config) -> Result<Option<Arc<UserLimiter>>, UserLimitError> {
        let (Some(limit), Some(url)) = (config.max_connections_per_user, &config.redis_url) else {
            return Ok(None);
        };
        let password = config.redis_password().ok().flatten();
        let seeds: Vec<String> = url
            .split(',')
            .map(str::trim)
            .filter(|seed| !seed.is_empty())
            .map(str::to_owned)
            .collect();
        let tls = tls_certificates(config.redis_ca_certificates()?.as_deref());
        let connection = match config.redis_mode {
            RedisMode::Cluster => {
                let mut builder = redis::cluster::ClusterClient::builder(seeds.clone());
                if let Some(password) = &password {
                    builder = builder.password(password.clone());
                }
                if let Some(username) = &config.redis_username {
                    builder = builder.username(username.clone());
                }
                if let Some(certificates) = tls.clone() {
                    builder = builder.certs(certificates);
                }
                let client = builder.build().map_err(UserLimitError::InvalidUrl)?;
                match client.get_async_connection().await {
                    Ok(connection) => Connection::Cluster(connection),
                    Err(err) => {
                        let err = connect_error(err, Topology::Cluster, &seeds, tls.as_ref()).await;
                        return Err(UserLimitError::Connect(err));
                    }
                }
            }
            RedisMode::Standalone => {
                let first = seeds.first().map(String::as_str).unwrap_or_default();
                let info = first.into_connection_info().map_err(UserLimitError::InvalidUrl)?;
                let mut settings = info.redis_settings().clone();
                if let Some(password) = &password {
                    settings = settings.set_password(password);
                }
                if let Some(username) = &config.redis_username {
                    settings = settings.set_username(username);
                }
                let info = info.set_redis_settings(settings);
                let client = match tls.clone() {
                    Some(certificates) => redis::Client::build_with_tls(info, certificates),
                    None => redis::Client::open(info),
                }
                .map_err(UserLimitError::InvalidUrl)?;
                match client.get_connection_manager().await {
                    Ok(connection) => Connection::Standalone(connection),
                    Err(err) => {
                        let err = connect_error(err, Topology::Standalone, &seeds, tls.as_ref()).await;
                        return Err(UserLimitError::Connect(err));
                    }
                }
            }
        };

        let limiter = Arc::new(UserLimiter {
            connection,
            limit,
            ttl: config.user_count_ttl,
            held: Mutex::default(),
        });
        tokio::spawn(refresh_periodically(Arc::downgrade(&limiter)));
        Ok(Some(limiter))
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Counts socket `sid` for `subject`; returns false, counting nothing, at the limit.
    pub async fn acquire(&self, subject: &str, sid: &str) -> Result<bool, UserLimitError> {
        let mut command = redis::cmd("EVAL");
        command
            .arg(ACQUIRE_SCRIPT)
            .arg(1)
            .arg(user_key(subject))
            .arg(self.limit)
            .arg(self.ttl_ms())
            .arg(sid);
        let added: i64 = self.query(command).await?;
        if added == 1 {
            let mut held = self.held.lock().expect("user limit lock");
            held.entry(subject.to_owned()).or_default().push(sid.to_owned());
        }
        Ok(added == 1)
    }

    /// Stops counting socket `sid`. A failure is logged: the member expires within one TTL.
    pub async fn release(&self, subject: &str, sid: &str) {
        {
            let mut held = self.held.lock().expect("user limit lock");
            if let Some(sids) = held.get_mut(subject) {
                sids.retain(|held_sid| held_sid != sid);
                if sids.is_empty() {
                    held.remove(subject);
                }
            }
        }
        let mut command = redis::cmd("ZREM");
        command.arg(user_key(subject)).arg(sid);
        if let Err(err) = self.query::<i64>(command).await {
            tracing::warn!(error = %err, "failed to release a per-user count; it expires by itself");
        }
    }

    /// Returns the number of sockets counted for `subject` across the fleet.
    pub async fn count(&self, subject: &str) -> Result<u64, UserLimitError> {
        let mut command = redis::cmd("ZCOUNT");
        // Scores are Redis server milliseconds; expired members are removed on the next acquire,
        // so counting every member can only overstate by members that expired since.
        command.arg(user_key(subject)).arg("-inf").arg("+inf");
        self.query(command).await
    }

    async fn refresh(&self) -> Result<(), UserLimitError> {
        let held: Vec<(String, Vec<String>)> = {
            let held = self.held.lock().expect("user limit lock");
            held.iter()
                .map(|(subject, sids)| (subject.clone(), sids.clone()))
                .collect()
        };
        for (subject, sids) in held {
            let mut command = redis::cmd("EVAL");
            command
                .arg(REFRESH_SCRIPT)
                .arg(1)
                .arg(user_key(&subject))
                .arg(self.ttl_ms())
                .arg(sids);
            self.query::<i64>(command).await?;
        }
        Ok(())
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    async fn query<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, UserLimitError> {
        let result: RedisResult<Value> = match self.connection.clone() {
            Connection::Cluster(mut connection) => command.query_async(&mut connection).await,
            Connection::Standalone(mut connection) => command.query_async(&mut connection).await,
        };
        let value = result.map_err(UserLimitError::Command)?;
        redis::from_redis_value(value).map_err(|err| UserLimitError::Command(err.into()))
    }
}

fn user_key(subject: &str) -> String {
    format!("socketfleet:user-connections:{subject}")
}

async fn refresh_periodically(limiter: Weak<UserLimiter>) {
    loop {
        let Some(period) = limiter.upgrade().map(|limiter| limiter.ttl / 3) else {
            return;
        };
        tokio::time::sleep(period).await;
        let Some(limiter) = limiter.upgrade() else {
            return;
        };
        if let Err(err) = limiter.refresh().await {
            tracing::warn!(error = %err, "failed to refresh per-user counts; retrying next period");
        }
    }
}
