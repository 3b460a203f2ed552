//! The gateway's own engine.io v4 / Socket.IO v5 server, which keeps an idle socket's memory to a
//! few KiB: one task per websocket connection, no read buffer kept while idle, and an outbound queue
//! that allocates nothing while empty. The codec modules (`websocket`, `eio`, `packet`) are pure
//! functions over bytes; the runtime modules drive them.

// NOTE: the codecs are not called from the server yet, so their items count as dead code; this
// allow goes when the engine is wired in.
#![allow(dead_code)]

pub mod eio;
pub mod outbound;
pub mod packet;
pub mod websocket;
