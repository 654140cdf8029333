//! Fleet scale (issue 15): what the policy's size does to the authz-service, with the
//! policies `mcp-registry render` writes for fleets of 1, 1,000 and 10,000 servers x
//! 20 tools: the policy lookup alone, a whole check (cached token), a policy load (what
//! a hot reload does after every render) and the RFC 9728 metadata document (it lists
//! every scope of the policy). Single-threaded, so per second per core = 1 / time.
//!
//! The fleets come from `tests/bench/fleet_scale.py`, which renders them and runs this
//! bench with `FLEET_BENCH_DIR=<dir>` (`<dir>/<n>/policy.yaml`, servers `srv-00000`
//! ... as `tests/bench/fleet_manifests.py` names them). Without it there is nothing to
//! measure and the bench says so. Method and results: BENCHMARKS.md, "Fleet scale".

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mcp_authz_service::check::{Authorizer, CheckInput, Outcome};
use mcp_authz_service::jwks::Jwks;
use mcp_authz_service::metrics::Metrics;
use mcp_authz_service::policy::{Call, Policy};
use mcp_authz_service::token::{TokenCache, TokenRules};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The synthetic fleet's tools (tests/bench/fleet_manifests.py): every server has the
/// same 20; `create_customer_record` needs an extra scope, the others read only.
const TOOLS: [&str; 20] = [
    "get_customer_record",
    "list_customer_record",
    "search_customer_record",
    "create_customer_record",
    "update_customer_record",
    "get_invoice",
    "list_invoice",
    "search_invoice",
    "create_invoice",
    "update_invoice",
    "get_support_ticket",
    "list_support_ticket",
    "search_support_ticket",
    "create_support_ticket",
    "update_support_ticket",
    "get_shipment",
    "list_shipment",
    "search_shipment",
    "create_shipment",
    "update_shipment",
];

fn server_id(index: usize) -> String {
    format!("srv-{index:05}")
}

/// (fleet size, rendered policy file) for every size the driver rendered.
fn fleets() -> Vec<(usize, PathBuf)> {
    let Ok(dir) = std::env::var("FLEET_BENCH_DIR") else {
        eprintln!("fleet bench: FLEET_BENCH_DIR is not set; run tests/bench/fleet_scale.py");
        return Vec::new();
    };
    let sizes = std::env::var("FLEET_BENCH_SIZES").unwrap_or_else(|_| "1,1000,10000".into());
    sizes
        .split(',')
        .map(|n| {
            n.trim()
                .parse::<usize>()
                .expect("FLEET_BENCH_SIZES: numbers")
        })
        .map(|n| (n, Path::new(&dir).join(n.to_string()).join("policy.yaml")))
        .filter(|(_, path)| path.exists())
        .collect()
}

fn authorizer(policy: Policy) -> Authorizer {
    Authorizer {
        rules: TokenRules {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway_seconds: 30,
        },
        jwks: Arc::new(Jwks::fixed(standard_keys()).expect("the HTTPS client builds")),
        policy: RwLock::new(Arc::new(policy)),
        session_keys: session_keys(SESSION_KEY),
        schemas: Default::default(),
        cache: TokenCache::new(1000),
        resource_metadata: METADATA_URL.into(),
        metrics: Arc::new(Metrics::default()),
    }
}

/// 1,000 (server, tool) calls spread over the whole fleet, the same number for every
/// size: the lookups differ by the size of the maps they search, not by how many
/// distinct keys the loop touches.
fn spread_calls(size: usize) -> Vec<(String, &'static str)> {
    (0..1000)
        .map(|i| (server_id(i * size / 1000), TOOLS[i % TOOLS.len()]))
        .collect()
}

fn fleet(c: &mut Criterion) {
    let fleets = fleets();
    if fleets.is_empty() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("fleet_policy_match");
    group.throughput(Throughput::Elements(1));
    for (size, path) in &fleets {
        let policy = Policy::load(path).unwrap();
        let calls = spread_calls(*size);
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::from_parameter(size), &policy, |b, policy| {
            b.iter(|| {
                i += 1;
                let (server, tool) = &calls[i % calls.len()];
                let call = Call {
                    server: Some(server),
                    method: Some("tools/call"),
                    tool: Some(tool),
                };
                assert!(policy.required_scopes(std::hint::black_box(&call)).is_ok());
            })
        });
    }
    group.finish();

    // The whole decision as the gRPC handler makes it, token verified once and then
    // served from the cache: one agent calling the 20 tools of the fleet's middle server.
    let mut group = c.benchmark_group("fleet_check_cached_token");
    group.throughput(Throughput::Elements(1));
    for (size, path) in &fleets {
        let authorizer = authorizer(Policy::load(path).unwrap());
        let server = server_id(size / 2);
        let bearer = format!(
            "Bearer {}",
            agent_token("agent-prod-001", &format!("mcp.server.{server}:tools.read"))
        );
        let mut i = 0usize;
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.to_async(&runtime).iter(|| {
                i += 1;
                // Read-scope tools only (create_customer_record, index 3, needs more).
                let tool = TOOLS[[0, 1, 2, 4, 5, 6][i % 6]];
                let (authorizer, bearer, server) = (&authorizer, &bearer, &server);
                async move {
                    let input = CheckInput {
                        authorization: Some(bearer),
                        call: Call {
                            server: Some(server),
                            method: Some("tools/call"),
                            tool: Some(tool),
                        },
                        request_id: Some("1"),
                        session: None,
                        unlabelled_allowed: false,
                        ..CheckInput::default()
                    };
                    assert!(matches!(
                        authorizer.check(&input).await,
                        Outcome::Allow { .. }
                    ));
                }
            })
        });
    }
    group.finish();

    // What the service does on every policy change (render rewrites the file, the
    // watcher reloads it): read, parse, check, read every credential file.
    let mut group = c.benchmark_group("fleet_policy_load");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for (size, path) in &fleets {
        group.bench_with_input(BenchmarkId::from_parameter(size), path, |b, path| {
            b.iter(|| Policy::load(path).unwrap())
        });
    }
    group.finish();

    // GET /.well-known/oauth-protected-resource: the document lists every scope of the
    // policy, built on each request (unauthenticated: any client can ask).
    let mut group = c.benchmark_group("fleet_resource_metadata");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for (size, path) in &fleets {
        let policy = Policy::load(path).unwrap();
        let bytes = serde_json::json!({ "scopes_supported": policy.scopes_supported() })
            .to_string()
            .len();
        eprintln!("fleet bench: resource metadata document for {size} servers: {bytes} bytes");
        group.bench_with_input(BenchmarkId::from_parameter(size), &policy, |b, policy| {
            b.iter(|| {
                serde_json::json!({ "scopes_supported": policy.scopes_supported() }).to_string()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fleet);
criterion_main!(benches);
