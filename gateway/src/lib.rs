//! socketfleet gateway: a Socket.IO server that runs as one member of a fleet.
//!
//! - [`adapter`]: the room-sharded Redis adapter that carries broadcasts between pods.
//! - [`config`]: flags and `SOCKETFLEET_*` environment, shared with the operator.
//! - [`namespace`]: the naming rule for namespace paths, shared with the CRD.
//! - [`status`]: the adapter's health and metrics as `/readyz` and `/metrics` see them.
//! - [`server`]: startup, the adapter choice, serving both ports and the drain on shutdown.
//! - [`http`]: HTTP/1.1 serving of both ports with a time limit on each request head.
//! - [`connection`]: TCP connections on the socket port, the per-pod limit checked before the
//!   websocket upgrade, the payload cap on websocket frames, and closing connections in a drain.
//! - [`engine`]: the gateway's own engine.io and Socket.IO server (both transports, namespaces,
//!   sockets, acks), built so an idle socket costs a few KiB; adapters plug in through
//!   `socketioxide_core`'s adapter traits.
//! - [`events`]: auth at connect and the `join`, `leave` and `publish` client events.
//! - [`auth`]: JWT verification and the rooms a token grants.
//! - [`user_limit`]: the per-user connection limit counted in Redis.
//! - [`admin`]: `/livez`, `/readyz`, `/metrics` and the publish API on the admin port.
//! - [`metrics`]: counters and gauges in the Prometheus text format.
//! - [`payload`]: event data relayed to rooms, binary attachments included.

pub mod adapter;
pub mod admin;
pub mod auth;
pub mod config;
pub mod connection;
pub mod engine;
pub mod events;
pub mod http;
pub mod metrics;
pub mod namespace;
pub mod payload;
pub mod server;
pub mod status;
pub mod user_limit;
