//! Header-safe values: the MCP 2026-07-28 `=?base64?...?=` sentinel.
//!
//! MCP 2026-07-28 (transport, "Standard Request Headers") mirrors body values into
//! headers; a value that is not plain printable ASCII travels as `=?base64?<base64 of
//! its UTF-8 bytes>?=`. The filter decodes client headers this way before comparing
//! them with the body, and encodes the gateway's own headers the same way, so that
//! other components need to know one rule only.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

const PREFIX: &str = "=?base64?";
const SUFFIX: &str = "?=";

/// A header carried the sentinel but its payload was not base64 of UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid =?base64?...?= value")]
pub struct SentinelError;

/// Decodes a header value: sentinel values are base64-decoded, others are taken as-is.
pub fn decode(value: &str) -> Result<String, SentinelError> {
    match value
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
    {
        Some(payload) => {
            let bytes = STANDARD.decode(payload).map_err(|_| SentinelError)?;
            String::from_utf8(bytes).map_err(|_| SentinelError)
        }
        None => Ok(value.to_owned()),
    }
}

/// True when `value` can be sent verbatim: printable ASCII without surrounding
/// whitespace (HTTP trims it, RFC 9110 section 5.5) and not itself shaped like the
/// sentinel (which would make the plain value ambiguous).
fn is_plain(value: &str) -> bool {
    let bytes = value.as_bytes();
    let printable = bytes.iter().all(|b| (0x20..=0x7e).contains(b));
    let trimmed =
        bytes.first().is_none_or(|b| *b != b' ') && bytes.last().is_none_or(|b| *b != b' ');
    printable && trimmed && !(value.starts_with(PREFIX) && value.ends_with(SUFFIX))
}

/// Encodes a value for a gateway header: verbatim when plain, the sentinel otherwise.
/// The result is always printable ASCII, so no value can inject a header line.
pub fn encode(value: &str) -> String {
    if is_plain(value) {
        value.to_owned()
    } else {
        format!("{PREFIX}{}{SUFFIX}", STANDARD.encode(value.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_pass_unchanged() {
        for value in [
            "get_account_balance",
            "file:///tmp/a b.txt",
            "tools/call",
            "",
        ] {
            assert_eq!(encode(value), value);
            assert_eq!(decode(value).unwrap(), value);
        }
    }

    #[test]
    fn non_ascii_and_control_characters_are_encoded() {
        let table = [
            ("données", "=?base64?ZG9ubsOpZXM=?="),
            (
                "a\r\nx-agent-id: evil",
                "=?base64?YQ0KeC1hZ2VudC1pZDogZXZpbA==?=",
            ),
            (" padded", "=?base64?IHBhZGRlZA==?="),
            ("=?base64?YQ==?=", "=?base64?PT9iYXNlNjQ/WVE9PT89?="),
        ];
        for (raw, wire) in table {
            assert_eq!(encode(raw), wire, "{raw:?}");
            assert_eq!(decode(wire).unwrap(), raw, "{wire}");
        }
    }

    #[test]
    fn broken_sentinels_are_errors() {
        for value in ["=?base64?***?=", "=?base64?/w==?="] {
            assert_eq!(decode(value), Err(SentinelError), "{value}");
        }
    }

    #[test]
    fn encoded_values_are_header_safe() {
        for raw in ["é", "\u{0}", "\u{7f}", "日本語ツール", "tab\there"] {
            let wire = encode(raw);
            assert!(wire.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{wire}");
        }
    }
}
