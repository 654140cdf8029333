//! The filter's own work per request inside a JavaScript engine's WebAssembly VM: the
//! benchmark requests of `benches/flow.rs` run through the wasm32-wasip1 build of the
//! filter code with a host that answers from memory, timed in the VM. Envoy runs the
//! filter in V8; Node.js is V8 too, so this shows what the Rust code costs there,
//! without Envoy's ABI crossings (BENCHMARKS.md, "Where the filter's time goes").
//!
//!     cargo build --release --target wasm32-wasip1 -p mcp-filter-core --example v8_cost
//!     node tests/bench/v8_cost.mjs target/wasm32-wasip1/release/examples/v8_cost.wasm
//!
//! Built natively (`cargo run --release -p mcp-filter-core --example v8_cost`) it prints
//! the same figures for comparison.

#[path = "../benches/canned/mod.rs"]
mod canned;

use mcp_filter_core::metric_ids::MetricIds;
use std::rc::Rc;
use std::time::Instant;

fn main() {
    let config = canned::config();
    let metrics = Rc::new(MetricIds::default());
    for (name, mut host) in canned::cases() {
        let rounds = if name.contains("16KiB") {
            2_000
        } else {
            50_000
        };
        for _ in 0..rounds / 10 {
            canned::one_request(&config, &metrics, &mut host);
        }
        let started = Instant::now();
        for _ in 0..rounds {
            canned::one_request(&config, &metrics, &mut host);
        }
        let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
        println!("{name}: {micros:.2} µs per request");
    }
}
