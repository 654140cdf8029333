//! `monitoring/mcp-servers.rules.yaml`: what the registry knows about each server, for
//! Prometheus. proxy-wasm metrics carry no labels of their own and Envoy's tag
//! extraction rules are fixed in the bootstrap, so a manifest's `metric_labels` (and
//! its version, owner and tier) cannot become labels of the filter's series. Instead
//! each server gets one `mcp_server_info` series with them, made by a recording rule
//! (static labels on `vector(1)`), to join on `mcp_server`:
//!
//! ```text
//! sum by (team) (rate(mcp_tool_calls_total[5m]) * on (mcp_server) group_left (team) mcp_server_info{mcp_track="stable"})
//! ```
//!
//! One series per release: `mcp_track="stable"` with the manifest's `version`, and for a
//! server with `gateway.canary` a second one, `mcp_track="canary"` with the canary's
//! version, so a query can ask for "the canary" without knowing its version
//! (`... * on (mcp_server, mcp_server_version) group_left mcp_server_info{mcp_track="canary"}`).
//! The canary's weight is not a label: it changes on every rollback and would start a
//! new series each time.

use super::envoy::{releases, Release};
use super::{quoted, HEADER};
use crate::fleet::Fleet;
use crate::model::Server;
use std::fmt::Write;

pub fn render(fleet: &Fleet) -> String {
    let mut out = String::from(HEADER);
    out.push_str(
        "# Prometheus recording rules: one mcp_server_info series per registered server and release\n\
         # (mcp_track stable, and canary for a server with gateway.canary), with the release's version\n\
         # and the manifest's owner, tier and metric_labels, to join with the gateway's series on\n\
         # mcp_server (load with rule_files).\n",
    );
    out.push_str("groups:\n  - name: mcp-server-registry\n    rules:\n");
    if fleet.servers.is_empty() {
        out.push_str("      []\n");
    }
    for server in &fleet.servers {
        for release in releases(server) {
            out.push_str(
                "      - record: mcp_server_info\n        expr: vector(1)\n        labels:\n",
            );
            for (name, value) in labels(server, &release) {
                let _ = writeln!(out, "          {name}: {}", quoted(&value));
            }
        }
    }
    out
}

/// The info series' labels: the gateway's (`mcp_` prefix, which manifests may not use)
/// then the manifest's own.
fn labels(server: &Server, release: &Release<'_>) -> Vec<(String, String)> {
    let mut labels = vec![
        ("mcp_server".to_owned(), server.id().to_owned()),
        ("mcp_server_version".to_owned(), release.version.to_owned()),
        ("mcp_track".to_owned(), release.track.to_owned()),
        ("mcp_owner".to_owned(), server.owner.clone()),
    ];
    if let Some(tier) = &server.sla_tier {
        labels.push(("mcp_sla_tier".to_owned(), tier.clone()));
    }
    labels.extend(
        server
            .metric_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    labels
}
