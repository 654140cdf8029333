//! The authz-service's checks of a `tools/call`: `Mcp-Param-*` headers against the
//! arguments, then the arguments against the tool's registered schema.
//!
//! Input: byte 0 picks the schema (one of [`SCHEMAS`]) and the mode (bits 2-3:
//! enforce, report, off); then header lines `name: value` up to an empty line, then
//! the request body.
//!
//! Properties:
//! - the arguments checked are the ones a strict parser reads: when the body is one
//!   object without duplicate or case-folded `params`/`arguments`, a call is valid
//!   exactly when the schema accepts `params.arguments` as `serde_json` reads it;
//! - a refusal names where the arguments fail (a JSON pointer or `(root)`);
//! - the audit form of a refusal (`masked`) never carries an argument's string value
//!   (raw arguments are never logged);
//! - mode `off` without header annotations checks nothing.

use mcp_authz_service::schemas::{Mode, ToolSchema, Verdict};
use serde_json::Value;

/// Schemas shaped like registered ones: types, required, additionalProperties false,
/// patterns, enums, nested objects and arrays, an `x-mcp-header` annotation, a draft-07
/// one.
const SCHEMAS: [&str; 4] = [
    r#"{"type":"object","properties":{"account_id":{"type":"string","pattern":"^acc-[0-9]+$"},"limit":{"type":"integer","minimum":1}},"required":["account_id"],"additionalProperties":false}"#,
    r#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"days":{"type":"integer","maximum":7},"unit":{"enum":["c","f"]},"tags":{"type":"array","items":{"type":"string","maxLength":8}}}}"#,
    r#"{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"},"dry_run":{"type":"boolean","x-mcp-header":"Dry-Run"},"count":{"type":"integer","x-mcp-header":"Count"}},"required":["region"]}"#,
    r#"{"type":"object","properties":{"filter":{"type":"object","properties":{"from":{"type":"string","format":"date"},"amount":{"type":"number","exclusiveMinimum":0}},"additionalProperties":false}},"patternProperties":{"^field_[0-9]+$":{"type":"object"}}}"#,
];

pub fn run(data: &[u8]) {
    let [control, rest @ ..] = data else {
        return;
    };
    let source: Value = serde_json::from_str(SCHEMAS[usize::from(control % 4)]).expect("schema");
    let schema = ToolSchema::compile(&source).expect("the schemas compile");
    let mode = match (control >> 2) % 3 {
        0 => Mode::Enforce,
        1 => Mode::Report,
        _ => Mode::Off,
    };
    let (headers, body) = split_head(rest);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let verdict = schema.check(mode, Some(body), true, header);

    let annotated = !schema.headers().is_empty();
    if mode == Mode::Off && !annotated {
        assert_eq!(verdict, Verdict::Skipped);
    }
    let strict = strict_arguments(body);
    match &verdict {
        Verdict::Invalid { detail, masked } => {
            assert!(
                detail.starts_with('/') || detail.starts_with("(root)"),
                "a refusal names where: {detail}"
            );
            if let Some(arguments) = &strict {
                for value in strings(arguments) {
                    // A value that is also a key or part of the schema may show as one.
                    if value.len() >= 4
                        && !SCHEMAS.iter().any(|s| s.contains(value.as_str()))
                        && !keys(arguments).iter().any(|k| k.contains(value.as_str()))
                    {
                        assert!(
                            !masked.contains(value.as_str()),
                            "an argument value in the audit form: {masked}"
                        );
                    }
                }
            }
        }
        Verdict::Valid | Verdict::Skipped | Verdict::HeaderMismatch(_) => {}
    }
    if mode != Mode::Off && !annotated {
        if let Some(arguments) = &strict {
            let valid = schema.validator().is_valid(arguments);
            match &verdict {
                Verdict::Valid => assert!(valid, "checked arguments other than the strict reading"),
                Verdict::Invalid { .. } => assert!(!valid, "refused arguments the schema accepts"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// Header lines up to the first empty line, and the rest.
fn split_head(data: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let Some(end) = data.windows(2).position(|w| w == b"\n\n") else {
        return (Vec::new(), data);
    };
    let head = String::from_utf8_lossy(&data[..end]);
    let headers = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (headers, &data[end + 2..])
}

/// `params.arguments` when the body is unambiguous: one object, no repeated or
/// case-folded `params` / `arguments` key (absent or null arguments read as `{}`).
fn strict_arguments(body: &[u8]) -> Option<Value> {
    let top: Value = serde_json::from_slice(body).ok()?;
    let top = top.as_object()?;
    if !unambiguous(body, "params") {
        return None;
    }
    let params = match top.get("params") {
        None => return Some(Value::Object(Default::default())),
        Some(p) => p.as_object()?,
    };
    match params.get("arguments") {
        None | Some(Value::Null) => Some(Value::Object(Default::default())),
        Some(arguments) => {
            if !unambiguous(body, "arguments") {
                return None;
            }
            Some(arguments.clone())
        }
    }
}

/// No key anywhere in the text appears twice as `key` or folds to it under another
/// spelling (a conservative test: any such body is left out of the differential).
fn unambiguous(body: &[u8], key: &str) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let mut exact = 0;
    for (i, _) in text.match_indices('"') {
        let rest = &text[i + 1..];
        let Some(end) = rest.find('"') else { break };
        let candidate = &rest[..end];
        if candidate == key {
            exact += 1;
        } else if mcp_filter_core::folds_to(candidate, key) || candidate.contains('\\') {
            return false;
        }
    }
    exact <= 1
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

fn keys(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().flat_map(keys).collect(),
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| std::iter::once(k.clone()).chain(keys(v)))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(schema: usize, mode: Mode, headers: &[(&str, &str)], body: &str) -> Verdict {
        let source: Value = serde_json::from_str(SCHEMAS[schema]).unwrap();
        let schema = ToolSchema::compile(&source).unwrap();
        schema.check(mode, Some(body.as_bytes()), true, |name: &str| {
            headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        })
    }

    /// The seeds reach every verdict, so the properties are not checked on nothing.
    #[test]
    fn the_properties_see_every_verdict() {
        let call = |arguments: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{arguments}}}}}"#
            )
        };
        assert_eq!(
            verdict(0, Mode::Enforce, &[], &call(r#"{"account_id":"acc-1"}"#)),
            Verdict::Valid
        );
        assert_eq!(verdict(0, Mode::Off, &[], &call("7")), Verdict::Skipped);
        let Verdict::Invalid { detail, masked } = verdict(
            0,
            Mode::Report,
            &[],
            &call(r#"{"account_id":"acc-1","x":"hunter2-password"}"#),
        ) else {
            panic!("invalid")
        };
        assert!(detail.starts_with("(root)"), "{detail}");
        assert!(!masked.contains("hunter2-password"), "{masked}");
        let Verdict::Invalid { masked, .. } = verdict(
            0,
            Mode::Enforce,
            &[],
            &call(r#"{"account_id":"wire-me-money"}"#),
        ) else {
            panic!("invalid")
        };
        assert!(!masked.contains("wire-me-money"), "{masked}");
        assert!(matches!(
            verdict(
                2,
                Mode::Off,
                &[("mcp-param-region", "us")],
                &call(r#"{"region":"eu"}"#)
            ),
            Verdict::HeaderMismatch(_)
        ));
    }
}
