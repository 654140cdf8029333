//! The encoding of the handshake-era session table the filter keeps in Envoy's shared
//! data, so that session duration and tool calls per session can be measured across
//! worker threads (requests of one session may arrive on different connections).
//!
//! Shared data has no delete and no listing, so the table is a fixed ring of slots
//! keyed by a hash of the session id: memory is bounded whatever clients do, and a
//! session that never ends (no DELETE) is simply overwritten by a later one.
//!
//! An entry also holds the release track (`stable`/`canary`) the session started on,
//! when the server runs a canary: its later requests are pinned to that release (see
//! `crate::route::Track`), since the other release does not know the session.

use crate::host::Host;
use crate::route::Track;

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

/// One live session. `id` is the session's audit form (`sha256:<hex>`, see
/// `session_ref::audit_ref`): no spaces, so it can sit between other fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    pub id: String,
    pub start_nanos: u64,
    pub tool_calls: u64,
    /// The release the session started on; `None` when its cluster said nothing.
    pub track: Option<Track>,
}

impl SessionEntry {
    /// `<start> <calls> <id>[ <track>]`: at most ~80 bytes whatever clients do. An
    /// entry without a track is what filters before the canary wrote.
    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!("{} {} {}", self.start_nanos, self.tool_calls, self.id);
        if let Some(track) = self.track {
            text.push(' ');
            text.push_str(track.as_str());
        }
        text.into_bytes()
    }

    /// `None` for an empty (freed) slot or bytes that are not an entry.
    pub fn decode(bytes: &[u8]) -> Option<SessionEntry> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(' ');
        let start_nanos = parts.next()?.parse().ok()?;
        let tool_calls = parts.next()?.parse().ok()?;
        let id = parts.next().filter(|id| !id.is_empty())?;
        let track = match parts.next() {
            None => None,
            Some(track) => Some(Track::parse(track)?),
        };
        if parts.next().is_some() {
            return None;
        }
        Some(SessionEntry {
            id: id.to_owned(),
            start_nanos,
            tool_calls,
            track,
        })
    }
}

/// The release a session of `server_id` is pinned to: the track its entry holds, if
/// the slot still holds this session (`id`, its audit form). A failed read pins
/// nothing: the request takes Envoy's own pick.
pub fn pinned_track(host: &mut impl Host, server_id: &str, id: &str) -> Option<Track> {
    let (bytes, _) = host.shared_data(&slot_key(server_id, id)).ok()?;
    SessionEntry::decode(&bytes?)
        .filter(|entry| entry.id == id)?
        .track
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fake_host::FakeHost;

    #[test]
    fn entries_round_trip_and_garbage_is_empty() {
        for track in [None, Some(Track::Stable), Some(Track::Canary)] {
            let entry = SessionEntry {
                id: "sha256:00ff".into(),
                start_nanos: 42,
                tool_calls: 7,
                track,
            };
            assert_eq!(SessionEntry::decode(&entry.encode()), Some(entry));
        }
        // What filters before the canary wrote still reads, without a track.
        assert_eq!(
            SessionEntry::decode(b"42 7 sha256:00ff").unwrap().track,
            None
        );
        let bad: [&[u8]; 8] = [
            b"",
            b"1 2",
            b"x 2 id",
            b"1 2 ",
            b"\xff",
            b"1 2 id beta",
            b"1 2 id canary x",
            b"1 2 id ",
        ];
        for bad in bad {
            assert_eq!(SessionEntry::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_session_is_pinned_to_the_track_its_own_entry_holds() {
        let mut host = FakeHost::default();
        let entry = SessionEntry {
            id: "sha256:aa".into(),
            start_nanos: 1,
            tool_calls: 0,
            track: Some(Track::Canary),
        };
        let key = slot_key("fin", "sha256:aa");
        host.set_shared_data(&key, &entry.encode(), 0).unwrap();
        assert_eq!(
            pinned_track(&mut host, "fin", "sha256:aa"),
            Some(Track::Canary)
        );
        assert_eq!(pinned_track(&mut host, "kb", "sha256:aa"), None);
        // Another session that hashes to the same slot is not pinned by this one.
        host.shared
            .insert(slot_key("fin", "sha256:bb"), (entry.encode(), 1));
        assert_eq!(pinned_track(&mut host, "fin", "sha256:bb"), None);
        let untracked = SessionEntry {
            track: None,
            ..entry
        };
        host.set_shared_data(&key, &untracked.encode(), 0).unwrap();
        assert_eq!(pinned_track(&mut host, "fin", "sha256:aa"), None);
        host.refuse.push("shared_data");
        assert_eq!(pinned_track(&mut host, "fin", "sha256:aa"), None);
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
