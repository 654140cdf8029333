#!/usr/bin/env bash
# Regenerates every figure in BENCHMARKS.md in one run on this machine (about 35
# minutes on 2 cores): the criterion micro-benchmarks, the services' gRPC load
# examples, and Envoy side by side (bare, native MCP filter, our filter, full chain
# with the rate limiter in memory and on Redis). Installs what it needs first.
#
#   ./scripts/bench.sh                # everything, 3 rounds
#   ./scripts/bench.sh --rounds 5     # arguments go to tests/bench/bench_envoy.py
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --bench
mkdir -p target/bench

echo "== criterion micro-benchmarks"
cargo bench --quiet -p mcp-filter-core --bench hot_path
cargo bench --quiet -p mcp-filter-core --bench flow
cargo bench --quiet -p mcp-authz-service --bench check
cargo bench --quiet -p mcp-ratelimit-service --bench decide

echo "== services over gRPC: 3 runs each"
cargo build --quiet --release -p mcp-authz-service -p mcp-ratelimit-service --examples
: > target/bench/services.txt
for _ in 1 2 3; do
  target/release/examples/check_load 5 32 cached | tee -a target/bench/services.txt
  target/release/examples/check_load 3 32 uncached | tee -a target/bench/services.txt
  target/release/examples/decision_load 5 32 memory | tee -a target/bench/services.txt
  target/release/examples/decision_load 5 32 redis | tee -a target/bench/services.txt
done

echo "== Envoy side by side"
.venv/bin/python tests/bench/bench_envoy.py "$@"

.venv/bin/python tests/bench/report.py
