//! Inspection of client websocket frames as they arrive, so an oversized message is rejected at
//! its frame header, before its payload is read or buffered, and a packet socketioxide would
//! misread is rejected before it reaches socketioxide.

/// Largest websocket frame header: 2 bytes, 8 bytes of extended length and a 4-byte mask key.
const MAX_FRAME_HEADER_LEN: usize = 14;

/// Bytes of a text message's payload held back with its frame header and checked by
/// [`check_packet_prefix`]: room for `45`, a 20-digit attachment count, a namespace of 64 bytes
/// with its comma and a 20-digit ack id.
const PACKET_PREFIX_LEN: usize = 128;

/// Largest run of bytes the inspector holds back: a frame header and a packet prefix.
pub const MAX_HEADER_LEN: usize = MAX_FRAME_HEADER_LEN + PACKET_PREFIX_LEN;

const OPCODE_CONTINUATION: u8 = 0x0;
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;

/// Close codes the gateway sends (RFC 6455 section 7.4.1).
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// Outcome of [`FrameInspector::inspect`] on newly read bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Inspection {
    /// Every byte may be passed on, except a trailing partial frame header that starts at
    /// `partial_header_at` (equal to the slice length when there is none).
    Pass { partial_header_at: usize },
    /// The frame header starting at `header_at` makes the message larger than the cap; bytes
    /// before it may be passed on, the rest must not.
    TooLarge { header_at: usize, message_len: u64 },
    /// The text frame starting at `header_at` contains a socket.io packet that must not reach
    /// the parser, for the stated reason. Bytes before it may be passed on, the rest must not.
    InvalidPacket { header_at: usize, reason: &'static str },
}

/// Tracks frame boundaries and the running size of the current message in the client's stream.
#[derive(Debug)]
pub struct FrameInspector {
    max_message_len: u64,
    header: [u8; MAX_HEADER_LEN],
    header_len: usize,
    payload_remaining: u64,
    message_len: u64,
}

impl FrameInspector {
    pub fn new(max_message_len: u64) -> FrameInspector {
        FrameInspector {
            max_message_len,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            payload_remaining: 0,
            message_len: 0,
        }
    }

    /// Whether the stream is between frames, where a synthetic frame can be inserted.
    pub fn at_frame_boundary(&self) -> bool {
        self.header_len == 0 && self.payload_remaining == 0
    }

    /// Forgets a partial header; the caller hands those bytes back at the start of the next
    /// call, so they are parsed again with what follows.
    pub fn forget_partial_header(&mut self) {
        self.header_len = 0;
    }

    /// Advances over `bytes`, the next bytes of the client's stream.
    pub fn inspect(&mut self, bytes: &[u8]) -> Inspection {
        let mut index = 0;
        let mut header_at = 0;
        while index < bytes.len() {
            if self.payload_remaining > 0 {
                let available = (bytes.len() - index) as u64;
                let skipped = available.min(self.payload_remaining);
                self.payload_remaining -= skipped;
                index += skipped as usize;
                continue;
            }

            if self.header_len == 0 {
                header_at = index;
            }
            self.header[self.header_len] = bytes[index];
            self.header_len += 1;
            index += 1;

            let Some(frame_header_len) = header_len(&self.header[..self.header_len]) else {
                continue;
            };
            if self.header_len < frame_header_len {
                continue;
            }
            let opcode = self.header[0] & 0x0f;
            let payload_len = payload_len(&self.header[..frame_header_len]);
            // The start of a text message's payload is held back with the header, so the packet
            // can be checked before any of it is passed on.
            let prefix_len = match opcode {
                OPCODE_TEXT => payload_len.min(PACKET_PREFIX_LEN as u64) as usize,
                _ => 0,
            };
            if self.header_len < frame_header_len + prefix_len {
                continue;
            }
            let header = &self.header[..self.header_len];
            let packet_check = (prefix_len > 0).then(|| check_packet_prefix(&unmask(header, frame_header_len)));
            self.header_len = 0;
            self.payload_remaining = payload_len - prefix_len as u64;

            match opcode {
                OPCODE_TEXT | OPCODE_BINARY => self.message_len = payload_len,
                OPCODE_CONTINUATION => self.message_len = self.message_len.saturating_add(payload_len),
                // Control frames are capped at 125 bytes by the protocol and do not belong to the
                // message being assembled.
                _ => continue,
            }
            if self.message_len > self.max_message_len {
                return Inspection::TooLarge {
                    header_at,
                    message_len: self.message_len,
                };
            }
            if let Some(Err(reason)) = packet_check {
                return Inspection::InvalidPacket { header_at, reason };
            }
        }

        if self.header_len > 0 {
            Inspection::Pass {
                partial_header_at: header_at,
            }
        } else {
            Inspection::Pass {
                partial_header_at: bytes.len(),
            }
        }
    }
}

/// Length of the header that starts with `bytes`, once its first two bytes are known.
fn header_len(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 2 {
        return None;
    }
    let masked = bytes[1] & 0x80 != 0;
    let extended = match bytes[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    Some(2 + extended + if masked { 4 } else { 0 })
}

/// Returns the payload bytes that follow the frame header in `bytes`, unmasked.
fn unmask(bytes: &[u8], frame_header_len: usize) -> Vec<u8> {
    let masked = bytes[1] & 0x80 != 0;
    let payload = &bytes[frame_header_len..];
    if !masked {
        return payload.to_vec();
    }
    let key = &bytes[frame_header_len - 4..frame_header_len];
    payload.iter().enumerate().map(|(i, byte)| byte ^ key[i % 4]).collect()
}

/// Checks the start of an Engine.IO message that carries a socket.io packet.
///
/// socketioxide 0.18.9's parser reads an ack id that does not fit in an i64 as no ack id at all:
/// the event runs, its ack is never sent and nothing is counted. Such an id is rejected here.
/// `prefix` is the start of the message, up to [`PACKET_PREFIX_LEN`] bytes.
///
/// NOTE: only websocket messages pass through here; long-polling bodies are not checked.
pub fn check_packet_prefix(prefix: &[u8]) -> Result<(), &'static str> {
    // `4` is an Engine.IO message; events (2, 5) and acks (3, 6) are the socket.io packets with ids.
    let [b'4', packet_type, rest @ ..] = prefix else {
        return Ok(());
    };
    let mut rest = rest;
    match packet_type {
        b'2' | b'3' => {}
        b'5' | b'6' => {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            match rest.get(digits) {
                Some(b'-') => rest = &rest[digits + 1..],
                _ => return Ok(()),
            }
        }
        _ => return Ok(()),
    }
    if rest.first() == Some(&b'/') {
        match rest.iter().position(|b| *b == b',') {
            Some(comma) => rest = &rest[comma + 1..],
            None => return Ok(()),
        }
    }

    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Ok(());
    }
    let fits = std::str::from_utf8(&rest[..digits]).is_ok_and(|id| id.parse::<i64>().is_ok());
    // A run of digits cut off by the prefix's end is at least this long, so only a run longer than
    // any i64 is known to be invalid there.
    let cut_off = digits == rest.len();
    if (!cut_off && !fits) || (cut_off && digits > 19) {
        return Err("ack id does not fit in 64 bits");
    }
    Ok(())
}

fn payload_len(header: &[u8]) -> u64 {
    match header[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => u64::from_be_bytes(header[2..10].try_into().expect("header has 8 length bytes")),
        short => u64::from(short),
    }
}

/// Builds a masked client close frame with `code` and `reason`, as if the client had sent it.
/// The server's websocket layer answers a peer's close frame by echoing its code, so the client
/// receives `code` and `reason` in the server's close frame.
pub fn client_close_frame(code: u16, reason: &str) -> Vec<u8> {
    // A control frame's payload is at most 125 bytes: 2 for the code, the rest for the reason.
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let mut frame = Vec::with_capacity(8 + reason.len());
    frame.push(0x88);
    frame.push(0x80 | (2 + reason.len()) as u8);
    // A zero mask key leaves the payload unchanged.
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: u8, payload_len: usize) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if payload_len < 126 {
            out.push(0x80 | payload_len as u8);
        } else if payload_len <= u16::MAX as usize {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload_len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(payload_len as u64).to_be_bytes());
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        out.extend(std::iter::repeat_n(b'x', payload_len));
        out
    }

    #[test]
    fn passes_message_of_exactly_the_cap() {
        let mut inspector = FrameInspector::new(1000);
        let bytes = frame(true, OPCODE_TEXT, 1000);
        assert_eq!(
            inspector.inspect(&bytes),
            Inspection::Pass {
                partial_header_at: bytes.len()
            }
        );
        assert!(inspector.at_frame_boundary());
    }

    #[test]
    fn rejects_message_over_the_cap_at_its_header() {
        let mut inspector = FrameInspector::new(1000);
        let mut bytes = frame(true, OPCODE_TEXT, 10);
        let second_at = bytes.len();
        bytes.extend(frame(true, OPCODE_BINARY, 1024));
        assert_eq!(
            inspector.inspect(&bytes),
            Inspection::TooLarge {
                header_at: second_at,
                message_len: 1024
            }
        );
    }

    #[test]
    fn rejects_continuation_frames_once_their_sum_exceeds_the_cap() {
        let mut inspector = FrameInspector::new(100_000);
        let first = frame(false, OPCODE_TEXT, 65_536);
        assert_eq!(
            inspector.inspect(&first),
            Inspection::Pass {
                partial_header_at: first.len()
            }
        );
        let second = frame(true, OPCODE_CONTINUATION, 65_536);
        assert_eq!(
            inspector.inspect(&second),
            Inspection::TooLarge {
                header_at: 0,
                message_len: 131_072
            }
        );
    }

    #[test]
    fn control_frames_do_not_count_toward_the_message() {
        let mut inspector = FrameInspector::new(100);
        let mut bytes = frame(false, OPCODE_TEXT, 60);
        bytes.extend(frame(true, 0x9, 100));
        bytes.extend(frame(true, OPCODE_CONTINUATION, 40));
        assert_eq!(
            inspector.inspect(&bytes),
            Inspection::Pass {
                partial_header_at: bytes.len()
            }
        );
    }

    #[test]
    fn reports_a_trailing_partial_header() {
        let mut inspector = FrameInspector::new(1000);
        let mut bytes = frame(true, OPCODE_TEXT, 5);
        let header_at = bytes.len();
        bytes.extend_from_slice(&[0x81, 0x80 | 126, 0x01]);
        assert_eq!(
            inspector.inspect(&bytes),
            Inspection::Pass {
                partial_header_at: header_at
            }
        );

        // The caller hands the partial header back with the bytes that follow.
        inspector.forget_partial_header();
        let rest = frame(true, OPCODE_TEXT, 300);
        assert_eq!(
            inspector.inspect(&rest),
            Inspection::Pass {
                partial_header_at: rest.len()
            }
        );
    }

    #[test]
    fn payload_split_over_reads_is_skipped() {
        let mut inspector = FrameInspector::new(1000);
        let bytes = frame(true, OPCODE_BINARY, 900);
        let (head, tail) = bytes.split_at(300);
        assert_eq!(
            inspector.inspect(head),
            Inspection::Pass {
                partial_header_at: head.len()
            }
        );
        assert!(!inspector.at_frame_boundary());
        assert_eq!(
            inspector.inspect(tail),
            Inspection::Pass {
                partial_header_at: tail.len()
            }
        );
        assert!(inspector.at_frame_boundary());
    }

    fn text_frame(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | OPCODE_TEXT, 0x80 | payload.len() as u8, 1, 2, 3, 4];
        out.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ [1, 2, 3, 4][i % 4]));
        out
    }

    #[test]
    fn rejects_oversized_ack_id_at_header() {
        let mut inspector = FrameInspector::new(1000);
        let mut bytes = text_frame(br#"421["join",{"room":"a"}]"#);
        let second_at = bytes.len();
        bytes.extend(text_frame(br#"4218446744073709551615["join",{"room":"x"}]"#));
        assert_eq!(
            inspector.inspect(&bytes),
            Inspection::InvalidPacket {
                header_at: second_at,
                reason: "ack id does not fit in 64 bits"
            }
        );
    }

    #[test]
    fn packet_prefix_checks_ack_ids() {
        let valid: &[&[u8]] = &[
            br#"42["e"]"#,
            br#"429223372036854775807["e"]"#,
            br#"451-/chat,7["e",{"_placeholder":true,"num":0}]"#,
            br#"43/chat,12[1]"#,
            b"2",
            b"40",
        ];
        for packet in valid {
            assert_eq!(
                check_packet_prefix(packet),
                Ok(()),
                "{}",
                String::from_utf8_lossy(packet)
            );
        }
        let invalid: &[&[u8]] = &[
            br#"429223372036854775808["e"]"#,
            br#"4218446744073709551615["join",{"room":"x"}]"#,
            br#"451-/chat,99999999999999999999["e"]"#,
            br#"4399999999999999999999{}"#,
            b"42999999999999999999999",
        ];
        for packet in invalid {
            assert!(
                check_packet_prefix(packet).is_err(),
                "{}",
                String::from_utf8_lossy(packet)
            );
        }
    }

    #[test]
    fn text_payload_split_inside_the_prefix_is_held_back() {
        let mut inspector = FrameInspector::new(1000);
        let bytes = text_frame(br#"4299999999999999999999["e"]"#);
        let (head, tail) = bytes.split_at(10);
        assert_eq!(inspector.inspect(head), Inspection::Pass { partial_header_at: 0 });
        inspector.forget_partial_header();
        let mut whole = head.to_vec();
        whole.extend_from_slice(tail);
        assert!(matches!(
            inspector.inspect(&whole),
            Inspection::InvalidPacket { header_at: 0, .. }
        ));
    }

    #[test]
    fn close_frame_carries_code_and_reason() {
        let frame = client_close_frame(CLOSE_MESSAGE_TOO_BIG, "payload too large");
        assert_eq!(frame[0], 0x88);
        assert_eq!(frame[1], 0x80 | 19);
        assert_eq!(&frame[6..8], &1009u16.to_be_bytes());
        assert_eq!(&frame[8..], b"payload too large");
    }
}
