//! A host that answers every call from memory, and the benchmark requests: shared by
//! the criterion bench (`benches/flow.rs`) and the V8 timing example
//! (`examples/v8_cost.rs`).
//!
//! Deliberately not the core's recording `fake_host::FakeHost` (which the flow tests
//! and the fuzzer share): the benches measure the flow's own cost, so this host does
//! only what a real host does for the VM (copy bytes in) and records nothing.

use mcp_filter_core::flow::{RequestFlow, Verdict};
use mcp_filter_core::host::{Host, HostStatus, Level, MetricKind};
use mcp_filter_core::metric_ids::MetricIds;
use mcp_filter_core::wire::serialize_pairs;
use mcp_filter_core::FilterConfig;
use serde_json::json;
use std::rc::Rc;

/// Answers every call from canned data, copying what a real host copies into the VM.
pub struct CannedHost {
    pub request_headers: Vec<u8>,
    pub body: Vec<u8>,
    pub response_headers: Vec<(&'static str, &'static str)>,
    pub response_body: Vec<u8>,
    pub clock: u64,
    pub calls: u64,
}

impl Host for CannedHost {
    fn request_headers(&mut self) -> Result<Vec<u8>, HostStatus> {
        self.calls += 1;
        Ok(self.request_headers.clone())
    }
    fn remove_request_header(&mut self, _: &str) -> Result<(), HostStatus> {
        self.calls += 1;
        Ok(())
    }
    fn set_request_header(&mut self, _: &str, _: &str) -> Result<(), HostStatus> {
        self.calls += 1;
        Ok(())
    }
    fn request_body(&mut self, len: usize) -> Result<Vec<u8>, HostStatus> {
        self.calls += 1;
        Ok(self.body[..len.min(self.body.len())].to_vec())
    }
    fn property(&mut self, _: &[&str]) -> Result<Option<Vec<u8>>, HostStatus> {
        self.calls += 1;
        Ok(None)
    }
    fn send_response(&mut self, _: u16, _: &[(&str, &str)], _: &[u8]) -> Result<(), HostStatus> {
        self.calls += 1;
        Ok(())
    }
    fn clear_route_cache(&mut self) -> Result<(), HostStatus> {
        self.calls += 1;
        Ok(())
    }
    fn log(&mut self, _: Level, _: &str) {
        self.calls += 1;
    }
    fn response_header(&mut self, name: &str) -> Result<Option<String>, HostStatus> {
        self.calls += 1;
        Ok(self
            .response_headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned()))
    }
    fn set_response_header(&mut self, _: &str, _: &str) -> Result<(), HostStatus> {
        self.calls += 1;
        Ok(())
    }
    fn remove_response_header(&mut self, _: &str) -> Result<(), HostStatus> {
        self.calls += 1;
        Ok(())
    }
    fn replace_response_body(&mut self, _: usize, _: &[u8]) -> Result<(), HostStatus> {
        self.calls += 1;
        Ok(())
    }
    fn response_body(&mut self, len: usize) -> Result<Vec<u8>, HostStatus> {
        self.calls += 1;
        Ok(self.response_body[..len.min(self.response_body.len())].to_vec())
    }
    fn request_header(&mut self, _: &str) -> Result<Option<String>, HostStatus> {
        self.calls += 1;
        Ok(None)
    }
    fn random(&mut self, buffer: &mut [u8]) -> Result<(), HostStatus> {
        self.calls += 1;
        buffer.fill(0x17);
        Ok(())
    }
    fn now_nanos(&mut self) -> Result<u64, HostStatus> {
        self.calls += 1;
        self.clock += 1_000_000;
        Ok(1_763_700_000_000_000_000 + self.clock)
    }
    fn set_property(&mut self, _: &[&str], _: &[u8]) -> Result<(), HostStatus> {
        self.calls += 1;
        Ok(())
    }
    fn define_metric(&mut self, _: MetricKind, _: &str) -> Result<u32, HostStatus> {
        self.calls += 1;
        Ok(1)
    }
    fn increment_metric(&mut self, _: u32, _: i64) -> Result<(), HostStatus> {
        self.calls += 1;
        Ok(())
    }
    fn record_metric(&mut self, _: u32, _: u64) -> Result<(), HostStatus> {
        self.calls += 1;
        Ok(())
    }
    fn shared_data(&mut self, _: &str) -> Result<(Option<Vec<u8>>, u32), HostStatus> {
        self.calls += 1;
        Ok((None, 0))
    }
    fn set_shared_data(&mut self, _: &str, _: &[u8], _: u32) -> Result<(), HostStatus> {
        self.calls += 1;
        Ok(())
    }
}

pub fn request(method: &str, tool: Option<&str>, arguments_size: usize) -> (Vec<u8>, Vec<u8>) {
    let mut headers = vec![
        (":authority", "gateway.test"),
        (":path", "/mcp"),
        (":method", "POST"),
        (":scheme", "http"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
        (
            "authorization",
            "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJl",
        ),
        ("x-request-id", "6f0c3c1e-2b7c-4f43-9b54-3d3f1c2a9e11"),
        ("content-length", "200"),
    ];
    if let Some(tool) = tool {
        headers.push(("mcp-name", tool));
    }
    let mut fields = serde_json::Map::new();
    fields.insert("account_id".into(), json!("acc-001"));
    let mut i = 0;
    while serde_json::to_string(&fields).map_or(0, |s| s.len()) < arguments_size {
        fields.insert(
            format!("field_{i:04}"),
            json!({"note": "statement line", "amount": i}),
        );
        i += 1;
    }
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
    let params = match tool {
        Some(tool) => json!({"name": tool, "arguments": fields, "_meta": meta}),
        None => json!({"_meta": meta}),
    };
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    (
        serialize_pairs(&headers),
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

/// The filter configuration of the benchmarks.
pub fn config() -> Rc<FilterConfig> {
    Rc::new(
        FilterConfig::from_json(
            br#"{"server_id":"financial-data","metrics":{"tool_names":["get_account_balance","query_transactions"]}}"#,
        )
        .expect("bench config is valid"),
    )
}

/// The benchmark requests, each with a host holding its request and its answer.
pub fn cases() -> Vec<(&'static str, CannedHost)> {
    let small_answer = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}"#.to_vec();
    let tools: Vec<_> = (0..8)
        .map(|i| json!({"name": format!("tool_{i}"), "description": "Looks up records of the account.", "inputSchema": {"type": "object", "properties": {"account_id": {"type": "string"}}}}))
        .collect();
    let list_answer =
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}}))
            .unwrap_or_default();
    [
        (
            "tools_call_small",
            request("tools/call", Some("get_account_balance"), 0),
            &small_answer,
        ),
        (
            "tools_call_16KiB",
            request("tools/call", Some("query_transactions"), 16 * 1024),
            &small_answer,
        ),
        ("tools_list", request("tools/list", None, 0), &list_answer),
    ]
    .into_iter()
    .map(|(name, (headers, body), answer)| {
        let host = CannedHost {
            request_headers: headers,
            body,
            response_headers: vec![(":status", "200"), ("content-type", "application/json")],
            response_body: answer.clone(),
            clock: 0,
            calls: 0,
        };
        (name, host)
    })
    .collect()
}

/// One request through every callback, as Envoy makes them for a small request.
pub fn one_request(config: &Rc<FilterConfig>, metrics: &Rc<MetricIds>, host: &mut CannedHost) {
    let mut flow = RequestFlow::new(config.clone(), metrics.clone());
    let (body, answer) = (host.body.len(), host.response_body.len());
    assert_eq!(flow.on_headers(host, false), Verdict::Pause);
    assert_eq!(flow.on_body(host, body, true), Verdict::Continue);
    flow.on_response_headers(host, false);
    flow.on_response_body(host, answer, true);
    flow.on_log(host);
}
