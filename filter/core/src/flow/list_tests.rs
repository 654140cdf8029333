//! Per-caller lists, schema drift and the authz-service's argument refusals, through
//! the whole request flow against a fake host.

use super::tests::on_route;
use super::*;
use crate::fake_host::FakeHost;
use crate::input_hash::input_hash;
use crate::metric_ids::MetricIds;
use serde_json::{json, Value};
use std::collections::HashMap;

const LIST: &str = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
const READ_SCHEMA: &str = r#"{"type":"object","properties":{"x":{"type":"string"}}}"#;

fn digest(schema: &str) -> String {
    input_hash(&RawValue::from_string(schema.into()).unwrap()).unwrap()
}

fn digests() -> String {
    json!({"read": digest(READ_SCHEMA), "write": digest("{}")}).to_string()
}

/// A labelled `tools/list` on a fleet route of server `fin` registered with `read` and
/// `write`, whose authz decision carries `allowed` (when given).
fn list_call(
    flow: &mut RequestFlow,
    allowed: Option<&str>,
    shared: HashMap<String, (Vec<u8>, u32)>,
) -> FakeHost {
    let mut host = FakeHost::with_headers(&[
        (":method", "POST"),
        (":path", "/fin/mcp"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
        ("accept-encoding", "gzip, br"),
    ]);
    host.body = LIST.as_bytes().to_vec();
    host.shared = shared;
    let digests = digests();
    on_route(
        &mut host,
        &[
            ("server_id", "fin"),
            ("tools", "read,write"),
            ("schema_digests", &digests),
        ],
    );
    if let Some(allowed) = allowed {
        authz_leaf(&mut host, "allowed_tools", allowed);
    }
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    let size = host.body.len();
    assert_eq!(flow.on_body(&mut host, size, true), Verdict::Continue);
    host
}

fn fleet() -> (Rc<FilterConfig>, Rc<MetricIds>) {
    (
        Rc::new(FilterConfig::from_json(br#"{"servers_from_routes":true}"#).unwrap()),
        Rc::new(MetricIds::default()),
    )
}

/// The answer in chunks of `chunk` bytes; returns what the client got.
fn answer(
    flow: &mut RequestFlow,
    host: &mut FakeHost,
    content_type: &str,
    body: &[u8],
    chunk: usize,
) -> Vec<u8> {
    host.response_headers = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), content_type.into()),
        ("content-length".into(), body.len().to_string()),
    ];
    assert_eq!(flow.on_response_headers(host, false), Verdict::Continue);
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = body.chunks(chunk).collect();
    for (i, piece) in pieces.iter().enumerate() {
        host.response_body = piece.to_vec();
        let last = i + 1 == pieces.len();
        assert_eq!(
            flow.on_response_body(host, piece.len(), last),
            Verdict::Continue
        );
        out.extend_from_slice(&host.response_body);
    }
    flow.on_log(host);
    out
}

fn tools_answer(tools: Value) -> Vec<u8> {
    json!({"jsonrpc":"2.0","id":5,"result":{"tools":tools,"cacheScope":"public","ttlMs":1000}})
        .to_string()
        .into_bytes()
}

fn names(body: &Value) -> Vec<String> {
    body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

fn registered_tools() -> Value {
    json!([
        {"name":"read","inputSchema":serde_json::from_str::<Value>(READ_SCHEMA).unwrap()},
        {"name":"write","inputSchema":{}}
    ])
}

#[test]
fn a_json_list_shows_only_allowed_tools_and_is_private() {
    let (config, metrics) = fleet();
    let mut flow = RequestFlow::new(config, metrics);
    let mut host = list_call(&mut flow, Some(r#"["read"]"#), HashMap::new());
    let out = answer(
        &mut flow,
        &mut host,
        "application/json",
        &tools_answer(registered_tools()),
        7,
    );
    let body: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(names(&body), ["read"]);
    assert_eq!(body["result"]["cacheScope"], "private");
    assert_eq!(body["result"]["ttlMs"], 1000);
    assert!(host.response_header("content-length").unwrap().is_none());
    assert_eq!(
        host.response_header("cache-control").unwrap().as_deref(),
        Some("private")
    );
    let record = host.record_value();
    assert_eq!(record["hidden_entries"], 1);
    assert_eq!(record["output_status"], "success");
    assert!(
        !host
            .counters
            .keys()
            .any(|k| k.starts_with("mcp_schema_drift_total")),
        "the answer matches the registration: {:?}",
        host.counters
    );
}

#[test]
fn an_sse_list_is_filtered_event_by_event() {
    let (config, metrics) = fleet();
    let mut flow = RequestFlow::new(config, metrics);
    let mut host = list_call(&mut flow, Some(r#"["write"]"#), HashMap::new());
    let answer_json = String::from_utf8(tools_answer(registered_tools())).unwrap();
    let stream = format!(
        "event: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{}}}}\r\n\r\nevent: message\r\ndata: {answer_json}\r\n\r\n"
    );
    let out = answer(
        &mut flow,
        &mut host,
        "text/event-stream",
        stream.as_bytes(),
        5,
    );
    let out = String::from_utf8(out).unwrap().replace("\r\n", "\n");
    let mut events = out.split("\n\n").filter(|e| !e.is_empty());
    let progress = events.next().unwrap();
    assert!(
        progress.contains("notifications/progress"),
        "passed unchanged: {progress}"
    );
    let last = events.next().unwrap();
    assert!(last.starts_with("event: message\ndata: "), "{last}");
    let body: Value = serde_json::from_str(last.split_once("data: ").unwrap().1).unwrap();
    assert_eq!(names(&body), ["write"]);
    assert_eq!(host.record_value()["hidden_entries"], 1);
}

#[test]
fn without_the_authz_decision_nothing_is_shown() {
    let (config, metrics) = fleet();
    let mut flow = RequestFlow::new(config, metrics);
    let mut host = list_call(&mut flow, None, HashMap::new());
    let out = answer(
        &mut flow,
        &mut host,
        "application/json",
        &tools_answer(registered_tools()),
        1000,
    );
    let body: Value = serde_json::from_slice(&out).unwrap();
    assert!(names(&body).is_empty());
    assert_eq!(host.record_value()["hidden_entries"], 2);
    assert!(host.logs.iter().any(|(_, m)| m.contains("allowed_tools")));
}

#[test]
fn list_filtering_off_passes_the_answer() {
    let config = Rc::new(
        FilterConfig::from_json(br#"{"servers_from_routes":true,"list_filtering":"off"}"#).unwrap(),
    );
    let mut flow = RequestFlow::new(config, Rc::new(MetricIds::default()));
    let mut host = list_call(&mut flow, None, HashMap::new());
    let sent = tools_answer(registered_tools());
    let out = answer(&mut flow, &mut host, "application/json", &sent, 9);
    assert_eq!(out, sent);
    assert!(host.response_header("content-length").unwrap().is_some());
    assert_eq!(host.record_value()["hidden_entries"], Value::Null);
}

#[test]
fn an_ambiguous_answer_becomes_an_error() {
    let (config, metrics) = fleet();
    let mut flow = RequestFlow::new(config, metrics);
    let mut host = list_call(&mut flow, Some(r#"["read"]"#), HashMap::new());
    let sent = br#"{"jsonrpc":"2.0","id":5,"result":{"tools":[],"Tools":[{"name":"write"}]}}"#;
    let out = answer(&mut flow, &mut host, "application/json", sent, 1000);
    let body: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(body["id"], 5);
    assert_eq!(body["error"]["code"], -31000);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("\"tools\""));
    let record = host.record_value();
    assert_eq!(record["output_status"], "error");
    assert_eq!(record["error_code"], -31000);
}

/// Two answers with the same drift count once; a new change counts again; each kind
/// on its own.
#[test]
fn drift_is_counted_once_per_change() {
    let (config, metrics) = fleet();
    let drifted = json!([
        {"name":"read","inputSchema":{"type":"object"}},
        {"name":"extra","inputSchema":{}}
    ]);
    let mut shared = HashMap::new();
    let counters: std::cell::RefCell<HashMap<String, i64>> = Default::default();
    // Each request gets a fresh host, so a fresh metric id cache (ids are per host).
    let _ = metrics;
    let mut run = |tools: &Value| {
        let mut flow = RequestFlow::new(config.clone(), Rc::new(MetricIds::default()));
        let mut host = list_call(&mut flow, Some(r#"["read","write"]"#), shared.clone());
        answer(
            &mut flow,
            &mut host,
            "application/json",
            &tools_answer(tools.clone()),
            50,
        );
        shared = host.shared.clone();
        for (k, v) in &host.counters {
            *counters.borrow_mut().entry(k.clone()).or_default() += v;
        }
        host.logs
    };
    let logs = run(&drifted);
    assert!(logs
        .iter()
        .any(|(_, m)| m.contains("schema drift") && m.contains("extra")));
    assert!(
        run(&drifted)
            .iter()
            .all(|(_, m)| !m.contains("schema drift")),
        "logged once"
    );
    let count = |kind: &str| {
        let key = format!("mcp_schema_drift_total;server=fin;kind={kind}");
        counters.borrow().get(&key).copied()
    };
    assert_eq!(count("extra"), Some(1));
    assert_eq!(count("changed"), Some(1));
    assert_eq!(count("missing"), Some(1), "write is not advertised");
    // The schema changes again: `changed` counts again, the others stay.
    let again = json!([
        {"name":"read","inputSchema":{"type":"object","required":["x"]}},
        {"name":"extra","inputSchema":{}}
    ]);
    run(&again);
    assert_eq!(count("changed"), Some(2));
    assert_eq!(count("extra"), Some(1));
    // Back to the registration: nothing more is counted.
    run(&registered_tools());
    run(&drifted);
    assert_eq!(
        count("extra"),
        Some(2),
        "drift after a clean answer is a new change"
    );
}

/// A page of a paginated list cannot tell what is missing.
#[test]
fn a_page_counts_no_missing_tools() {
    let (config, metrics) = fleet();
    let mut flow = RequestFlow::new(config, metrics);
    let mut host = list_call(&mut flow, Some("[]"), HashMap::new());
    let page = json!({"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"read","inputSchema":serde_json::from_str::<Value>(READ_SCHEMA).unwrap()}],"nextCursor":"2"}});
    answer(
        &mut flow,
        &mut host,
        "application/json",
        page.to_string().as_bytes(),
        64,
    );
    assert!(
        host.counters.keys().all(|k| !k.contains("kind=missing")),
        "{:?}",
        host.counters
    );
    assert_eq!(host.record_value()["hidden_entries"], 1);
}

fn call_refused_by_authz(
    error_code: Option<&str>,
    violation: Option<&str>,
    status: &str,
) -> FakeHost {
    let (config, metrics) = fleet();
    let mut flow = RequestFlow::new(config, metrics);
    let mut host = FakeHost::with_headers(&[
        (":method", "POST"),
        (":path", "/fin/mcp"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "read"),
    ]);
    host.body = br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"read","arguments":{"x":1},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#.to_vec();
    on_route(&mut host, &[("server_id", "fin"), ("tools", "read")]);
    if let Some(code) = error_code {
        authz_leaf(&mut host, "error_code", code);
    }
    if let Some(violation) = violation {
        authz_leaf(&mut host, "schema_violation", violation);
    }
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    let size = host.body.len();
    assert_eq!(flow.on_body(&mut host, size, true), Verdict::Continue);
    let details = if status == "200" {
        "via_upstream"
    } else {
        "ext_authz_denied"
    };
    host.properties.insert(
        ["response", "code_details"].map(String::from).to_vec(),
        details.as_bytes().to_vec(),
    );
    host.response_headers = vec![
        (":status".into(), status.into()),
        ("content-type".into(), "application/json".into()),
    ];
    flow.on_response_headers(&mut host, false);
    host.response_body = br#"{"jsonrpc":"2.0","id":9,"result":{"content":[]}}"#.to_vec();
    let size = host.response_body.len();
    flow.on_response_body(&mut host, size, true);
    flow.on_log(&mut host);
    host
}

#[test]
fn invalid_arguments_refused_by_the_authz_service_are_audited_as_invalid() {
    let host = call_refused_by_authz(
        Some("-32602"),
        Some("/x: 1 is not of type \"string\""),
        "400",
    );
    let record = host.record_value();
    assert_eq!(record["decision"], "invalid");
    assert_eq!(record["error_code"], -32602);
    assert_eq!(
        record["schema_violation"],
        "/x: 1 is not of type \"string\""
    );
    assert_eq!(
        host.counters["mcp_argument_violations_total;server=fin;tool=read;outcome=refused"],
        1
    );
    let host = call_refused_by_authz(Some("-32020"), None, "400");
    let record = host.record_value();
    assert_eq!(
        (record["decision"].as_str(), record["error_code"].as_i64()),
        (Some("invalid"), Some(-32020))
    );
    assert!(host
        .counters
        .keys()
        .all(|k| !k.starts_with("mcp_argument_violations_total")));
}

#[test]
fn reported_violations_are_forwarded_audited_and_counted() {
    let host = call_refused_by_authz(None, Some("/x: 1 is not of type \"string\""), "200");
    let record = host.record_value();
    assert_eq!(record["decision"], "allowed");
    assert_eq!(
        record["schema_violation"],
        "/x: 1 is not of type \"string\""
    );
    assert_eq!(
        host.counters["mcp_argument_violations_total;server=fin;tool=read;outcome=reported"],
        1
    );
    let clean = call_refused_by_authz(None, None, "200");
    assert_eq!(clean.record_value()["schema_violation"], Value::Null);
    assert!(clean
        .counters
        .keys()
        .all(|k| !k.starts_with("mcp_argument_violations_total")));
}

#[test]
fn a_repeated_mcp_param_header_is_refused() {
    let (config, metrics) = fleet();
    let mut flow = RequestFlow::new(config, metrics);
    let mut host = FakeHost::with_headers(&[
        (":method", "POST"),
        (":path", "/fin/mcp"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "read"),
        ("mcp-param-region", "eu"),
        ("mcp-param-region", "us"),
    ]);
    host.body = br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"read","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#.to_vec();
    on_route(&mut host, &[("server_id", "fin")]);
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    let size = host.body.len();
    flow.on_body(&mut host, size, true);
    let reply = &host.replies[0];
    assert_eq!(reply.status, 400);
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["code"], -32020);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("mcp-param-region"));
}

/// A string leaf the authz-service put into ext_authz's dynamic metadata.
fn authz_leaf(host: &mut FakeHost, key: &str, value: &str) {
    let path = [
        "metadata",
        "filter_metadata",
        "envoy.filters.http.ext_authz",
        key,
    ];
    host.properties
        .insert(path.map(String::from).to_vec(), value.as_bytes().to_vec());
}

trait Record {
    fn record_value(&self) -> Value;
}

impl Record for FakeHost {
    fn record_value(&self) -> Value {
        serde_json::from_slice(
            self.set_property_value("mcp_audit")
                .expect("an audit record"),
        )
        .unwrap()
    }
}

#[test]
fn a_compressed_answer_cannot_be_filtered_and_is_refused() {
    let (config, metrics) = fleet();
    let mut flow = RequestFlow::new(config, metrics);
    let mut host = list_call(&mut flow, Some(r#"["read"]"#), HashMap::new());
    assert!(
        host.header("accept-encoding").is_empty(),
        "the list request asks for a plain answer"
    );
    host.response_headers = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
        ("content-encoding".into(), "gzip".into()),
    ];
    flow.on_response_headers(&mut host, false);
    assert!(host.response_header("content-encoding").unwrap().is_none());
    let mut out = Vec::new();
    for (i, piece) in [&b"\x1f\x8b\x08"[..], b"\x00\x01"].iter().enumerate() {
        host.response_body = piece.to_vec();
        flow.on_response_body(&mut host, piece.len(), i == 1);
        out.extend_from_slice(&host.response_body);
    }
    flow.on_log(&mut host);
    let body: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(body["id"], 5);
    assert_eq!(body["error"]["code"], -31000);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("compressed"));
    assert_eq!(host.record_value()["error_code"], -31000);
}
