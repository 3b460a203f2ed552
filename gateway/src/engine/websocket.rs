//! Websocket framing (RFC 6455) for the server side: a decoder for the client's masked frames
//! that reassembles fragmented messages under a size cap, an encoder for unmasked server frames,
//! and the `Sec-WebSocket-Accept` key of the opening handshake.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use sha1::{Digest, Sha1};

/// Close code of a normal closure (RFC 6455 section 7.4.1).
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code of a server going away, sent during a drain.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a frame or packet that breaks the protocol.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code for a client the gateway stops serving because of its behaviour, such as a slow
/// consumer.
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;
/// Close code for a message over the payload cap.
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
/// Close code for a message whose payload is inconsistent with its type, such as invalid UTF-8
/// in a text message (RFC 6455 section 7.4.1).
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;

const OPCODE_CONTINUATION: u8 = 0x0;
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xA;

/// Largest payload of a control frame (RFC 6455 section 5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// GUID appended to the client's key to derive the accept key (RFC 6455 section 1.3).
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// One complete message or control frame received from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message; the bytes are valid UTF-8.
    Text(Bytes),
    Binary(Bytes),
    /// A ping with its application data, which the pong must echo.
    Ping(Bytes),
    Pong,
    /// A close frame with its status code, if it carried one, and its reason.
    Close(Option<u16>, String),
}

/// A violation of the websocket protocol or of the message cap by the client.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("message of {len} bytes exceeds the maximum of {max} bytes")]
    MessageTooBig { len: u64, max: usize },
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    #[error("close frame carries the invalid close code {0}")]
    InvalidCloseCode(u16),
}

impl FrameError {
    /// Returns the close code the server sends for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::MessageTooBig { .. } => CLOSE_MESSAGE_TOO_BIG,
            FrameError::Protocol(_) | FrameError::InvalidCloseCode(_) => CLOSE_PROTOCOL_ERROR,
            FrameError::InvalidUtf8 => CLOSE_INVALID_PAYLOAD,
        }
    }

    /// Returns the label of this error's cause in the protocol error counter.
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::MessageTooBig { .. } => "payload_too_large",
            FrameError::Protocol(_) => "websocket_protocol",
            FrameError::InvalidUtf8 => "invalid_utf8",
            FrameError::InvalidCloseCode(_) => "invalid_close_code",
        }
    }
}

/// Decoder of the client's frames into messages.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// Unmasked payload of the fragmented message received so far; empty, without a heap buffer,
    /// when no message is unfinished.
    fragments: Vec<u8>,
    /// Opcode of the unfinished fragmented message, `None` when there is none.
    fragmented_opcode: Option<u8>,
}

/// Fields of a frame header.
struct FrameHeader {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    header_len: usize,
    payload_len: u64,
}

impl Decoder {
    /// Creates a decoder for messages of at most `max_message` bytes; allocates nothing.
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message,
            fragments: Vec::new(),
            fragmented_opcode: None,
        }
    }

    /// Decodes at most one message from the start of `input` (client frames, masked).
    ///
    /// Returns the bytes consumed and the message if one completed; `Ok((0, None))` means more
    /// input is needed, and the caller keeps the bytes. Only whole frames are consumed.
    /// Continuation frames are reassembled, and control frames may sit between fragments. The cap
    /// applies to the reassembled message and is checked at each frame header, before the
    /// payload arrives.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Message>), FrameError> {
        let Some(header) = self.parse_header(input)? else {
            return Ok((0, None));
        };
        // A payload length above the cap was rejected by `parse_header`, so it fits in usize.
        let payload_len = header.payload_len as usize;
        let frame_len = header.header_len + payload_len;
        if input.len() < frame_len {
            return Ok((0, None));
        }
        let payload = &input[header.header_len..frame_len];

        let message = match header.opcode {
            OPCODE_CLOSE => Some(decode_close(&unmask(payload, header.mask))?),
            OPCODE_PING => Some(Message::Ping(Bytes::from(unmask(payload, header.mask)))),
            OPCODE_PONG => Some(Message::Pong),
            OPCODE_TEXT | OPCODE_BINARY if header.fin => {
                Some(finish_message(header.opcode, unmask(payload, header.mask))?)
            }
            OPCODE_TEXT | OPCODE_BINARY => {
                self.fragmented_opcode = Some(header.opcode);
                self.append_fragment(payload, header.mask);
                None
            }
            _ => {
                self.append_fragment(payload, header.mask);
                if header.fin {
                    let opcode = self.fragmented_opcode.take().unwrap_or(OPCODE_BINARY);
                    Some(finish_message(opcode, std::mem::take(&mut self.fragments))?)
                } else {
                    None
                }
            }
        };
        Ok((frame_len, message))
    }

    /// Returns whether no fragmented message is unfinished.
    pub fn is_idle(&self) -> bool {
        self.fragmented_opcode.is_none()
    }

    /// Parses and checks the frame header at the start of `input`; `None` while it is incomplete.
    fn parse_header(&self, input: &[u8]) -> Result<Option<FrameHeader>, FrameError> {
        let [first, second, ..] = *input else {
            return Ok(None);
        };
        let fin = first & 0x80 != 0;
        let opcode = first & 0x0f;
        if first & 0x70 != 0 {
            return Err(FrameError::Protocol(
                "reserved bits are set without a negotiated extension",
            ));
        }
        if second & 0x80 == 0 {
            return Err(FrameError::Protocol("client frame is not masked"));
        }
        let is_control = opcode & 0x08 != 0;
        match opcode {
            OPCODE_CONTINUATION if self.fragmented_opcode.is_none() => {
                return Err(FrameError::Protocol("continuation frame without a message to continue"));
            }
            OPCODE_TEXT | OPCODE_BINARY if self.fragmented_opcode.is_some() => {
                return Err(FrameError::Protocol(
                    "new data frame while a fragmented message is unfinished",
                ));
            }
            OPCODE_CONTINUATION | OPCODE_TEXT | OPCODE_BINARY | OPCODE_CLOSE | OPCODE_PING | OPCODE_PONG => {}
            _ => return Err(FrameError::Protocol("reserved opcode")),
        }
        if is_control && !fin {
            return Err(FrameError::Protocol("fragmented control frame"));
        }

        let (length_bytes, payload_len) = match second & 0x7f {
            126 => {
                let Some(bytes) = input.get(2..4) else {
                    return Ok(None);
                };
                (2, u64::from(u16::from_be_bytes([bytes[0], bytes[1]])))
            }
            127 => {
                let Some(bytes) = input.get(2..10) else {
                    return Ok(None);
                };
                let len = u64::from_be_bytes(bytes.try_into().expect("slice has 8 bytes"));
                if len >> 63 != 0 {
                    return Err(FrameError::Protocol("payload length has its most significant bit set"));
                }
                (8, len)
            }
            short => (0, u64::from(short)),
        };
        if is_control && payload_len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(FrameError::Protocol("control frame payload is longer than 125 bytes"));
        }
        if !is_control {
            let message_len = (self.fragments.len() as u64).saturating_add(payload_len);
            if message_len > self.max_message as u64 {
                return Err(FrameError::MessageTooBig {
                    len: message_len,
                    max: self.max_message,
                });
            }
        }

        let mask_at = 2 + length_bytes;
        let Some(mask) = input.get(mask_at..mask_at + 4) else {
            return Ok(None);
        };
        Ok(Some(FrameHeader {
            fin,
            opcode,
            mask: mask.try_into().expect("slice has 4 bytes"),
            header_len: mask_at + 4,
            payload_len,
        }))
    }

    /// Appends an unmasked fragment to the unfinished message.
    fn append_fragment(&mut self, payload: &[u8], mask: [u8; 4]) {
        let needed = self.fragments.len() + payload.len();
        if needed > self.fragments.capacity() {
            // Doubling keeps many small fragments linear in copying, and the cap bounds the
            // buffer, which the header check has already applied to `needed`.
            let target = (self.fragments.capacity() * 2).clamp(needed, self.max_message.max(needed));
            self.fragments.reserve_exact(target - self.fragments.len());
        }
        let offset = self.fragments.len();
        self.fragments.extend_from_slice(payload);
        // The mask key applies from the start of each frame's payload.
        for (i, byte) in self.fragments[offset..].iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
    }
}

fn unmask(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]).collect()
}

/// Turns a complete data message's payload into a message, checking text for UTF-8.
fn finish_message(opcode: u8, payload: Vec<u8>) -> Result<Message, FrameError> {
    if opcode == OPCODE_TEXT {
        if std::str::from_utf8(&payload).is_err() {
            return Err(FrameError::InvalidUtf8);
        }
        return Ok(Message::Text(Bytes::from(payload)));
    }
    Ok(Message::Binary(Bytes::from(payload)))
}

fn decode_close(payload: &[u8]) -> Result<Message, FrameError> {
    match payload {
        [] => Ok(Message::Close(None, String::new())),
        [_] => Err(FrameError::Protocol(
            "close frame payload of 1 byte has no room for a close code",
        )),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !is_valid_close_code(code) {
                return Err(FrameError::InvalidCloseCode(code));
            }
            let Ok(reason) = std::str::from_utf8(reason) else {
                return Err(FrameError::InvalidUtf8);
            };
            Ok(Message::Close(Some(code), reason.to_string()))
        }
    }
}

/// Returns whether a peer may send `code` in a close frame: the codes RFC 6455 section 7.4.1 defines for
/// use on the wire, those later registered with IANA (1012 to 1014), and the ranges for libraries
/// and applications (3000 to 4999).
fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Writes a frame header for an unmasked server frame with FIN set.
fn write_header(out: &mut Vec<u8>, opcode: u8, payload_len: usize) {
    out.push(0x80 | opcode);
    if payload_len < 126 {
        out.push(payload_len as u8);
    } else if let Ok(len) = u16::try_from(payload_len) {
        out.push(126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(payload_len as u64).to_be_bytes());
    }
}

/// Writes one unmasked text frame with FIN set whose payload is the concatenation of `parts`.
pub fn write_text(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let len = parts.iter().map(|part| part.len()).sum();
    out.reserve(len + 10);
    write_header(out, OPCODE_TEXT, len);
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// Writes one unmasked binary frame with FIN set.
pub fn write_binary(out: &mut Vec<u8>, payload: &[u8]) {
    out.reserve(payload.len() + 10);
    write_header(out, OPCODE_BINARY, payload.len());
    out.extend_from_slice(payload);
}

/// Writes a close frame; the reason is cut at a character boundary to fit the 125-byte payload.
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut reason_len = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(reason_len) {
        reason_len -= 1;
    }
    write_header(out, OPCODE_CLOSE, 2 + reason_len);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..reason_len]);
}

/// Writes a pong frame echoing `payload`, cut to the 125 bytes a control frame may carry.
pub fn write_pong(out: &mut Vec<u8>, payload: &[u8]) {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    write_header(out, OPCODE_PONG, payload.len());
    out.extend_from_slice(payload);
}

/// Derives the `Sec-WebSocket-Accept` value from the client's `Sec-WebSocket-Key`.
pub fn accept_key(client_key: &[u8]) -> String {
    let digest = Sha1::new()
        .chain_update(client_key)
        .chain_update(ACCEPT_GUID)
        .finalize();
    BASE64.encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Builds a masked client frame.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 | opcode } else { opcode }];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= usize::from(u16::MAX) {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ MASK[i % 4]));
        out
    }

    /// Decodes every frame of `input` and returns the messages.
    fn decode_all(decoder: &mut Decoder, mut input: &[u8]) -> Result<Vec<Message>, FrameError> {
        let mut messages = Vec::new();
        while !input.is_empty() {
            let (consumed, message) = decoder.decode(input)?;
            assert!(consumed > 0, "a whole frame was given but nothing was consumed");
            input = &input[consumed..];
            messages.extend(message);
        }
        Ok(messages)
    }

    fn protocol_error(result: Result<(usize, Option<Message>), FrameError>) -> &'static str {
        match result {
            Err(FrameError::Protocol(reason)) => reason,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn decodes_masked_text_frame() {
        let mut decoder = Decoder::new(1024);
        let frame = client_frame(true, OPCODE_TEXT, b"42[\"ev\"]");
        let (consumed, message) = decoder.decode(&frame).unwrap();
        assert_eq!(consumed, frame.len());
        assert_eq!(message, Some(Message::Text(Bytes::from_static(b"42[\"ev\"]"))));
        assert!(decoder.is_idle());
    }

    #[test]
    fn decodes_binary_frame() {
        let mut decoder = Decoder::new(1024);
        let frame = client_frame(true, OPCODE_BINARY, &[0xde, 0xad, 0xbe, 0xef, 0x00]);
        let (consumed, message) = decoder.decode(&frame).unwrap();
        assert_eq!(consumed, frame.len());
        assert_eq!(
            message,
            Some(Message::Binary(Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef, 0x00])))
        );
    }

    #[test]
    fn consumes_one_frame_at_a_time() {
        let mut decoder = Decoder::new(1024);
        let first = client_frame(true, OPCODE_TEXT, b"2");
        let mut input = first.clone();
        input.extend(client_frame(true, OPCODE_TEXT, b"3"));
        let (consumed, message) = decoder.decode(&input).unwrap();
        assert_eq!(consumed, first.len());
        assert_eq!(message, Some(Message::Text(Bytes::from_static(b"2"))));
        let (consumed, message) = decoder.decode(&input[first.len()..]).unwrap();
        assert_eq!(consumed, input.len() - first.len());
        assert_eq!(message, Some(Message::Text(Bytes::from_static(b"3"))));
    }

    #[test]
    fn empty_input_needs_more() {
        let mut decoder = Decoder::new(1024);
        assert_eq!(decoder.decode(&[]).unwrap(), (0, None));
    }

    #[test]
    fn split_frame_needs_more_input() {
        let payloads: [&[u8]; 3] = [b"hello", &[b'x'; 300], &[b'y'; 70_000]];
        for payload in payloads {
            let frame = client_frame(true, OPCODE_TEXT, payload);
            let mut decoder = Decoder::new(100_000);
            for end in 0..frame.len() {
                assert_eq!(
                    decoder.decode(&frame[..end]).unwrap(),
                    (0, None),
                    "prefix of {end} bytes"
                );
                assert!(decoder.is_idle());
                assert_eq!(decoder.fragments.capacity(), 0, "prefix of {end} bytes allocated");
            }
            let (consumed, message) = decoder.decode(&frame).unwrap();
            assert_eq!(consumed, frame.len());
            assert_eq!(message, Some(Message::Text(Bytes::copy_from_slice(payload))));
        }
    }

    #[test]
    fn split_continuation_needs_more_input() {
        let first = client_frame(false, OPCODE_BINARY, b"abc");
        let last = client_frame(true, OPCODE_CONTINUATION, b"def");
        let mut decoder = Decoder::new(1024);
        assert_eq!(decoder.decode(&first).unwrap(), (first.len(), None));
        for end in 0..last.len() {
            assert_eq!(
                decoder.decode(&last[..end]).unwrap(),
                (0, None),
                "prefix of {end} bytes"
            );
            assert_eq!(decoder.fragments, b"abc");
        }
        let (consumed, message) = decoder.decode(&last).unwrap();
        assert_eq!(consumed, last.len());
        assert_eq!(message, Some(Message::Binary(Bytes::from_static(b"abcdef"))));
    }

    #[test]
    fn decodes_16_bit_and_64_bit_lengths() {
        for len in [125, 126, 65_535, 65_536, 200_000] {
            let payload = vec![b'a'; len];
            let frame = client_frame(true, OPCODE_BINARY, &payload);
            let expected_header = match len {
                0..=125 => 6,
                126..=65_535 => 8,
                _ => 14,
            };
            assert_eq!(frame.len(), expected_header + len);
            let mut decoder = Decoder::new(200_000);
            let (consumed, message) = decoder.decode(&frame).unwrap();
            assert_eq!(consumed, frame.len());
            assert_eq!(message, Some(Message::Binary(Bytes::from(payload))), "length {len}");
        }
    }

    #[test]
    fn reassembles_fragmented_text() {
        let mut decoder = Decoder::new(1024);
        let mut input = client_frame(false, OPCODE_TEXT, b"42[\"e");
        input.extend(client_frame(false, OPCODE_CONTINUATION, b"v\",1"));
        input.extend(client_frame(true, OPCODE_CONTINUATION, b"]"));
        let messages = decode_all(&mut decoder, &input).unwrap();
        assert_eq!(messages, vec![Message::Text(Bytes::from_static(b"42[\"ev\",1]"))]);
        assert!(decoder.is_idle());
        assert_eq!(decoder.fragments.capacity(), 0, "finished message left a buffer behind");
    }

    #[test]
    fn reports_unfinished_message_as_not_idle() {
        let mut decoder = Decoder::new(1024);
        decoder.decode(&client_frame(false, OPCODE_TEXT, b"4")).unwrap();
        assert!(!decoder.is_idle());
    }

    #[test]
    fn control_frames_between_fragments_are_delivered() {
        let mut decoder = Decoder::new(1024);
        let mut input = client_frame(false, OPCODE_TEXT, b"ab");
        input.extend(client_frame(true, OPCODE_PING, b"p"));
        input.extend(client_frame(false, OPCODE_CONTINUATION, b"cd"));
        input.extend(client_frame(true, OPCODE_PONG, b""));
        input.extend(client_frame(true, OPCODE_CONTINUATION, b"ef"));
        let messages = decode_all(&mut decoder, &input).unwrap();
        assert_eq!(
            messages,
            vec![
                Message::Ping(Bytes::from_static(b"p")),
                Message::Pong,
                Message::Text(Bytes::from_static(b"abcdef")),
            ]
        );
    }

    #[test]
    fn close_between_fragments_is_delivered() {
        let mut decoder = Decoder::new(1024);
        let mut input = client_frame(false, OPCODE_BINARY, b"ab");
        input.extend(client_frame(true, OPCODE_CLOSE, &1000u16.to_be_bytes()));
        let messages = decode_all(&mut decoder, &input).unwrap();
        assert_eq!(messages, vec![Message::Close(Some(1000), String::new())]);
    }

    #[test]
    fn accepts_message_exactly_at_the_cap() {
        let mut decoder = Decoder::new(1000);
        let frame = client_frame(true, OPCODE_TEXT, &[b'a'; 1000]);
        let (consumed, message) = decoder.decode(&frame).unwrap();
        assert_eq!(consumed, frame.len());
        assert!(matches!(message, Some(Message::Text(text)) if text.len() == 1000));
    }

    #[test]
    fn rejects_message_one_byte_over_cap() {
        let mut decoder = Decoder::new(1000);
        let frame = client_frame(true, OPCODE_TEXT, &[b'a'; 1001]);
        // The 4-byte header (with its 16-bit length) and mask key are enough to reject it.
        let error = decoder.decode(&frame[..8]).unwrap_err();
        assert!(
            matches!(error, FrameError::MessageTooBig { len: 1001, max: 1000 }),
            "{error:?}"
        );
        assert_eq!(error.close_code(), CLOSE_MESSAGE_TOO_BIG);
        assert_eq!(error.kind(), "payload_too_large");
    }

    #[test]
    fn rejects_64_bit_length_over_cap() {
        let mut decoder = Decoder::new(1 << 20);
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&(2u64 << 20).to_be_bytes());
        let error = decoder.decode(&header).unwrap_err();
        assert!(
            matches!(error, FrameError::MessageTooBig { len, .. } if len == 2 << 20),
            "{error:?}"
        );
    }

    #[test]
    fn fragmented_message_at_the_cap_is_accepted() {
        let mut decoder = Decoder::new(1000);
        let mut input = client_frame(false, OPCODE_TEXT, &[b'a'; 600]);
        input.extend(client_frame(true, OPCODE_CONTINUATION, &[b'b'; 400]));
        let messages = decode_all(&mut decoder, &input).unwrap();
        assert!(matches!(&messages[..], [Message::Text(text)] if text.len() == 1000));
    }

    #[test]
    fn rejects_fragments_over_cap() {
        let mut decoder = Decoder::new(1000);
        let first = client_frame(false, OPCODE_TEXT, &[b'a'; 600]);
        assert_eq!(decoder.decode(&first).unwrap(), (first.len(), None));
        let second = client_frame(true, OPCODE_CONTINUATION, &[b'b'; 401]);
        let error = decoder.decode(&second[..8]).unwrap_err();
        assert!(
            matches!(error, FrameError::MessageTooBig { len: 1001, max: 1000 }),
            "{error:?}"
        );
    }

    #[test]
    fn control_frames_do_not_count_toward_the_cap() {
        let mut decoder = Decoder::new(10);
        let mut input = client_frame(false, OPCODE_TEXT, &[b'a'; 10]);
        input.extend(client_frame(true, OPCODE_PING, &[b'p'; 125]));
        input.extend(client_frame(true, OPCODE_CONTINUATION, b""));
        let messages = decode_all(&mut decoder, &input).unwrap();
        assert_eq!(messages.len(), 2);
    }

    #[test]
    fn rejects_unmasked_frame() {
        let mut decoder = Decoder::new(1024);
        let frame = [0x81, 0x01, b'2'];
        assert_eq!(protocol_error(decoder.decode(&frame)), "client frame is not masked");
    }

    #[test]
    fn rejects_reserved_bits() {
        for rsv in [0x40, 0x20, 0x10] {
            let mut frame = client_frame(true, OPCODE_TEXT, b"2");
            frame[0] |= rsv;
            let mut decoder = Decoder::new(1024);
            let error = decoder.decode(&frame).unwrap_err();
            assert!(matches!(error, FrameError::Protocol(_)), "rsv {rsv:#x}: {error:?}");
            assert_eq!(error.close_code(), CLOSE_PROTOCOL_ERROR);
        }
    }

    #[test]
    fn rejects_reserved_opcodes() {
        for opcode in [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            let mut decoder = Decoder::new(1024);
            let frame = client_frame(true, opcode, b"");
            assert_eq!(
                protocol_error(decoder.decode(&frame)),
                "reserved opcode",
                "opcode {opcode:#x}"
            );
        }
    }

    #[test]
    fn rejects_long_control_frame() {
        for opcode in [OPCODE_PING, OPCODE_PONG, OPCODE_CLOSE] {
            let mut decoder = Decoder::new(1024);
            let frame = client_frame(true, opcode, &[0x03; 126]);
            assert_eq!(
                protocol_error(decoder.decode(&frame)),
                "control frame payload is longer than 125 bytes"
            );
        }
    }

    #[test]
    fn rejects_fragmented_control_frame() {
        for opcode in [OPCODE_PING, OPCODE_PONG, OPCODE_CLOSE] {
            let mut decoder = Decoder::new(1024);
            let frame = client_frame(false, opcode, b"");
            assert_eq!(protocol_error(decoder.decode(&frame)), "fragmented control frame");
        }
    }

    #[test]
    fn rejects_continuation_without_start() {
        let mut decoder = Decoder::new(1024);
        let frame = client_frame(true, OPCODE_CONTINUATION, b"x");
        assert_eq!(
            protocol_error(decoder.decode(&frame)),
            "continuation frame without a message to continue"
        );
    }

    #[test]
    fn rejects_new_data_frame_during_fragmented_message() {
        for opcode in [OPCODE_TEXT, OPCODE_BINARY] {
            let mut decoder = Decoder::new(1024);
            decoder.decode(&client_frame(false, OPCODE_TEXT, b"a")).unwrap();
            let frame = client_frame(true, opcode, b"b");
            assert_eq!(
                protocol_error(decoder.decode(&frame)),
                "new data frame while a fragmented message is unfinished"
            );
        }
    }

    #[test]
    fn rejects_length_with_top_bit_set() {
        let mut decoder = Decoder::new(usize::MAX);
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&((1u64 << 63) + 1).to_be_bytes());
        header.extend_from_slice(&MASK);
        assert_eq!(
            protocol_error(decoder.decode(&header)),
            "payload length has its most significant bit set"
        );
    }

    #[test]
    fn rejects_invalid_utf8_in_completed_text() {
        let mut decoder = Decoder::new(1024);
        let error = decoder
            .decode(&client_frame(true, OPCODE_TEXT, &[b'4', 0xff]))
            .unwrap_err();
        assert!(matches!(error, FrameError::InvalidUtf8));
        assert_eq!(error.close_code(), CLOSE_INVALID_PAYLOAD);
    }

    #[test]
    fn utf8_sequence_split_across_fragments_is_valid() {
        let euro = "€".as_bytes();
        let mut decoder = Decoder::new(1024);
        let mut input = client_frame(false, OPCODE_TEXT, &euro[..1]);
        input.extend(client_frame(true, OPCODE_CONTINUATION, &euro[1..]));
        let messages = decode_all(&mut decoder, &input).unwrap();
        assert_eq!(messages, vec![Message::Text(Bytes::from_static("€".as_bytes()))]);
    }

    #[test]
    fn rejects_invalid_utf8_in_fragmented_text_once_complete() {
        let mut decoder = Decoder::new(1024);
        let first = client_frame(false, OPCODE_TEXT, &[0xe2, 0x82]);
        assert_eq!(decoder.decode(&first).unwrap(), (first.len(), None));
        let last = client_frame(true, OPCODE_CONTINUATION, b"x");
        assert!(matches!(decoder.decode(&last), Err(FrameError::InvalidUtf8)));
    }

    #[test]
    fn decodes_close_frames() {
        let mut decoder = Decoder::new(1024);
        let (_, message) = decoder.decode(&client_frame(true, OPCODE_CLOSE, b"")).unwrap();
        assert_eq!(message, Some(Message::Close(None, String::new())));

        let mut payload = 1001u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"going away");
        let (_, message) = decoder.decode(&client_frame(true, OPCODE_CLOSE, &payload)).unwrap();
        assert_eq!(message, Some(Message::Close(Some(1001), "going away".into())));

        let (_, message) = decoder
            .decode(&client_frame(true, OPCODE_CLOSE, &4000u16.to_be_bytes()))
            .unwrap();
        assert_eq!(message, Some(Message::Close(Some(4000), String::new())));
    }

    #[test]
    fn rejects_close_frame_with_one_byte_payload() {
        let mut decoder = Decoder::new(1024);
        let error = decoder.decode(&client_frame(true, OPCODE_CLOSE, &[0x03])).unwrap_err();
        assert!(matches!(error, FrameError::Protocol(_)), "{error:?}");
    }

    #[test]
    fn rejects_invalid_close_codes() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            let mut decoder = Decoder::new(1024);
            let error = decoder
                .decode(&client_frame(true, OPCODE_CLOSE, &code.to_be_bytes()))
                .unwrap_err();
            assert!(
                matches!(error, FrameError::InvalidCloseCode(c) if c == code),
                "{error:?}"
            );
            assert_eq!(error.close_code(), CLOSE_PROTOCOL_ERROR);
        }
    }

    #[test]
    fn rejects_close_reason_with_invalid_utf8() {
        let mut decoder = Decoder::new(1024);
        let payload = [0x03, 0xe8, 0xff];
        assert!(matches!(
            decoder.decode(&client_frame(true, OPCODE_CLOSE, &payload)),
            Err(FrameError::InvalidUtf8)
        ));
    }

    #[test]
    fn ping_payload_is_unmasked() {
        let mut decoder = Decoder::new(1024);
        let (_, message) = decoder.decode(&client_frame(true, OPCODE_PING, b"hello")).unwrap();
        assert_eq!(message, Some(Message::Ping(Bytes::from_static(b"hello"))));
    }

    #[test]
    fn new_decoder_holds_no_heap_memory() {
        let decoder = Decoder::new(1 << 20);
        assert_eq!(decoder.fragments.capacity(), 0);
        assert!(decoder.is_idle());
    }

    /// Decodes an unmasked server frame: FIN, opcode and payload.
    fn server_frame(frame: &[u8]) -> (bool, u8, &[u8]) {
        assert_eq!(frame[1] & 0x80, 0, "server frame is masked");
        let (header_len, len) = match frame[1] & 0x7f {
            126 => (4, usize::from(u16::from_be_bytes([frame[2], frame[3]]))),
            127 => (10, u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize),
            short => (2, usize::from(short)),
        };
        assert_eq!(frame.len(), header_len + len, "frame length does not match its header");
        (frame[0] & 0x80 != 0, frame[0] & 0x0f, &frame[header_len..])
    }

    #[test]
    fn writes_text_from_parts() {
        let mut out = Vec::new();
        write_text(&mut out, &[b"4", b"2[\"ev\"]"]);
        assert_eq!(server_frame(&out), (true, OPCODE_TEXT, &b"42[\"ev\"]"[..]));
    }

    #[test]
    fn writes_16_bit_and_64_bit_lengths() {
        for len in [0, 125, 126, 65_535, 65_536] {
            let payload = vec![7u8; len];
            let mut out = Vec::new();
            write_binary(&mut out, &payload);
            assert_eq!(server_frame(&out), (true, OPCODE_BINARY, &payload[..]), "length {len}");

            let mut out = Vec::new();
            write_text(&mut out, &[&payload[..len / 2], &payload[len / 2..]]);
            assert_eq!(server_frame(&out), (true, OPCODE_TEXT, &payload[..]), "length {len}");
        }
    }

    #[test]
    fn writes_close_with_reason_cut_at_char_boundary() {
        let mut out = Vec::new();
        write_close(&mut out, CLOSE_MESSAGE_TOO_BIG, "payload too large");
        let (fin, opcode, payload) = server_frame(&out);
        assert!(fin);
        assert_eq!(opcode, OPCODE_CLOSE);
        assert_eq!(&payload[..2], &1009u16.to_be_bytes());
        assert_eq!(&payload[2..], b"payload too large");

        // 122 ASCII bytes then a 2-byte character: the character does not fit in 123 bytes.
        let reason = format!("{}é", "a".repeat(122));
        let mut out = Vec::new();
        write_close(&mut out, CLOSE_NORMAL, &reason);
        let (_, _, payload) = server_frame(&out);
        assert_eq!(payload.len(), 124);
        assert_eq!(&payload[2..], "a".repeat(122).as_bytes());
    }

    #[test]
    fn writes_pong_echoing_payload() {
        let mut out = Vec::new();
        write_pong(&mut out, b"hello");
        assert_eq!(server_frame(&out), (true, OPCODE_PONG, &b"hello"[..]));
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        // The example handshake of RFC 6455 section 1.3.
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
