//! Issue 16 costs inside the authz-service: the `allowed_tools` leaf of `tools/list`
//! (10 and 500 tools) and the argument checks of `tools/call` (small and 16 KiB
//! arguments), each beside the same Check without the feature. Every measurement is a
//! whole decision (`Authorizer::check`, cached token) plus Envoy's answer (`answer`)
//! encoded as protobuf, single-threaded. Results and method: BENCHMARKS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mcp_authz_service::check::{Authorizer, CheckInput, Outcome};
use mcp_authz_service::grpc::answer;
use mcp_authz_service::jwks::Jwks;
use mcp_authz_service::metrics::Metrics;
use mcp_authz_service::policy::{Call, Policy};
use mcp_authz_service::schemas::Schemas;
use mcp_authz_service::token::{TokenCache, TokenRules};
use prost::Message;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, RwLock};

const SERVER: &str = "bench";
const READ: &str = "mcp.server.bench:tools.read";
const WRITE: &str = "mcp.server.bench:tools.write";

/// A policy with `tools` tools of 30-character names; every tenth needs `tools.write`.
fn policy(tools: usize) -> Policy {
    let mut text = format!("servers:\n  {SERVER}:\n    tools:\n");
    text.push_str("      query_transactions: []\n      get_account_balance: []\n");
    for i in 0..tools.saturating_sub(2) {
        let extra = if i % 10 == 0 { WRITE } else { "" };
        text.push_str(&format!(
            "      tool_{i:04}_padded_to_thirty_chars: [{extra}]\n"
        ));
    }
    Policy::parse(&text, Path::new("bench.yaml")).unwrap()
}

fn authorizer(policy: Policy, schemas: Schemas) -> Authorizer {
    Authorizer {
        rules: TokenRules {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway_seconds: 30,
        },
        jwks: Arc::new(Jwks::fixed(standard_keys()).expect("the HTTPS client builds")),
        policy: RwLock::new(Arc::new(policy)),
        session_keys: session_keys(SESSION_KEY),
        schemas: RwLock::new(Arc::new(schemas)),
        cache: TokenCache::new(1000),
        resource_metadata: "https://gateway.test/.well-known/oauth-protected-resource/mcp".into(),
        metrics: Arc::new(Metrics::default()),
    }
}

/// The schemas file: `query_transactions` admits bench_envoy.py's 16 KiB call (an
/// `account_id` plus ~226 `field_NNNN` objects), `get_account_balance` the small one.
fn schemas() -> Schemas {
    let file = json!({"servers": {SERVER: {"validation": "enforce", "tools": {
        "get_account_balance": {"type": "object", "additionalProperties": false,
            "required": ["account_id"],
            "properties": {"account_id": {"type": "string", "pattern": "^acc-[0-9]{3}$"}}},
        "query_transactions": {"type": "object", "additionalProperties": false,
            "required": ["account_id"],
            "properties": {"account_id": {"type": "string", "pattern": "^acc-[0-9]{3}$"}},
            "patternProperties": {"^field_[0-9]{4}$": {"type": "object",
                "additionalProperties": false, "required": ["note", "amount", "ok"],
                "properties": {"note": {"type": "string", "maxLength": 200},
                               "amount": {"type": "integer", "minimum": 0},
                               "ok": {"type": "boolean"}}}}}}}}});
    Schemas::parse(&file.to_string(), Path::new("bench.json")).unwrap()
}

/// bench_envoy.py's `arguments(size)`: many small fields.
fn arguments(size: usize) -> Value {
    let mut fields = serde_json::Map::new();
    fields.insert("account_id".into(), json!("acc-001"));
    let mut i = 0;
    while serde_json::to_string(&fields).unwrap().len() < size {
        fields.insert(
            format!("field_{i:04}"),
            json!({"note": "quarterly statement line", "amount": i * 7, "ok": i % 2 == 0}),
        );
        i += 1;
    }
    Value::Object(fields)
}

fn body(tool: &str, arguments: &Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool,
           "arguments": arguments,
           "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
    .to_string()
    .into_bytes()
}

fn decide<'a>(
    authorizer: &Authorizer,
    input: &CheckInput<'a>,
    runtime: &tokio::runtime::Runtime,
) -> usize {
    let outcome = runtime.block_on(authorizer.check(input));
    assert!(matches!(outcome, Outcome::Allow { .. }), "{outcome:?}");
    answer(outcome).encode_to_vec().len()
}

/// The precomputed set alone, and the whole tools/list Check with and without it
/// (without: the same policy asked for `tools/call`, which carries no leaf).
fn tools_list(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("issue16_tools_list");
    group.throughput(Throughput::Elements(1));
    for tools in [10, 500] {
        let policy = policy(tools);
        let read: BTreeSet<String> = [READ.to_owned()].into();
        let both: BTreeSet<String> = [READ.to_owned(), WRITE.to_owned()].into();
        group.bench_function(
            format!("allowed_tools_only/{tools}_tools/all_allowed"),
            |b| {
                b.iter(|| {
                    policy
                        .allowed_tools(SERVER, std::hint::black_box(&both))
                        .len()
                })
            },
        );
        group.bench_function(
            format!("allowed_tools_only/{tools}_tools/90pct_allowed"),
            |b| {
                b.iter(|| {
                    policy
                        .allowed_tools(SERVER, std::hint::black_box(&read))
                        .len()
                })
            },
        );
        let authorizer = authorizer(policy, Schemas::default());
        let bearer = format!("Bearer {}", agent_token("agent-1", READ));
        for (name, method, tool) in [
            ("check_tools_list", "tools/list", None),
            (
                "check_tools_call_baseline",
                "tools/call",
                Some("get_account_balance"),
            ),
        ] {
            let input = CheckInput {
                authorization: Some(&bearer),
                call: Call {
                    server: Some(SERVER),
                    method: Some(method),
                    tool,
                },
                request_id: Some("1"),
                ..CheckInput::default()
            };
            group.bench_function(format!("{name}/{tools}_tools"), |b| {
                b.iter(|| decide(&authorizer, &input, &runtime))
            });
        }
    }
    group.finish();
}

/// A tools/call Check with the body, validated (enforce, valid arguments) and not
/// (no schemas file: the body is ignored).
fn tools_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let validating = authorizer(policy(10), schemas());
    let plain = authorizer(policy(10), Schemas::default());
    let bearer = format!("Bearer {}", agent_token("agent-1", READ));
    let small = body("get_account_balance", &json!({"account_id": "acc-001"}));
    let large = body("query_transactions", &arguments(16 * 1024));
    let mut group = c.benchmark_group("issue16_tools_call");
    group.throughput(Throughput::Elements(1));
    for (size, tool, body) in [
        ("small", "get_account_balance", &small),
        ("16KiB", "query_transactions", &large),
    ] {
        let input = CheckInput {
            authorization: Some(&bearer),
            call: Call {
                server: Some(SERVER),
                method: Some("tools/call"),
                tool: Some(tool),
            },
            request_id: Some("1"),
            protocol_version: Some("2026-07-28"),
            body: Some(body),
            ..CheckInput::default()
        };
        for (arm, authorizer) in [("unvalidated", &plain), ("validated", &validating)] {
            group.bench_function(format!("{size}/{arm}"), |b| {
                b.iter(|| decide(authorizer, &input, &runtime))
            });
        }
    }
    // Where the 16 KiB time goes: reading `params.arguments` into a `Value`, and the
    // schema check of that `Value`.
    let schemas = schemas();
    let (_, schema) = schemas.tool(SERVER, "query_transactions").unwrap();
    let parsed = mcp_authz_service::schemas::arguments(&large).unwrap();
    group.bench_function("16KiB/parse_arguments_only", |b| {
        b.iter(|| mcp_authz_service::schemas::arguments(std::hint::black_box(&large)).is_ok())
    });
    group.bench_function("16KiB/is_valid_only", |b| {
        b.iter(|| schema.validator().is_valid(std::hint::black_box(&parsed)))
    });
    group.finish();
    // The schema must really admit the payload (else enforce would refuse it early).
    let input = CheckInput {
        authorization: Some(&bearer),
        call: Call {
            server: Some(SERVER),
            method: Some("tools/call"),
            tool: Some("query_transactions"),
        },
        body: Some(&large),
        ..CheckInput::default()
    };
    decide(&validating, &input, &runtime);
    assert!(validating.metrics.render().contains("result=\"valid\""));
    eprintln!("16 KiB body: {} bytes", large.len());
}

criterion_group!(benches, tools_list, tools_call);
criterion_main!(benches);
