//! Check() cost: the decision in-process with a cached and an uncached token, and the
//! whole gRPC round trip over loopback. Single-threaded, so checks per second per core
//! = 1 / time per check. Results and method: BENCHMARKS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use mcp_authz_service::check::{Authorizer, CheckInput, Outcome};
use mcp_authz_service::grpc::AuthzGrpc;
use mcp_authz_service::jwks::Jwks;
use mcp_authz_service::metrics::Metrics;
use mcp_authz_service::policy::{Call, Policy};
use mcp_authz_service::token::{TokenCache, TokenRules};
use std::path::Path;
use std::sync::{Arc, RwLock};

const POLICY: &str = "servers:\n  financial-data:\n    tools:\n      get_account_balance: []\n";
const SCOPE: &str = "mcp.server.financial-data:tools.read";

fn authorizer(cache_capacity: usize) -> Authorizer {
    Authorizer {
        rules: TokenRules {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway_seconds: 30,
        },
        jwks: Arc::new(Jwks::fixed(standard_keys()).expect("the HTTPS client builds")),
        policy: RwLock::new(Arc::new(
            Policy::parse(POLICY, Path::new("bench.yaml")).unwrap(),
        )),
        session_keys: session_keys(SESSION_KEY),
        schemas: Default::default(),
        cache: TokenCache::new(cache_capacity),
        resource_metadata: "https://gateway.test/.well-known/oauth-protected-resource/mcp".into(),
        metrics: Arc::new(Metrics::default()),
    }
}

fn input(bearer: &str) -> CheckInput<'_> {
    CheckInput {
        authorization: Some(bearer),
        call: Call {
            server: Some("financial-data"),
            method: Some("tools/call"),
            tool: Some("get_account_balance"),
        },
        request_id: Some("1"),
        session: None,
        unlabelled_allowed: false,
        ..CheckInput::default()
    }
}

fn in_process(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bearer = format!("Bearer {}", agent_token("agent-prod-001", SCOPE));
    let mut group = c.benchmark_group("check_in_process");
    group.throughput(Throughput::Elements(1));

    let cached = authorizer(1000);
    group.bench_function("cached_token", |b| {
        b.to_async(&runtime).iter(|| async {
            assert!(matches!(
                cached.check(&input(&bearer)).await,
                Outcome::Allow { .. }
            ));
        })
    });
    // Capacity 0: every check verifies the RS256 signature.
    let uncached = authorizer(0);
    group.bench_function("uncached_rs256", |b| {
        b.to_async(&runtime).iter(|| async {
            assert!(matches!(
                uncached.check(&input(&bearer)).await,
                Outcome::Allow { .. }
            ));
        })
    });
    group.finish();
}

/// The policy lookup alone (which scopes a call needs) in a policy the size of a
/// large deployment: 50 servers with 40 tools each.
fn policy_match(c: &mut Criterion) {
    let mut text = String::from("servers:\n");
    for server in 0..50 {
        text.push_str(&format!("  server-{server}:\n    tools:\n"));
        for tool in 0..40 {
            let extra = if tool % 10 == 0 {
                "[mcp.extra:write]"
            } else {
                "[]"
            };
            text.push_str(&format!("      tool_{tool}: {extra}\n"));
        }
    }
    let policy = Policy::parse(&text, Path::new("bench.yaml")).unwrap();
    let names: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("server-{}", i % 50), format!("tool_{}", i % 40)))
        .collect();
    let mut group = c.benchmark_group("policy_match");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("tools_call_50_servers_x_40_tools", |b| {
        b.iter(|| {
            i += 1;
            let (server, tool) = &names[i % names.len()];
            let call = Call {
                server: Some(server),
                method: Some("tools/call"),
                tool: Some(tool),
            };
            assert!(policy.required_scopes(std::hint::black_box(&call)).is_ok());
        })
    });
    group.finish();
}

fn grpc_round_trip(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let bearer = format!("Bearer {}", agent_token("agent-prod-001", SCOPE));
    let client = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let service = AuthzGrpc {
            authorizer: Arc::new(authorizer(1000)),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(envoy_types::ext_authz::v3::pb::AuthorizationServer::new(
                    service,
                ))
                .serve_with_incoming(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                ),
        );
        AuthorizationClient::connect(address).await.unwrap()
    });
    let request = check_request(&[
        ("authorization", bearer.as_str()),
        ("x-mcp-server-id", "financial-data"),
        ("x-mcp-method", "tools/call"),
        ("x-mcp-tool-name", "get_account_balance"),
    ]);
    let mut group = c.benchmark_group("check_grpc_loopback");
    group.throughput(Throughput::Elements(1));
    group.bench_function("cached_token", |b| {
        b.to_async(&runtime).iter(|| {
            let mut client = client.clone();
            let request = request.clone();
            async move { client.check(request).await.unwrap() }
        })
    });
    group.finish();
}

criterion_group!(benches, in_process, policy_match, grpc_round_trip);
criterion_main!(benches);
