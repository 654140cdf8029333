//! The one YAML writer of the rendered files (block style, as serde_norway writes it).
//!
//! Why not serde_norway's own: it quotes a string only where YAML 1.2 would read
//! something else, but Envoy (yaml-cpp), kubectl and istiod read YAML 1.1 too, where
//! `on`, `yes`, `y`, `off`, `no`, `n` are booleans. A server id, tool name, version,
//! namespace or label value spelt like that (all legal) would reach Envoy as `true`:
//! route metadata changed type, a `descriptor_value` refused with the whole route
//! update. Here a string stays plain only in a shape no YAML reader takes for anything
//! but a string; everything else is a double-quoted scalar ([`super::quoted`]).

use super::quoted;
use serde_json::Value;

/// The document for `value`, ending with a line break.
pub(crate) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => block(value, 0, &mut out),
        Value::Array(items) if !items.is_empty() => block(value, 0, &mut out),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

/// YAML 1.1 words for booleans and null, in any case (`y|Y|yes|Yes|YES|n|...|on|off`).
const YAML11_WORDS: [&str; 11] = [
    "y", "yes", "n", "no", "true", "false", "on", "off", "null", "nan", "inf",
];

/// A string written without quotes: a letter or `/` first (so never a number,
/// timestamp, alias, tag, anchor, indicator or `.inf`), then letters, digits and
/// `_ . / -` (no `:`, `#` or spaces), and not a YAML 1.1 boolean or null word.
fn plain(text: &str) -> bool {
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/');
    first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !YAML11_WORDS.contains(&text.to_ascii_lowercase().as_str())
}

fn string(text: &str) -> String {
    if plain(text) {
        text.to_owned()
    } else {
        quoted(text)
    }
}

/// A scalar, or an empty collection, on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".to_owned(),
        Value::Object(_) => "{}".to_owned(),
    }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

/// A non-empty mapping or sequence, each line indented by `indent`. A sequence under
/// a key sits at the key's indentation (serde_norway's and kubectl's style).
fn block(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                out.push_str(&pad);
                out.push_str(&string(key));
                out.push(':');
                match item {
                    Value::Object(_) if is_block(item) => {
                        out.push('\n');
                        block(item, indent + 2, out);
                    }
                    Value::Array(_) if is_block(item) => {
                        out.push('\n');
                        block(item, indent, out);
                    }
                    scalar => {
                        out.push(' ');
                        out.push_str(&inline(scalar));
                        out.push('\n');
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if is_block(item) {
                    // The item as a block two further in, its first line's indentation
                    // turned into the dash.
                    let mut nested = String::new();
                    block(item, indent + 2, &mut nested);
                    out.push_str(&pad);
                    out.push_str("- ");
                    out.push_str(&nested[indent + 2..]);
                } else {
                    out.push_str(&pad);
                    out.push_str("- ");
                    out.push_str(&inline(item));
                    out.push('\n');
                }
            }
        }
        scalar => {
            out.push_str(&pad);
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_11_booleans_and_other_lookalikes_stay_strings() {
        for word in [
            "on",
            "ON",
            "Yes",
            "y",
            "N",
            "off",
            "no",
            "true",
            "Null",
            "~",
            "1.0",
            "0x1f",
            "1:20",
            "2026-12-02",
            "*",
            "@type",
            "&a",
            "!x",
            ".inf",
            "-",
            "a: b",
            "a #b",
            "",
            " x",
        ] {
            assert!(!plain(word), "{word:?} must be quoted");
            let text = to_yaml(&json!({ word: word }));
            let back: Value = serde_norway::from_str(&text).unwrap();
            assert_eq!(back, json!({ word: word }), "{text}");
        }
        for word in [
            "financial-data",
            "mcp-server/weather",
            "/mcp",
            "STRICT_DNS",
            "a.b_c",
        ] {
            assert!(plain(word), "{word:?} can be plain");
        }
    }

    #[test]
    fn blocks_read_back_as_written() {
        let value = json!({
            "resources": [
                { "@type": "t", "name": "on", "list": ["y", 1, true, null, [], {}], "map": { "k": [ { "a": 1 }, [2, 3] ] } },
                "plain",
            ],
            "empty": {},
            "n": 5,
        });
        let text = to_yaml(&value);
        let back: Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(back, value, "{text}");
        assert!(
            text.contains("\nresources:\n- \"@type\": t\n  list:\n  - \"y\"\n"),
            "{text}"
        );
        assert!(text.contains("\n  name: \"on\"\n"), "{text}");
    }

    #[test]
    fn scalars_and_empty_documents() {
        assert_eq!(to_yaml(&json!("yes")), "\"yes\"\n");
        assert_eq!(to_yaml(&json!([])), "[]\n");
        assert_eq!(to_yaml(&json!({})), "{}\n");
    }
}
