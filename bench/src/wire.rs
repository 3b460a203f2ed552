//! A minimal Socket.IO v5 (engine.io v4) client over websocket, written for the load generator.
//!
//! It does only what the benchmarks need, with no allocation per received message: the HTTP upgrade,
//! text frames with a zero mask key (RFC 6455 requires a mask, and any 32-bit key is a valid one), the
//! engine.io pong, the namespace connect, events with acks, and counting or timing received
//! events. Received frames are parsed in place in the connection's read buffer.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Read buffer size per connection. Broadcast frames in the benchmarks are well under 1 KiB.
const READ_BUFFER_BYTES: usize = 4096;

/// Frames larger than this are a protocol error in the benchmarks, so the connection fails.
const MAX_FRAME_BYTES: usize = 1 << 20;

/// One decoded websocket frame, borrowed from the read buffer.
pub enum Frame<'a> {
    Text(&'a [u8]),
    Binary,
    Close,
    Ping(&'a [u8]),
    Pong,
}

/// One upgraded websocket connection with its read buffer.
pub struct WsConn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl WsConn {
    /// Connects from `source` (port chosen by the kernel) to `target` and upgrades to websocket on
    /// the engine.io path.
    pub async fn connect(source: IpAddr, target: SocketAddr) -> anyhow::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket
            .bind(SocketAddr::new(source, 0))
            .with_context(|| format!("binding source address {source}"))?;
        let stream = socket
            .connect(target)
            .await
            .with_context(|| format!("connecting to {target}"))?;
        stream.set_nodelay(true)?;

        let mut conn = WsConn {
            stream,
            buf: vec![0; READ_BUFFER_BYTES],
            start: 0,
            end: 0,
        };
        let request = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n\
             Host: {target}\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: c29ja2V0ZmxlZXRiZW5jaA==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        conn.stream.write_all(request.as_bytes()).await?;
        conn.read_upgrade_response().await?;
        Ok(conn)
    }

    async fn read_upgrade_response(&mut self) -> anyhow::Result<()> {
        loop {
            if let Some(header_end) = find(&self.buf[..self.end], b"\r\n\r\n") {
                let head = &self.buf[..header_end];
                if !head.starts_with(b"HTTP/1.1 101") {
                    let line_end = find(head, b"\r\n").unwrap_or(head.len());
                    bail!("upgrade rejected: {}", String::from_utf8_lossy(&head[..line_end]));
                }
                self.start = header_end + 4;
                return Ok(());
            }
            if self.end == self.buf.len() {
                bail!("upgrade response headers exceed {} bytes", self.buf.len());
            }
            let n = self.stream.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                bail!("connection closed during the upgrade");
            }
            self.end += n;
        }
    }

    /// Reads more bytes from the socket, returning false at end of stream.
    pub async fn fill(&mut self) -> anyhow::Result<bool> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            // Move the partial frame to the front; grow only when one frame needs more room.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                if self.buf.len() >= MAX_FRAME_BYTES {
                    bail!("frame larger than {MAX_FRAME_BYTES} bytes");
                }
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n > 0)
    }

    /// Takes the next complete frame from the buffer, if one is there.
    pub fn next_frame(&mut self) -> anyhow::Result<Option<Frame<'_>>> {
        let available = &self.buf[self.start..self.end];
        if available.len() < 2 {
            return Ok(None);
        }
        let opcode = available[0] & 0x0f;
        if available[1] & 0x80 != 0 {
            bail!("server sent a masked frame");
        }
        let (header_len, payload_len) = match available[1] & 0x7f {
            126 if available.len() >= 4 => (4, u16::from_be_bytes([available[2], available[3]]) as usize),
            127 if available.len() >= 10 => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&available[2..10]);
                (10, u64::from_be_bytes(len) as usize)
            }
            126 | 127 => return Ok(None),
            len => (2, len as usize),
        };
        if payload_len > MAX_FRAME_BYTES {
            bail!("frame of {payload_len} bytes is larger than {MAX_FRAME_BYTES}");
        }
        if available.len() < header_len + payload_len {
            return Ok(None);
        }

        let payload_start = self.start + header_len;
        self.start = payload_start + payload_len;
        let payload = &self.buf[payload_start..payload_start + payload_len];
        let frame = match opcode {
            0x1 => Frame::Text(payload),
            0x2 | 0x0 => Frame::Binary,
            0x8 => Frame::Close,
            0x9 => Frame::Ping(payload),
            0xA => Frame::Pong,
            other => bail!("unknown websocket opcode {other:#x}"),
        };
        Ok(Some(frame))
    }

    /// Sends the frames already encoded in `bytes` (see [`encode_text_frame`]).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    pub async fn send_text(&mut self, text: &[u8]) -> anyhow::Result<()> {
        let mut frame = Vec::with_capacity(text.len() + 14);
        encode_text_frame(&mut frame, text);
        self.send_raw(&frame).await
    }

    /// Sends a websocket pong carrying the payload of the ping it replies to.
    pub async fn send_pong(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        encode_frame(&mut frame, 0xA, payload);
        self.send_raw(&frame).await
    }

    /// Waits for the engine.io open packet, as socket.io clients do, then sends the Socket.IO connect
    /// for the main namespace and waits for the server's CONNECT reply.
    pub async fn connect_namespace(&mut self) -> anyhow::Result<()> {
        loop {
            let text = self.expect_text().await?;
            if text.starts_with(b"0") {
                break;
            }
        }
        self.send_text(b"40").await?;
        loop {
            match self.expect_text().await? {
                text if text.starts_with(b"40") => return Ok(()),
                text if text.starts_with(b"44") => {
                    bail!("namespace connect rejected: {}", String::from_utf8_lossy(&text))
                }
                // Pings may come before the namespace answer.
                text if text == b"2" => self.send_text(b"3").await?,
                _ => {}
            }
        }
    }

    /// Emits `event` with a JSON payload and ack id, then waits for that ack; returns its JSON.
    pub async fn emit_with_ack(&mut self, event: &str, payload: &str, ack_id: u64) -> anyhow::Result<String> {
        let packet = format!("42{ack_id}[\"{event}\",{payload}]");
        self.send_text(packet.as_bytes()).await?;
        let prefix = format!("43{ack_id}");
        loop {
            let text = self.expect_text().await?;
            if text.starts_with(prefix.as_bytes()) {
                return Ok(String::from_utf8_lossy(&text[prefix.len()..]).into_owned());
            }
            if text == b"2" {
                self.send_text(b"3").await?;
            }
        }
    }

    /// Waits for the next text frame and copies it out; used only during setup.
    async fn expect_text(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            let mut pong = None;
            match self.next_frame()? {
                Some(Frame::Text(text)) => return Ok(text.to_vec()),
                Some(Frame::Close) => bail!("server closed the websocket"),
                Some(Frame::Ping(payload)) => pong = Some(payload.to_vec()),
                Some(Frame::Binary | Frame::Pong) => continue,
                None => {
                    if !self.fill().await? {
                        bail!("connection closed by the server");
                    }
                }
            }
            if let Some(payload) = pong {
                self.send_pong(&payload).await?;
            }
        }
    }
}

/// Appends one masked client text frame carrying `text` to `out`.
pub fn encode_text_frame(out: &mut Vec<u8>, text: &[u8]) {
    encode_frame(out, 0x1, text);
}

fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    // A zero mask key leaves the payload as it is.
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Reads the number after `"t":` in an event payload, the send time in nanoseconds.
pub fn send_time_nanos(text: &[u8]) -> Option<u64> {
    let at = find(text, b"\"t\":")? + 4;
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut value: u64 = 0;
    let mut any = false;
    for digit in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

/// Reads the ack id of a `43<id>[...]` packet.
pub fn ack_id(text: &[u8]) -> Option<u64> {
    let rest = text.strip_prefix(b"43")?;
    let mut value: u64 = 0;
    let mut any = false;
    for digit in rest.iter().take_while(|b| b.is_ascii_digit()) {
        value = value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

/// Returns CLOCK_MONOTONIC in nanoseconds. Every process on the machine reads the same clock, so a
/// sender and a receiver in different load generator processes can compare timestamps.
pub fn monotonic_nanos() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_time_is_read_from_event_payload() {
        let frame = br#"42["tick",{"t":123456789,"s":4}]"#;
        assert_eq!(send_time_nanos(frame), Some(123456789));
    }

    #[test]
    fn send_time_missing_gives_none() {
        assert_eq!(send_time_nanos(br#"42["tick",{"s":4}]"#), None);
    }

    #[test]
    fn ack_id_is_parsed() {
        assert_eq!(ack_id(br#"4317[{"ok":true}]"#), Some(17));
        assert_eq!(ack_id(br#"42["x"]"#), None);
    }

    #[test]
    fn short_frame_uses_one_length_byte() {
        let mut out = Vec::new();
        encode_text_frame(&mut out, b"40");
        assert_eq!(out, vec![0x81, 0x82, 0, 0, 0, 0, b'4', b'0']);
    }

    #[test]
    fn medium_frame_uses_two_length_bytes() {
        let mut out = Vec::new();
        let payload = vec![b'a'; 300];
        encode_text_frame(&mut out, &payload);
        assert_eq!(&out[..4], &[0x81, 0x80 | 126, 1, 44]);
        assert_eq!(out.len(), 4 + 4 + 300);
    }
}
