//! `limits/limits.yaml`: the ratelimit-service configuration (envoyproxy/ratelimit's
//! format, read by ratelimit-service/src/config.rs), domain `mcp_gateway`.
//!
//! Envoy sends the descriptor `[server_id, tool_call, agent_id]` for every
//! `tools/call`. Per server:
//!
//! ```text
//! server_id=<id>
//!   tool_call=<tool with its own limit>  -> agent_id (key-only): tools[tool]
//!   tool_call (key-only)                 -> agent_id=<agent>: agents[agent]
//!                                           agent_id (key-only): default
//! ```
//!
//! The ratelimit-service prefers an exact value to a key-only entry at each level, so
//! a tool's own limit wins over the per-agent ones, and a listed agent over `default`.
//! Each key-only level counts every value (each agent, each tool) on its own.

use super::{quoted, HEADER};
use crate::fleet::Fleet;
use crate::model::Rate;
use std::fmt::Write;

pub const DOMAIN: &str = "mcp_gateway";

/// Agents per server, tool and window that get a counter of their own (the
/// ratelimit-service's `max_distinct_values` on the key-only `agent_id`; later agents
/// share one overflow counter, still limited). Agent ids are the verified identities
/// from tokens, not names a client makes up, so the bound can be far above the
/// service's default of 100, which would make the 101st agent of a busy tool share
/// its limit with others.
pub const AGENTS_PER_WINDOW: u32 = 10_000;

pub fn render(fleet: &Fleet) -> String {
    let mut out = String::from(HEADER);
    out.push_str("# ratelimit-service configuration. Envoy sends [server_id, tool_call, agent_id] for every\n");
    out.push_str("# tools/call; every limit counts one agent's calls of one tool.\n");
    let _ = writeln!(out, "domain: {DOMAIN}");
    let limited: Vec<_> = fleet
        .servers
        .iter()
        .filter(|s| !s.rate_limits.is_empty())
        .collect();
    if limited.is_empty() {
        out.push_str("descriptors: []\n");
        return out;
    }
    out.push_str("descriptors:\n");
    for server in limited {
        let limits = &server.rate_limits;
        let _ = writeln!(
            out,
            "  # {} ({})",
            server.id(),
            super::comment(&super::policy::file_name(&server.manifest_file))
        );
        let _ = writeln!(
            out,
            "  - key: server_id\n    value: {}\n    descriptors:",
            quoted(server.id())
        );
        for (tool, rate) in &limits.tools {
            let _ = writeln!(
                out,
                "      - key: tool_call\n        value: {}\n        descriptors:",
                quoted(tool)
            );
            let _ = writeln!(
                out,
                "          - key: agent_id\n            max_distinct_values: {AGENTS_PER_WINDOW}\n            rate_limit: {}",
                rate_text(rate)
            );
        }
        if limits.default.is_some() || !limits.agents.is_empty() {
            // Only registered tools get here (the authz-service denies the others
            // first), so the server's tool count bounds the key-only tool names.
            let _ = writeln!(
                out,
                "      - key: tool_call\n        max_distinct_values: {}\n        descriptors:",
                server.tools.len()
            );
            for (agent, rate) in &limits.agents {
                let _ = writeln!(
                    out,
                    "          - key: agent_id\n            value: {}\n            rate_limit: {}",
                    quoted(agent),
                    rate_text(rate)
                );
            }
            if let Some(rate) = &limits.default {
                let _ = writeln!(
                    out,
                    "          - key: agent_id\n            max_distinct_values: {AGENTS_PER_WINDOW}\n            rate_limit: {}",
                    rate_text(rate)
                );
            }
        }
    }
    out
}

fn rate_text(rate: &Rate) -> String {
    format!(
        "{{unit: {}, requests_per_unit: {}}}",
        rate.unit.as_upper(),
        rate.requests_per_unit
    )
}
