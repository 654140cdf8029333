//! `kubernetes/`, in namespace `mcp-gateway`:
//!
//! - `configmaps.yaml`: the ConfigMaps the shipped manifests mount
//!   (envoy/kubernetes/authz-service.yaml: `mcp-authz-policy`, keys `policy.yaml` and
//!   `schemas.json`; envoy/kubernetes/ratelimit-service.yaml: `mcp-ratelimit-config`,
//!   key `limits.yaml`). Both services hot-reload them.
//! - `authz-service.yaml`: the shipped authz-service Deployment with the upstream
//!   credentials the policy names mounted (one projected volume of the Secrets at
//!   `/etc/mcp-gateway/credentials`, each key at `<server_id>/<key>`), so that the
//!   policy in the ConfigMap finds them, and `--schemas` pointed at the ConfigMap's
//!   `schemas.json`. Applied after envoy/kubernetes/, it replaces the shipped
//!   Deployment.
//! - `envoy-configmap.yaml`: `mcp-gateway-envoy` with Envoy's `clusters.yaml` and
//!   `routes.yaml` for a plain-Envoy gateway pod, rendered for `/etc/mcp-gateway/envoy`,
//!   the directory envoy/fleet.yaml reads and watches (the kubelet swaps a ConfigMap
//!   volume's files in with a rename, which Envoy's `watched_directory` picks up). A
//!   ConfigMap holds at most 1 MiB: several hundred servers.

use super::credentials::{self, Placement};
use super::{envoy, policy, HEADER};
use crate::fleet::Fleet;
use serde_json::{json, Value};
use std::fmt::Write;
use std::path::Path;

/// The shipped services (their Deployment is the base of `authz-service.yaml`).
const AUTHZ_SERVICE: &str = include_str!("../../../envoy/kubernetes/authz-service.yaml");
/// Where the gateway's Envoy reads its rendered routes and clusters (envoy/fleet.yaml).
pub const ENVOY_DIR: &str = "/etc/mcp-gateway/envoy";
const CREDENTIALS_VOLUME: &str = "upstream-credentials";

pub const NAMESPACE: &str = "mcp-gateway";

/// Where the authz-service container mounts the `mcp-authz-policy` ConfigMap
/// (envoy/kubernetes/authz-service.yaml).
const AUTHZ_CONFIG_DIR: &str = "/etc/mcp-authz";

pub fn configmaps(fleet: &Fleet, schemas: &str, limits: &str) -> String {
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
                    let file = super::comment(&file.display().to_string());
                    let _ = writeln!(out, " (make the Secret from {file})");
                }
                None => out.push('\n'),
            }
        }
    }
    let policy = policy::render(fleet, &Placement::Kubernetes);
    // One ConfigMap, one volume: the kubelet swaps both files in together, so the
    // service never reads a policy of one render with the schemas of another for long.
    configmap(
        &mut out,
        "mcp-authz-policy",
        &[("policy.yaml", &policy), (super::schemas::FILE, schemas)],
    );
    out.push_str("---\n");
    configmap(&mut out, "mcp-ratelimit-config", &[("limits.yaml", limits)]);
    out
}

fn configmap(out: &mut String, name: &str, entries: &[(&str, &str)]) {
    let _ = writeln!(
        out,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\n  labels:\n    app.kubernetes.io/part-of: mcp-gateway\n    app.kubernetes.io/managed-by: mcp-registry\ndata:"
    );
    for (key, text) in entries {
        data_entry(out, key, text);
    }
}

/// The ConfigMap of Envoy's rendered xDS files, for `/etc/mcp-gateway/envoy`.
pub fn envoy_configmap(fleet: &Fleet) -> String {
    let mut out = String::from(HEADER);
    out.push_str(
        "# Envoy's routes and clusters of the fleet: mount at /etc/mcp-gateway/envoy in the gateway\n\
         # pod (envoy/fleet.yaml reads and watches that directory; no restart on a change).\n",
    );
    let outputs = envoy::Xds::of(fleet).files();
    let _ = writeln!(
        out,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mcp-gateway-envoy\n  namespace: {NAMESPACE}\n  labels:\n    app.kubernetes.io/part-of: mcp-gateway\n    app.kubernetes.io/managed-by: mcp-registry\ndata:"
    );
    for key in ["clusters.yaml", "routes.yaml"] {
        let text = outputs
            .iter()
            .find(|o| o.path == Path::new("envoy").join(key))
            .map(|o| o.text.as_str())
            .unwrap_or_default();
        data_entry(&mut out, key, text);
    }
    out
}

/// The authz-service Deployment of envoy/kubernetes/authz-service.yaml with the
/// upstream credentials mounted where the ConfigMap's policy expects them.
pub fn authz_deployment(fleet: &Fleet) -> String {
    let mut deployment = shipped_authz_deployment();
    schemas_arg(&mut deployment);
    let mounts = credentials::mounts(fleet);
    let mut out = String::from(HEADER);
    out.push_str(
        "# The authz-service Deployment of envoy/kubernetes/authz-service.yaml, with the upstream\n\
         # credentials of the fleet mounted (read-only) where the policy in configmaps.yaml names them.\n\
         # Apply after envoy/kubernetes/ (it replaces that Deployment). The Secrets must exist\n\
         # (--from-file paths relative to the fleet directory):\n",
    );
    if mounts.is_empty() {
        out.push_str("#   (none: no server has an upstream credential)\n");
    }
    for mount in &mounts {
        let _ = write!(out, "#   {} key {}", mount.secret, mount.key);
        match &mount.from_file {
            Some(file) => {
                let _ = writeln!(
                    out,
                    ": kubectl -n {NAMESPACE} create secret generic {} --from-file={}={}",
                    mount.secret,
                    mount.key,
                    file.display()
                );
            }
            None => out.push('\n'),
        }
    }
    if !mounts.is_empty() {
        let root = super::KUBERNETES_CREDENTIALS_DIR;
        let sources: Vec<Value> = mounts
            .iter()
            .map(|m| {
                let path = m
                    .mount_path
                    .strip_prefix(root)
                    .unwrap_or(&m.mount_path)
                    .trim_start_matches('/');
                json!({ "secret": { "name": m.secret, "items": [{ "key": m.key, "path": path }] } })
            })
            .collect();
        let spec = &mut deployment["spec"]["template"]["spec"];
        // 0440: owner and group (the pod's fsGroup) only, like the session keys.
        let volume = json!({ "name": CREDENTIALS_VOLUME, "projected": { "defaultMode": 0o440, "sources": sources } });
        if let Some(volumes) = spec["volumes"].as_array_mut() {
            volumes.push(volume);
        }
        let mount = json!({ "name": CREDENTIALS_VOLUME, "mountPath": root, "readOnly": true });
        if let Some(mounts) = spec["containers"][0]["volumeMounts"].as_array_mut() {
            mounts.push(mount);
        }
    }
    out.push_str(&super::yaml::to_yaml(&deployment));
    out
}

/// `--schemas=` the ConfigMap's `schemas.json`, right after `--policy=` (added unless
/// the shipped Deployment already has it).
fn schemas_arg(deployment: &mut Value) {
    let Some(args) = deployment
        .pointer_mut("/spec/template/spec/containers/0/args")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    let has = |prefix: &str| {
        args.iter()
            .position(|a| a.as_str().is_some_and(|a| a.starts_with(prefix)))
    };
    if has("--schemas").is_some() {
        return;
    }
    let at = has("--policy").map_or(args.len(), |i| i + 1);
    let flag = format!("--schemas={AUTHZ_CONFIG_DIR}/{}", super::schemas::FILE);
    args.insert(at, json!(flag));
}

fn shipped_authz_deployment() -> Value {
    let mut deployment = serde_norway::Deserializer::from_str(AUTHZ_SERVICE)
        .filter_map(|doc| <Value as serde::Deserialize>::deserialize(doc).ok())
        .find(|doc| doc["kind"] == "Deployment")
        .unwrap_or_default();
    octal_file_modes(&mut deployment);
    deployment
}

/// Kubernetes reads YAML 1.1, where `0440` is an octal number; serde_norway (YAML
/// 1.2) reads it as the string "0440", which would be written back quoted and
/// refused. File modes become the numbers Kubernetes meant.
fn octal_file_modes(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let octal = item
                    .as_str()
                    .filter(|s| s.len() > 1 && s.starts_with('0'))
                    .and_then(|s| u32::from_str_radix(s, 8).ok());
                match octal {
                    Some(mode) if key == "defaultMode" || key == "mode" => *item = json!(mode),
                    _ => octal_file_modes(item),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(octal_file_modes),
        _ => {}
    }
}

fn data_entry(out: &mut String, key: &str, text: &str) {
    let _ = writeln!(out, "  {key}: |");
    for line in text.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "    {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_deployment_is_read_with_its_file_modes() {
        let deployment = shipped_authz_deployment();
        assert_eq!(deployment["metadata"]["name"], "mcp-authz-service");
        let volumes = deployment["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap();
        let keys = volumes
            .iter()
            .find(|v| v["name"] == "session-keys")
            .unwrap();
        // YAML 1.1 (Kubernetes) reads 0440 as octal.
        assert_eq!(keys["secret"]["defaultMode"], json!(0o440), "{keys}");
        // The ConfigMap with the policy (and the schemas) is mounted where the
        // rendered --schemas flag points.
        let mounts = deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m["name"] == "policy" && m["mountPath"] == AUTHZ_CONFIG_DIR),
            "{mounts:?}"
        );
    }

    #[test]
    fn the_schemas_flag_follows_the_policy_flag_once() {
        let mut deployment = shipped_authz_deployment();
        schemas_arg(&mut deployment);
        schemas_arg(&mut deployment);
        let args: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let policy = args
            .iter()
            .position(|a| a.starts_with("--policy="))
            .unwrap();
        assert_eq!(args[policy + 1], "--schemas=/etc/mcp-authz/schemas.json");
        assert_eq!(
            args.iter().filter(|a| a.starts_with("--schemas")).count(),
            1
        );
    }
}
