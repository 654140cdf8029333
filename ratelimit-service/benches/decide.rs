//! The rate limit decision in-process (configuration match, window, memory counter),
//! single-threaded: decisions per second per core = 1 / time per decision.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mcp_ratelimit_service::config::Config;
use mcp_ratelimit_service::limiter::{decide, Descriptor};
use mcp_ratelimit_service::store::{Backend, Memory};
use std::path::Path;

const LIMITS: &str = "domain: mcp_gateway\ndescriptors:\n  - key: tool_call\n    descriptors:\n      - key: agent_id\n        max_distinct_values: 1000\n        rate_limit: {unit: hour, requests_per_unit: 1000000000}\n";

fn in_process(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let config = Config::parse([(Path::new("bench.yaml"), LIMITS)]).unwrap();
    let store = Backend::Memory(Memory::new(1_000_000, || 1_800_000_000));
    let agents: Vec<String> = (0..1000).map(|i| format!("agent-{i}")).collect();
    let tools: Vec<String> = (0..10).map(|i| format!("tool-{i}")).collect();
    let mut group = c.benchmark_group("ratelimit_decision_in_process");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("memory_1000_agents_x_10_tools", |b| {
        b.to_async(&runtime).iter(|| {
            i += 1;
            let descriptors = [Descriptor {
                entries: vec![
                    ("tool_call", tools[i % 10].as_str()),
                    ("agent_id", agents[i % 1000].as_str()),
                ],
                hits: 1,
            }];
            let (config, store) = (&config, &store);
            async move {
                let statuses = decide(config, store, 1_800_000_000, "mcp_gateway", &descriptors)
                    .await
                    .unwrap();
                assert!(!statuses[0].over_limit);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, in_process);
criterion_main!(benches);
