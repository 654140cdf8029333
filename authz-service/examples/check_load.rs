//! Load benchmark: Check() calls per second per CPU core of the authz-service.
//!
//! Starts the release `mcp-authz-service` binary on loopback (fixture keys, one-tool
//! policy), drives it with concurrent tonic clients for a fixed time, and divides the
//! checks answered by the CPU time the service process used (utime + stime from
//! /proc/PID/stat). Run: `cargo run --release -p mcp-authz-service --example check_load`
//! (see BENCHMARKS.md). Arguments: [seconds] [concurrency] [cached|uncached|session].
//! `session`: cached tokens, and every check also opens a handshake-era session
//! reference (`mcp-session-id`) bound to the agent.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use jsonwebtoken::Algorithm;
use mcp_service_kit::testing::{self, cpu_seconds, free_port};
use serde_json::json;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn request(bearer: &str, session: Option<&str>) -> CheckRequest {
    let mut headers = vec![
        ("authorization", bearer),
        ("x-mcp-server-id", "financial-data"),
        ("x-mcp-method", "tools/call"),
        ("x-mcp-tool-name", "get_account_balance"),
        ("x-mcp-request-id", "1"),
    ];
    headers.extend(session.map(|reference| ("mcp-session-id", reference)));
    check_request(&headers)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(10);
    let concurrency: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(32);
    let mode = args.get(3).map(String::as_str).unwrap_or("cached");
    let cached = mode != "uncached";
    // The reference the filter would have handed agent-prod-001 for its session.
    let session = (mode == "session").then(|| {
        use mcp_filter_core::session_ref;
        let key =
            session_ref::binding_key(SESSION_KEY.as_bytes(), "financial-data", "agent-prod-001");
        session_ref::wrap(&key, "4f1c9a0e-server-session").unwrap()
    });

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), standard_jwks()).unwrap();
    std::fs::write(dir.path().join("session-keys"), SESSION_KEY).unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "servers:\n  financial-data:\n    tools:\n      get_account_balance: []\n",
    )
    .unwrap();
    let (grpc, http) = (free_port(), free_port());
    let binary =
        std::env::var("AUTHZ_BIN").unwrap_or_else(|_| "target/release/mcp-authz-service".into());
    let mut child = Command::new(&binary)
        .args([
            "--policy",
            &dir.path().join("policy.yaml").display().to_string(),
        ])
        .args([
            "--jwks-file",
            &dir.path().join("jwks.json").display().to_string(),
        ])
        .args([
            "--session-key-file",
            &dir.path().join("session-keys").display().to_string(),
        ])
        .args([
            "--grpc-addr",
            &format!("127.0.0.1:{grpc}"),
            "--http-addr",
            &format!("127.0.0.1:{http}"),
        ])
        .args(["--resource", AUDIENCE, "--issuer", ISSUER])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let pid = child.id();

    let address = format!("http://127.0.0.1:{grpc}");
    let client = AuthorizationClient::new(testing::channel(&address).await);
    // Uncached: every request carries a different token (distinct jti), so every
    // check verifies a signature. ES256 tokens, because minting enough RS256 tokens
    // up front would take minutes (the in-process criterion bench covers RS256).
    // Tokens are made before the clock starts.
    let pool: Vec<String> = if cached {
        vec![format!(
            "Bearer {}",
            agent_token("agent-prod-001", "mcp.server.financial-data:tools.read")
        )]
    } else {
        (0..(20_000 * seconds as usize))
            .map(|i| {
                let claims = claims(json!({"azp": "agent", "scope": "mcp.server.financial-data:tools.read", "jti": i}));
                format!("Bearer {}", sign(EC, Algorithm::ES256, Some("ec"), &claims))
            })
            .collect()
    };
    let pool = Arc::new(pool);
    // Warm up (keys loaded, cache filled for the cached run).
    let mut warm = client.clone();
    for _ in 0..100 {
        let response = warm.check(request(&pool[0], session.as_deref())).await;
        assert_eq!(
            response.unwrap().into_inner().status.unwrap().code,
            0,
            "warm-up check refused"
        );
    }

    let done = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (mut client, done, pool, session) =
            (client.clone(), done.clone(), pool.clone(), session.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = worker;
            while Instant::now() < deadline {
                let token = &pool[i % pool.len()];
                i += concurrency;
                if client
                    .check(request(token, session.as_deref()))
                    .await
                    .is_ok()
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    let checks = done.load(Ordering::Relaxed);
    if !cached && checks as usize + 100 > pool.len() {
        eprintln!("warning: the token pool ran out; some checks hit the cache");
    }
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "mode={} checks={checks} seconds={elapsed:.1} checks_per_second={:.0} service_cpu_seconds={cpu:.2} checks_per_cpu_second={:.0} cpu_us_per_check={:.1}",
        mode,
        checks as f64 / elapsed,
        checks as f64 / cpu,
        cpu * 1e6 / checks as f64,
    );
}
