//! Redis channel names of the adapter.
//!
//! Every name is `PREFIX:KIND:NAMESPACE[:PART]`. The namespace and the last part are
//! percent-escaped: any byte outside `[A-Za-z0-9._~-]` becomes `%XX`. So `:`, `#`, `{` and `}` never
//! appear inside a part, which makes two properties hold:
//! - the mapping from (kind, namespace, part) to a name is injective, so no namespace or room can
//!   produce another channel's name (the namespace `/a#<pod id>` escapes to `%2Fa%23<pod id>`);
//! - a name contains no `{`, so Redis Cluster hashes the whole name and room channels spread
//!   over all 16384 slots instead of sharing the namespace's slot.

use socketioxide_core::Uid;

/// Kind of traffic a channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// Broadcasts and requests for one room; the pods with local members subscribe.
    Room,
    /// Requests for every pod serving the namespace; every pod subscribes.
    Namespace,
    /// Requests for one pod, e.g. an emit to a socket whose pod is known.
    Pod,
    /// Responses to the requests one pod sent.
    Response,
}

impl ChannelKind {
    fn tag(self) -> &'static str {
        match self {
            Self::Room => "room",
            Self::Namespace => "ns",
            Self::Pod => "pod",
            Self::Response => "res",
        }
    }

    fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "room" => Some(Self::Room),
            "ns" => Some(Self::Namespace),
            "pod" => Some(Self::Pod),
            "res" => Some(Self::Response),
            _ => None,
        }
    }

    /// Label value used in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Room => "room",
            Self::Namespace => "namespace",
            Self::Pod => "pod",
            Self::Response => "response",
        }
    }
}

/// A channel name split into its parts; the namespace stays escaped because it is only a map key.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedChannel<'a> {
    /// Kind of traffic.
    pub kind: ChannelKind,
    /// The escaped namespace path.
    pub namespace: &'a str,
}

/// Builder and parser of the channel names of one prefix.
#[derive(Debug, Clone)]
pub struct ChannelNames {
    prefix: String,
}

impl ChannelNames {
    /// Creates the names for `prefix`, which must be non-empty `[a-z0-9-]`, so it needs no escaping.
    pub fn new(prefix: &str) -> Option<Self> {
        let valid = !prefix.is_empty()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        valid.then(|| Self {
            prefix: prefix.to_owned(),
        })
    }

    /// Returns the channel of `room` in the namespace `namespace` (escaped with [`escape`]).
    pub fn room(&self, namespace: &str, room: &str) -> String {
        format!(
            "{}:{}:{namespace}:{}",
            self.prefix,
            ChannelKind::Room.tag(),
            escape(room)
        )
    }

    /// Returns the channel every pod of the namespace subscribes to.
    pub fn namespace(&self, namespace: &str) -> String {
        format!("{}:{}:{namespace}", self.prefix, ChannelKind::Namespace.tag())
    }

    /// Returns the request channel of one pod.
    pub fn pod(&self, namespace: &str, uid: Uid) -> String {
        format!("{}:{}:{namespace}:{uid}", self.prefix, ChannelKind::Pod.tag())
    }

    /// Returns the response channel of one pod.
    pub fn response(&self, namespace: &str, uid: Uid) -> String {
        format!("{}:{}:{namespace}:{uid}", self.prefix, ChannelKind::Response.tag())
    }

    /// Splits a channel name of this prefix; returns `None` for any other name.
    pub fn parse<'a>(&self, channel: &'a str) -> Option<ParsedChannel<'a>> {
        let rest = channel.strip_prefix(self.prefix.as_str())?.strip_prefix(':')?;
        let mut parts = rest.split(':');
        let kind = ChannelKind::from_tag(parts.next()?)?;
        let namespace = parts.next()?;
        let has_part = parts.next().is_some();
        if parts.next().is_some() || has_part == (kind == ChannelKind::Namespace) {
            return None;
        }
        Some(ParsedChannel { kind, namespace })
    }
}

/// Percent-escapes every byte outside `[A-Za-z0-9._~-]`.
pub fn escape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for byte in part.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'~' | b'-') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Returns the Redis Cluster hash slot of `key` (CRC16-XMODEM modulo 16384, honouring `{hash tags}`).
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16_xmodem(hashed) % 16384
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn names() -> ChannelNames {
        ChannelNames::new("socketfleet").unwrap()
    }

    #[test]
    fn escape_keeps_unreserved_bytes() {
        assert_eq!(escape("room-1_a.b~c"), "room-1_a.b~c");
    }

    #[test]
    fn escape_encodes_separators_and_hash_tags() {
        assert_eq!(escape("/a#b"), "%2Fa%23b");
        assert_eq!(escape("x:{y}"), "x%3A%7By%7D");
        assert_eq!(escape("café"), "caf%C3%A9");
    }

    #[test]
    fn namespace_cannot_name_pod_channel() {
        let names = names();
        let uid = Uid::new();
        let victim = names.pod(&escape("/a"), uid);
        let attacker_ns = format!("/a:{uid}");
        assert_ne!(names.namespace(&escape(&attacker_ns)), victim);
        assert_ne!(names.room(&escape("/a"), &uid.to_string()), victim);
        let hash_ns = format!("/a#{uid}");
        assert_ne!(names.namespace(&escape(&hash_ns)), victim);
    }

    #[test]
    fn distinct_inputs_give_distinct_channels() {
        let names = names();
        let inputs = [("/", "a:b"), ("/:a", "b"), ("/", "a%3Ab"), ("/a", "b"), ("/a:b", "")];
        let channels: HashSet<String> = inputs.iter().map(|(ns, room)| names.room(&escape(ns), room)).collect();
        assert_eq!(channels.len(), inputs.len());
    }

    #[test]
    fn parse_round_trips_every_kind() {
        let names = names();
        let ns = escape("/chat");
        let uid = Uid::new();
        let cases = [
            (names.room(&ns, "lobby"), ChannelKind::Room),
            (names.namespace(&ns), ChannelKind::Namespace),
            (names.pod(&ns, uid), ChannelKind::Pod),
            (names.response(&ns, uid), ChannelKind::Response),
        ];
        for (channel, kind) in cases {
            let parsed = names.parse(&channel).unwrap();
            assert_eq!(parsed.kind, kind, "{channel}");
            assert_eq!(parsed.namespace, ns, "{channel}");
        }
    }

    #[test]
    fn parse_rejects_foreign_names() {
        let names = names();
        assert_eq!(names.parse("other:room:%2F:a"), None);
        assert_eq!(names.parse("socketfleet:room:%2F"), None);
        assert_eq!(names.parse("socketfleet:ns:%2F:extra"), None);
        assert_eq!(names.parse("socketfleet:bogus:%2F:a"), None);
    }

    #[test]
    fn prefix_must_need_no_escaping() {
        assert!(ChannelNames::new("socketfleet-2").is_some());
        assert!(ChannelNames::new("").is_none());
        assert!(ChannelNames::new("a:b").is_none());
        assert!(ChannelNames::new("{a}").is_none());
    }

    #[test]
    fn key_slot_matches_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{bar}shard"), 5061);
        assert_eq!(key_slot(b"x{}y"), key_slot(b"x{}y"));
    }

    #[test]
    fn room_channels_spread_over_slots() {
        let names = names();
        let ns = escape("/");
        let slots: HashSet<u16> = (0..1000)
            .map(|i| key_slot(names.room(&ns, &format!("room-{i}")).as_bytes()))
            .collect();
        // 1000 keys over 16384 slots: almost all distinct, and spread over the whole range.
        assert!(slots.len() > 950, "only {} distinct slots", slots.len());
        assert!(slots.iter().any(|&s| s < 5461));
        assert!(slots.iter().any(|&s| s > 10922));
    }
}
