//! The encoding of the handshake-era session table the filter keeps in Envoy's shared
//! data, so that session duration and tool calls per session can be measured across
//! worker threads (requests of one session may arrive on different connections).
//!
//! Shared data has no delete and no listing, so the table is a fixed ring of slots
//! keyed by a hash of the session id: memory is bounded whatever clients do, and a
//! session that never ends (no DELETE) is simply overwritten by a later one.

/// Slots per server id.
pub const SLOTS: u64 = 4096;

/// The shared-data key of the slot a session lives in.
pub fn slot_key(server_id: &str, session_id: &str) -> String {
    // FNV-1a: deterministic across VMs and workers (std's hasher is not guaranteed
    // to be), and good enough to spread ids that servers generate at random.
    let hash = session_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("mcp_session/{server_id}/{}", hash % SLOTS)
}

/// One live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    pub id: String,
    pub start_nanos: u64,
    pub tool_calls: u64,
}

impl SessionEntry {
    pub fn encode(&self) -> Vec<u8> {
        format!("{} {} {}", self.start_nanos, self.tool_calls, self.id).into_bytes()
    }

    /// `None` for an empty (freed) slot or bytes that are not an entry.
    pub fn decode(bytes: &[u8]) -> Option<SessionEntry> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(3, ' ');
        let start_nanos = parts.next()?.parse().ok()?;
        let tool_calls = parts.next()?.parse().ok()?;
        let id = parts.next()?;
        (!id.is_empty()).then(|| SessionEntry {
            id: id.to_owned(),
            start_nanos,
            tool_calls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_garbage_is_empty() {
        let entry = SessionEntry {
            id: "a b c".into(),
            start_nanos: 42,
            tool_calls: 7,
        };
        assert_eq!(SessionEntry::decode(&entry.encode()), Some(entry));
        for bad in [&b""[..], b"1 2", b"x 2 id", b"1 2 ", b"\xff"] {
            assert_eq!(SessionEntry::decode(bad), None);
        }
    }

    #[test]
    fn slots_are_stable_and_bounded() {
        assert_eq!(slot_key("fin", "abc"), slot_key("fin", "abc"));
        assert_ne!(slot_key("fin", "abc"), slot_key("kb", "abc"));
        let slots: std::collections::HashSet<String> = (0..100_000)
            .map(|i| slot_key("s", &i.to_string()))
            .collect();
        assert_eq!(slots.len() as u64, SLOTS);
    }
}
