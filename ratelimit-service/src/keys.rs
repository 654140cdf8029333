//! How counters and distinct-value scopes are named, in memory and in Redis alike.
//!
//! A counter key is the descriptor written out, then its window:
//! `mcp_rl:{<domain>|<key>=<value>|...}:<window start>`. (The braces are a Redis
//! Cluster hash tag, but the service speaks to a single Redis: its Lua script builds
//! scope keys itself, which Cluster would refuse across slots.)
//!
//! Values come from requests, so they are escaped: `%`, `|`, `=`, `{` and `}` are
//! written as `%25`, `%7C`, `%3D`, `%7B`, `%7D`. Without this a tool named
//! `q|agent_id=x` would write the same key as two entries, and a `}` would end the hash
//! tag early. Plain values (nearly all of them) are written unchanged, so counter keys
//! of plain descriptors are what they were before escaping existed.
//!
//! [`OVERFLOW`] stands in for a value that got no counter of its own (past
//! `max_distinct_values`, or the memory store full). It starts with `%` not followed by
//! two hex digits, which no escaped value can produce: a client cannot send a value
//! that lands on an overflow counter by name.
//!
//! A *scope* key names the set of distinct values one key-only level has seen in one
//! window: `mcp_rl:{<domain>|<earlier entries>|<this key><rest of the limit's path>}:<window start>/<window seconds>`.
//! The level it bounds is the first segment without `=`; the rest of the path lists
//! later listed values (`|key=value`) and later key-only keys (`|key`), so each limit
//! of the configuration has its own sets. Scope keys never equal counter keys (a counter
//! key has `=` in every segment and no `/` after the tag).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Written between the key and the prefix of a wildcard descriptor (`value: foo*`):
/// `|<key>%*<prefix>`, then `=<value>` in a counter key. Like [`OVERFLOW`] it is a `%`
/// not followed by two hex digits, which no escaped key can contain, so a wildcard's
/// counters and scope never meet those of a key-only descriptor of the same key.
pub const WILDCARD: &str = "%*";

/// The value written for every entry that shares an overflow counter.
pub const OVERFLOW: &str = "%overflow";

fn needs_escape(byte: u8) -> bool {
    matches!(byte, b'%' | b'|' | b'=' | b'{' | b'}')
}

/// Appends `text`, escaped.
pub fn escape_into(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.bytes().position(needs_escape) {
        out.push_str(&rest[..at]);
        let _ = write!(out, "%{:02X}", rest.as_bytes()[at]);
        // The escaped characters are ASCII, so `at + 1` is a character boundary.
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// `text` escaped; borrowed (no allocation) when it needs no escaping.
pub fn escaped(text: &str) -> Cow<'_, str> {
    if text.bytes().any(needs_escape) {
        let mut out = String::with_capacity(text.len() + 6);
        escape_into(&mut out, text);
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// Ends a counter key: `}:<window start>`.
pub fn push_counter_window(out: &mut String, window_start: u64) {
    let _ = write!(out, "}}:{window_start}");
}

/// Ends a scope key: `}:<window start>/<window seconds>`. The length is part of the
/// name because two limits of different units can share a scope's path and a start.
pub fn push_scope_window(out: &mut String, window_start: u64, window_seconds: u64) {
    let _ = write!(out, "}}:{window_start}/{window_seconds}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_are_unchanged_and_separators_are_escaped() {
        assert!(matches!(escaped("query_transactions"), Cow::Borrowed(_)));
        assert_eq!(escaped("q|agent_id=x"), "q%7Cagent_id%3Dx");
        assert_eq!(escaped("}{%"), "%7D%7B%25");
        assert_eq!(escaped("données|é"), "données%7Cé");
        // A client cannot spell the overflow marker: its `%` is escaped.
        assert_eq!(escaped(OVERFLOW), "%25overflow");
    }

    #[test]
    fn window_suffixes() {
        let mut key = String::from("mcp_rl:{d|a=b");
        push_counter_window(&mut key, 1_800_000_000);
        assert_eq!(key, "mcp_rl:{d|a=b}:1800000000");
        let mut scope = String::from("mcp_rl:{d|a");
        push_scope_window(&mut scope, 1_800_000_000, 60);
        assert_eq!(scope, "mcp_rl:{d|a}:1800000000/60");
    }
}
