//! Gateway configuration: every setting is a clap flag with a `SOCKETFLEET_<FLAG>` environment
//! variable, defined once here. The operator renders a pod's environment with [`Config::to_env`]
//! and checks it with [`Config::from_env_pairs`], so names and defaults never drift apart.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use thiserror::Error;

use crate::namespace;

/// Prefix of every environment variable the gateway reads.
pub const ENV_PREFIX: &str = "SOCKETFLEET_";

/// Largest timer a browser keeps: `setTimeout` treats longer delays as 0 and fires at once, so a
/// socket.io client given `pingInterval + pingTimeout` above this drops every connection.
const MAX_CLIENT_TIMER: Duration = Duration::from_millis(i32::MAX as u64);

/// Shortest ping timeout accepted: below this, one scheduling hiccup or network round trip
/// disconnects healthy clients.
const MIN_PING_TIMEOUT: Duration = Duration::from_millis(100);

/// Redis deployment the fleet adapter talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RedisMode {
    /// Redis Cluster with sharded pub/sub (SSUBSCRIBE/SPUBLISH).
    Cluster,
    /// One Redis server (or a Sentinel-managed primary behind one address).
    Standalone,
}

/// Engine.IO transport a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    Websocket,
    Polling,
}

/// JWT signature algorithm of the auth key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256; the key file contains the shared secret bytes.
    #[value(name = "HS256")]
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256; the key file contains a PEM public key.
    #[value(name = "RS256")]
    Rs256,
    /// ECDSA P-256 with SHA-256; the key file contains a PEM public key.
    #[value(name = "ES256")]
    Es256,
    /// Ed25519; the key file contains a PEM public key.
    #[value(name = "EdDSA")]
    EdDsa,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Command-line flags and environment of `socketfleet-gateway`.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(
    name = "socketfleet-gateway",
    version,
    about = "Socket.IO gateway, one member of a socketfleet fleet"
)]
pub struct Config {
    /// Port for Socket.IO clients (the public port behind the Service).
    #[arg(long, env = "SOCKETFLEET_PORT", default_value_t = 3000)]
    pub port: u16,

    /// Port for /livez, /readyz, /metrics and the publish API; keep it off the public Service.
    #[arg(long, env = "SOCKETFLEET_ADMIN_PORT", default_value_t = 9090)]
    pub admin_port: u16,

    /// Address both ports bind to.
    #[arg(long, env = "SOCKETFLEET_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// Socket.IO namespace served, e.g. /calls. Repeat the flag (or separate with commas in the
    /// environment) to serve several; the first one is the publish API's default.
    #[arg(
        long = "namespace",
        env = "SOCKETFLEET_NAMESPACE",
        default_value = "/",
        value_delimiter = ',',
        action = clap::ArgAction::Append
    )]
    pub namespaces: Vec<String>,

    /// Maximum sockets on this pod. At the limit new connections get HTTP 503 before the upgrade
    /// and /readyz reports not ready. 25000 leaves headroom under a 32768 open-file limit.
    #[arg(long, env = "SOCKETFLEET_MAX_CONNECTIONS", default_value_t = 25_000)]
    pub max_connections: u32,

    /// Once full, /readyz turns ready again when connections fall below this percentage of
    /// --max-connections. 90 keeps readiness from flapping at the limit.
    #[arg(long, env = "SOCKETFLEET_READY_BELOW_PERCENT", default_value_t = 90)]
    pub ready_below_percent: u8,

    /// Maximum sockets per user (the JWT `sub` claim) across the fleet, counted in Redis. Needs
    /// --redis-url and --auth-key-file. Unset: no per-user limit.
    #[arg(long, env = "SOCKETFLEET_MAX_CONNECTIONS_PER_USER")]
    pub max_connections_per_user: Option<u32>,

    /// Lifetime of this pod's per-user counts in Redis; the pod refreshes them at a third of this,
    /// so a killed pod's counts vanish within this time.
    #[arg(long, env = "SOCKETFLEET_USER_COUNT_TTL", default_value = "60s", value_parser = parse_duration)]
    pub user_count_ttl: Duration,

    /// Redis URL (redis:// or rediss://); for a cluster, several seed URLs may be separated by
    /// commas. Unset: the gateway runs alone with the in-memory adapter.
    #[arg(long, env = "SOCKETFLEET_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Kind of Redis deployment behind --redis-url.
    #[arg(long, env = "SOCKETFLEET_REDIS_MODE", value_enum, default_value_t = RedisMode::Cluster)]
    pub redis_mode: RedisMode,

    /// Redis ACL user name. Unset: the default user.
    #[arg(long, env = "SOCKETFLEET_REDIS_USERNAME")]
    pub redis_username: Option<String>,

    /// Redis password. Pass it through the environment (a Secret), never as an argument.
    #[arg(
        long,
        env = "SOCKETFLEET_REDIS_PASSWORD",
        hide_env_values = true,
        conflicts_with = "redis_password_file"
    )]
    pub redis_password: Option<String>,

    /// File holding the Redis password (a mounted Secret); trailing newlines are ignored.
    #[arg(long, env = "SOCKETFLEET_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,

    /// PEM file of the CA certificates that sign the Redis servers' TLS certificates, for
    /// rediss:// URLs (e.g. a mounted Secret). Only these CAs are trusted when it is set. Unset:
    /// the webpki roots built into the gateway (Mozilla's CA list) are trusted.
    #[arg(long, env = "SOCKETFLEET_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// Bearer token the publish API requires. Unset (with no file): the publish API returns 403.
    #[arg(
        long,
        env = "SOCKETFLEET_PUBLISH_TOKEN",
        hide_env_values = true,
        conflicts_with = "publish_token_file"
    )]
    pub publish_token: Option<String>,

    /// File holding the publish token (a mounted Secret); trailing newlines are ignored.
    #[arg(long, env = "SOCKETFLEET_PUBLISH_TOKEN_FILE")]
    pub publish_token_file: Option<PathBuf>,

    /// Interval between server pings, e.g. 25s or 500ms. 25s is socket.io's default.
    #[arg(long, env = "SOCKETFLEET_PING_INTERVAL", default_value = "25s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// Time a client has to reply to a ping before it is dropped. 20s is socket.io's default.
    #[arg(long, env = "SOCKETFLEET_PING_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub ping_timeout: Duration,

    /// Maximum size in bytes of one message, on websocket frames and polling bodies alike.
    /// 1000000 is socket.io's maxHttpBufferSize default.
    #[arg(long, env = "SOCKETFLEET_MAX_PAYLOAD_BYTES", default_value_t = 1_000_000)]
    pub max_payload_bytes: u64,

    /// Time the binary attachments of one packet have to arrive once its header has; after it
    /// the packet is dropped and the connection closed, so partial packets are never kept.
    #[arg(long, env = "SOCKETFLEET_ATTACHMENT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub attachment_timeout: Duration,

    /// Transports clients may use. Websocket only by default: polling needs sticky sessions
    /// behind a load balancer, and the fleet runs without them.
    #[arg(
        long = "transport",
        env = "SOCKETFLEET_TRANSPORT",
        value_enum,
        default_value = "websocket",
        value_delimiter = ',',
        action = clap::ArgAction::Append
    )]
    pub transports: Vec<Transport>,

    /// Time a client has to send a complete request head (request line and headers) on either
    /// port before the connection is closed. It counts from connect and again after each
    /// response, so clients that connect and send nothing lose their slots. 30s is hyper's
    /// default and outlasts the default --ping-interval, so a polling client's idle keep-alive
    /// connection stays open between pongs.
    #[arg(long, env = "SOCKETFLEET_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Seconds over which a terminating pod spreads its disconnects. Keep it below the pod's
    /// termination grace period.
    #[arg(long, env = "SOCKETFLEET_DRAIN_SECONDS", default_value_t = 30)]
    pub drain_seconds: u64,

    /// File holding the JWT verification key (HS256 secret or PEM public key). Set: every socket
    /// must send a valid token in the socket.io `auth` payload. Unset: no auth, any room allowed.
    #[arg(long, env = "SOCKETFLEET_AUTH_KEY_FILE")]
    pub auth_key_file: Option<PathBuf>,

    /// Algorithm of the key in --auth-key-file.
    #[arg(long, env = "SOCKETFLEET_AUTH_ALGORITHM", value_enum, default_value_t = JwtAlgorithm::Hs256)]
    pub auth_algorithm: JwtAlgorithm,

    /// Claim listing the rooms a socket may join (an array of names; "*" allows any room).
    #[arg(long, env = "SOCKETFLEET_AUTH_ROOMS_CLAIM", default_value = "rooms")]
    pub auth_rooms_claim: String,

    /// Claim listing the rooms a socket may publish to (an array of names; "*" allows any room).
    #[arg(long, env = "SOCKETFLEET_AUTH_PUBLISH_CLAIM", default_value = "publish")]
    pub auth_publish_claim: String,

    /// Required `iss` claim. Unset: any issuer.
    #[arg(long, env = "SOCKETFLEET_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,

    /// Required `aud` claim. Unset: the audience is not checked.
    #[arg(long, env = "SOCKETFLEET_AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,

    /// Log filter in tracing's EnvFilter syntax, e.g. info or socketfleet_gateway=debug.
    #[arg(long, env = "SOCKETFLEET_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log output format.
    #[arg(long, env = "SOCKETFLEET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Reasons a configuration is rejected.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{0}")]
    Parse(#[from] clap::Error),
    #[error("unknown environment variable {name}; see `socketfleet-gateway --help` for the accepted names")]
    UnknownVariable { name: String },
    #[error("invalid --{flag}: {reason}")]
    InvalidValue { flag: &'static str, reason: String },
    // `error` is part of the message and deliberately not a `source`, so it is printed once.
    #[error("failed to read --{flag} {path}: {error}")]
    ReadFile {
        flag: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
}

impl Config {
    /// Parses the process's arguments and environment, then validates the result.
    pub fn load() -> Result<Config, ConfigError> {
        let config = Config::try_parse()?;
        config.validate()?;
        Ok(config)
    }

    /// Parses `SOCKETFLEET_*` pairs with the same parser as the binary, ignoring the process
    /// environment, then validates the result. Variables without the prefix are ignored; an
    /// unknown `SOCKETFLEET_*` name is an error, so a typo in a Deployment cannot go unnoticed.
    pub fn from_env_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Result<Config, ConfigError> {
        let command = Config::command();
        let mut args: Vec<OsString> = vec![command.get_name().into()];
        for (name, value) in pairs {
            if !name.starts_with(ENV_PREFIX) {
                continue;
            }
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_env().is_some_and(|env| env == name.as_str()))
                .ok_or_else(|| ConfigError::UnknownVariable { name: name.clone() })?;
            let long = arg.get_long().expect("every config flag has a long name");
            args.push(format!("--{long}={value}").into());
        }

        // Dropping the env names keeps the process environment out of the result.
        let command = command.mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(args)?;
        let config = Config::from_arg_matches(&matches)?;
        config.validate()?;
        Ok(config)
    }

    /// Renders every flag that has a value as its `SOCKETFLEET_*` variable, names taken from
    /// clap's own definitions. Secrets are included when set; a Deployment should leave them
    /// unset here and take them from Secrets (see [`Config::secret_env_names`]).
    pub fn to_env(&self) -> Vec<(String, String)> {
        let values = self.flag_values();
        Config::command()
            .get_arguments()
            .filter_map(|arg| {
                let env = arg.get_env()?.to_str()?.to_owned();
                let (_, value) = values.iter().find(|(id, _)| *id == arg.get_id().as_str())?;
                Some((env, value.clone()?))
            })
            .collect()
    }

    /// Environment names whose values are secrets and belong in a Secret, not in a pod spec.
    pub fn secret_env_names() -> Vec<String> {
        Config::command()
            .get_arguments()
            .filter(|arg| arg.is_hide_env_values_set())
            .filter_map(|arg| arg.get_env()?.to_str().map(str::to_owned))
            .collect()
    }

    /// Checks values clap's types cannot express, naming the flag at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |flag: &'static str, reason: String| Err(ConfigError::InvalidValue { flag, reason });

        for (index, path) in self.namespaces.iter().enumerate() {
            if let Err(err) = namespace::validate_path(path) {
                return invalid("namespace", err.to_string());
            }
            if self.namespaces[..index].contains(path) {
                return invalid(
                    "namespace",
                    format!("{path:?} is given twice; list each namespace once"),
                );
            }
        }
        if self.ping_interval.is_zero() {
            return invalid("ping-interval", "must be greater than 0, e.g. 25s".into());
        }
        if self.ping_timeout < MIN_PING_TIMEOUT {
            return invalid(
                "ping-timeout",
                format!(
                    "{:?} is too short for a client to answer; use at least 100ms, e.g. 20s",
                    self.ping_timeout
                ),
            );
        }
        if self.ping_interval >= MAX_CLIENT_TIMER {
            return invalid(
                "ping-interval",
                format!(
                    "{:?} exceeds 2147483647 ms, which browsers treat as 0; e.g. 25s",
                    self.ping_interval
                ),
            );
        }
        if self.ping_interval + self.ping_timeout > MAX_CLIENT_TIMER {
            return invalid(
                "ping-timeout",
                "ping interval plus ping timeout exceeds 2147483647 ms, which browsers treat as 0; \
                 lower --ping-interval or --ping-timeout"
                    .into(),
            );
        }
        if let Some(urls) = &self.redis_url {
            check_redis_urls(urls).map_err(|reason| ConfigError::InvalidValue {
                flag: "redis-url",
                reason,
            })?;
        }
        if self.redis_ca_file.is_some() && !self.redis_uses_tls() {
            return invalid(
                "redis-ca-file",
                "is set but --redis-url has no rediss:// URL, so no TLS connection would use it; \
                 use rediss:// URLs or leave --redis-ca-file unset"
                    .into(),
            );
        }
        if self.publish_token.as_deref() == Some("") {
            return invalid(
                "publish-token",
                "is empty, so no request could match it; set a token, or leave it unset to turn the publish API off"
                    .into(),
            );
        }
        if self.max_connections == 0 {
            return invalid("max-connections", "must be greater than 0".into());
        }
        if self.ready_below_percent == 0 || self.ready_below_percent > 100 {
            return invalid(
                "ready-below-percent",
                format!("{} is not in 1..=100", self.ready_below_percent),
            );
        }
        if self.max_payload_bytes == 0 {
            return invalid("max-payload-bytes", "must be greater than 0".into());
        }
        if usize::try_from(self.max_payload_bytes).is_err() {
            return invalid("max-payload-bytes", "does not fit in memory addresses".into());
        }
        if self.attachment_timeout.is_zero() {
            return invalid("attachment-timeout", "must be greater than 0, e.g. 10s".into());
        }
        if self.header_read_timeout.is_zero() {
            return invalid("header-read-timeout", "must be greater than 0, e.g. 30s".into());
        }
        if self.transports.is_empty() {
            return invalid("transport", "at least one transport is needed".into());
        }
        if let Some(limit) = self.max_connections_per_user {
            if limit == 0 {
                return invalid(
                    "max-connections-per-user",
                    "must be greater than 0; leave it unset for no limit".into(),
                );
            }
            if self.redis_url.is_none() {
                return invalid(
                    "max-connections-per-user",
                    "needs --redis-url, where the counts are kept".into(),
                );
            }
            if self.auth_key_file.is_none() {
                return invalid(
                    "max-connections-per-user",
                    "needs --auth-key-file, since users are told apart by the JWT sub claim".into(),
                );
            }
        }
        if self.user_count_ttl < Duration::from_secs(3) {
            return invalid("user-count-ttl", "must be at least 3s so refreshes can keep up".into());
        }
        Ok(())
    }

    /// Returns the publish token from --publish-token or --publish-token-file; an empty file is
    /// an error, since no request could match an empty token.
    pub fn publish_token(&self) -> Result<Option<String>, ConfigError> {
        let token = read_secret(
            self.publish_token.as_deref(),
            self.publish_token_file.as_deref(),
            "publish-token-file",
        )?;
        if token.as_deref() == Some("") {
            let path = self.publish_token_file.as_deref().unwrap_or(Path::new("")).display();
            return Err(ConfigError::InvalidValue {
                flag: "publish-token-file",
                reason: format!(
                    "{path} is empty; write the token into it, or leave the flag unset to turn the publish API off"
                ),
            });
        }
        Ok(token)
    }

    /// Returns the Redis password from --redis-password or --redis-password-file.
    pub fn redis_password(&self) -> Result<Option<String>, ConfigError> {
        read_secret(
            self.redis_password.as_deref(),
            self.redis_password_file.as_deref(),
            "redis-password-file",
        )
    }

    /// Returns true when --redis-url names TLS endpoints (rediss://). Validation ensures every
    /// seed then uses the same scheme.
    pub fn redis_uses_tls(&self) -> bool {
        self.redis_url
            .as_deref()
            .is_some_and(|urls| urls.trim_start().starts_with("rediss://"))
    }

    /// Reads the CA certificates of --redis-ca-file as PEM bytes, checking that every PEM block
    /// parses and that at least one is a certificate. Returns `None` when the flag is unset.
    pub fn redis_ca_certificates(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        let Some(path) = &self.redis_ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|error| ConfigError::ReadFile {
            flag: "redis-ca-file",
            path: path.clone(),
            error,
        })?;
        let invalid = |reason: String| ConfigError::InvalidValue {
            flag: "redis-ca-file",
            reason: format!("{}: {reason}", path.display()),
        };
        // The same checks redis-rs makes when it builds the client, run here so the message can
        // name the flag and the file.
        let mut roots = RootCertStore::empty();
        for (index, certificate) in CertificateDer::pem_slice_iter(&pem).enumerate() {
            let certificate = certificate.map_err(|err| invalid(format!("is not valid PEM ({err})")))?;
            roots.add(certificate).map_err(|err| {
                invalid(format!(
                    "certificate {} is not a valid X.509 certificate ({err})",
                    index + 1
                ))
            })?;
        }
        if roots.is_empty() {
            return Err(invalid(
                "contains no PEM certificate (-----BEGIN CERTIFICATE-----); give the CA's certificate, not its key"
                    .into(),
            ));
        }
        Ok(Some(pem))
    }

    /// Returns the number of connections below which a full pod reports ready again.
    pub fn ready_below_connections(&self) -> u32 {
        let low_water = u64::from(self.max_connections) * u64::from(self.ready_below_percent) / 100;
        u32::try_from(low_water).unwrap_or(self.max_connections)
    }

    /// Each flag's id (the field name) and its value as the flag would take it.
    fn flag_values(&self) -> Vec<(&'static str, Option<String>)> {
        let enum_name =
            |value: &dyn Fn() -> Option<clap::builder::PossibleValue>| value().map(|v| v.get_name().to_owned());
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        vec![
            ("port", Some(self.port.to_string())),
            ("admin_port", Some(self.admin_port.to_string())),
            ("bind_address", Some(self.bind_address.to_string())),
            ("namespaces", Some(self.namespaces.join(","))),
            ("max_connections", Some(self.max_connections.to_string())),
            ("ready_below_percent", Some(self.ready_below_percent.to_string())),
            (
                "max_connections_per_user",
                self.max_connections_per_user.map(|v| v.to_string()),
            ),
            ("user_count_ttl", Some(format_duration(self.user_count_ttl))),
            ("redis_url", self.redis_url.clone()),
            ("redis_mode", enum_name(&|| self.redis_mode.to_possible_value())),
            ("redis_username", self.redis_username.clone()),
            ("redis_password", self.redis_password.clone()),
            ("redis_password_file", path(&self.redis_password_file)),
            ("redis_ca_file", path(&self.redis_ca_file)),
            ("publish_token", self.publish_token.clone()),
            ("publish_token_file", path(&self.publish_token_file)),
            ("ping_interval", Some(format_duration(self.ping_interval))),
            ("ping_timeout", Some(format_duration(self.ping_timeout))),
            ("max_payload_bytes", Some(self.max_payload_bytes.to_string())),
            ("attachment_timeout", Some(format_duration(self.attachment_timeout))),
            (
                "transports",
                Some(
                    self.transports
                        .iter()
                        .filter_map(|t| t.to_possible_value().map(|v| v.get_name().to_owned()))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ),
            ("header_read_timeout", Some(format_duration(self.header_read_timeout))),
            ("drain_seconds", Some(self.drain_seconds.to_string())),
            ("auth_key_file", path(&self.auth_key_file)),
            ("auth_algorithm", enum_name(&|| self.auth_algorithm.to_possible_value())),
            ("auth_rooms_claim", Some(self.auth_rooms_claim.clone())),
            ("auth_publish_claim", Some(self.auth_publish_claim.clone())),
            ("auth_issuer", self.auth_issuer.clone()),
            ("auth_audience", self.auth_audience.clone()),
            ("log_level", Some(self.log_level.clone())),
            ("log_format", enum_name(&|| self.log_format.to_possible_value())),
        ]
    }
}

fn read_secret(value: Option<&str>, file: Option<&Path>, flag: &'static str) -> Result<Option<String>, ConfigError> {
    if let Some(value) = value {
        return Ok(Some(value.to_owned()));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::ReadFile {
        flag,
        path: path.to_owned(),
        error,
    })?;
    Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()))
}

/// Checks that each comma-separated seed in --redis-url is a Redis URL, and that all seeds agree
/// on TLS. The message leaves the URL out, because it may hold a password.
fn check_redis_urls(urls: &str) -> Result<(), String> {
    const EXPECTED: &str = "expected redis://host:port (rediss:// for TLS), e.g. redis://redis-0.redis:6379";
    let seeds: Vec<&str> = urls.split(',').map(str::trim).filter(|url| !url.is_empty()).collect();
    if seeds.is_empty() {
        return Err(format!("is empty; {EXPECTED}"));
    }
    let mut first_scheme = None;
    for (index, seed) in seeds.iter().enumerate() {
        let position = format!("URL {} of {}", index + 1, seeds.len());
        let Some((scheme, _)) = seed.split_once("://") else {
            return Err(format!("{position} has no scheme; {EXPECTED}"));
        };
        // One client serves every seed, and it either speaks TLS to all nodes or to none.
        let first = *first_scheme.get_or_insert(scheme);
        if (scheme == "rediss") != (first == "rediss") {
            return Err(format!(
                "{position} uses {scheme}:// but URL 1 uses {first}://; use rediss:// for every seed or for none"
            ));
        }
        match scheme {
            "unix" | "redis+unix" => {}
            "redis" | "rediss" => {
                if let Err(err) = redis::IntoConnectionInfo::into_connection_info(*seed) {
                    return Err(format!("{position} is not a valid Redis URL ({err}); {EXPECTED}"));
                }
            }
            _ => return Err(format!("{position} has unknown scheme {scheme:?}; {EXPECTED}")),
        }
    }
    Ok(())
}

/// Parses a duration written as a number and a unit: `500ms`, `25s`, `2m`. A bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write a whole number and a unit, e.g. 500ms, 25s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => Ok(Duration::from_secs(number)),
        "m" => number
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{text:?} is too large")),
        _ => Err(format!("{text:?} has unknown unit {unit:?}; use ms, s or m")),
    }
}

/// Returns the `SOCKETFLEET_*` names among `names` that no flag reads, such as a misspelt
/// variable, which clap ignores without a word.
pub fn unknown_env_names(names: impl IntoIterator<Item = OsString>) -> Vec<String> {
    let command = Config::command();
    let known: Vec<&std::ffi::OsStr> = command.get_arguments().filter_map(|arg| arg.get_env()).collect();
    names
        .into_iter()
        .filter(|name| name.to_str().is_some_and(|name| name.starts_with(ENV_PREFIX)))
        .filter(|name| !known.contains(&name.as_os_str()))
        .map(|name| name.to_string_lossy().into_owned())
        .collect()
}

/// Formats a duration so that [`parse_duration`] reads it back unchanged.
fn format_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let config = Config::from_env_pairs(Vec::new()).unwrap();
        assert_eq!(config.port, 3000);
        assert_eq!(config.admin_port, 9090);
        assert_eq!(config.namespaces, vec!["/".to_string()]);
        assert_eq!(config.max_connections, 25_000);
        assert_eq!(config.redis_url, None);
        assert_eq!(config.redis_mode, RedisMode::Cluster);
        assert_eq!(config.publish_token, None);
        assert_eq!(config.ping_interval, Duration::from_secs(25));
        assert_eq!(config.ping_timeout, Duration::from_secs(20));
        assert_eq!(config.transports, vec![Transport::Websocket]);
        assert_eq!(config.drain_seconds, 30);
    }

    #[test]
    fn every_env_name_is_the_prefixed_flag_name() {
        for arg in Config::command().get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let env = arg.get_env().unwrap_or_else(|| panic!("flag {id} has no env name"));
            let long = arg.get_long().unwrap_or_else(|| panic!("flag {id} has no long name"));
            let expected = format!("{ENV_PREFIX}{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(env.to_str().unwrap(), expected, "env name of --{long}");
        }
    }

    #[test]
    fn unknown_env_names_lists_only_unknown_prefixed_names() {
        let names = unknown_env_names(
            [
                "SOCKETFLEET_PORT",
                "SOCKETFLEET_TRANSPORTS",
                "PATH",
                "SOCKETFLEET_MAX_CONECTIONS",
            ]
            .map(OsString::from),
        );
        assert_eq!(names, ["SOCKETFLEET_TRANSPORTS", "SOCKETFLEET_MAX_CONECTIONS"]);
    }

    #[test]
    fn every_flag_is_rendered_by_to_env() {
        let config = Config::from_env_pairs(Vec::new()).unwrap();
        let ids: Vec<&str> = config.flag_values().iter().map(|(id, _)| *id).collect();
        for arg in Config::command().get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            assert!(ids.contains(&id), "flag {id} is missing from Config::flag_values");
        }
    }

    #[test]
    fn to_env_round_trips_through_from_env_pairs() {
        let config = Config::from_env_pairs(pairs(&[
            ("SOCKETFLEET_PORT", "3100"),
            ("SOCKETFLEET_NAMESPACE", "/calls,/dashboard"),
            ("SOCKETFLEET_MAX_CONNECTIONS", "500"),
            ("SOCKETFLEET_REDIS_URL", "redis://127.0.0.1:7000"),
            ("SOCKETFLEET_REDIS_MODE", "standalone"),
            ("SOCKETFLEET_PING_INTERVAL", "1500ms"),
            ("SOCKETFLEET_TRANSPORT", "websocket,polling"),
            ("SOCKETFLEET_AUTH_KEY_FILE", "/etc/socketfleet/jwt.pem"),
            ("SOCKETFLEET_AUTH_ALGORITHM", "RS256"),
            ("SOCKETFLEET_MAX_CONNECTIONS_PER_USER", "5"),
            ("SOCKETFLEET_LOG_FORMAT", "json"),
        ]))
        .unwrap();
        assert_eq!(config.namespaces, vec!["/calls".to_string(), "/dashboard".to_string()]);
        assert_eq!(config.ping_interval, Duration::from_millis(1500));
        assert_eq!(config.auth_algorithm, JwtAlgorithm::Rs256);

        let rendered = config.to_env();
        assert!(rendered.iter().all(|(name, _)| name.starts_with(ENV_PREFIX)));
        let parsed = Config::from_env_pairs(rendered).unwrap();
        assert_eq!(parsed, config);
    }

    #[test]
    fn from_env_pairs_ignores_other_variables() {
        let config = Config::from_env_pairs(pairs(&[("POD_NAME", "gw-0"), ("SOCKETFLEET_PORT", "4000")])).unwrap();
        assert_eq!(config.port, 4000);
    }

    #[test]
    fn from_env_pairs_rejects_unknown_names() {
        let err = Config::from_env_pairs(pairs(&[("SOCKETFLEET_MAX_CONECTIONS", "5")])).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownVariable { ref name } if name == "SOCKETFLEET_MAX_CONECTIONS"));
    }

    #[test]
    fn rejects_zero_ping_interval_naming_the_flag() {
        let err = Config::from_env_pairs(pairs(&[("SOCKETFLEET_PING_INTERVAL", "0s")])).unwrap_err();
        assert!(err.to_string().contains("--ping-interval"), "{err}");
    }

    #[test]
    fn rejects_ping_timeouts_that_cannot_work() {
        for timeout in ["0", "50ms"] {
            let err = Config::from_env_pairs(pairs(&[("SOCKETFLEET_PING_TIMEOUT", timeout)])).unwrap_err();
            assert!(err.to_string().contains("--ping-timeout"), "{timeout}: {err}");
        }
        let err = Config::from_env_pairs(pairs(&[("SOCKETFLEET_PING_INTERVAL", "40000m")])).unwrap_err();
        assert!(err.to_string().contains("2147483647"), "{err}");
    }

    #[test]
    fn rejects_huge_ping_interval_naming_it() {
        let err = Config::from_env_pairs(pairs(&[("SOCKETFLEET_PING_INTERVAL", "3000000s")])).unwrap_err();
        assert!(err.to_string().starts_with("invalid --ping-interval:"), "{err}");
    }

    #[test]
    fn rejects_duplicate_namespaces() {
        let err = Config::from_env_pairs(pairs(&[("SOCKETFLEET_NAMESPACE", "/,/calls,/")])).unwrap_err();
        assert!(err.to_string().starts_with("invalid --namespace:"), "{err}");
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn rejects_redis_url_that_does_not_parse() {
        for url in [
            "foo://bar",
            "redis://127.0.0.1:7000,foo://bar",
            " , ",
            "127.0.0.1:7000",
            "redis://host:port",
        ] {
            let err = Config::from_env_pairs(pairs(&[("SOCKETFLEET_REDIS_URL", url)])).unwrap_err();
            assert!(err.to_string().starts_with("invalid --redis-url:"), "{url}: {err}");
            assert!(err.to_string().contains("redis://host:port"), "{url}: {err}");
        }
        let config = Config::from_env_pairs(pairs(&[("SOCKETFLEET_REDIS_URL", "redis://a:7000, redis://b:7001")]));
        assert!(config.is_ok(), "{config:?}");
    }

    #[test]
    fn ca_file_round_trips_through_env() {
        let config = Config::from_env_pairs(pairs(&[
            (
                "SOCKETFLEET_REDIS_URL",
                "rediss://redis-0.redis:6380,rediss://redis-1.redis:6380",
            ),
            ("SOCKETFLEET_REDIS_CA_FILE", "/etc/socketfleet/redis-ca/ca.crt"),
        ]))
        .unwrap();
        assert!(config.redis_uses_tls());
        assert_eq!(
            config.redis_ca_file.as_deref(),
            Some(Path::new("/etc/socketfleet/redis-ca/ca.crt"))
        );
        let parsed = Config::from_env_pairs(config.to_env()).unwrap();
        assert_eq!(parsed, config);
    }

    #[test]
    fn ca_file_needs_tls_url() {
        for url in [None, Some("redis://127.0.0.1:7000")] {
            let mut list = vec![("SOCKETFLEET_REDIS_CA_FILE", "/ca.pem")];
            list.extend(url.map(|url| ("SOCKETFLEET_REDIS_URL", url)));
            let err = Config::from_env_pairs(pairs(&list)).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid --redis-ca-file:"),
                "{url:?}: {err}"
            );
            assert!(err.to_string().contains("rediss://"), "{url:?}: {err}");
        }
    }

    #[test]
    fn rejects_mixed_tls_seeds() {
        for url in ["rediss://a:6380,redis://b:6379", "redis://a:6379, rediss://b:6380"] {
            let err = Config::from_env_pairs(pairs(&[("SOCKETFLEET_REDIS_URL", url)])).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid --redis-url: URL 2 of 2 uses"),
                "{url}: {err}"
            );
        }
    }

    #[test]
    fn rejects_ca_file_without_certificate() {
        let dir = std::env::temp_dir().join(format!("socketfleet-ca-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            ("empty.pem", "", "contains no PEM certificate"),
            (
                "not-der.pem",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "certificate 1 is not a valid X.509 certificate",
            ),
            (
                "unterminated.pem",
                "-----BEGIN CERTIFICATE-----\nAAAA\n",
                "is not valid PEM",
            ),
        ];
        for (name, contents, expected) in cases {
            let file = dir.join(name);
            std::fs::write(&file, contents).unwrap();
            let config = Config::from_env_pairs(pairs(&[
                ("SOCKETFLEET_REDIS_URL", "rediss://127.0.0.1:6380"),
                ("SOCKETFLEET_REDIS_CA_FILE", file.to_str().unwrap()),
            ]))
            .unwrap();
            let err = config.redis_ca_certificates().unwrap_err().to_string();
            let prefix = format!("invalid --redis-ca-file: {}: ", file.display());
            assert!(err.starts_with(&prefix), "{name}: {err}");
            assert!(err.contains(expected), "{name}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_empty_publish_token() {
        let err = Config::from_env_pairs(pairs(&[("SOCKETFLEET_PUBLISH_TOKEN", "")])).unwrap_err();
        assert!(err.to_string().starts_with("invalid --publish-token:"), "{err}");

        let file = std::env::temp_dir().join(format!("socketfleet-empty-token-{}", std::process::id()));
        std::fs::write(&file, "\n").unwrap();
        let config =
            Config::from_env_pairs(pairs(&[("SOCKETFLEET_PUBLISH_TOKEN_FILE", file.to_str().unwrap())])).unwrap();
        let err = config.publish_token().unwrap_err();
        std::fs::remove_file(&file).unwrap();
        assert!(err.to_string().starts_with("invalid --publish-token-file:"), "{err}");
    }

    #[test]
    fn missing_token_file_is_named_once() {
        let config = Config::from_env_pairs(pairs(&[("SOCKETFLEET_PUBLISH_TOKEN_FILE", "/nonexistent")])).unwrap();
        let err = config.publish_token().unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to read --publish-token-file /nonexistent: No such file or directory (os error 2)"
        );
        assert!(
            std::error::Error::source(&err).is_none(),
            "the cause is printed in the message only"
        );
    }

    #[test]
    fn rejects_invalid_namespace_naming_the_flag() {
        let err = Config::from_env_pairs(pairs(&[("SOCKETFLEET_NAMESPACE", "/Chat")])).unwrap_err();
        assert!(err.to_string().contains("--namespace"), "{err}");
    }

    #[test]
    fn per_user_limit_needs_redis() {
        let err = Config::from_env_pairs(pairs(&[
            ("SOCKETFLEET_MAX_CONNECTIONS_PER_USER", "3"),
            ("SOCKETFLEET_AUTH_KEY_FILE", "/k"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("--redis-url"), "{err}");
    }

    #[test]
    fn secret_env_names_lists_secrets() {
        let names = Config::secret_env_names();
        assert!(names.contains(&"SOCKETFLEET_REDIS_PASSWORD".to_string()));
        assert!(names.contains(&"SOCKETFLEET_PUBLISH_TOKEN".to_string()));
        assert!(!names.contains(&"SOCKETFLEET_PORT".to_string()));
    }

    #[test]
    fn parse_duration_accepts_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("25s"), Ok(Duration::from_secs(25)));
        assert_eq!(parse_duration("25"), Ok(Duration::from_secs(25)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn ready_below_connections_is_a_percentage_of_max() {
        let config = Config::from_env_pairs(pairs(&[("SOCKETFLEET_MAX_CONNECTIONS", "1000")])).unwrap();
        assert_eq!(config.ready_below_connections(), 900);
    }
}
