//! socketfleet gateway: a Socket.IO server that runs as one member of a fleet.
//!
//! - [`config`]: flags and `SOCKETFLEET_*` environment, shared with the operator.
//! - [`namespace`]: the naming rule for namespace paths, shared with the CRD.
//! - [`status`]: the adapter's health and metrics as `/readyz` and `/metrics` see them.

pub mod config;
pub mod namespace;
pub mod status;
