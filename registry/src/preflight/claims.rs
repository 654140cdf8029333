//! Which protocol versions a server claims (MCP 2026-07-28, basic/versioning):
//! `server/discover`'s `supportedVersions`, the `data.supported` of a -32022
//! UnsupportedProtocolVersion error, and the manifest's `gateway.protocol_versions`.
//! A legacy-only server (its discover refused without a modern error body) claims the
//! version it echoes to `initialize`. Preflight never fails a server on a version it
//! did not claim.

use serde_json::Value;
use std::collections::BTreeMap;

/// What `server/discover` got.
#[derive(Debug, Clone, PartialEq)]
pub enum Discovered {
    /// A result with `supportedVersions`.
    Versions(Vec<String>),
    /// -32022 with `data.supported`.
    Unsupported(Vec<String>),
    /// Anything else (a legacy server's 4xx, a gateway error): why.
    Other(String),
}

/// Reads a discover answer (its HTTP status and JSON-RPC message).
pub fn discovered(status: u16, message: Option<&Value>) -> Discovered {
    let strings = |v: Option<&Value>| -> Option<Vec<String>> {
        Some(
            v?.as_array()?
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        )
    };
    if let Some(message) = message {
        if let Some(versions) = strings(message.pointer("/result/supportedVersions")) {
            return Discovered::Versions(versions);
        }
        if message.pointer("/error/code").and_then(Value::as_i64) == Some(-32022) {
            if let Some(versions) = strings(message.pointer("/error/data/supported")) {
                return Discovered::Unsupported(versions);
            }
        }
        if let Some(error) = message.get("error") {
            return Discovered::Other(format!("HTTP {status}, JSON-RPC error {error}"));
        }
    }
    Discovered::Other(format!("HTTP {status} without a discover result"))
}

/// The claimed versions, oldest first, each with where the claim comes from.
pub fn claimed(
    discover: &Discovered,
    manifest: &[String],
    legacy_echo: Option<&str>,
) -> BTreeMap<String, Vec<&'static str>> {
    let mut claims: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    let mut add = |version: &str, source: &'static str| {
        let sources = claims.entry(version.to_owned()).or_default();
        if !sources.contains(&source) {
            sources.push(source);
        }
    };
    match discover {
        Discovered::Versions(v) => v
            .iter()
            .for_each(|v| add(v, "server/discover supportedVersions")),
        Discovered::Unsupported(v) => v.iter().for_each(|v| add(v, "-32022 data.supported")),
        Discovered::Other(_) => {
            if let Some(version) = legacy_echo {
                add(version, "initialize");
            }
        }
    }
    for version in manifest {
        add(version, "manifest gateway.protocol_versions");
    }
    claims
}

/// One line: `2025-11-25 (manifest gateway.protocol_versions), 2026-07-28 (...)`.
pub fn describe(claims: &BTreeMap<String, Vec<&'static str>>) -> String {
    claims
        .iter()
        .map(|(v, s)| format!("{v} ({})", s.join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn discover_versions_and_the_manifest_claim_are_joined() {
        let found = discovered(
            200,
            Some(&json!({"id": 1, "result": {"supportedVersions": ["2026-07-28"]}})),
        );
        assert_eq!(found, Discovered::Versions(vec!["2026-07-28".into()]));
        let claims = claimed(&found, &["2025-11-25".into(), "2026-07-28".into()], None);
        assert_eq!(
            describe(&claims),
            "2025-11-25 (manifest gateway.protocol_versions), \
             2026-07-28 (server/discover supportedVersions, manifest gateway.protocol_versions)"
        );
    }

    #[test]
    fn an_unsupported_version_error_names_what_is_supported() {
        let found = discovered(
            400,
            Some(
                &json!({"id": 1, "error": {"code": -32022, "message": "Unsupported protocol version",
                          "data": {"supported": ["2025-06-18", "2025-11-25"]}}}),
            ),
        );
        assert_eq!(
            found,
            Discovered::Unsupported(vec!["2025-06-18".into(), "2025-11-25".into()])
        );
        let claims = claimed(&found, &[], Some("2025-03-26"));
        assert_eq!(
            claims.keys().collect::<Vec<_>>(),
            ["2025-06-18", "2025-11-25"]
        );
    }

    #[test]
    fn a_legacy_server_claims_what_it_echoed_and_nothing_else() {
        let found = discovered(
            400,
            Some(
                &json!({"id": null, "error": {"code": -32000, "message": "Bad Request: Unsupported protocol version"}}),
            ),
        );
        assert!(matches!(found, Discovered::Other(_)));
        let claims = claimed(&found, &[], Some("2025-11-25"));
        assert_eq!(describe(&claims), "2025-11-25 (initialize)");
        assert!(claimed(&found, &[], None).is_empty());
        assert!(
            matches!(discovered(404, None), Discovered::Other(r) if r == "HTTP 404 without a discover result")
        );
    }
}
