//! `gateway.istio_sidecar`: the server's own Istio sidecar runs the gateway's filters
//! for it (render/sidecar.rs writes the EnvoyFilter). What is checked here is what the
//! EnvoyFilter would otherwise get wrong silently: Istio takes a selector or a route
//! it cannot use without complaint, and the filters then never run.

use crate::manifest::RawGateway;
use crate::model::{Endpoint, IstioSidecar};
use crate::problems::FileProblems;
use mcp_filter_core::config::MAX_METRIC_TOOL_NAMES;

const FIELD: &str = "gateway.istio_sidecar";

/// The section's sidecar, or `None` when the manifest has none or it has a problem
/// (reported). `endpoint` is `None` when the endpoint itself has a problem.
pub(super) fn istio_sidecar(
    g: &RawGateway,
    endpoint: Option<&Endpoint>,
    tool_count: usize,
    p: &mut FileProblems<'_>,
) -> Option<IstioSidecar> {
    let raw = g.istio_sidecar.as_ref()?;
    let mut ok = true;
    let namespace = match raw.namespace.as_deref() {
        None => {
            p.add(
                format!("{FIELD}.namespace"),
                "missing (the namespace of the server's pods)",
            );
            None
        }
        Some(namespace) if !dns_label(namespace) => {
            p.add(
                format!("{FIELD}.namespace"),
                format!("{namespace:?} is not a Kubernetes namespace name (1-63 of a-z 0-9 -, starting and ending with a letter or digit)"),
            );
            None
        }
        Some(namespace) => Some(namespace.to_owned()),
    };
    let labels = match &raw.workload_labels {
        None => {
            p.add(
                format!("{FIELD}.workload_labels"),
                "missing (the labels of the server's pods, e.g. {app: <name>})",
            );
            None
        }
        // Istio applies an EnvoyFilter without a selector to every pod of its namespace:
        // the filters, with this server's id, would go in front of every other server.
        Some(labels) if labels.is_empty() => {
            p.add(
                format!("{FIELD}.workload_labels"),
                "must name at least one label: an EnvoyFilter without a workload selector applies to every pod of its namespace",
            );
            None
        }
        Some(labels) => {
            for (key, value) in labels {
                let field = format!("{FIELD}.workload_labels.{key}");
                if !label_key(key) {
                    p.add(
                        &field,
                        format!("{key:?} is not a Kubernetes label key ([prefix/]name: a name of 1-63 of A-Z a-z 0-9 - _ . starting and ending with a letter or digit, a prefix a DNS subdomain)"),
                    );
                    ok = false;
                }
                if !label_value(value) {
                    p.add(
                        &field,
                        format!("{value:?} is not a Kubernetes label value (0-63 of A-Z a-z 0-9 - _ ., starting and ending with a letter or digit)"),
                    );
                    ok = false;
                }
            }
            Some(labels.clone())
        }
    };
    let port = match raw.port {
        Some(port) => match u16::try_from(port) {
            Ok(port) if port >= 1 => Some(port),
            _ => {
                p.add(
                    format!("{FIELD}.port"),
                    format!("{port} is not a port (1-65535)"),
                );
                None
            }
        },
        None => endpoint.map(|e| e.port),
    };
    if let Some(endpoint) = endpoint {
        if endpoint.is_tls() {
            // The server terminates TLS itself: istiod builds no HTTP filter chain for
            // the port (it cannot read the requests), and the patches match nothing.
            p.add(
                FIELD,
                format!("{:?} is https: a sidecar cannot read what the server decrypts itself, so no filter would run; serve plain http inside the mesh (Istio's mutual TLS protects it)", endpoint.url),
            );
            ok = false;
        }
        if let Err(reason) = routable(&endpoint.path) {
            p.add(FIELD, reason);
            ok = false;
        }
    }
    // The filter names the server's tools in its configuration, which takes at most
    // this many; it would refuse the configuration (and the sidecar every request).
    if tool_count > MAX_METRIC_TOOL_NAMES {
        p.add(
            FIELD,
            format!("the sidecar's filter lists the server's tools for metric labels, at most {MAX_METRIC_TOOL_NAMES}; this server has {tool_count}"),
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(IstioSidecar {
        namespace: namespace?,
        workload_labels: labels?,
        port: port?,
    })
}

/// The sidecar routes the endpoint's own path, exactly, after Envoy normalised the
/// request's path: a path not already in that form could never match (the same rule
/// as for `gateway.path`, but a trailing slash, which normalising keeps).
fn routable(path: &str) -> Result<(), String> {
    let segments = path[1..].strip_suffix('/').unwrap_or(&path[1..]);
    let plain = segments.is_empty()
        || segments
            .split('/')
            .all(|segment| crate::fleet_file::plain_segment(segment, b"~:"));
    if !plain {
        return Err(format!(
            "the sidecar routes the endpoint's own path, and {path:?} is not plain segments (A-Z a-z 0-9 . _ ~ - :, no empty, . or .. segments): Envoy would never route a request to it"
        ));
    }
    if path == "/.well-known" || path.starts_with("/.well-known/") {
        return Err(format!(
            "the sidecar routes the endpoint's own path, and {path:?} is under /.well-known/, the gateway's own (OAuth protected resource metadata)"
        ));
    }
    Ok(())
}

/// RFC 1123 label (Kubernetes namespace names): 1-63 of a-z 0-9 `-`, alphanumeric at
/// both ends.
fn dns_label(text: &str) -> bool {
    (1..=63).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && alphanumeric_ends(text)
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
fn dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(dns_label)
}

/// Kubernetes label keys (`IsQualifiedName`): an optional DNS-subdomain prefix and `/`,
/// then a name of 1-63 of A-Z a-z 0-9 `-` `_` `.`, alphanumeric at both ends.
fn label_key(key: &str) -> bool {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if !dns_subdomain(prefix) {
                return false;
            }
            name
        }
        None => key,
    };
    !name.is_empty() && label_value(name)
}

/// Kubernetes label values (`IsValidLabelValue`): empty, or 1-63 of A-Z a-z 0-9 `-` `_`
/// `.`, alphanumeric at both ends.
fn label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && alphanumeric_ends(value))
}

fn alphanumeric_ends(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_and_values_follow_kubernetes() {
        for key in [
            "app",
            "app.kubernetes.io/name",
            "a",
            "A_b-c.D",
            "x/y",
            &"a".repeat(63),
        ] {
            assert!(label_key(key), "{key}");
        }
        for key in [
            "",
            "-app",
            "app-",
            "app name",
            "a/b/c",
            "/app",
            "Example.com/app",
            "example..com/app",
            "example.com/",
            &"a".repeat(64),
            &format!("{}/a", "a".repeat(254)),
        ] {
            assert!(!label_key(key), "{key}");
        }
        for value in ["", "financial-data-mcp", "v1.2_3", &"a".repeat(63)] {
            assert!(label_value(value), "{value}");
        }
        for value in ["-x", "x.", "a b", "a/b", "*", "é", &"a".repeat(64)] {
            assert!(!label_value(value), "{value}");
        }
    }

    #[test]
    fn namespaces_are_dns_labels() {
        assert!(dns_label("mcp-servers"));
        assert!(dns_label("a1"));
        for bad in ["", "MCP", "mcp_servers", "-a", "a-", "a.b", &"a".repeat(64)] {
            assert!(!dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn the_endpoint_path_must_be_one_envoy_routes() {
        for ok in ["/", "/mcp", "/mcp/", "/v1/mcp", "/a~b:c"] {
            assert_eq!(routable(ok), Ok(()), "{ok}");
        }
        for bad in [
            "//mcp",
            "/a//mcp",
            "/a/./mcp",
            "/a/../mcp",
            "/m%63p",
            "/a;b",
            "/mcp//",
        ] {
            assert!(routable(bad).is_err(), "{bad}");
        }
        assert!(routable("/.well-known/oauth-protected-resource")
            .unwrap_err()
            .contains("the gateway's own"));
    }
}
