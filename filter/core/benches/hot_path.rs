//! The filter's per-request work outside the host calls: request parse and validation
//! (labels and audit facts), the canonical hash of the arguments, and reading the
//! response (JSON and SSE). Single-threaded; method and results in BENCHMARKS.md.
//!
//!     cargo bench -p mcp-filter-core --bench hot_path

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mcp_filter_core::input_hash::input_hash;
use mcp_filter_core::reply_scan::scan;
use mcp_filter_core::sse::SseReader;
use mcp_filter_core::{label_request_with_facts, FilterConfig, RequestFacts, RequestHead};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::hint::black_box;

const VERSION: &str = "2026-07-28";

/// `tools/call` arguments of about `size` bytes: an object of short fields, which is
/// what tool inputs look like (a long single string would flatter the parser).
fn arguments(size: usize) -> Value {
    let mut fields = serde_json::Map::new();
    fields.insert("account_id".into(), json!("acc-001"));
    let mut i = 0;
    while serde_json::to_string(&fields).map_or(0, |s| s.len()) < size {
        fields.insert(
            format!("field_{i:04}"),
            json!({"note": "quarterly statement line", "amount": i * 7, "ok": i % 2 == 0}),
        );
        i += 1;
    }
    Value::Object(fields)
}

fn tool_call(size: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "get_account_balance",
            "arguments": arguments(size),
            "_meta": {"io.modelcontextprotocol/protocolVersion": VERSION},
        },
    }))
    .unwrap_or_default()
}

fn tools_list() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/list",
        "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": VERSION}},
    }))
    .unwrap_or_default()
}

fn head(method: &str, name: Option<&str>) -> RequestHead {
    let mut headers: Vec<(&str, &[u8])> = vec![
        (":method", b"POST"),
        (":path", b"/mcp"),
        ("content-type", b"application/json"),
        ("accept", b"application/json, text/event-stream"),
        ("mcp-protocol-version", VERSION.as_bytes()),
        ("mcp-method", method.as_bytes()),
    ];
    if let Some(name) = name {
        headers.push(("mcp-name", name.as_bytes()));
    }
    RequestHead::from_headers(headers)
}

fn parse_and_validate(c: &mut Criterion) {
    let config = FilterConfig::from_json(br#"{"server_id":"financial-data"}"#)
        .expect("bench config is valid");
    let call_head = head("tools/call", Some("get_account_balance"));
    let list_head = head("tools/list", None);
    let cases = [
        ("tools_call_small", tool_call(0), &call_head),
        ("tools_call_16KiB", tool_call(16 * 1024), &call_head),
        ("tools_list", tools_list(), &list_head),
    ];
    let mut group = c.benchmark_group("label_request");
    for (name, body, head) in &cases {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), body, |b, body| {
            b.iter(|| {
                let mut facts = RequestFacts::default();
                let labels = label_request_with_facts(
                    &config,
                    "financial-data",
                    head,
                    black_box(body),
                    &mut facts,
                );
                assert!(labels.is_ok());
                facts
            })
        });
    }
    group.finish();
}

fn canonical_hash(c: &mut Criterion) {
    let mut group = c.benchmark_group("input_hash");
    for (name, size) in [("small", 0), ("16KiB", 16 * 1024)] {
        let text = serde_json::to_string(&arguments(size)).unwrap_or_default();
        let raw = RawValue::from_string(text).expect("valid JSON");
        group.throughput(Throughput::Bytes(raw.get().len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &raw, |b, raw| {
            b.iter(|| input_hash(black_box(raw)).expect("hashable"))
        });
    }
    group.finish();
}

fn response_reading(c: &mut Criterion) {
    let result = |size: usize| {
        serde_json::to_vec(&json!({
            "jsonrpc": "2.0",
            "id": 1,
            "result": {"content": [{"type": "text", "text": "x".repeat(size)}], "isError": false},
        }))
        .unwrap_or_default()
    };
    let mut group = c.benchmark_group("response_read");
    for (name, body) in [("json_small", result(2)), ("json_16KiB", result(16 * 1024))] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| scan(black_box(body)))
        });
    }
    // An SSE response: two progress notifications, then the result.
    let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}"#;
    let mut stream = Vec::new();
    for _ in 0..2 {
        stream.extend_from_slice(format!("event: message\ndata: {progress}\n\n").as_bytes());
    }
    stream.extend_from_slice(b"event: message\ndata: ");
    stream.extend_from_slice(&result(2));
    stream.extend_from_slice(b"\n\n");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("sse_3_events", |b| {
        b.iter(|| {
            let mut reader = SseReader::default();
            let mut replies = 0;
            reader.feed(black_box(&stream), &mut |summary| {
                replies += usize::from(summary.reply_to(Some("1")).is_some())
            });
            assert_eq!(replies, 1);
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    parse_and_validate,
    canonical_hash,
    response_reading
);
criterion_main!(benches);
