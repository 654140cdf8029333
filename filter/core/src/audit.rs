//! The audit record: one JSON object per MCP request, allowed or refused.
//!
//! The filter publishes it as the filter state `wasm.mcp_audit` when the request ends
//! (proxy-wasm `on_log`, which Envoy runs before the connection manager's access
//! logs), and the access log shipped in envoy/ prints it with
//! `%FILTER_STATE(wasm.mcp_audit:PLAIN)%`. Field names follow the seed schema
//! (timestamp, agent_id, server_id, tool_name, input_hash, output_status, latency_ms,
//! session_id, trace_id) plus what an auditor needs to tell refusals apart.

use crate::outcome::{Decision, OutputStatus};
use chrono::{DateTime, SecondsFormat};
use serde::Serialize;
use serde_json::value::RawValue;

/// One record. Absent values are `null`, never left out, so every line has the same
/// keys.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord<'a> {
    /// Request start, ISO 8601 UTC with milliseconds.
    pub timestamp: String,
    pub agent_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    /// The registered server the request's route leads to; `null` for a path no server
    /// is registered at.
    pub server_id: Option<&'a str>,
    /// The version the server was registered with, when the registration says.
    pub server_version: Option<&'a str>,
    /// HTTP method (POST for JSON-RPC; GET/DELETE for handshake-era streams and ends).
    pub http_method: &'a str,
    /// JSON-RPC method.
    pub method: Option<&'a str>,
    pub tool_name: Option<&'a str>,
    pub prompt_name: Option<&'a str>,
    pub resource_uri: Option<&'a str>,
    /// `sha256:<hex>` of the RFC 8785 canonical `params.arguments`.
    pub input_hash: Option<&'a str>,
    pub output_status: OutputStatus,
    /// Request start to the end of the response (or of the client's connection).
    pub latency_ms: f64,
    /// The session (handshake era), as [`crate::session_ref::audit_ref`] of the
    /// `Mcp-Session-Id` reference: the same for every request of a session, but not
    /// the reference itself, which is a bearer secret.
    pub session_id: Option<&'a str>,
    /// W3C trace id: `traceparent` header, else `params._meta.traceparent`; `null`
    /// without trace context.
    pub trace_id: Option<&'a str>,
    /// The gateway's own id for the request ([`request_id`]), never a client's
    /// `x-request-id`.
    pub request_id: Option<&'a str>,
    pub protocol_version: Option<&'a str>,
    /// The JSON-RPC id as the client sent it (number or string).
    pub jsonrpc_id: Option<&'a RawValue>,
    /// `null` when no response started (the client left first).
    pub http_status: Option<u16>,
    pub decision: Decision,
    /// The JSON-RPC error code the client got, if any.
    pub error_code: Option<i64>,
    /// List calls: how many entries of the server's answer the caller did not see
    /// (per-caller lists); `null` when no list was filtered.
    pub hidden_entries: Option<usize>,
    /// `tools/call`: where the arguments first fail the tool's registered schema
    /// (`/path: reason`), from the authz-service; `null` when they validate or are not
    /// checked.
    pub schema_violation: Option<&'a str>,
}

impl AuditRecord<'_> {
    pub fn to_json(&self) -> String {
        // Serialising plain strings, numbers and a RawValue cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// ISO 8601 UTC with milliseconds (`2025-01-15T14:23:07.441Z`) from Unix nanoseconds.
/// A request id of the gateway's own: 128 random bits in the UUID version 4 layout
/// (RFC 9562 section 5.4).
pub fn request_id(mut random: [u8; 16]) -> String {
    random[6] = (random[6] & 0x0f) | 0x40;
    random[8] = (random[8] & 0x3f) | 0x80;
    let hex = hex::encode(random);
    let part = |range: std::ops::Range<usize>| hex.get(range).unwrap_or_default();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}

pub fn iso8601(unix_nanos: u64) -> String {
    let nanos = i64::try_from(unix_nanos).unwrap_or(i64::MAX);
    DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Milliseconds between two host times, to the microsecond.
pub fn latency_ms(start_nanos: u64, end_nanos: u64) -> f64 {
    let micros = end_nanos.saturating_sub(start_nanos) / 1_000;
    micros as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4() {
        assert_eq!(request_id([0; 16]), "00000000-0000-4000-8000-000000000000");
        assert_eq!(
            request_id([0xff; 16]),
            "ffffffff-ffff-4fff-bfff-ffffffffffff"
        );
        assert_ne!(request_id([1; 16]), request_id([2; 16]));
    }

    #[test]
    fn timestamps_and_latency() {
        assert_eq!(
            iso8601(1_736_950_987_441_000_000),
            "2025-01-15T14:23:07.441Z"
        );
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(latency_ms(1_000_000, 313_456_789), 312.456);
        assert_eq!(latency_ms(5, 1), 0.0);
    }

    #[test]
    fn record_has_every_key_and_json_types() {
        let id = RawValue::from_string("7".into()).unwrap();
        let record = AuditRecord {
            timestamp: iso8601(1_736_950_987_441_000_000),
            agent_id: Some("agent-prod-001"),
            user_id: None,
            server_id: Some("financial-data"),
            server_version: Some("1.3.2"),
            http_method: "POST",
            method: Some("tools/call"),
            tool_name: Some("query_transactions"),
            prompt_name: None,
            resource_uri: None,
            input_hash: Some("sha256:ab"),
            output_status: OutputStatus::Success,
            latency_ms: 312.0,
            session_id: None,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            request_id: Some("r-1"),
            protocol_version: Some("2026-07-28"),
            jsonrpc_id: Some(&id),
            http_status: Some(200),
            decision: Decision::Allowed,
            error_code: None,
            hidden_entries: Some(2),
            schema_violation: None,
        };
        assert_eq!(
            record.to_json(),
            r#"{"timestamp":"2025-01-15T14:23:07.441Z","agent_id":"agent-prod-001","user_id":null,"server_id":"financial-data","server_version":"1.3.2","http_method":"POST","method":"tools/call","tool_name":"query_transactions","prompt_name":null,"resource_uri":null,"input_hash":"sha256:ab","output_status":"success","latency_ms":312.0,"session_id":null,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","request_id":"r-1","protocol_version":"2026-07-28","jsonrpc_id":7,"http_status":200,"decision":"allowed","error_code":null,"hidden_entries":2,"schema_violation":null}"#
        );
    }
}
