//! The parts of the request headers the filter decides on, collected once in the
//! headers callback (the host's header map cannot be read safely later).

use crate::headers::{MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};

/// One client header that must appear at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClientHeader {
    #[default]
    Absent,
    Value(String),
    /// Sent more than once: proxies and servers disagree on which copy counts, so the
    /// gateway refuses rather than guess.
    Repeated,
    /// Not plain ASCII: non-ASCII text travels only in the `=?base64?...?=` sentinel.
    /// Raw bytes above 0x7f are refused, not read as UTF-8: servers read header bytes
    /// as ISO-8859-1 (RFC 9110 section 5.5; the Python SDK does), so "données" sent raw
    /// would be one name here and another there (found by the differential corpus).
    NotText,
}

impl ClientHeader {
    fn add(&mut self, value: &[u8]) {
        *self = match self {
            ClientHeader::Absent if value.is_ascii() => {
                ClientHeader::Value(String::from_utf8_lossy(value).into_owned())
            }
            ClientHeader::Absent => ClientHeader::NotText,
            _ => ClientHeader::Repeated,
        };
    }
}

/// What the filter needs from the request headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// `:method`.
    pub http_method: String,
    /// `:path`, with query string.
    pub path: String,
    pub protocol_version: ClientHeader,
    pub mcp_method: ClientHeader,
    pub mcp_name: ClientHeader,
    /// `content-encoding`, if any (a compressed body cannot be inspected).
    pub content_encoding: Option<String>,
    /// `content-length`, if sent (lets an oversized body be refused before reading it).
    pub content_length: Option<u64>,
    /// `mcp-session-id` (handshake era), for the audit record and session metrics.
    pub session_id: Option<String>,
    /// `traceparent` (W3C Trace Context), first copy.
    pub traceparent: Option<String>,
    /// The first `Mcp-Param-*` header sent more than once or not as plain ASCII, by
    /// name. The authz-service compares these headers with the arguments (MCP
    /// 2026-07-28 "Mcp-Param" headers), but ext_authz hands it repeated headers joined
    /// with commas, so a repeat would pass there as one value while the server reads
    /// one copy; raw non-ASCII bytes read differently as UTF-8 and as ISO-8859-1.
    pub bad_param_header: Option<(String, ClientHeader)>,
}

/// The prefix of the headers that mirror tool arguments (lower case).
pub const MCP_PARAM_PREFIX: &str = "mcp-param-";

impl RequestHead {
    /// Collects the head from the header list as the host returns it (names lower-case).
    pub fn from_headers<'a, I>(headers: I) -> RequestHead
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut head = RequestHead::default();
        // Bounded by Envoy's header count limit (100 by default).
        let mut params: Vec<&str> = Vec::new();
        for (name, value) in headers {
            if name.starts_with(MCP_PARAM_PREFIX) && head.bad_param_header.is_none() {
                if params.contains(&name) {
                    head.bad_param_header = Some((name.to_owned(), ClientHeader::Repeated));
                } else if !value.is_ascii() {
                    head.bad_param_header = Some((name.to_owned(), ClientHeader::NotText));
                }
                params.push(name);
            }
            let text = || String::from_utf8_lossy(value).into_owned();
            match name {
                ":method" => head.http_method = text(),
                ":path" => head.path = text(),
                MCP_PROTOCOL_VERSION => head.protocol_version.add(value),
                MCP_METHOD => head.mcp_method.add(value),
                MCP_NAME => head.mcp_name.add(value),
                "content-encoding" => head.content_encoding = Some(text()),
                "content-length" => head.content_length = text().trim().parse().ok(),
                MCP_SESSION_ID if head.session_id.is_none() => head.session_id = Some(text()),
                "traceparent" if head.traceparent.is_none() => head.traceparent = Some(text()),
                _ => {}
            }
        }
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_the_headers_it_needs() {
        let headers: Vec<(&str, &[u8])> = vec![
            (":method", b"POST"),
            (":path", b"/mcp?x=1"),
            ("mcp-method", b"tools/call"),
            ("mcp-name", b"a"),
            ("mcp-name", b"b"),
            ("mcp-protocol-version", b"\xff"),
            ("content-length", b"42"),
            ("x-other", b"ignored"),
            ("mcp-session-id", b"s-1"),
            ("traceparent", b"00-abc"),
            ("traceparent", b"00-def"),
        ];
        let head = RequestHead::from_headers(headers);
        assert_eq!(head.http_method, "POST");
        assert_eq!(head.path, "/mcp?x=1");
        assert_eq!(head.mcp_method, ClientHeader::Value("tools/call".into()));
        assert_eq!(head.mcp_name, ClientHeader::Repeated);
        assert_eq!(head.protocol_version, ClientHeader::NotText);
        assert_eq!(head.content_length, Some(42));
        assert_eq!(head.content_encoding, None);
        assert_eq!(head.session_id.as_deref(), Some("s-1"));
        assert_eq!(head.traceparent.as_deref(), Some("00-abc"));
    }

    #[test]
    fn repeated_or_raw_non_ascii_mcp_param_headers_are_noted() {
        let ok = RequestHead::from_headers([
            ("mcp-param-region", &b"eu"[..]),
            ("mcp-param-other", b"=?base64?ZG9ubsOpZXM=?="),
        ]);
        assert_eq!(ok.bad_param_header, None);
        let repeated = RequestHead::from_headers([
            ("mcp-param-region", &b"eu"[..]),
            ("mcp-param-region", b"us"),
        ]);
        assert_eq!(
            repeated.bad_param_header,
            Some(("mcp-param-region".into(), ClientHeader::Repeated))
        );
        let raw = RequestHead::from_headers([("mcp-param-name", "donn\u{e9}es".as_bytes())]);
        assert_eq!(
            raw.bad_param_header,
            Some(("mcp-param-name".into(), ClientHeader::NotText))
        );
    }

    #[test]
    fn raw_non_ascii_is_not_text_even_when_valid_utf8() {
        let head = RequestHead::from_headers([("mcp-name", "donn\u{e9}es".as_bytes())]);
        assert_eq!(head.mcp_name, ClientHeader::NotText);
        let head = RequestHead::from_headers([("mcp-name", &b"=?base64?ZG9ubsOpZXM=?="[..])]);
        assert_eq!(
            head.mcp_name,
            ClientHeader::Value("=?base64?ZG9ubsOpZXM=?=".into())
        );
    }
}
