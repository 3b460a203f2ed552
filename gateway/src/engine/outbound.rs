//! Packets queued for one engine.io connection, in the form both transports write them.

/// One queued engine.io packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// An engine.io packet without a Socket.IO payload, written as is: `"2"`, `"3probe"`, `"6"`, `"1"`.
    Eio(&'static str),
    /// An encoded Socket.IO packet, sent as an engine.io message (`4` followed by the text).
    Message(socketioxide_core::Str),
    /// A binary engine.io message: one attachment of a binary Socket.IO packet.
    Binary(bytes::Bytes),
}
