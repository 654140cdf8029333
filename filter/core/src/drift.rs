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
//! filter keeps a fingerprint of the drift it last saw in Envoy's shared data (one for
//! all worker VMs), and counts and logs only when it changes. Memory is bounded: three
//! fixed-size fingerprints per registered server, whatever the server sends.

use crate::input_hash::input_hash;
use crate::list_filter::SeenTool;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
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

    /// What identifies this kind of drift: empty when there is none, else a short
    /// digest of the tools (and, for `changed`, their new schemas). Two answers with
    /// the same drift have the same fingerprint, so it is counted once.
    pub fn fingerprint(&self, kind: DriftKind) -> String {
        let mut hash = Sha256::new();
        let empty = match kind {
            DriftKind::Extra => {
                self.extra.iter().for_each(|n| feed(&mut hash, n));
                self.extra.is_empty()
            }
            DriftKind::Missing => {
                self.missing.iter().for_each(|n| feed(&mut hash, n));
                self.missing.is_empty()
            }
            DriftKind::Changed => {
                for (name, digest) in &self.changed {
                    feed(&mut hash, name);
                    feed(&mut hash, digest);
                }
                self.changed.is_empty()
            }
        };
        if empty {
            return String::new();
        }
        hex::encode(&hash.finalize()[..12])
    }
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
                let got = schema_digest(tool.input_schema.as_deref());
                if got.as_deref() != Some(expected.as_str()) {
                    drift.changed.push((
                        tool.name.clone(),
                        got.unwrap_or_else(|| "unreadable".into()),
                    ));
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

/// The digest the registry writes for a schema, of the schema the server sent.
fn schema_digest(schema: Option<&str>) -> Option<String> {
    let raw: &RawValue = serde_json::from_str(schema?).ok()?;
    input_hash(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(text: &str) -> String {
        schema_digest(Some(text)).unwrap()
    }

    fn seen(name: &str, schema: &str) -> SeenTool {
        SeenTool {
            name: name.into(),
            input_schema: Some(schema.into()),
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
            assert_eq!(drift.fingerprint(kind), "");
        }
    }

    #[test]
    fn each_kind_is_found() {
        let answer = [
            seen("a", r#"{"type":"object","required":["y"]}"#),
            seen("c", "{}"),
            SeenTool {
                name: "c".into(),
                input_schema: None,
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
    fn fingerprints_change_with_the_drift_only() {
        let one = compare(&registered(), &[seen("a", r#"{"type":"string"}"#)], false);
        let same = compare(
            &registered(),
            &[seen("a", r#"{ "type": "string" }"#)],
            false,
        );
        let other = compare(&registered(), &[seen("a", r#"{"type":"array"}"#)], false);
        let kind = DriftKind::Changed;
        assert_eq!(one.fingerprint(kind), same.fingerprint(kind));
        assert_ne!(one.fingerprint(kind), other.fingerprint(kind));
        assert_eq!(one.fingerprint(kind).len(), 24);
        let extra = |names: &[&str]| {
            let tools: Vec<_> = names.iter().map(|n| seen(n, "{}")).collect();
            compare(&registered(), &tools, false).fingerprint(DriftKind::Extra)
        };
        assert_eq!(extra(&["x", "y"]), extra(&["y", "x"]));
        assert_ne!(extra(&["x", "y"]), extra(&["xy"]));
    }

    #[test]
    fn the_registry_leaf_reads_as_a_map() {
        let map = registered_digests(r#"{"a":"sha256:00"}"#).unwrap();
        assert_eq!(map["a"], "sha256:00");
        assert!(registered_digests("not json").is_none());
    }
}
