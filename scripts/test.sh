#!/usr/bin/env bash
# Runs every test: formatting and lints, the Rust unit tests (native), then the
# end-to-end tests on the real Envoy binary with the built .wasm, the official MCP SDK
# (client and server) and real upstreams. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
# --bench: also the load generator (oha) of the benchmark smoke test.
./scripts/setup.sh --bench

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (native, all targets; and the wasm adapter)"
cargo clippy --quiet --workspace --all-targets -- -D warnings
cargo clippy --quiet --release --target wasm32-wasip1 -p mcp-filter -- -D warnings
echo "== cargo test (protocol logic, natively)"
cargo test --quiet --workspace
echo "== end-to-end tests (real Envoy, official MCP SDK)"
.venv/bin/python -m pytest -c tests/pytest.ini tests "$@"
