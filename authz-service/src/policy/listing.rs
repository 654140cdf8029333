//! The `tools/list` answer's allowed set, worked out once per policy load.
//!
//! The filter hides the tools a caller may not call (issue 16): on every allowed
//! `tools/list` the service names them in the `allowed_tools` dynamic metadata leaf.
//! Asking [`Policy::required_scopes`](super::Policy::required_scopes) for each tool on
//! each request allocates per tool (135-175 µs for 500 tools, measured in the issue 16
//! spike), so the load keeps each tool's final scope list instead. Tools share few
//! distinct lists (most need `tools.read` alone), so a request checks each distinct
//! list once and then only picks names.

use std::collections::{BTreeMap, BTreeSet};

/// A server's tools with what their `tools/call` needs, ready to be filtered by a token.
#[derive(Debug, Clone, Default)]
pub struct CallableTools {
    /// The distinct required-scope lists (each sorted, deduplicated).
    groups: Vec<Vec<String>>,
    /// Each tool, in name order: its group and its name as a JSON string literal.
    tools: Vec<(usize, String)>,
    /// The answer when every group is allowed (the common case for a full-scope token).
    all: String,
}

impl CallableTools {
    /// `call_scopes`: what `tools/call` needs on this server (the built-in `tools.read`
    /// or the server's `methods` override); `tools`: each tool's extra scopes.
    pub fn new(call_scopes: &[String], tools: &BTreeMap<String, Vec<String>>) -> CallableTools {
        let mut groups: Vec<Vec<String>> = Vec::new();
        let mut listed = Vec::with_capacity(tools.len());
        for (name, extra) in tools {
            let mut scopes: Vec<String> = call_scopes.iter().chain(extra).cloned().collect();
            scopes.sort();
            scopes.dedup();
            let group = match groups.iter().position(|g| *g == scopes) {
                Some(index) => index,
                None => {
                    groups.push(scopes);
                    groups.len() - 1
                }
            };
            // Serialising a `&String` cannot fail; the fallback keeps this total.
            let literal = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".to_owned());
            listed.push((group, literal));
        }
        let all = join(listed.iter().map(|(_, literal)| literal.as_str()));
        CallableTools {
            groups,
            tools: listed,
            all,
        }
    }

    /// The tools a token with `scopes` may call, as a JSON array of names in byte
    /// order (`[]` when none: never an empty string, which the filter could not tell
    /// from a missing leaf).
    pub fn allowed_json(&self, scopes: &BTreeSet<String>) -> String {
        let allowed: Vec<bool> = self
            .groups
            .iter()
            .map(|group| group.iter().all(|scope| scopes.contains(scope)))
            .collect();
        if allowed.iter().all(|yes| *yes) {
            return self.all.clone();
        }
        join(
            self.tools
                .iter()
                .filter(|(group, _)| allowed.get(*group).copied().unwrap_or(false))
                .map(|(_, literal)| literal.as_str()),
        )
    }
}

fn join<'a>(literals: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (index, literal) in literals.enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(literal);
    }
    out.push(']');
    out
}
