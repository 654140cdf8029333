//! One whole request through the filter (headers, body, labels, response head and
//! body, audit record and metrics) against a host that answers from memory: the
//! filter's own work per request, natively, and how many host calls it makes (each
//! one crosses the wasm boundary inside Envoy). Method and results in BENCHMARKS.md.
//!
//!     cargo bench -p mcp-filter-core --bench flow

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
mod canned;

use mcp_filter_core::metric_ids::MetricIds;
use std::rc::Rc;

fn whole_request(c: &mut Criterion) {
    let config = canned::config();
    let metrics = Rc::new(MetricIds::default());
    let mut group = c.benchmark_group("filter_request");
    for (name, mut host) in canned::cases() {
        canned::one_request(&config, &metrics, &mut host);
        host.calls = 0;
        canned::one_request(&config, &metrics, &mut host);
        println!("{name}: {} host calls per request", host.calls);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| canned::one_request(&config, &metrics, &mut host))
        });
    }
    group.finish();
}

criterion_group!(benches, whole_request);
criterion_main!(benches);
