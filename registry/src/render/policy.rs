//! `policy.yaml`: the authz-service policy (format: authz-service/src/policy.rs).
//! Unknown servers and tools are denied: only what a manifest registers is reachable.
//! Each server lists all its tools (the extra scopes of `gateway.scopes.tools`, `[]`
//! for the others), its `methods`, and where its upstream credential is.

use super::credentials::{self, Placement};
use super::{comment, quoted, quoted_list, HEADER};
use crate::fleet::Fleet;
use std::fmt::Write;

pub fn render(fleet: &Fleet, placement: &Placement<'_>) -> String {
    let mut out = String::from(HEADER);
    out.push_str("# authz-service policy. tools/call of tool T on server S needs mcp.server.S:tools.read plus\n");
    out.push_str("# the scopes listed for T; servers and tools not listed are refused.\n");
    match placement {
        Placement::Local { .. } => out.push_str(
            "# upstream_credential_file: a relative path is relative to this file's directory.\n",
        ),
        Placement::Kubernetes => out.push_str(
            "# upstream_credential_file: mounted by the deployment under /etc/mcp-gateway/credentials/<server>/.\n",
        ),
    }
    out.push_str("unknown_server: deny\nunknown_tool: deny\n");
    if fleet.servers.is_empty() {
        out.push_str("servers: {}\n");
        return out;
    }
    out.push_str("servers:\n");
    for server in &fleet.servers {
        let _ = writeln!(
            out,
            "  # {} {} ({}), owner {}",
            server.id(),
            server.version,
            comment(&file_name(&server.manifest_file)),
            comment(&server.owner)
        );
        let _ = writeln!(out, "  {}:", quoted(server.id()));
        if server.tools.is_empty() {
            out.push_str("    tools: {}\n");
        } else {
            out.push_str("    tools:\n");
            for tool in &server.tools {
                let extra = server
                    .scopes
                    .tools
                    .get(&tool.name)
                    .cloned()
                    .unwrap_or_default();
                let _ = writeln!(out, "      {}: {}", quoted(&tool.name), quoted_list(&extra));
            }
        }
        if !server.scopes.methods.is_empty() {
            out.push_str("    methods:\n");
            for (method, scopes) in &server.scopes.methods {
                let _ = writeln!(out, "      {}: {}", quoted(method), quoted_list(scopes));
            }
        }
        if let Some(path) = credentials::path_for(server, placement) {
            let _ = writeln!(out, "    upstream_credential_file: {}", quoted(&path));
        }
    }
    out
}

/// The manifest's file name (not the directory: the text must not depend on where
/// `render` was run from).
pub(crate) fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
