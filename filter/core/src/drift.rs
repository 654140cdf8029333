//! Schema drift: a server's `tools/list` answer against its registration.
//!
//! Agents are prompted with the tools and schemas the registry knows; a server that
//! advertises another tool, drops a registered one or changes a tool's `inputSchema`
//! has drifted, and calls built from the old schema will fail. The registry writes each
//! registered tool's schema digest into the route metadata (`schema_digests`, the
//! [`crate::input_hash`] of the schema: canonical JSON, so formatting never counts);
//! the filter digests what the server sends and compares.
//!
//! A change is counted once, not once per `tools/list`: per server and kind the
//! filter remembers the drifted tools it has seen, in Envoy's shared data (one store
//! for all worker VMs), and counts and logs only an answer that brings a drifted tool
//! it has not seen. Paged lists work the same way: a page adds what it shows, and only
//! a whole list (one page) forgets tools that came back in line. Memory is bounded: at
//! most [`MAX_ENTRIES`] 16-byte entries per server and kind, whatever the server sends.

use crate::input_hash::input_hash;
use crate::list_filter::SeenTool;
use rustc_hash::FxHashMap;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// Kinds of drift, the `kind` label of `mcp_schema_drift_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriftKind {
    /// The server advertises a tool the registry does not have.
    Extra,
    /// A registered tool is not advertised (only known from a list in one page).
    Missing,
    /// A tool's `inputSchema` differs from the registered one.
    Changed,
}

impl DriftKind {
    pub const ALL: [DriftKind; 3] = [DriftKind::Extra, DriftKind::Missing, DriftKind::Changed];

    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Extra => "extra",
            DriftKind::Missing => "missing",
            DriftKind::Changed => "changed",
        }
    }
}

/// The registered tools of a server and their schema digests, from the route's
/// `schema_digests` leaf (a JSON object of tool name to `sha256:<hex>`).
pub fn registered_digests(leaf: &str) -> Option<BTreeMap<String, String>> {
    serde_json::from_str(leaf).ok()
}

/// The tools of each kind of drift, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drift {
    pub extra: Vec<String>,
    pub missing: Vec<String>,
    /// Tool name and the digest the server's schema has now.
    pub changed: Vec<(String, String)>,
}

impl Drift {
    pub fn names(&self, kind: DriftKind) -> Vec<&str> {
        match kind {
            DriftKind::Extra => self.extra.iter().map(String::as_str).collect(),
            DriftKind::Missing => self.missing.iter().map(String::as_str).collect(),
            DriftKind::Changed => self.changed.iter().map(|(n, _)| n.as_str()).collect(),
        }
    }

    /// What identifies each drifted tool of this kind: 16 bytes of the SHA-256 of its
    /// name (and, for `changed`, of the digest of its new schema), in name order. The
    /// same drift gives the same entries whichever answer or page shows it.
    pub fn entries(&self, kind: DriftKind) -> Vec<Entry> {
        let entry = |name: &str, digest: &str| {
            let mut hash = Sha256::new();
            feed(&mut hash, name);
            feed(&mut hash, digest);
            let mut out = [0u8; ENTRY_BYTES];
            out.copy_from_slice(&hash.finalize()[..ENTRY_BYTES]);
            out
        };
        match kind {
            DriftKind::Extra => self.extra.iter().map(|n| entry(n, "")).collect(),
            DriftKind::Missing => self.missing.iter().map(|n| entry(n, "")).collect(),
            DriftKind::Changed => self.changed.iter().map(|(n, d)| entry(n, d)).collect(),
        }
    }

    /// The names of this kind's tools whose entries are among `entries`.
    pub fn names_of(&self, kind: DriftKind, entries: &[Entry]) -> Vec<&str> {
        self.entries(kind)
            .iter()
            .zip(self.names(kind))
            .filter(|(e, _)| entries.contains(e))
            .map(|(_, n)| n)
            .collect()
    }
}

/// Bytes of one drifted tool's identity (see [`Drift::entries`]).
pub const ENTRY_BYTES: usize = 16;
pub type Entry = [u8; ENTRY_BYTES];

/// Most drifted tools remembered per server and kind (4 KiB): beyond it the oldest are
/// forgotten, and may be counted again if they show up again.
pub const MAX_ENTRIES: usize = 256;

/// What the filter remembers of one server's drift of one kind (`stored`, entries
/// back to back), and what an answer changes about it: the entries not seen before
/// (an answer that brings any is one change), and what to remember now. A whole list
/// replaces what is remembered, so tools back in line are forgotten; a page of a
/// longer list only adds to it, since the other pages' tools are not in it.
pub fn update(stored: &[u8], found: &[Entry], whole_list: bool) -> (Vec<Entry>, Vec<u8>) {
    let known: Vec<Entry> = stored
        .chunks_exact(ENTRY_BYTES)
        .filter_map(|c| c.try_into().ok())
        .collect();
    let new: Vec<Entry> = found
        .iter()
        .filter(|e| !known.contains(e))
        .copied()
        .collect();
    let mut next: Vec<Entry> = if whole_list {
        found.to_vec()
    } else {
        known.iter().chain(new.iter()).copied().collect()
    };
    if next.len() > MAX_ENTRIES {
        next.drain(..next.len() - MAX_ENTRIES);
    }
    (new, next.concat())
}

fn feed(hash: &mut Sha256, text: &str) {
    hash.update((text.len() as u64).to_le_bytes());
    hash.update(text.as_bytes());
}

/// Compares an answer with the registration. `complete`: the answer is the whole list
/// (one page), so a registered tool it lacks is missing; a page of a longer list says
/// nothing about tools on other pages.
pub fn compare(registered: &BTreeMap<String, String>, seen: &[SeenTool], complete: bool) -> Drift {
    let mut drift = Drift::default();
    let mut advertised: Vec<&str> = Vec::with_capacity(seen.len());
    for tool in seen {
        advertised.push(&tool.name);
        match registered.get(&tool.name) {
            None => drift.extra.push(tool.name.clone()),
            Some(expected) => {
                let got = tool.schema_digest.as_deref();
                if got != Some(expected.as_str()) {
                    let got = got.unwrap_or("unreadable").to_owned();
                    drift.changed.push((tool.name.clone(), got));
                }
            }
        }
    }
    if complete {
        advertised.sort_unstable();
        drift.missing = registered
            .keys()
            .filter(|name| advertised.binary_search(&name.as_str()).is_err())
            .cloned()
            .collect();
    }
    drift.extra.sort();
    drift.extra.dedup();
    drift.changed.sort();
    drift.changed.dedup();
    drift
}

/// The digest the registry writes for a schema ([`input_hash`]), of the schema text a
/// server sent; `None` when it cannot be digested.
///
/// Servers send the same bytes on every `tools/list`, so each distinct text is
/// canonicalised and hashed once per VM (a wasm VM is one thread, so the memo is a
/// thread-local): measured, digesting every schema of a 500-tool list cost Envoy about
/// 2 ms per answer. The memo is keyed by the exact text, so a changed schema is never
/// mistaken for a known one, and bounded by [`MEMO_BYTES`] of text (emptied when full).
pub fn schema_digest(schema: &RawValue) -> Option<String> {
    let text = schema.get();
    MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        if let Some(digest) = memo.digests.get(text) {
            return digest.clone();
        }
        let digest = input_hash(schema).ok();
        if memo.bytes + text.len() > MEMO_BYTES {
            memo.digests.clear();
            memo.bytes = 0;
        }
        if text.len() <= MEMO_BYTES {
            memo.bytes += text.len();
            memo.digests.insert(text.to_owned(), digest.clone());
        }
        digest
    })
}

/// Most schema text the digest memo keeps per VM (4 MiB).
pub const MEMO_BYTES: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct DigestMemo {
    digests: FxHashMap<String, Option<String>>,
    bytes: usize,
}

thread_local! {
    static MEMO: RefCell<DigestMemo> = RefCell::default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(text: &str) -> String {
        schema_digest(&RawValue::from_string(text.into()).unwrap()).unwrap()
    }

    fn seen(name: &str, schema: &str) -> SeenTool {
        SeenTool {
            name: name.into(),
            schema_digest: Some(digest(schema)),
        }
    }

    fn registered() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("a".to_string(), digest(r#"{"type":"object"}"#)),
            (
                "b".to_string(),
                digest(r#"{"type":"object","properties":{"x":{"type":"integer"}}}"#),
            ),
        ])
    }

    #[test]
    fn formatting_is_not_drift() {
        let answer = [
            seen("a", "{ \"type\" : \"object\" }"),
            seen(
                "b",
                r#"{"properties":{"x":{"type":"integer"}},"type":"object"}"#,
            ),
        ];
        let drift = compare(&registered(), &answer, true);
        assert_eq!(drift, Drift::default());
        for kind in DriftKind::ALL {
            assert!(drift.entries(kind).is_empty());
        }
    }

    #[test]
    fn each_kind_is_found() {
        let answer = [
            seen("a", r#"{"type":"object","required":["y"]}"#),
            seen("c", "{}"),
            SeenTool {
                name: "c".into(),
                schema_digest: None,
            },
        ];
        let drift = compare(&registered(), &answer, true);
        assert_eq!(drift.extra, ["c"]);
        assert_eq!(drift.missing, ["b"]);
        assert_eq!(drift.names(DriftKind::Changed), ["a"]);
        // A page of a longer list cannot tell what is missing.
        assert!(compare(&registered(), &answer, false).missing.is_empty());
    }

    #[test]
    fn entries_change_with_the_drift_only() {
        let changed = |schema: &str| {
            compare(&registered(), &[seen("a", schema)], false).entries(DriftKind::Changed)
        };
        assert_eq!(
            changed(r#"{"type":"string"}"#),
            changed(r#"{ "type": "string" }"#)
        );
        assert_ne!(
            changed(r#"{"type":"string"}"#),
            changed(r#"{"type":"array"}"#)
        );
        let extra = |names: &[&str]| {
            let tools: Vec<_> = names.iter().map(|n| seen(n, "{}")).collect();
            compare(&registered(), &tools, false).entries(DriftKind::Extra)
        };
        assert_eq!(extra(&["x", "y"]), extra(&["y", "x"]));
        assert_ne!(extra(&["x", "y"]), extra(&["xy"]));
    }

    #[test]
    fn pages_add_and_whole_lists_replace() {
        let entry = |b: u8| [b; ENTRY_BYTES];
        // Page 1 shows x, page 2 nothing, page 3 y: x and y are each new once.
        let (new, stored) = update(&[], &[entry(1)], false);
        assert_eq!(new, [entry(1)]);
        let (new, stored) = update(&stored, &[], false);
        assert!(new.is_empty());
        let (new, stored) = update(&stored, &[entry(2)], false);
        assert_eq!(new, [entry(2)]);
        // The next walk through the pages brings nothing new.
        for page in [vec![entry(1)], vec![], vec![entry(2)]] {
            let (new, again) = update(&stored, &page, false);
            assert!(new.is_empty());
            assert_eq!(again, stored);
        }
        // A whole list without x forgets it: x drifting again is a new change.
        let (_, stored) = update(&stored, &[entry(2)], true);
        let (new, _) = update(&stored, &[entry(1)], false);
        assert_eq!(new, [entry(1)]);
        // Bounded, oldest forgotten first.
        let many: Vec<Entry> = (0..=255u8)
            .chain([0])
            .map(|b| [b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
            .collect();
        let (_, stored) = update(&[], &many[..256], false);
        let (_, stored) = update(&stored, &[entry(99)], false);
        assert_eq!(stored.len(), MAX_ENTRIES * ENTRY_BYTES);
        assert!(!stored.starts_with(&many[0]));
    }

    #[test]
    fn the_memo_gives_the_digest_it_would_compute() {
        let text = r#"{"type":"object","properties":{"q":{"type":"string"}}}"#;
        let raw = RawValue::from_string(text.into()).unwrap();
        let fresh = input_hash(&raw).unwrap();
        assert_eq!(schema_digest(&raw).as_deref(), Some(fresh.as_str()));
        assert_eq!(
            schema_digest(&raw).as_deref(),
            Some(fresh.as_str()),
            "from the memo"
        );
        // An integer the canonical form cannot hold: no digest, remembered as such.
        let unsafe_int = RawValue::from_string(r#"{"maximum":9007199254740993}"#.into()).unwrap();
        assert_eq!(schema_digest(&unsafe_int), None);
        assert_eq!(schema_digest(&unsafe_int), None);
    }

    #[test]
    fn the_registry_leaf_reads_as_a_map() {
        let map = registered_digests(r#"{"a":"sha256:00"}"#).unwrap();
        assert_eq!(map["a"], "sha256:00");
        assert!(registered_digests("not json").is_none());
    }
}
