//! The request flow against a fake host that can refuse any call.

use super::*;
use crate::fake_host::FakeHost;
use crate::metric_ids::MetricIds;
use crate::session_ref;
use serde_json::Value;
use std::collections::HashMap;

const BODY: &str = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_account_balance","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

/// The flow tests' requests: an MCP `tools/call` POST with this body.
pub(super) trait McpPost {
    fn mcp_post(extra: &[(&str, &str)]) -> FakeHost;
    /// The single local reply, as (status, JSON-RPC error code).
    fn reply(&self) -> (u16, i64);
    /// The audit record the filter published.
    fn record(&self) -> Value;
}

impl McpPost for FakeHost {
    fn mcp_post(extra: &[(&str, &str)]) -> FakeHost {
        let mut headers = vec![
            (":method", "POST"),
            (":path", "/mcp"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "get_account_balance"),
        ];
        headers.extend_from_slice(extra);
        FakeHost {
            body: BODY.as_bytes().to_vec(),
            ..FakeHost::with_headers(&headers)
        }
    }

    fn reply(&self) -> (u16, i64) {
        assert_eq!(self.replies.len(), 1, "{:?}", self.replies);
        let reply = &self.replies[0];
        assert!(reply
            .headers
            .contains(&("content-type".into(), "application/json".into())));
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        (reply.status, body["error"]["code"].as_i64().unwrap())
    }

    fn record(&self) -> Value {
        let bytes = self
            .set_property_value("mcp_audit")
            .expect("an audit record");
        serde_json::from_slice(bytes).unwrap()
    }
}

fn flow(extra_config: &str) -> RequestFlow {
    let json = format!(r#"{{"server_id":"financial-data","max_body_bytes":1000{extra_config}}}"#);
    RequestFlow::new(
        Rc::new(FilterConfig::from_json(json.as_bytes()).unwrap()),
        Rc::new(MetricIds::default()),
    )
}

/// Headers, then the body in two pieces, as Envoy delivers a paused request.
fn run(flow: &mut RequestFlow, host: &mut FakeHost) -> Verdict {
    assert_eq!(flow.on_headers(host, false), Verdict::Pause);
    assert_eq!(flow.on_body(host, 10, false), Verdict::Pause);
    let size = host.body.len();
    flow.on_body(host, size, true)
}

#[test]
fn labels_an_mcp_post_and_strips_forgeries() {
    let mut host = FakeHost::mcp_post(&[
        ("x-agent-id", "admin"),
        ("x-mcp-tool-name", "x"),
        ("x-mcp-tool-name", "y"),
    ]);
    assert_eq!(run(&mut flow(""), &mut host), Verdict::Continue);
    assert!(host.replies.is_empty());
    assert_eq!(host.header("x-mcp-tool-name"), ["get_account_balance"]);
    assert_eq!(host.header("x-mcp-method"), ["tools/call"]);
    assert_eq!(host.header("x-mcp-request-id"), ["3"]);
    assert!(host.header("x-agent-id").is_empty());
    assert!(host.route_cleared);
}

#[test]
fn other_paths_are_stripped_and_passed() {
    let mut host = FakeHost::mcp_post(&[("x-user-id", "ceo")]);
    host.headers[1].1 = "/health".into();
    assert_eq!(flow("").on_headers(&mut host, true), Verdict::Continue);
    assert!(host.header("x-user-id").is_empty());
    assert!(host.header("x-mcp-method").is_empty());
}

#[test]
fn body_over_the_limit_is_refused_while_streaming() {
    let mut host = FakeHost::mcp_post(&[]);
    let mut flow = flow("");
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    assert_eq!(flow.on_body(&mut host, 1001, false), Verdict::Pause);
    assert_eq!(host.reply(), (413, -31001));
    // Later pieces of the same request stay stopped.
    assert_eq!(flow.on_body(&mut host, 2000, true), Verdict::Pause);
    assert_eq!(flow.on_trailers(&mut host), Verdict::Pause);
    assert_eq!(host.replies.len(), 1);
}

#[test]
fn request_without_body_is_a_parse_error() {
    let mut host = FakeHost::mcp_post(&[]);
    assert_eq!(flow("").on_headers(&mut host, true), Verdict::Pause);
    assert_eq!(host.reply(), (400, -32700));
}

#[test]
fn request_with_trailers_is_labelled_at_the_trailers() {
    let mut host = FakeHost::mcp_post(&[]);
    let mut flow = flow("");
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    let size = host.body.len();
    assert_eq!(flow.on_body(&mut host, size, false), Verdict::Pause);
    assert_eq!(flow.on_trailers(&mut host), Verdict::Continue);
    assert_eq!(host.header("x-mcp-tool-name"), ["get_account_balance"]);
}

/// Every host refusal on the way to forwarding ends in a 500 with a JSON-RPC body,
/// never in an unlabelled request going upstream.
#[test]
fn host_refusals_fail_closed() {
    for call in [
        "request_headers",
        "remove_request_header",
        "request_body",
        "set_request_header",
        "property",
    ] {
        let mut host = FakeHost::mcp_post(&[("x-agent-id", "forged")]);
        host.refuse.push(call);
        host.properties.insert(
            vec!["connection".into(), "uri_san_peer_certificate".into()],
            b"spiffe://a".to_vec(),
        );
        let mut flow = flow(r#","agent_identity":{"source":"peer_certificate_uri_san"}"#);
        let verdict = match flow.on_headers(&mut host, false) {
            Verdict::Pause if host.replies.is_empty() => {
                let size = host.body.len();
                flow.on_body(&mut host, size, true)
            }
            verdict => verdict,
        };
        assert_eq!(verdict, Verdict::Pause, "{call}");
        assert_eq!(host.reply(), (500, -31000), "{call}");
        assert!(
            host.logs.iter().any(|(level, _)| *level == Level::Error),
            "{call}"
        );
    }
}

#[test]
fn failed_error_response_still_stops_the_request() {
    let mut host = FakeHost::mcp_post(&[]);
    host.body = b"not json".to_vec();
    host.refuse.push("send_response");
    assert_eq!(run(&mut flow(""), &mut host), Verdict::Pause);
    assert!(host
        .logs
        .iter()
        .any(|(_, m)| m.contains("cannot send the error response")));
}

#[test]
fn route_cache_failure_is_logged_not_fatal() {
    let mut host = FakeHost::mcp_post(&[]);
    host.refuse.push("clear_route_cache");
    assert_eq!(run(&mut flow(""), &mut host), Verdict::Continue);
    assert!(host.logs.iter().any(|(_, m)| m.contains("route cache")));
}

#[test]
fn agent_identity_from_a_verified_jwt_claim() {
    let config = r#","agent_identity":{"source":"jwt_authn","payload_in_metadata":"jwt_payload","claim":"azp"}"#;
    let path: Vec<String> = [
        "metadata",
        "filter_metadata",
        "envoy.filters.http.jwt_authn",
        "jwt_payload",
        "azp",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let mut host = FakeHost::mcp_post(&[("x-agent-id", "forged")]);
    host.properties
        .insert(path.clone(), "agent-prod-001".into());
    assert_eq!(run(&mut flow(config), &mut host), Verdict::Continue);
    assert_eq!(host.header("x-agent-id"), ["agent-prod-001"]);

    // No verified token: no agent header, and the forged one is gone.
    let mut host = FakeHost::mcp_post(&[("x-agent-id", "forged")]);
    assert_eq!(run(&mut flow(config), &mut host), Verdict::Continue);
    assert!(host.header("x-agent-id").is_empty());

    // A claim with a line break cannot inject a header.
    let mut host = FakeHost::mcp_post(&[]);
    host.properties.insert(path, "a\r\nx-user-id: ceo".into());
    assert_eq!(run(&mut flow(config), &mut host), Verdict::Continue);
    assert_eq!(
        host.header("x-agent-id"),
        ["=?base64?YQ0KeC11c2VyLWlkOiBjZW8=?="]
    );
}

/// A local reply from a later filter (`code_details`) after a labelled request.
fn local_reply(details: &str, headers: &[(&str, &str)]) -> (RequestFlow, FakeHost) {
    let mut flow = flow("");
    let mut host = FakeHost::mcp_post(&[]);
    assert_eq!(run(&mut flow, &mut host), Verdict::Continue);
    host.properties.insert(
        vec!["response".into(), "code_details".into()],
        details.into(),
    );
    host.response_headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    host.response_body =
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-31020,"message":"rate limited"}}"#.to_vec();
    (flow, host)
}

#[test]
fn rate_limit_reply_gets_the_request_id() {
    let (mut flow, mut host) = local_reply(
        "request_rate_limited",
        &[
            (":status", "429"),
            ("retry-after", "17"),
            ("content-length", "76"),
        ],
    );
    assert_eq!(
        flow.on_response_headers(&mut host, false),
        Verdict::Continue
    );
    assert!(host
        .response_headers
        .iter()
        .all(|(k, _)| k != "content-length"));
    let size = host.response_body.len();
    assert_eq!(flow.on_response_body(&mut host, 10, false), Verdict::Pause);
    assert_eq!(
        flow.on_response_body(&mut host, size, true),
        Verdict::Continue
    );
    let body: Value = serde_json::from_slice(&host.response_body).unwrap();
    assert_eq!(body["id"], 3);
    assert_eq!(body["error"]["code"], -31020);
    assert_eq!(
        body["error"]["message"],
        "rate limited: too many calls of this tool by this agent; retry after 17 seconds"
    );
}

#[test]
fn envoy_error_replies_get_a_json_rpc_error_with_the_request_id() {
    for (details, status, code) in [
        ("ext_authz_error", "503", -31012),
        (
            "upstream_reset_before_response_started{remote_connection_failure}",
            "503",
            -31030,
        ),
        ("no_healthy_upstream", "503", -31030),
        ("response_timeout", "504", -31031),
        ("upstream_per_try_timeout", "504", -31031),
    ] {
        let (mut flow, mut host) = local_reply(details, &[(":status", status)]);
        flow.on_response_headers(&mut host, false);
        let size = host.response_body.len();
        flow.on_response_body(&mut host, size, true);
        let body: Value = serde_json::from_slice(&host.response_body).unwrap();
        assert_eq!(
            (body["id"].clone(), body["error"]["code"].clone()),
            (Value::from(3), Value::from(code)),
            "{details}"
        );
    }
}

#[test]
fn upstream_responses_are_untouched() {
    for details in ["via_upstream", "ext_authz_denied"] {
        let (mut flow, mut host) =
            local_reply(details, &[(":status", "200"), ("content-length", "76")]);
        let before = host.response_body.clone();
        assert_eq!(
            flow.on_response_headers(&mut host, false),
            Verdict::Continue
        );
        assert_eq!(
            flow.on_response_body(&mut host, before.len(), true),
            Verdict::Continue
        );
        assert_eq!(host.response_body, before, "{details}");
        assert!(host
            .response_headers
            .iter()
            .any(|(k, _)| k == "content-length"));
    }
}

// ---- audit record and metrics ----

const CALL: &str = r#"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"get_account_balance","arguments":{"b":2,"a":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}"#;

fn audited_flow() -> RequestFlow {
    flow(r#","metrics":{"tool_names":["get_account_balance"]}"#)
}

/// A labelled `tools/call` with arguments, then a response head.
fn call_with_response(flow: &mut RequestFlow, response_headers: &[(&str, &str)]) -> FakeHost {
    let mut host = FakeHost::mcp_post(&[("x-request-id", "req-9")]);
    host.body = CALL.as_bytes().to_vec();
    assert_eq!(run(flow, &mut host), Verdict::Continue);
    // ext_authz's allow response sets the verified identity.
    host.headers
        .push(("x-agent-id".into(), "agent-prod-001".into()));
    host.response_headers = response_headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    host
}

/// Delivers a response body in chunks of `chunk` bytes, as Envoy streams it.
fn stream_body(flow: &mut RequestFlow, host: &mut FakeHost, body: &[u8], chunk: usize, end: bool) {
    let pieces: Vec<&[u8]> = body.chunks(chunk).collect();
    for (i, piece) in pieces.iter().enumerate() {
        host.response_body = piece.to_vec();
        let last = end && i + 1 == pieces.len();
        assert_eq!(
            flow.on_response_body(host, piece.len(), last),
            Verdict::Continue
        );
        // Bytes go on unchanged.
        assert_eq!(host.response_body, *piece);
    }
}

/// A whole labelled call: response head `head`, then `body` in chunks of `chunk`
/// bytes (with end of stream if `end`), then `on_log`. A 5xx head comes from Envoy
/// itself, as its route timeout answers (code_details `upstream_response_timeout`).
fn answered(head: &[(&str, &str)], body: &[u8], chunk: usize, end: bool) -> FakeHost {
    let mut flow = audited_flow();
    let mut host = call_with_response(&mut flow, head);
    let from_envoy = head
        .iter()
        .any(|(k, v)| *k == ":status" && v.starts_with('5'));
    if from_envoy {
        host.properties.insert(
            vec!["response".into(), "code_details".into()],
            b"upstream_response_timeout".to_vec(),
        );
    }
    flow.on_response_headers(&mut host, false);
    if from_envoy {
        // Envoy's own reply is held and rewritten as a JSON-RPC error.
        host.response_body = body.to_vec();
        flow.on_response_body(&mut host, body.len(), true);
        let reply: Value = serde_json::from_slice(&host.response_body).unwrap();
        assert_eq!(reply["error"]["code"], -31031);
    } else {
        stream_body(&mut flow, &mut host, body, chunk, end);
    }
    flow.on_log(&mut host);
    host
}

#[test]
fn json_success_is_recorded_with_every_field() {
    let mut flow = audited_flow();
    let mut host = call_with_response(
        &mut flow,
        &[(":status", "200"), ("content-type", "application/json")],
    );
    assert_eq!(
        flow.on_response_headers(&mut host, false),
        Verdict::Continue
    );
    let body = br#"{"jsonrpc":"2.0","id":"c-1","result":{"content":[{"type":"text","text":"42"}],"isError":false}}"#;
    stream_body(&mut flow, &mut host, body, 7, true);
    flow.on_log(&mut host);

    let record = host.record();
    let expected_hash =
        crate::input_hash::input_hash(&RawValue::from_string(r#"{"a":"x","b":2}"#.into()).unwrap())
            .unwrap();
    assert_eq!(record["timestamp"], "2025-01-15T14:23:07.442Z");
    assert_eq!(record["agent_id"], "agent-prod-001");
    assert_eq!(record["user_id"], Value::Null);
    assert_eq!(record["server_id"], "financial-data");
    assert_eq!(record["method"], "tools/call");
    assert_eq!(record["tool_name"], "get_account_balance");
    assert_eq!(record["input_hash"], expected_hash.as_str());
    assert_eq!(record["output_status"], "success");
    assert_eq!(record["decision"], "allowed");
    assert_eq!(record["http_status"], 200);
    assert_eq!(record["jsonrpc_id"], "c-1");
    assert_eq!(record["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    // The gateway's own id, not the client's x-request-id ("req-9").
    assert_eq!(record["request_id"], "2a2a2a2a-2a2a-4a2a-aa2a-2a2a2a2a2a2a");
    assert_eq!(record["protocol_version"], "2026-07-28");
    assert_eq!(record["error_code"], Value::Null);
    assert!(record["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(
        !String::from_utf8_lossy(host.set_property_value("mcp_audit").unwrap()).contains("\"x\""),
        "raw arguments never logged"
    );

    let calls =
        "mcp_tool_calls_total;server=financial-data;tool=get_account_balance;outcome=success";
    assert_eq!(host.counters[calls], 1);
    assert_eq!(
        host.counters
            ["mcp_requests_total;server=financial-data;method=tools/call;decision=allowed"],
        1
    );
    assert_eq!(
        host.histograms["mcp_tool_call_duration_ms;server=financial-data;tool=get_account_balance"]
            .len(),
        1
    );
}

#[test]
fn sse_tool_error_after_progress_read_byte_by_byte() {
    let stream = concat!(
        "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\r\n\r\n",
        "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"c-1\",\"result\":{\"content\":[],\"isError\":true}}\r\n\r\n",
    );
    let sse = [(":status", "200"), ("content-type", "text/event-stream")];
    let host = answered(&sse, stream.as_bytes(), 1, true);
    assert_eq!(host.record()["output_status"], "error");
    assert_eq!(host.record()["decision"], "allowed");
}

#[test]
fn stream_cut_before_the_response_is_partial() {
    let progress =
        "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n";
    // The client disconnects: no end of stream, Envoy goes straight to on_log.
    let sse = [(":status", "200"), ("content-type", "text/event-stream")];
    let host = answered(&sse, progress.as_bytes(), 16, false);
    assert_eq!(host.record()["output_status"], "partial");
    assert_eq!(host.record()["http_status"], 200);
    assert_eq!(
        host.counters
            ["mcp_tool_calls_total;server=financial-data;tool=get_account_balance;outcome=partial"],
        1
    );
}

#[test]
fn json_rpc_error_code_and_timeout() {
    let json = [(":status", "200"), ("content-type", "application/json")];
    let error = br#"{"jsonrpc":"2.0","id":"c-1","error":{"code":-32602,"message":"Unknown tool"}}"#;
    let record = answered(&json, error, 100, true).record();
    assert_eq!(
        (
            record["output_status"].clone(),
            record["error_code"].clone()
        ),
        (Value::from("error"), Value::from(-32602))
    );

    let timeout = [(":status", "504"), ("content-type", "text/plain")];
    let record = answered(&timeout, b"upstream request timeout", 100, true).record();
    assert_eq!(record["output_status"], "timeout");
    assert_eq!(record["http_status"], 504);
}

#[test]
fn a_started_stream_cut_by_the_route_timeout_is_a_timeout() {
    let mut flow = audited_flow();
    let mut host = call_with_response(
        &mut flow,
        &[(":status", "200"), ("content-type", "text/event-stream")],
    );
    flow.on_response_headers(&mut host, false);
    stream_body(&mut flow, &mut host, b": keep-alive\n\n", 100, false);
    // Envoy resets the stream; only now does code_details say why.
    host.properties.insert(
        vec!["response".into(), "code_details".into()],
        b"upstream_response_timeout".to_vec(),
    );
    flow.on_log(&mut host);
    assert_eq!(host.record()["output_status"], "timeout");
    assert_eq!(host.record()["http_status"], 200);
}

#[test]
fn refusals_are_recorded_with_what_was_read() {
    // Refused by the filter: the tool is known, the record says why.
    let mut flow = audited_flow();
    let mut host = FakeHost::mcp_post(&[]);
    host.headers.retain(|(k, _)| k != "mcp-name");
    assert_eq!(run(&mut flow, &mut host), Verdict::Pause);
    flow.on_log(&mut host);
    let record = host.record();
    assert_eq!(record["decision"], "invalid");
    assert_eq!(record["http_status"], 400);
    assert_eq!(record["error_code"], -32020);
    assert_eq!(record["tool_name"], "get_account_balance");
    assert_eq!(record["output_status"], "error");
    assert_eq!(
        host.counters
            ["mcp_tool_calls_total;server=financial-data;tool=get_account_balance;outcome=invalid"],
        1
    );

    // Refused by the rate limit filter: still reshaped, and recorded.
    let (mut flow, mut host) = local_reply("request_rate_limited", &[(":status", "429")]);
    flow.on_response_headers(&mut host, false);
    let size = host.response_body.len();
    flow.on_response_body(&mut host, size, true);
    flow.on_log(&mut host);
    let record = host.record();
    assert_eq!(
        (record["decision"].clone(), record["error_code"].clone()),
        (Value::from("rate_limited"), Value::from(-31020))
    );
    assert_eq!(record["jsonrpc_id"], 3);
}

#[test]
fn requests_off_the_mcp_paths_get_no_record() {
    let mut host = FakeHost::mcp_post(&[]);
    host.headers[1].1 = "/health".into();
    let mut flow = flow("");
    flow.on_headers(&mut host, true);
    flow.on_log(&mut host);
    assert!(host.set_properties.is_empty());
    assert!(host.counters.is_empty());
}

#[test]
fn unknown_tools_are_counted_as_other() {
    let mut flow = flow("");
    let mut host = call_with_response(
        &mut flow,
        &[(":status", "200"), ("content-type", "application/json")],
    );
    flow.on_response_headers(&mut host, false);
    stream_body(
        &mut flow,
        &mut host,
        br#"{"id":"c-1","result":{}}"#,
        100,
        true,
    );
    flow.on_log(&mut host);
    assert_eq!(
        host.counters["mcp_tool_calls_total;server=financial-data;tool=other;outcome=success"],
        1
    );
}

#[test]
fn handshake_session_duration_and_tool_calls() {
    let session_headers = |session: Option<&str>| -> Vec<(&'static str, String)> {
        session
            .map(|s| vec![("mcp-session-id", s.to_owned())])
            .unwrap_or_default()
    };
    let binding = session_ref::binding_key(b"master key of at least 32 bytes!", "fin", "agent-a");
    let hex_key: String = binding.iter().map(|b| format!("{b:02x}")).collect();
    let mut shared = HashMap::new();
    let mut metrics_host = FakeHost::default();
    let metrics = Rc::new(MetricIds::default());
    let config = Rc::new(FilterConfig::from_json(br#"{"server_id":"fin"}"#).unwrap());
    let mut exchange = |method: &str,
                        body: &str,
                        session: Option<&str>,
                        status: &str,
                        response_session: Option<&str>| {
        let mut host = FakeHost {
            headers: vec![
                (":method".into(), method.into()),
                (":path".into(), "/mcp".into()),
            ],
            ..FakeHost::default()
        };
        for (k, v) in session_headers(session) {
            host.headers.push((k.into(), v.into()));
        }
        // What the authz-service returns for an allowed initialize.
        host.properties.insert(
            [
                "metadata",
                "filter_metadata",
                "envoy.filters.http.ext_authz",
                "session_key",
            ]
            .map(String::from)
            .to_vec(),
            hex_key.clone().into_bytes(),
        );
        host.body = body.as_bytes().to_vec();
        host.shared = std::mem::take(&mut shared);
        host.metric_names = std::mem::take(&mut metrics_host.metric_names);
        host.counters = std::mem::take(&mut metrics_host.counters);
        host.histograms = std::mem::take(&mut metrics_host.histograms);
        let mut flow = RequestFlow::new(config.clone(), metrics.clone());
        let end = body.is_empty();
        let verdict = flow.on_headers(&mut host, end);
        if !end {
            assert_eq!(verdict, Verdict::Pause);
            let size = host.body.len();
            assert_eq!(flow.on_body(&mut host, size, true), Verdict::Continue);
        }
        host.response_headers = vec![
            (":status".into(), status.into()),
            ("content-type".into(), "application/json".into()),
        ];
        if let Some(s) = response_session {
            host.response_headers
                .push(("mcp-session-id".into(), s.into()));
        }
        flow.on_response_headers(&mut host, false);
        let id = if body.contains("\"id\":1") { "1" } else { "2" };
        host.response_body = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#).into_bytes();
        let size = host.response_body.len();
        flow.on_response_body(&mut host, size, true);
        flow.on_log(&mut host);
        shared = std::mem::take(&mut host.shared);
        metrics_host.metric_names = std::mem::take(&mut host.metric_names);
        metrics_host.counters = std::mem::take(&mut host.counters);
        metrics_host.histograms = std::mem::take(&mut host.histograms);
        let client_session = host
            .response_headers
            .iter()
            .find(|(name, _)| name == "mcp-session-id")
            .map(|(_, value)| value.clone());
        (host.record(), client_session)
    };
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t"}}"#;
    let (record, reference) = exchange("POST", init, None, "200", Some("sess-1"));
    // The client gets a reference bound to the agent, never the server's id; the
    // record names the session by a hash of it.
    let reference = reference.expect("the initialize response keeps a session header");
    assert_eq!(
        session_ref::unwrap(&binding, &reference).as_deref(),
        Ok("sess-1")
    );
    assert_eq!(
        record["session_id"],
        session_ref::audit_ref(&reference).as_str()
    );
    assert!(!record.to_string().contains("sess-1"));
    let (record, echoed) = exchange("POST", call, Some(&reference), "200", Some("sess-1"));
    assert_eq!(echoed.as_deref(), Some(reference.as_str()));
    assert_eq!(
        record["session_id"],
        session_ref::audit_ref(&reference).as_str()
    );
    exchange("POST", call, Some(&reference), "200", None);
    // Another session's call does not count here.
    let other = session_ref::wrap(&binding, "sess-2").unwrap();
    exchange("POST", call, Some(&other), "200", None);
    // A session id the gateway cannot bind never reaches the client.
    let (_, leaked) = exchange("POST", call, Some(&other), "200", Some("sess-3"));
    assert_eq!(leaked, None);
    let (record, _) = exchange("DELETE", "", Some(&reference), "200", None);
    assert_eq!(
        (
            record["http_method"].clone(),
            record["output_status"].clone()
        ),
        (Value::from("DELETE"), Value::from("success"))
    );

    assert_eq!(
        metrics_host.counters["mcp_sessions_total;server=fin;event=started"],
        1
    );
    assert_eq!(
        metrics_host.counters["mcp_sessions_total;server=fin;event=ended"],
        1
    );
    assert_eq!(
        metrics_host.histograms["mcp_session_tool_calls;server=fin"],
        [2]
    );
    assert_eq!(
        metrics_host.histograms["mcp_session_duration_ms;server=fin"].len(),
        1
    );
    // The slot is free again.
    assert!(shared.values().all(|(value, _)| value.is_empty()));
}

#[test]
fn failed_initialize_is_a_negotiation_failure() {
    let mut flow = flow("");
    let mut host = FakeHost::mcp_post(&[]);
    host.headers.retain(|(k, _)| !k.starts_with("mcp-"));
    host.body = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#.to_vec();
    assert_eq!(run(&mut flow, &mut host), Verdict::Continue);
    host.response_headers = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
    ];
    flow.on_response_headers(&mut host, false);
    stream_body(&mut flow, &mut host, br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unsupported protocol version"}}"#, 9, true);
    flow.on_log(&mut host);
    assert_eq!(
        host.counters["mcp_negotiation_failures_total;server=financial-data;kind=initialize"],
        1
    );
}

#[test]
fn audit_host_refusals_never_panic() {
    for call in [
        "now_nanos",
        "set_property",
        "define_metric",
        "response_body",
        "request_header",
        "response_header",
        "property",
    ] {
        let mut flow = audited_flow();
        let mut host = call_with_response(
            &mut flow,
            &[(":status", "200"), ("content-type", "application/json")],
        );
        host.refuse.push(call);
        flow.on_response_headers(&mut host, false);
        stream_body(
            &mut flow,
            &mut host,
            br#"{"id":"c-1","result":{}}"#,
            5,
            true,
        );
        flow.on_log(&mut host);
        if call == "set_property" {
            assert!(host
                .logs
                .iter()
                .any(|(_, m)| m.contains("cannot publish the audit record")));
        }
    }
}

/// GET (handshake-era stream) and DELETE on the MCP path carry the server label, so
/// the authz-service can tell them from requests that never went through the filter;
/// forged copies are gone first. Other paths get no label.
#[test]
fn bodiless_requests_on_the_mcp_path_carry_the_server_label() {
    let config = Rc::new(FilterConfig::from_json(br#"{"server_id":"fin"}"#).unwrap());
    for (method, path, labelled) in [
        ("GET", "/mcp", true),
        ("DELETE", "/mcp?x=1", true),
        ("GET", "/MCP", false),
        ("POST", "/mcp/", false),
    ] {
        let mut host = FakeHost {
            headers: vec![
                (":method".into(), method.into()),
                (":path".into(), path.into()),
                ("x-mcp-server-id".into(), "forged".into()),
            ],
            ..FakeHost::default()
        };
        let mut flow = RequestFlow::new(config.clone(), Rc::new(MetricIds::default()));
        assert_eq!(
            flow.on_headers(&mut host, true),
            Verdict::Continue,
            "{method} {path}"
        );
        let expected: Vec<&str> = if labelled { vec!["fin"] } else { vec![] };
        assert_eq!(host.header("x-mcp-server-id"), expected, "{method} {path}");
    }
    // A refused label write refuses the request instead of forwarding it unlabelled.
    let mut host = FakeHost {
        headers: vec![
            (":method".into(), "GET".into()),
            (":path".into(), "/mcp".into()),
        ],
        refuse: vec!["set_request_header"],
        ..FakeHost::default()
    };
    let mut flow = RequestFlow::new(config, Rc::new(MetricIds::default()));
    assert_eq!(flow.on_headers(&mut host, true), Verdict::Pause);
    assert_eq!(host.reply(), (500, -31000));
}

/// A fleet: the route's metadata names the server (`mcp_gateway` namespace).
fn fleet_flow() -> RequestFlow {
    RequestFlow::new(
        Rc::new(FilterConfig::from_json(br#"{"servers_from_routes":true}"#).unwrap()),
        Rc::new(MetricIds::default()),
    )
}

pub(super) fn route_key(key: &str) -> Vec<String> {
    [
        "xds",
        "route_metadata",
        "filter_metadata",
        "mcp_gateway",
        key,
    ]
    .map(String::from)
    .to_vec()
}

pub(super) fn on_route(host: &mut FakeHost, pairs: &[(&str, &str)]) {
    for (key, value) in pairs {
        host.properties
            .insert(route_key(key), value.as_bytes().to_vec());
    }
}

#[test]
fn a_fleet_labels_audits_and_meters_under_the_routes_server() {
    let mut flow = fleet_flow();
    let mut host = FakeHost::mcp_post(&[("x-mcp-server-id", "forged")]);
    on_route(
        &mut host,
        &[("server_id", "hr-directory"), ("server_version", "2.0.1")],
    );
    assert_eq!(run(&mut flow, &mut host), Verdict::Continue);
    assert_eq!(host.header("x-mcp-server-id"), ["hr-directory"]);
    assert!(host.route_cleared);
    host.response_headers = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
    ];
    flow.on_response_headers(&mut host, false);
    host.response_body = br#"{"jsonrpc":"2.0","id":3,"result":{}}"#.to_vec();
    let size = host.response_body.len();
    flow.on_response_body(&mut host, size, true);
    flow.on_log(&mut host);
    let record = host.record();
    assert_eq!(record["server_id"], "hr-directory");
    assert_eq!(record["server_version"], "2.0.1");
    // The route lists no tools: the call is counted, as `other`.
    assert_eq!(
        host.counters
            ["mcp_tool_calls_total;server=hr-directory;version=2.0.1;tool=other;outcome=success"],
        1,
        "{:?}",
        host.counters
    );
}

/// A tool the route lists among its server's registered tools gets its own label; the
/// same name on a route that does not list it stays `other`.
#[test]
fn a_fleet_labels_registered_tools_by_name() {
    let metrics = Rc::new(MetricIds::default());
    let config = Rc::new(FilterConfig::from_json(br#"{"servers_from_routes":true}"#).unwrap());
    let mut names = Vec::new();
    for (server, tools) in [
        ("financial-data", "query_transactions,get_account_balance"),
        ("hr-directory", "find_employee"),
    ] {
        let mut flow = RequestFlow::new(config.clone(), metrics.clone());
        let mut host = FakeHost::mcp_post(&[]);
        on_route(&mut host, &[("server_id", server), ("tools", tools)]);
        assert_eq!(run(&mut flow, &mut host), Verdict::Continue);
        flow.on_log(&mut host);
        names.extend(host.metric_names);
    }
    for expected in [
        "mcp_tool_calls_total;server=financial-data;tool=get_account_balance;outcome=partial",
        "mcp_tool_calls_total;server=hr-directory;tool=other;outcome=partial",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
}

#[test]
fn a_fleet_refuses_unregistered_paths_with_an_audit_record() {
    let mut flow = fleet_flow();
    let mut host = FakeHost::mcp_post(&[]);
    on_route(&mut host, &[("unregistered", "true")]);
    host.headers[1].1 = "/nobody/mcp?x=1".into();
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    let reply = &host.replies[0];
    assert_eq!(reply.status, 404);
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["code"], -31014);
    assert_eq!(
        body["error"]["message"],
        "no MCP server is registered at /nobody/mcp"
    );
    flow.on_log(&mut host);
    let record = host.record();
    assert_eq!(record["server_id"], Value::Null);
    assert_eq!(record["http_status"], 404);
    assert_eq!(record["error_code"], -31014);
    assert!(
        host.metric_names.is_empty(),
        "no series for a server that does not exist"
    );
}

#[test]
fn an_unregistered_path_is_shown_bounded() {
    let mut flow = fleet_flow();
    let mut host = FakeHost::mcp_post(&[]);
    on_route(&mut host, &[("unregistered", "true")]);
    host.headers[1].1 = format!("/{}", "a".repeat(10_000)).into();
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    let body: Value = serde_json::from_slice(&host.replies[0].body).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.len() < 200, "{}", message.len());
    assert!(message.ends_with("..."), "{message}");
}

#[test]
fn a_fleet_passes_routes_without_metadata_stripped() {
    let mut flow = fleet_flow();
    let mut host = FakeHost::mcp_post(&[("x-agent-id", "forged")]);
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Continue);
    assert!(host.header("x-agent-id").is_empty());
    assert!(host.header("x-mcp-server-id").is_empty());
    flow.on_log(&mut host);
    assert!(host.set_property_value("mcp_audit").is_none());
}

/// The route cache is cleared after labelling: a request that Envoy would now route to
/// another server (or to none) than the one it was labelled for is refused.
#[test]
fn a_fleet_refuses_a_request_rerouted_to_another_server() {
    for after in [Some("payments"), None] {
        let mut flow = fleet_flow();
        let mut host = FakeHost::mcp_post(&[]);
        on_route(&mut host, &[("server_id", "hr-directory")]);
        host.properties_after_reroute =
            vec![(route_key("server_id"), after.map(|s| s.as_bytes().to_vec()))];
        assert_eq!(run(&mut flow, &mut host), Verdict::Pause, "{after:?}");
        assert_eq!(host.reply(), (500, -31000), "{after:?}");
    }
    // Bodiless requests (GET stream, DELETE) are checked the same way.
    let mut flow = fleet_flow();
    let mut host = FakeHost::with_headers(&[(":method", "GET"), (":path", "/hr/mcp")]);
    on_route(&mut host, &[("server_id", "hr-directory")]);
    host.properties_after_reroute = vec![(route_key("server_id"), Some(b"payments".to_vec()))];
    assert_eq!(flow.on_headers(&mut host, true), Verdict::Pause);
    assert_eq!(host.reply(), (500, -31000));
}

#[test]
fn a_fleet_refuses_invalid_route_metadata() {
    let mut flow = fleet_flow();
    let mut host = FakeHost::mcp_post(&[]);
    on_route(&mut host, &[("server_id", "not an id")]);
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    assert_eq!(host.reply(), (500, -31000));
    // Audited like every MCP request, with no server.
    flow.on_log(&mut host);
    let record = host.record();
    assert_eq!(record["decision"], "gateway_error", "{record}");
    assert_eq!(record["error_code"], -31000);
    assert_eq!(record["server_id"], Value::Null);
}
