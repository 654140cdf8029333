//! `kubernetes/configmaps.yaml`: the ConfigMaps the shipped manifests mount
//! (envoy/kubernetes/authz-service.yaml: `mcp-authz-policy`, key `policy.yaml`;
//! envoy/kubernetes/ratelimit-service.yaml: `mcp-ratelimit-config`, key
//! `limits.yaml`), in namespace `mcp-gateway`. Both services hot-reload them.

use super::credentials::{self, Placement};
use super::{policy, HEADER};
use crate::fleet::Fleet;
use std::fmt::Write;

pub const NAMESPACE: &str = "mcp-gateway";

pub fn configmaps(fleet: &Fleet, limits: &str) -> String {
    let mut out = String::from(HEADER);
    let mounts = credentials::mounts(fleet);
    if !mounts.is_empty() {
        out.push_str(
            "# Upstream credentials the authz-service deployment must mount (read-only):\n",
        );
        for mount in &mounts {
            let _ = write!(
                out,
                "#   {}: Secret {} key {} at {}",
                mount.server_id, mount.secret, mount.key, mount.mount_path
            );
            match &mount.from_file {
                Some(file) => {
                    let _ = writeln!(out, " (make the Secret from {})", file.display());
                }
                None => out.push('\n'),
            }
        }
    }
    let policy = policy::render(fleet, &Placement::Kubernetes);
    configmap(&mut out, "mcp-authz-policy", "policy.yaml", &policy);
    out.push_str("---\n");
    configmap(&mut out, "mcp-ratelimit-config", "limits.yaml", limits);
    out
}

fn configmap(out: &mut String, name: &str, key: &str, text: &str) {
    let _ = writeln!(
        out,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\n  labels:\n    app.kubernetes.io/part-of: mcp-gateway\n    app.kubernetes.io/managed-by: mcp-registry\ndata:\n  {key}: |"
    );
    for line in text.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "    {line}");
        }
    }
}
