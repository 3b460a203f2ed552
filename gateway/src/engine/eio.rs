//! Engine.IO v4 packets: parsing the client's text packets, the open packet, and the payload
//! format of long-polling bodies, where packets are separated by the record separator 0x1E and a
//! binary packet is `b` followed by its standard base64 encoding.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::Serialize;

use super::outbound::Outbound;

/// Separator between the packets of a long-polling payload.
const RECORD_SEPARATOR: u8 = 0x1e;

/// An engine.io text packet received from the client, borrowing its data from the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EioPacket<'a> {
    Close,
    /// A ping with its data (`probe` during an upgrade).
    Ping(&'a str),
    /// A pong with its data, echoing the server's ping.
    Pong(&'a str),
    /// A message: a Socket.IO packet's text, possibly empty.
    Message(&'a str),
    Upgrade,
    Noop,
}

/// A packet of a long-polling payload sent by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollingPacket {
    /// A whole engine.io text packet, type character included.
    Text(String),
    /// A binary engine.io message, decoded from base64.
    Binary(Bytes),
}

/// An engine.io packet or payload that the server does not accept.
#[derive(Debug, thiserror::Error)]
pub enum EioError {
    #[error("empty engine.io packet")]
    Empty,
    #[error("unknown engine.io packet type {0:?}")]
    UnknownType(char),
    #[error("engine.io open packet sent by the client, which only servers send")]
    UnexpectedOpen,
    #[error("long-polling payload has more than {max} packets")]
    TooManyPackets { max: usize },
    #[error("binary packet of a long-polling payload is not valid base64: {0}")]
    InvalidBase64(#[from] base64::DecodeError),
    #[error("text packet of a long-polling payload is not valid UTF-8")]
    InvalidUtf8,
}

impl EioError {
    /// Returns the label of this error's cause in the protocol error counter.
    pub fn kind(&self) -> &'static str {
        match self {
            EioError::Empty => "empty_packet",
            EioError::UnknownType(_) => "unknown_packet_type",
            EioError::UnexpectedOpen => "unexpected_open",
            EioError::TooManyPackets { .. } => "too_many_packets",
            EioError::InvalidBase64(_) => "invalid_base64",
            EioError::InvalidUtf8 => "invalid_utf8",
        }
    }
}

/// Parses an engine.io text packet from the client.
///
/// Data after the type character of a close, upgrade or noop packet is ignored.
pub fn parse_text(text: &str) -> Result<EioPacket<'_>, EioError> {
    let mut chars = text.chars();
    let Some(packet_type) = chars.next() else {
        return Err(EioError::Empty);
    };
    let data = chars.as_str();
    match packet_type {
        '0' => Err(EioError::UnexpectedOpen),
        '1' => Ok(EioPacket::Close),
        '2' => Ok(EioPacket::Ping(data)),
        '3' => Ok(EioPacket::Pong(data)),
        '4' => Ok(EioPacket::Message(data)),
        '5' => Ok(EioPacket::Upgrade),
        '6' => Ok(EioPacket::Noop),
        other => Err(EioError::UnknownType(other)),
    }
}

/// Handshake data of the open packet, in the field names and order of engine.io v4.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Handshake<'a> {
    sid: &'a str,
    upgrades: &'a [&'a str],
    ping_interval: u64,
    ping_timeout: u64,
    max_payload: u64,
}

/// Builds the open packet, `0` followed by the handshake JSON.
pub fn open_packet(
    sid: &str,
    upgrades: &[&str],
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: u64,
) -> String {
    let handshake = Handshake {
        sid,
        upgrades,
        ping_interval: ping_interval_ms,
        ping_timeout: ping_timeout_ms,
        max_payload,
    };
    let mut packet = String::from("0");
    packet.push_str(&serde_json::to_string(&handshake).expect("handshake serializes to JSON"));
    packet
}

/// Decodes the body of a long-polling POST into its packets.
///
/// The record count is checked before anything is decoded, so a body with too many packets allocates nothing.
pub fn decode_payload(body: &[u8], max_packets: usize) -> Result<Vec<PollingPacket>, EioError> {
    let count = body.iter().filter(|byte| **byte == RECORD_SEPARATOR).count() + 1;
    if count > max_packets {
        return Err(EioError::TooManyPackets { max: max_packets });
    }

    let mut packets = Vec::with_capacity(count);
    for record in body.split(|byte| *byte == RECORD_SEPARATOR) {
        let packet = match record {
            [] => return Err(EioError::Empty),
            [b'b', encoded @ ..] => PollingPacket::Binary(Bytes::from(BASE64.decode(encoded)?)),
            text => {
                let text = std::str::from_utf8(text).map_err(|_| EioError::InvalidUtf8)?;
                PollingPacket::Text(text.to_owned())
            }
        };
        packets.push(packet);
    }
    Ok(packets)
}

/// Appends queued packets to `out` as a long-polling response body.
pub fn encode_payload(out: &mut Vec<u8>, packets: impl Iterator<Item = Outbound>) {
    for (index, packet) in packets.enumerate() {
        if index > 0 {
            out.push(RECORD_SEPARATOR);
        }
        match packet {
            Outbound::Eio(text) => out.extend_from_slice(text.as_bytes()),
            Outbound::Message(text) => {
                out.push(b'4');
                out.extend_from_slice(text.as_bytes());
            }
            Outbound::Binary(bytes) => {
                out.push(b'b');
                let start = out.len();
                out.resize(
                    start + base64::encoded_len(bytes.len(), true).expect("base64 length fits in usize"),
                    0,
                );
                let written = BASE64
                    .encode_slice(&bytes, &mut out[start..])
                    .expect("output was sized for the encoding");
                out.truncate(start + written);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use socketioxide_core::Str;

    use super::*;

    #[test]
    fn parses_each_packet_type() {
        assert_eq!(parse_text("1").unwrap(), EioPacket::Close);
        assert_eq!(parse_text("2").unwrap(), EioPacket::Ping(""));
        assert_eq!(parse_text("2probe").unwrap(), EioPacket::Ping("probe"));
        assert_eq!(parse_text("3").unwrap(), EioPacket::Pong(""));
        assert_eq!(parse_text("3probe").unwrap(), EioPacket::Pong("probe"));
        assert_eq!(parse_text("42[\"ev\"]").unwrap(), EioPacket::Message("2[\"ev\"]"));
        assert_eq!(parse_text("5").unwrap(), EioPacket::Upgrade);
        assert_eq!(parse_text("6").unwrap(), EioPacket::Noop);
    }

    #[test]
    fn message_with_empty_rest_is_empty_message() {
        assert_eq!(parse_text("4").unwrap(), EioPacket::Message(""));
    }

    #[test]
    fn rejects_empty_packet() {
        let error = parse_text("").unwrap_err();
        assert!(matches!(error, EioError::Empty));
        assert_eq!(error.kind(), "empty_packet");
    }

    #[test]
    fn rejects_unknown_types() {
        for text in ["7", "9", "x", "é"] {
            let error = parse_text(text).unwrap_err();
            assert!(matches!(error, EioError::UnknownType(_)), "{text}: {error:?}");
            assert_eq!(error.kind(), "unknown_packet_type");
        }
    }

    #[test]
    fn rejects_open_from_client() {
        assert!(matches!(parse_text("0{}"), Err(EioError::UnexpectedOpen)));
    }

    #[test]
    fn open_packet_has_v4_fields() {
        let packet = open_packet("abc", &["websocket"], 25_000, 20_000, 1_000_000);
        assert_eq!(
            packet,
            r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        let packet = open_packet("a\"b", &[], 1, 2, 3);
        let json: serde_json::Value = serde_json::from_str(&packet[1..]).unwrap();
        assert_eq!(json["sid"], "a\"b");
        assert_eq!(json["upgrades"], serde_json::json!([]));
    }

    #[test]
    fn decodes_text_and_base64_records() {
        let body = b"42[\"ev\"]\x1ebAQIDBA==\x1e2\x1eb";
        let packets = decode_payload(body, 10).unwrap();
        assert_eq!(
            packets,
            vec![
                PollingPacket::Text("42[\"ev\"]".to_owned()),
                PollingPacket::Binary(Bytes::from_static(&[1, 2, 3, 4])),
                PollingPacket::Text("2".to_owned()),
                PollingPacket::Binary(Bytes::new()),
            ]
        );
    }

    #[test]
    fn decodes_single_record() {
        assert_eq!(
            decode_payload(b"40", 1).unwrap(),
            vec![PollingPacket::Text("40".to_owned())]
        );
    }

    #[test]
    fn accepts_record_count_at_the_limit() {
        assert_eq!(decode_payload(b"2\x1e2\x1e2", 3).unwrap().len(), 3);
    }

    #[test]
    fn rejects_record_count_over_the_limit() {
        let error = decode_payload(b"2\x1e2\x1e2\x1e2", 3).unwrap_err();
        assert!(matches!(error, EioError::TooManyPackets { max: 3 }), "{error:?}");
        assert_eq!(error.kind(), "too_many_packets");
    }

    #[test]
    fn rejects_empty_records() {
        for body in [&b""[..], b"\x1e", b"2\x1e", b"\x1e2", b"2\x1e\x1e2"] {
            let error = decode_payload(body, 10).unwrap_err();
            assert!(matches!(error, EioError::Empty), "{body:?}: {error:?}");
        }
    }

    #[test]
    fn rejects_invalid_base64() {
        for body in [&b"b!!!!"[..], b"bAQI", b"bAQ=I"] {
            let error = decode_payload(body, 10).unwrap_err();
            assert!(matches!(error, EioError::InvalidBase64(_)), "{body:?}: {error:?}");
            assert_eq!(error.kind(), "invalid_base64");
        }
    }

    #[test]
    fn rejects_invalid_utf8_text_record() {
        let error = decode_payload(b"4\xff", 10).unwrap_err();
        assert!(matches!(error, EioError::InvalidUtf8));
    }

    #[test]
    fn encodes_queued_packets() {
        let packets = vec![
            Outbound::Eio("2"),
            Outbound::Message(Str::from("2[\"ev\",1]")),
            Outbound::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            Outbound::Eio("6"),
        ];
        let mut out = Vec::new();
        encode_payload(&mut out, packets.into_iter());
        assert_eq!(out, b"2\x1e42[\"ev\",1]\x1ebAQIDBA==\x1e6");
    }

    #[test]
    fn encodes_nothing_for_no_packets() {
        let mut out = Vec::new();
        encode_payload(&mut out, std::iter::empty());
        assert!(out.is_empty());
    }

    #[test]
    fn encoded_payload_decodes_to_the_same_packets() {
        let binary: Vec<u8> = (0..=255).collect();
        let packets = vec![
            Outbound::Message(Str::from("0/chat,{\"sid\":\"x\"}")),
            Outbound::Binary(Bytes::from(binary.clone())),
            Outbound::Eio("3probe"),
        ];
        let mut out = Vec::new();
        encode_payload(&mut out, packets.into_iter());
        assert_eq!(
            decode_payload(&out, 3).unwrap(),
            vec![
                PollingPacket::Text("40/chat,{\"sid\":\"x\"}".to_owned()),
                PollingPacket::Binary(Bytes::from(binary)),
                PollingPacket::Text("3probe".to_owned()),
            ]
        );
    }
}
