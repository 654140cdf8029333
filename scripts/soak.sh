#!/usr/bin/env bash
# Soak run through the whole chain (real Envoy + filter, authz-service, ratelimit-service
# on Redis, the SDK MCP server): ./scripts/soak.sh [minutes, default 10] [requests/s, default 60]
# Fails unless every request has exactly one audit record, every decision is the one
# the policy and limits give, nothing answers 5xx, and Envoy's and the services' memory
# stays flat. Summary: target/soak/summary.json. A 40 s version runs in the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/python tests/soak/soak.py --minutes "${1:-10}" --rate "${2:-60}"
