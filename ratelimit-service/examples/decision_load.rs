//! Load benchmark: ShouldRateLimit decisions per second per CPU core of the
//! ratelimit-service, with counters in memory or in Redis.
//!
//! Starts the release `mcp-ratelimit-service` binary on loopback (and, for Redis, a
//! `redis-server`), drives it with concurrent tonic clients for a fixed time, and
//! divides the decisions answered by the CPU time the service process used
//! (utime + stime from /proc/PID/stat); with Redis it also prints Redis' own CPU time
//! per decision. Each request carries the gateway's descriptor
//! [tool_call=<tool>, agent_id=<agent>] for one of 1,000 agents x 10 tools, all under
//! a limit; both keys are key-only, and `max_distinct_values: 1000` on agent_id gives
//! every pair its own counter (the common path: each request checks two distinct-value
//! scopes, then its counter). Run: `cargo run --release -p mcp-ratelimit-service --example decision_load
//! -- [seconds] [concurrency] [memory|redis]` (see BENCHMARKS.md). `RATELIMIT_BIN`
//! picks the service binary, `LIMITS_FILE` a limits file of your own (domain
//! `mcp_gateway`, the descriptor above).

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use mcp_service_kit::testing::{self, cpu_seconds, free_port};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(10);
    let concurrency: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(32);
    let redis = args.get(3).is_some_and(|m| m == "redis");

    let dir = tempfile::tempdir().unwrap();
    let limits = match std::env::var("LIMITS_FILE") {
        Ok(path) => std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
        Err(_) => "domain: mcp_gateway\ndescriptors:\n  - key: tool_call\n    descriptors:\n      - key: agent_id\n        max_distinct_values: 1000\n        rate_limit: {unit: hour, requests_per_unit: 100000000}\n"
            .to_owned(),
    };
    std::fs::write(dir.path().join("limits.yaml"), limits).unwrap();
    let mut _redis = None;
    let (grpc, http) = (free_port(), free_port());
    let binary = std::env::var("RATELIMIT_BIN")
        .unwrap_or_else(|_| "target/release/mcp-ratelimit-service".into());
    let mut command = Command::new(&binary);
    command
        .args(["--config", &dir.path().display().to_string()])
        .args([
            "--grpc-addr",
            &format!("127.0.0.1:{grpc}"),
            "--http-addr",
            &format!("127.0.0.1:{http}"),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    if redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        _redis = Some(Killed(child));
        std::thread::sleep(Duration::from_millis(300));
        command.args(["--redis-url", &format!("redis://127.0.0.1:{port}/")]);
    }
    let service = Killed(
        command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}")),
    );
    let pid = service.0.id();

    let address = format!("http://127.0.0.1:{grpc}");
    let client = RateLimitServiceClient::new(testing::channel(&address).await);
    let request = |i: usize| RateLimitRequest {
        domain: "mcp_gateway".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![
                Entry {
                    key: "tool_call".into(),
                    value: format!("tool-{}", i % 10),
                },
                Entry {
                    key: "agent_id".into(),
                    value: format!("agent-{}", i % 1000),
                },
            ],
            ..RateLimitDescriptor::default()
        }],
        hits_addend: 1,
    };
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let redis_pid = _redis.as_ref().map(|r: &Killed| r.0.id());
    let redis_cpu = || redis_pid.map(cpu_seconds).unwrap_or(0.0);
    let redis_before = redis_cpu();
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (mut client, done, errors) = (client.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = worker;
            while Instant::now() < deadline {
                match client.should_rate_limit(request(i)).await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
                i += concurrency;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    let redis_cpu = redis_cpu() - redis_before;
    let decisions = done.load(Ordering::Relaxed);
    drop(service);
    println!(
        "store={} decisions={decisions} errors={} seconds={elapsed:.1} decisions_per_second={:.0} service_cpu_seconds={cpu:.2} decisions_per_cpu_second={:.0} cpu_us_per_decision={:.1}{}",
        if redis { "redis" } else { "memory" },
        errors.load(Ordering::Relaxed),
        decisions as f64 / elapsed,
        decisions as f64 / cpu,
        cpu * 1e6 / decisions as f64,
        if redis {
            format!(" redis_cpu_us_per_decision={:.1}", redis_cpu * 1e6 / decisions as f64)
        } else {
            String::new()
        },
    );
}
