//! Strict decoder of the Socket.IO v5 packets a client sends, binary attachments included.
//!
//! A packet is `<type>[<attachments>-][/<namespace>,][<ack id>][<json>]`. Anything a conforming
//! client never sends is rejected with a [`PacketError`] that names the problem, so a hostile
//! packet costs one counted protocol error and never reaches an event handler.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use socketioxide_core::{Str, Value};

use crate::payload::Payload;

/// Largest ack id: JavaScript's `Number.MAX_SAFE_INTEGER`, 2^53 - 1. A larger id would not round
/// trip through a JavaScript client, so its ack could never be matched.
const MAX_ACK_ID: u64 = (1 << 53) - 1;

/// Event names the Socket.IO server keeps for its own events, the `RESERVED_EVENTS` of
/// socket.io-parser.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Maximum length, in bytes, of client input quoted in an error message.
const MAX_QUOTED_LEN: usize = 64;

/// A decoded packet from the client, attachments resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request to join `ns`, with the auth object the client sent, if any.
    Connect {
        ns: String,
        auth: Option<serde_json::Value>,
    },
    Disconnect {
        ns: String,
    },
    /// Event with attachments resolved into Payload::Bytes.
    Event {
        ns: String,
        id: Option<u64>,
        event: String,
        args: Vec<Payload>,
    },
    /// Ack of a server emit: `data` is what socketioxide-parser-common 0.17.3 decodes (Value::Str
    /// of the JSON array text, placeholders kept, attachments in `num` order).
    Ack {
        ns: String,
        id: u64,
        data: Value,
    },
}

/// A packet the client must not send; each message names the problem.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("empty Socket.IO packet")]
    Empty,
    #[error("unknown Socket.IO packet type {0:?}")]
    UnknownType(char),
    #[error("CONNECT_ERROR packet sent by the client, which only servers send")]
    ClientConnectError,
    #[error("invalid attachment count: expected digits followed by `-`")]
    InvalidAttachmentCount,
    #[error("attachment count exceeds the maximum of {max}")]
    TooManyAttachments { max: usize },
    #[error("invalid namespace {ns:?}: a namespace cannot contain `,`, and what follows it must be an ack id or JSON")]
    TextAfterNamespace { ns: String },
    #[error("ack id exceeds 2^53 - 1, the largest integer a JavaScript client represents exactly")]
    AckIdTooLarge,
    #[error("ACK packet has no ack id")]
    MissingAckId,
    #[error("packet data is not valid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    #[error("CONNECT data must be a JSON object")]
    InvalidConnectData,
    #[error("DISCONNECT packet carries unexpected data")]
    UnexpectedData,
    #[error("invalid EVENT data: {0}")]
    InvalidEvent(&'static str),
    #[error("event name {0:?} is reserved for the server's own events")]
    ReservedEvent(&'static str),
    #[error("ACK data must be a JSON array")]
    InvalidAckData,
    #[error("invalid attachment placeholder: {0}")]
    InvalidPlaceholder(&'static str),
    #[error("attachment placeholder num {num} is out of range for {count} attachments")]
    PlaceholderOutOfRange { num: u64, count: usize },
    #[error("attachment {0} is referenced by more than one placeholder")]
    DuplicatePlaceholder(usize),
    #[error("packet announces {count} attachments but its data references {referenced}")]
    UnreferencedAttachment { count: usize, referenced: usize },
    #[error("text packet received after {received} of {count} attachments; the binary packet is incomplete")]
    TextBeforeAttachments { received: usize, count: usize },
    #[error("binary message received without a binary packet expecting attachments")]
    UnexpectedAttachment,
    #[error("attachments exceed the maximum of {max} bytes")]
    AttachmentsTooLarge { max: usize },
}

impl PacketError {
    /// Returns the label of this error's cause in the protocol error counter.
    pub fn kind(&self) -> &'static str {
        match self {
            PacketError::Empty => "empty_packet",
            PacketError::UnknownType(_) => "unknown_packet_type",
            PacketError::ClientConnectError => "client_connect_error",
            PacketError::InvalidAttachmentCount
            | PacketError::InvalidPlaceholder(_)
            | PacketError::PlaceholderOutOfRange { .. }
            | PacketError::DuplicatePlaceholder(_)
            | PacketError::UnreferencedAttachment { .. } => "invalid_attachment",
            PacketError::TooManyAttachments { .. } => "too_many_attachments",
            PacketError::TextAfterNamespace { .. } => "invalid_namespace",
            PacketError::AckIdTooLarge | PacketError::MissingAckId => "invalid_ack_id",
            PacketError::InvalidJson(_) => "invalid_json",
            PacketError::InvalidConnectData => "invalid_connect_data",
            PacketError::UnexpectedData => "unexpected_data",
            PacketError::InvalidEvent(_) => "invalid_event",
            PacketError::ReservedEvent(_) => "reserved_event",
            PacketError::InvalidAckData => "invalid_ack",
            PacketError::TextBeforeAttachments { .. } => "incomplete_attachments",
            PacketError::UnexpectedAttachment => "unexpected_attachment",
            PacketError::AttachmentsTooLarge { .. } => "attachments_too_large",
        }
    }
}

/// Socket.IO packet types a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PacketType {
    Connect,
    Disconnect,
    Event,
    Ack,
}

/// The parts of a packet before its JSON data.
struct Header<'a> {
    packet_type: PacketType,
    attachments: usize,
    ns: &'a str,
    id: Option<u64>,
    data: &'a str,
}

/// A binary packet whose text has arrived, waiting for its attachments.
#[derive(Debug)]
struct Pending {
    since: Instant,
    count: usize,
    attachments: Vec<Bytes>,
    total_bytes: usize,
    packet: PendingPacket,
}

#[derive(Debug)]
enum PendingPacket {
    Event {
        ns: String,
        id: Option<u64>,
        event: String,
        args: Vec<Payload>,
    },
    Ack {
        ns: String,
        id: u64,
        json: String,
    },
}

/// Decoder of one connection's Socket.IO packets, holding a binary packet until its attachments
/// arrive. Dropping the decoder drops a pending packet.
#[derive(Debug)]
pub struct PacketDecoder {
    max_attachments: usize,
    max_bytes: usize,
    /// The binary packet waiting for attachments, `None` while idle.
    pending: Option<Box<Pending>>,
}

impl PacketDecoder {
    /// Creates a decoder that accepts at most `max_attachments` attachments per packet, of at most
    /// `max_bytes` in total; allocates nothing.
    pub fn new(max_attachments: usize, max_bytes: usize) -> PacketDecoder {
        PacketDecoder {
            max_attachments,
            max_bytes,
            pending: None,
        }
    }

    /// Decodes a Socket.IO packet from the text of an engine.io message.
    ///
    /// Returns `None` for a binary packet, which completes when its attachments arrive through
    /// [`PacketDecoder::decode_binary`]. An error drops any pending packet.
    pub fn decode_text(&mut self, text: &str) -> Result<Option<Incoming>, PacketError> {
        if let Some(pending) = self.pending.take() {
            return Err(PacketError::TextBeforeAttachments {
                received: pending.attachments.len(),
                count: pending.count,
            });
        }

        let header = parse_header(text, self.max_attachments)?;
        let ns = header.ns.to_owned();
        let packet = match header.packet_type {
            PacketType::Connect => {
                return Ok(Some(Incoming::Connect {
                    ns,
                    auth: parse_connect_data(header.data)?,
                }));
            }
            PacketType::Disconnect => {
                if !header.data.is_empty() {
                    return Err(PacketError::UnexpectedData);
                }
                return Ok(Some(Incoming::Disconnect { ns }));
            }
            PacketType::Event => {
                let (event, args) = parse_event_data(header.data)?;
                check_placeholders(&args, header.attachments)?;
                PendingPacket::Event {
                    ns,
                    id: header.id,
                    event,
                    args,
                }
            }
            PacketType::Ack => {
                let id = header.id.ok_or(PacketError::MissingAckId)?;
                let data = parse_json::<Payload>(header.data)?;
                let Payload::Array(items) = data else {
                    return Err(PacketError::InvalidAckData);
                };
                check_placeholders(&items, header.attachments)?;
                PendingPacket::Ack {
                    ns,
                    id,
                    json: header.data.to_owned(),
                }
            }
        };

        if header.attachments == 0 {
            return Ok(Some(finish(packet, Vec::new())));
        }
        self.pending = Some(Box::new(Pending {
            since: Instant::now(),
            count: header.attachments,
            attachments: Vec::new(),
            total_bytes: 0,
            packet,
        }));
        Ok(None)
    }

    /// Adds an attachment, the data of a binary engine.io message, to the pending packet.
    ///
    /// Returns the packet once its last attachment has arrived. An error drops the pending packet.
    pub fn decode_binary(&mut self, bytes: Bytes) -> Result<Option<Incoming>, PacketError> {
        let Some(pending) = self.pending.as_mut() else {
            return Err(PacketError::UnexpectedAttachment);
        };
        let total_bytes = pending.total_bytes.saturating_add(bytes.len());
        if total_bytes > self.max_bytes {
            self.pending = None;
            return Err(PacketError::AttachmentsTooLarge { max: self.max_bytes });
        }
        pending.total_bytes = total_bytes;
        pending.attachments.push(bytes);
        if pending.attachments.len() < pending.count {
            return Ok(None);
        }

        let pending = self.pending.take().expect("a pending packet was checked above");
        Ok(Some(finish(pending.packet, pending.attachments)))
    }

    /// Returns when the pending binary packet's text arrived, or `None` when no packet is pending.
    pub fn pending_since(&self) -> Option<Instant> {
        self.pending.as_ref().map(|pending| pending.since)
    }
}

/// Parses the packet type, attachment count, namespace and ack id, and checks what follows them.
fn parse_header(text: &str, max_attachments: usize) -> Result<Header<'_>, PacketError> {
    let Some(first) = text.chars().next() else {
        return Err(PacketError::Empty);
    };
    let (packet_type, binary) = match first {
        '0' => (PacketType::Connect, false),
        '1' => (PacketType::Disconnect, false),
        '2' => (PacketType::Event, false),
        '3' => (PacketType::Ack, false),
        '4' => return Err(PacketError::ClientConnectError),
        '5' => (PacketType::Event, true),
        '6' => (PacketType::Ack, true),
        other => return Err(PacketError::UnknownType(other)),
    };
    let mut rest = &text[1..];

    let mut attachments = 0;
    if binary {
        let digits = leading_digits(rest);
        if digits == 0 || rest.as_bytes().get(digits) != Some(&b'-') {
            return Err(PacketError::InvalidAttachmentCount);
        }
        attachments = parse_attachment_count(&rest[..digits], max_attachments)?;
        rest = &rest[digits + 1..];
    }

    let mut ns = "/";
    let mut explicit_ns = false;
    if rest.starts_with('/') {
        explicit_ns = true;
        match rest.find(',') {
            Some(comma) => {
                ns = &rest[..comma];
                rest = &rest[comma + 1..];
            }
            None => {
                ns = rest;
                rest = "";
            }
        }
    }

    let mut id = None;
    if matches!(packet_type, PacketType::Event | PacketType::Ack) {
        let digits = leading_digits(rest);
        if digits > 0 {
            id = Some(parse_ack_id(&rest[..digits])?);
            rest = &rest[digits..];
        }
    }

    // A namespace containing a comma, as in `40/tenant,x,{}`, would otherwise surface as a confusing
    // JSON error about the namespace's tail.
    if explicit_ns && rest.chars().next().is_some_and(|c| !can_start_json(c)) {
        return Err(PacketError::TextAfterNamespace { ns: quote(ns) });
    }

    Ok(Header {
        packet_type,
        attachments,
        ns,
        id,
        data: rest,
    })
}

fn leading_digits(text: &str) -> usize {
    text.bytes().take_while(u8::is_ascii_digit).count()
}

/// Parses an attachment count digit by digit, so a count of any length costs no allocation and
/// stops at the first digit that takes it past `max`.
fn parse_attachment_count(digits: &str, max: usize) -> Result<usize, PacketError> {
    let mut count: usize = 0;
    for digit in digits.bytes() {
        count = count
            .checked_mul(10)
            .and_then(|count| count.checked_add(usize::from(digit - b'0')))
            .filter(|count| *count <= max)
            .ok_or(PacketError::TooManyAttachments { max })?;
    }
    Ok(count)
}

fn parse_ack_id(digits: &str) -> Result<u64, PacketError> {
    let mut id: u64 = 0;
    for digit in digits.bytes() {
        id = id
            .checked_mul(10)
            .and_then(|id| id.checked_add(u64::from(digit - b'0')))
            .filter(|id| *id <= MAX_ACK_ID)
            .ok_or(PacketError::AckIdTooLarge)?;
    }
    Ok(id)
}

/// Returns whether `c` may start a JSON value. Clients send JSON without leading whitespace, so a space
/// after the namespace's comma is read as part of a namespace name.
fn can_start_json(c: char) -> bool {
    matches!(c, '[' | '{' | '"' | '-' | '0'..='9' | 't' | 'f' | 'n')
}

/// Returns the start of client input for an error message.
fn quote(text: &str) -> String {
    let mut end = text.len().min(MAX_QUOTED_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn parse_json<'a, T: serde::Deserialize<'a>>(data: &'a str) -> Result<T, PacketError> {
    serde_json::from_str(data).map_err(PacketError::InvalidJson)
}

fn parse_connect_data(data: &str) -> Result<Option<serde_json::Value>, PacketError> {
    if data.is_empty() {
        return Ok(None);
    }
    match parse_json(data)? {
        auth @ serde_json::Value::Object(_) => Ok(Some(auth)),
        _ => Err(PacketError::InvalidConnectData),
    }
}

/// Splits an EVENT's JSON array into the event name and its arguments.
fn parse_event_data(data: &str) -> Result<(String, Vec<Payload>), PacketError> {
    if data.is_empty() {
        return Err(PacketError::InvalidEvent("the packet has no data"));
    }
    let Payload::Array(mut items) = parse_json::<Payload>(data)? else {
        return Err(PacketError::InvalidEvent("the data is not a JSON array"));
    };
    if items.is_empty() {
        return Err(PacketError::InvalidEvent("the array has no event name"));
    }
    let Payload::String(event) = items.remove(0) else {
        return Err(PacketError::InvalidEvent("the event name is not a string"));
    };
    if let Some(reserved) = RESERVED_EVENTS.iter().find(|reserved| **reserved == event) {
        return Err(PacketError::ReservedEvent(reserved));
    }
    Ok((event, items))
}

/// Checks that the placeholders in `values` reference each of `count` attachments exactly once.
///
/// Referencing an attachment twice is rejected too, because each reference becomes a copy of its
/// bytes and would multiply the memory a packet costs.
fn check_placeholders(values: &[Payload], count: usize) -> Result<(), PacketError> {
    let mut referenced = vec![false; count];
    for value in values {
        mark_placeholders(value, &mut referenced)?;
    }
    let referenced = referenced.iter().filter(|seen| **seen).count();
    if referenced < count {
        return Err(PacketError::UnreferencedAttachment { count, referenced });
    }
    Ok(())
}

fn mark_placeholders(value: &Payload, referenced: &mut [bool]) -> Result<(), PacketError> {
    match value {
        Payload::Array(items) => {
            for item in items {
                mark_placeholders(item, referenced)?;
            }
        }
        Payload::Object(entries) => match placeholder_num(entries, referenced.len())? {
            Some(num) if referenced[num] => return Err(PacketError::DuplicatePlaceholder(num)),
            Some(num) => referenced[num] = true,
            None => {
                for (_, item) in entries {
                    mark_placeholders(item, referenced)?;
                }
            }
        },
        _ => {}
    }
    Ok(())
}

/// Returns the attachment index of a placeholder object, or `None` for an object without a
/// `_placeholder` key. A placeholder is exactly `{"_placeholder":true,"num":<index>}`.
fn placeholder_num(entries: &[(String, Payload)], count: usize) -> Result<Option<usize>, PacketError> {
    if !entries.iter().any(|(key, _)| key == "_placeholder") {
        return Ok(None);
    }
    let [(first_key, first), (second_key, second)] = entries else {
        return Err(PacketError::InvalidPlaceholder(
            "a placeholder must have exactly the keys `_placeholder` and `num`",
        ));
    };
    let (flag, num) = match (first_key.as_str(), second_key.as_str()) {
        ("_placeholder", "num") => (first, second),
        ("num", "_placeholder") => (second, first),
        _ => {
            return Err(PacketError::InvalidPlaceholder(
                "a placeholder must have exactly the keys `_placeholder` and `num`",
            ));
        }
    };
    if *flag != Payload::Bool(true) {
        return Err(PacketError::InvalidPlaceholder("`_placeholder` is not `true`"));
    }
    let Payload::Number(num) = num else {
        return Err(PacketError::InvalidPlaceholder("`num` is not a number"));
    };
    let Some(num) = num.as_u64() else {
        return Err(PacketError::InvalidPlaceholder("`num` is not a non-negative integer"));
    };
    match usize::try_from(num) {
        Ok(index) if index < count => Ok(Some(index)),
        _ => Err(PacketError::PlaceholderOutOfRange { num, count }),
    }
}

/// Replaces each placeholder in `value` with its attachment's bytes, taking them out of
/// `attachments`. The placeholders were checked by [`check_placeholders`].
fn resolve_placeholders(value: &mut Payload, attachments: &mut [Bytes]) {
    match value {
        Payload::Array(items) => {
            for item in items {
                resolve_placeholders(item, attachments);
            }
        }
        Payload::Object(entries) => match placeholder_num(entries, attachments.len()) {
            Ok(Some(num)) => {
                *value = Payload::Bytes(Vec::from(std::mem::take(&mut attachments[num])));
            }
            _ => {
                for (_, item) in entries {
                    resolve_placeholders(item, attachments);
                }
            }
        },
        _ => {}
    }
}

/// Builds the incoming packet once all its attachments have arrived, in `num` order.
fn finish(packet: PendingPacket, mut attachments: Vec<Bytes>) -> Incoming {
    match packet {
        PendingPacket::Event {
            ns,
            id,
            event,
            mut args,
        } => {
            for arg in &mut args {
                resolve_placeholders(arg, &mut attachments);
            }
            Incoming::Event { ns, id, event, args }
        }
        PendingPacket::Ack { ns, id, json } => {
            let attachments = (!attachments.is_empty()).then(|| VecDeque::from(attachments));
            Incoming::Ack {
                ns,
                id,
                data: Value::Str(Str::from(json), attachments),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_ATTACHMENTS: usize = 10;
    const MAX_BYTES: usize = 1024;

    fn decoder() -> PacketDecoder {
        PacketDecoder::new(MAX_ATTACHMENTS, MAX_BYTES)
    }

    fn decode(text: &str) -> Result<Option<Incoming>, PacketError> {
        decoder().decode_text(text)
    }

    fn decode_error(text: &str) -> PacketError {
        match decode(text) {
            Err(error) => error,
            Ok(packet) => panic!("{text:?} decoded to {packet:?}"),
        }
    }

    fn json(text: &str) -> Payload {
        serde_json::from_str(text).unwrap()
    }

    fn event(ns: &str, id: Option<u64>, event: &str, args: Vec<Payload>) -> Incoming {
        Incoming::Event {
            ns: ns.to_owned(),
            id,
            event: event.to_owned(),
            args,
        }
    }

    #[test]
    fn decodes_connect() {
        assert_eq!(
            decode("0").unwrap(),
            Some(Incoming::Connect {
                ns: "/".to_owned(),
                auth: None
            })
        );
        assert_eq!(
            decode("0/chat,").unwrap(),
            Some(Incoming::Connect {
                ns: "/chat".to_owned(),
                auth: None
            })
        );
        assert_eq!(
            decode("0/chat").unwrap(),
            Some(Incoming::Connect {
                ns: "/chat".to_owned(),
                auth: None
            })
        );
        assert_eq!(
            decode(r#"0/chat,{"token":"abc"}"#).unwrap(),
            Some(Incoming::Connect {
                ns: "/chat".to_owned(),
                auth: Some(serde_json::json!({"token": "abc"}))
            })
        );
        assert_eq!(
            decode(r#"0{"token":"abc"}"#).unwrap(),
            Some(Incoming::Connect {
                ns: "/".to_owned(),
                auth: Some(serde_json::json!({"token": "abc"}))
            })
        );
    }

    #[test]
    fn connect_to_unknown_namespace_decodes() {
        // The server decides whether the namespace exists and replies with CONNECT_ERROR.
        assert_eq!(
            decode("0/no-such-ns,").unwrap(),
            Some(Incoming::Connect {
                ns: "/no-such-ns".to_owned(),
                auth: None
            })
        );
    }

    #[test]
    fn rejects_connect_data_that_is_not_an_object() {
        for text in ["0[]", "0\"token\"", "0/chat,1", "0/chat,[1]", "0null"] {
            let error = decode_error(text);
            assert!(matches!(error, PacketError::InvalidConnectData), "{text}: {error:?}");
            assert_eq!(error.kind(), "invalid_connect_data");
        }
        assert!(matches!(decode_error("0/chat,{"), PacketError::InvalidJson(_)));
    }

    #[test]
    fn rejects_comma_in_namespace() {
        let error = decode_error("0/tenant,x,{}");
        assert!(
            matches!(&error, PacketError::TextAfterNamespace { ns } if ns == "/tenant"),
            "{error:?}"
        );
        assert!(error.to_string().contains("namespace"), "{error}");
        assert_eq!(error.kind(), "invalid_namespace");
        assert!(matches!(
            decode_error("2/Acme, Inc.,[\"ev\"]"),
            PacketError::TextAfterNamespace { .. }
        ));
    }

    #[test]
    fn namespace_in_error_is_cut() {
        let text = format!("0/{},x", "é".repeat(100));
        let PacketError::TextAfterNamespace { ns } = decode_error(&text) else {
            panic!("expected a namespace error");
        };
        assert!(ns.len() <= MAX_QUOTED_LEN);
        assert!(ns.starts_with("/é"));
    }

    #[test]
    fn decodes_disconnect() {
        assert_eq!(decode("1").unwrap(), Some(Incoming::Disconnect { ns: "/".to_owned() }));
        assert_eq!(
            decode("1/chat,").unwrap(),
            Some(Incoming::Disconnect { ns: "/chat".to_owned() })
        );
        assert!(matches!(decode_error("1/chat,{}"), PacketError::UnexpectedData));
    }

    #[test]
    fn decodes_event() {
        assert_eq!(
            decode(r#"2["join",{"room":"a"}]"#).unwrap(),
            Some(event("/", None, "join", vec![json(r#"{"room":"a"}"#)]))
        );
        assert_eq!(decode(r#"2["ping"]"#).unwrap(), Some(event("/", None, "ping", vec![])));
    }

    #[test]
    fn decodes_event_with_namespace_and_ack_id() {
        assert_eq!(
            decode(r#"2/chat,12["ev",1,"x"]"#).unwrap(),
            Some(event("/chat", Some(12), "ev", vec![json("1"), json("\"x\"")]))
        );
        assert_eq!(decode(r#"27["ev"]"#).unwrap(), Some(event("/", Some(7), "ev", vec![])));
    }

    #[test]
    fn accepts_largest_safe_ack_id() {
        assert_eq!(
            decode(r#"29007199254740991["ev"]"#).unwrap(),
            Some(event("/", Some(MAX_ACK_ID), "ev", vec![]))
        );
    }

    #[test]
    fn rejects_ack_id_over_safe_integer() {
        for text in [
            r#"29007199254740992["ev"]"#,
            r#"218446744073709551615["join",{"room":"x"}]"#,
            r#"2/chat,99999999999999999999999999999999["ev"]"#,
            r#"39007199254740992[]"#,
            r#"51-/chat,99999999999999999999["e",{"_placeholder":true,"num":0}]"#,
        ] {
            let error = decode_error(text);
            assert!(matches!(error, PacketError::AckIdTooLarge), "{text}: {error:?}");
            assert!(error.to_string().contains("ack id"), "{error}");
            assert_eq!(error.kind(), "invalid_ack_id");
        }
    }

    #[test]
    fn rejects_invalid_event_data() {
        for text in ["2[]", "2{}", "2\"ev\"", "2", "2/chat,", "2[1]", "2[null,1]", "27"] {
            let error = decode_error(text);
            assert!(matches!(error, PacketError::InvalidEvent(_)), "{text}: {error:?}");
            assert_eq!(error.kind(), "invalid_event");
        }
        for text in ["2[\"ev\"", "2[\"ev\"]x", "2[\"ev\",]"] {
            let error = decode_error(text);
            assert!(matches!(error, PacketError::InvalidJson(_)), "{text}: {error:?}");
            assert_eq!(error.kind(), "invalid_json");
        }
    }

    #[test]
    fn rejects_reserved_event_names() {
        for name in RESERVED_EVENTS {
            let error = decode_error(&format!("2[\"{name}\"]"));
            assert!(
                matches!(error, PacketError::ReservedEvent(reserved) if reserved == name),
                "{error:?}"
            );
            assert_eq!(error.kind(), "reserved_event");
        }
    }

    #[test]
    fn rejects_client_connect_error() {
        for text in [r#"4{"message":"x"}"#, "4", "4/chat,"] {
            let error = decode_error(text);
            assert!(matches!(error, PacketError::ClientConnectError), "{text}: {error:?}");
            assert_eq!(error.kind(), "client_connect_error");
        }
    }

    #[test]
    fn rejects_empty_and_unknown_packets() {
        assert!(matches!(decode_error(""), PacketError::Empty));
        for text in ["7", "9[]", "x", "é"] {
            let error = decode_error(text);
            assert!(matches!(error, PacketError::UnknownType(_)), "{text}: {error:?}");
            assert_eq!(error.kind(), "unknown_packet_type");
        }
    }

    #[test]
    fn decodes_ack() {
        assert_eq!(
            decode(r#"3/chat,5[{"ok":true}]"#).unwrap(),
            Some(Incoming::Ack {
                ns: "/chat".to_owned(),
                id: 5,
                data: Value::Str(Str::from(r#"[{"ok":true}]"#), None),
            })
        );
        assert_eq!(
            decode("30[]").unwrap(),
            Some(Incoming::Ack {
                ns: "/".to_owned(),
                id: 0,
                data: Value::Str(Str::from("[]"), None),
            })
        );
    }

    #[test]
    fn rejects_invalid_ack() {
        assert!(matches!(decode_error("3[1]"), PacketError::MissingAckId));
        assert!(matches!(decode_error("35{}"), PacketError::InvalidAckData));
        assert!(matches!(decode_error("35\"x\""), PacketError::InvalidAckData));
        assert!(matches!(decode_error("35"), PacketError::InvalidJson(_)));
    }

    #[test]
    fn resolves_nested_placeholder() {
        let mut decoder = decoder();
        let text = r#"51-["upload",{"meta":{"name":"a.bin"},"file":{"_placeholder":true,"num":0}}]"#;
        assert_eq!(decoder.decode_text(text).unwrap(), None);
        assert!(decoder.pending_since().is_some());
        let packet = decoder
            .decode_binary(Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]))
            .unwrap();
        let expected_arg = Payload::Object(vec![
            (
                "meta".to_owned(),
                Payload::Object(vec![("name".to_owned(), Payload::String("a.bin".to_owned()))]),
            ),
            ("file".to_owned(), Payload::Bytes(vec![0xde, 0xad, 0xbe, 0xef])),
        ]);
        assert_eq!(packet, Some(event("/", None, "upload", vec![expected_arg])));
        assert_eq!(decoder.pending_since(), None);
    }

    #[test]
    fn resolves_placeholder_three_levels_deep_in_arrays() {
        let mut decoder = decoder();
        let text = r#"51-/chat,3["ev",[[[{"_placeholder":true,"num":0}]]]]"#;
        assert_eq!(decoder.decode_text(text).unwrap(), None);
        let packet = decoder.decode_binary(Bytes::from_static(b"abc")).unwrap();
        let expected_arg = Payload::Array(vec![Payload::Array(vec![Payload::Array(vec![Payload::Bytes(
            b"abc".to_vec(),
        )])])]);
        assert_eq!(packet, Some(event("/chat", Some(3), "ev", vec![expected_arg])));
    }

    #[test]
    fn resolves_placeholders_listed_out_of_order() {
        let mut decoder = decoder();
        let text = r#"52-["ev",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]"#;
        assert_eq!(decoder.decode_text(text).unwrap(), None);
        assert_eq!(decoder.decode_binary(Bytes::from_static(b"zero")).unwrap(), None);
        let packet = decoder.decode_binary(Bytes::from_static(b"one")).unwrap();
        assert_eq!(
            packet,
            Some(event(
                "/",
                None,
                "ev",
                vec![Payload::Bytes(b"one".to_vec()), Payload::Bytes(b"zero".to_vec())]
            ))
        );
    }

    #[test]
    fn placeholder_with_keys_in_either_order_resolves() {
        let mut decoder = decoder();
        assert_eq!(
            decoder
                .decode_text(r#"51-["ev",{"num":0,"_placeholder":true}]"#)
                .unwrap(),
            None
        );
        let packet = decoder.decode_binary(Bytes::from_static(b"x")).unwrap();
        assert_eq!(
            packet,
            Some(event("/", None, "ev", vec![Payload::Bytes(b"x".to_vec())]))
        );
    }

    #[test]
    fn binary_event_with_zero_attachments_completes_at_once() {
        assert_eq!(
            decode(r#"50-["ev",1]"#).unwrap(),
            Some(event("/", None, "ev", vec![json("1")]))
        );
    }

    #[test]
    fn binary_ack_keeps_placeholders_and_orders_attachments() {
        let mut decoder = decoder();
        let text = r#"62-/chat,9[{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]"#;
        assert_eq!(decoder.decode_text(text).unwrap(), None);
        assert_eq!(decoder.decode_binary(Bytes::from_static(b"a")).unwrap(), None);
        let packet = decoder.decode_binary(Bytes::from_static(b"b")).unwrap();
        let json_text = r#"[{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]"#;
        assert_eq!(
            packet,
            Some(Incoming::Ack {
                ns: "/chat".to_owned(),
                id: 9,
                data: Value::Str(
                    Str::from(json_text),
                    Some(VecDeque::from([Bytes::from_static(b"a"), Bytes::from_static(b"b")]))
                ),
            })
        );
    }

    #[test]
    fn rejects_attachment_count_mismatch() {
        let error = decode_error(r#"52-["ev",{"_placeholder":true,"num":0}]"#);
        assert!(
            matches!(
                error,
                PacketError::UnreferencedAttachment {
                    count: 2,
                    referenced: 1
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.kind(), "invalid_attachment");
    }

    #[test]
    fn mismatched_packet_never_waits() {
        let mut decoder = decoder();
        assert!(
            decoder
                .decode_text(r#"52-["ev",{"_placeholder":true,"num":1}]"#)
                .is_err()
        );
        assert_eq!(decoder.pending_since(), None);
    }

    #[test]
    fn rejects_placeholder_num_out_of_range() {
        let error = decode_error(r#"51-["ev",{"_placeholder":true,"num":9}]"#);
        assert!(
            matches!(error, PacketError::PlaceholderOutOfRange { num: 9, count: 1 }),
            "{error:?}"
        );
        assert_eq!(error.kind(), "invalid_attachment");
    }

    #[test]
    fn rejects_placeholder_in_packet_without_attachments() {
        let error = decode_error(r#"2["ev",{"_placeholder":true,"num":0}]"#);
        assert!(
            matches!(error, PacketError::PlaceholderOutOfRange { num: 0, count: 0 }),
            "{error:?}"
        );
    }

    #[test]
    fn rejects_malformed_placeholders() {
        for text in [
            r#"51-["ev",{"_placeholder":true,"num":"length"}]"#,
            r#"51-["ev",{"_placeholder":"yes","num":0}]"#,
            r#"51-["ev",{"_placeholder":1,"num":0}]"#,
            r#"51-["ev",{"_placeholder":false,"num":0}]"#,
            r#"51-["ev",{"_placeholder":true,"num":-1}]"#,
            r#"51-["ev",{"_placeholder":true,"num":0.5}]"#,
            r#"51-["ev",{"_placeholder":true}]"#,
            r#"51-["ev",{"_placeholder":true,"num":0,"extra":1}]"#,
            r#"51-["ev",{"_placeholder":true,"_placeholder":true}]"#,
            r#"51-["ev",{"_placeholder":true,"num":0},{"_placeholder":"yes"}]"#,
        ] {
            let error = decode_error(text);
            assert!(matches!(error, PacketError::InvalidPlaceholder(_)), "{text}: {error:?}");
            assert_eq!(error.kind(), "invalid_attachment");
        }
    }

    #[test]
    fn rejects_attachment_referenced_twice() {
        let error = decode_error(r#"52-["ev",{"_placeholder":true,"num":0},{"_placeholder":true,"num":0}]"#);
        assert!(matches!(error, PacketError::DuplicatePlaceholder(0)), "{error:?}");
    }

    #[test]
    fn rejects_huge_attachment_count() {
        for text in [
            r#"54999999999-["ev"]"#,
            r#"511-["ev"]"#,
            r#"5999999999999999999999999999999999999999-["ev"]"#,
        ] {
            let error = decode_error(text);
            assert!(
                matches!(error, PacketError::TooManyAttachments { max: MAX_ATTACHMENTS }),
                "{text}: {error:?}"
            );
            assert_eq!(error.kind(), "too_many_attachments");
        }
    }

    #[test]
    fn accepts_attachment_count_at_the_limit() {
        let placeholders: Vec<String> = (0..MAX_ATTACHMENTS)
            .map(|num| format!(r#"{{"_placeholder":true,"num":{num}}}"#))
            .collect();
        let text = format!(r#"5{MAX_ATTACHMENTS}-["ev",{}]"#, placeholders.join(","));
        let mut decoder = decoder();
        assert_eq!(decoder.decode_text(&text).unwrap(), None);
        for num in 0..MAX_ATTACHMENTS - 1 {
            assert_eq!(decoder.decode_binary(Bytes::from(vec![num as u8])).unwrap(), None);
        }
        let Some(Incoming::Event { args, .. }) = decoder.decode_binary(Bytes::from_static(&[9])).unwrap() else {
            panic!("expected the event after the last attachment");
        };
        let expected: Vec<Payload> = (0..MAX_ATTACHMENTS as u8)
            .map(|num| Payload::Bytes(vec![num]))
            .collect();
        assert_eq!(args, expected);
    }

    #[test]
    fn rejects_malformed_attachment_count() {
        for text in [r#"5["ev"]"#, r#"51["ev"]"#, r#"5-["ev"]"#, r#"6/chat,1-[]"#, "5", "61"] {
            let error = decode_error(text);
            assert!(
                matches!(error, PacketError::InvalidAttachmentCount),
                "{text}: {error:?}"
            );
            assert_eq!(error.kind(), "invalid_attachment");
        }
    }

    #[test]
    fn rejects_text_before_attachments() {
        let mut decoder = decoder();
        let text = r#"52-["ev",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        assert_eq!(decoder.decode_text(text).unwrap(), None);
        assert_eq!(decoder.decode_binary(Bytes::from_static(b"a")).unwrap(), None);
        let error = decoder.decode_text(r#"2["ev"]"#).unwrap_err();
        assert!(
            matches!(error, PacketError::TextBeforeAttachments { received: 1, count: 2 }),
            "{error:?}"
        );
        assert_eq!(decoder.pending_since(), None);

        // The decoder starts over after the error.
        assert_eq!(
            decoder.decode_text(r#"2["ev"]"#).unwrap(),
            Some(event("/", None, "ev", vec![]))
        );
    }

    #[test]
    fn rejects_attachment_without_pending_packet() {
        let mut decoder = decoder();
        let error = decoder.decode_binary(Bytes::from_static(b"x")).unwrap_err();
        assert!(matches!(error, PacketError::UnexpectedAttachment));
        assert_eq!(error.kind(), "unexpected_attachment");
    }

    #[test]
    fn accepts_attachments_exactly_at_the_byte_cap() {
        let mut decoder = decoder();
        let text = r#"52-["ev",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        assert_eq!(decoder.decode_text(text).unwrap(), None);
        assert_eq!(
            decoder.decode_binary(Bytes::from(vec![1; MAX_BYTES - 1])).unwrap(),
            None
        );
        assert!(decoder.decode_binary(Bytes::from_static(&[2])).unwrap().is_some());
    }

    #[test]
    fn rejects_attachments_one_byte_over_the_cap() {
        let mut decoder = decoder();
        let text = r#"52-["ev",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
        assert_eq!(decoder.decode_text(text).unwrap(), None);
        assert_eq!(
            decoder.decode_binary(Bytes::from(vec![1; MAX_BYTES - 1])).unwrap(),
            None
        );
        let error = decoder.decode_binary(Bytes::from_static(&[2, 3])).unwrap_err();
        assert!(
            matches!(error, PacketError::AttachmentsTooLarge { max: MAX_BYTES }),
            "{error:?}"
        );
        assert_eq!(error.kind(), "attachments_too_large");
        assert_eq!(decoder.pending_since(), None);
    }

    #[test]
    fn rejects_deeply_nested_json() {
        let text = format!("2[\"ev\",{}{}]", "[".repeat(10_000), "]".repeat(10_000));
        let error = decode_error(&text);
        assert!(matches!(error, PacketError::InvalidJson(_)), "{error:?}");
    }

    #[test]
    fn new_decoder_has_nothing_pending() {
        let decoder = decoder();
        assert!(decoder.pending.is_none());
        assert_eq!(decoder.pending_since(), None);
    }

    #[test]
    fn every_error_message_names_its_problem() {
        let errors = [
            decode_error(""),
            decode_error("7"),
            decode_error("4"),
            decode_error("5x-[]"),
            decode_error("599-[]"),
            decode_error("0/a,x"),
            decode_error("29999999999999999[\"e\"]"),
            decode_error("3[]"),
            decode_error("2[\"e\""),
            decode_error("0[]"),
            decode_error("1/a,{}"),
            decode_error("2[]"),
            decode_error("2[\"connect\"]"),
            decode_error("31{}"),
            decode_error(r#"51-["e",{"_placeholder":"yes","num":0}]"#),
            decode_error(r#"51-["e",{"_placeholder":true,"num":9}]"#),
        ];
        for error in errors {
            let message = error.to_string();
            assert!(message.len() > 10, "{error:?} has the message {message:?}");
            assert!(!error.kind().is_empty());
        }
    }
}
