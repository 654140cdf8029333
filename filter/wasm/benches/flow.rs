//! One whole request through the filter (headers, body, labels, response head and
//! body, audit record and metrics) against a host that answers from memory: the
//! filter's own work per request, natively, and how many host calls it makes (each
//! one crosses the wasm boundary inside Envoy). Method and results in BENCHMARKS.md.
//!
//!     cargo bench -p mcp-filter --bench flow

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mcp_filter::flow::{Host, HostStatus, Level, MetricKind, RequestFlow, Verdict};
use mcp_filter::metrics::MetricIds;
use mcp_filter::wire::serialize_pairs;
use mcp_filter_core::FilterConfig;
use serde_json::json;
use std::rc::Rc;

/// Answers every call from canned data, copying what a real host copies into the VM.
struct CannedHost {
    request_headers: Vec<u8>,
    body: Vec<u8>,
    response_headers: Vec<(&'static str, &'static str)>,
    response_body: Vec<u8>,
    clock: u64,
    calls: u64,
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

fn request(method: &str, tool: Option<&str>, arguments_size: usize) -> (Vec<u8>, Vec<u8>) {
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

fn whole_request(c: &mut Criterion) {
    let config = Rc::new(
        FilterConfig::from_json(
            br#"{"server_id":"financial-data","metrics":{"tool_names":["get_account_balance","query_transactions"]}}"#,
        )
        .expect("bench config is valid"),
    );
    let metrics = Rc::new(MetricIds::default());
    let small_answer = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}"#.to_vec();
    let tools: Vec<_> = (0..8)
        .map(|i| json!({"name": format!("tool_{i}"), "description": "Looks up records of the account.", "inputSchema": {"type": "object", "properties": {"account_id": {"type": "string"}}}}))
        .collect();
    let list_answer =
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}}))
            .unwrap_or_default();
    let cases = [
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
    ];
    let mut group = c.benchmark_group("filter_request");
    for (name, (headers, body), answer) in &cases {
        let mut host = CannedHost {
            request_headers: headers.clone(),
            body: body.clone(),
            response_headers: vec![(":status", "200"), ("content-type", "application/json")],
            response_body: answer.to_vec(),
            clock: 0,
            calls: 0,
        };
        let run = |host: &mut CannedHost| {
            let mut flow = RequestFlow::new(config.clone(), metrics.clone());
            assert_eq!(flow.on_headers(host, false), Verdict::Pause);
            assert_eq!(flow.on_body(host, body.len(), true), Verdict::Continue);
            flow.on_response_headers(host, false);
            flow.on_response_body(host, answer.len(), true);
            flow.on_log(host);
        };
        run(&mut host);
        host.calls = 0;
        run(&mut host);
        println!("{name}: {} host calls per request", host.calls);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| run(&mut host))
        });
    }
    group.finish();
}

criterion_group!(benches, whole_request);
criterion_main!(benches);
