//! Fleet scale (issue 15): what the size of the limits file does to the rate limit
//! decision, with the limits `mcp-registry render` writes for fleets of 1, 1,000 and
//! 10,000 servers x 20 tools (one `server_id` tree per server), and how long loading
//! that file takes (what a hot reload does after every render). Memory store,
//! single-threaded: decisions per second per core = 1 / time per decision.
//!
//! The fleets come from `tests/bench/fleet_scale.py`, which renders them and runs this
//! bench with `FLEET_BENCH_DIR=<dir>` (`<dir>/<n>/limits/limits.yaml`, servers
//! `srv-00000` ... as `tests/bench/fleet_manifests.py` names them). Without it there
//! is nothing to measure and the bench says so. Method and results: BENCHMARKS.md,
//! "Fleet scale".

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mcp_ratelimit_service::config::Config;
use mcp_ratelimit_service::limiter::{decide, Descriptor};
use mcp_ratelimit_service::store::{Backend, Memory};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Tools of the synthetic fleet (tests/bench/fleet_manifests.py) on each path of the
/// rendered tree: `search_customer_record` has a limit of its own (the exact
/// `tool_call` value), the others fall to the key-only `tool_call` and the default
/// per-agent limit; `agent-batch-<i % 10>` is listed on server i.
const TOOLS: [&str; 4] = [
    "get_customer_record",
    "list_invoice",
    "search_customer_record",
    "update_shipment",
];
const NOW: u64 = 1_800_000_000;

/// (fleet size, rendered limits directory) for every size the driver rendered.
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
        .map(|n| (n, Path::new(&dir).join(n.to_string()).join("limits")))
        .filter(|(_, path)| path.join("limits.yaml").exists())
        .collect()
}

fn fleet(c: &mut Criterion) {
    let fleets = fleets();
    if fleets.is_empty() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("fleet_ratelimit_decision");
    group.throughput(Throughput::Elements(1));
    for (size, path) in &fleets {
        let config = Config::load(path).unwrap();
        let store = Backend::Memory(Memory::new(1_000_000, || NOW));
        // 1,000 (server, tool, agent) descriptors spread over the whole fleet, the
        // same number for every size (so the same number of counters, well under the
        // store's capacity and each scope's max_distinct_values): the decisions differ
        // by the size of the tree they search.
        let entries: Vec<[String; 3]> = (0..1000)
            .map(|i| {
                let server = i * size / 1000;
                let agent = if i % 5 == 0 {
                    format!("agent-batch-{}", server % 10)
                } else {
                    format!("agent-{}", i % 50)
                };
                [
                    format!("srv-{server:05}"),
                    TOOLS[i % TOOLS.len()].to_owned(),
                    agent,
                ]
            })
            .collect();
        let mut i = 0usize;
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.to_async(&runtime).iter(|| {
                i += 1;
                let [server, tool, agent] = &entries[i % entries.len()];
                let descriptors = [Descriptor {
                    entries: vec![
                        ("server_id", server.as_str()),
                        ("tool_call", tool.as_str()),
                        ("agent_id", agent.as_str()),
                    ],
                    hits: 1,
                }];
                let (config, store) = (&config, &store);
                async move {
                    let statuses = decide(config, store, NOW, "mcp_gateway", &descriptors)
                        .await
                        .unwrap();
                    assert!(statuses[0].limit.is_some(), "every descriptor has a limit");
                    assert!(!statuses[0].over_limit);
                    assert!(
                        statuses[0].overflow.is_none(),
                        "every value has its own counter"
                    );
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("fleet_limits_load");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for (size, path) in &fleets {
        group.bench_with_input(BenchmarkId::from_parameter(size), path, |b, path| {
            b.iter(|| Config::load(path).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, fleet);
criterion_main!(benches);
