//! The gateway's own engine.io v4 / Socket.IO v5 server, which keeps an idle socket's memory to a
//! few KiB: one task per websocket connection, no read buffer kept while idle, and an outbound queue
//! that allocates nothing while empty. The codec modules (`websocket`, `eio`, `packet`) are pure
//! functions over bytes; the runtime modules drive them.

pub mod core;
pub mod eio;
pub mod local;
pub mod namespace;
pub mod outbound;
pub mod packet;
pub mod polling;
pub mod session;
pub mod socket;
pub mod websocket;
mod ws_transport;
