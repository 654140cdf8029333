#!/usr/bin/env bash
# The demo: installs what it needs, then runs the example fleet (three official-SDK MCP
# servers) behind one Envoy rendered from their manifests, registers a fourth live, runs
# the pre-production checklist on one server, rolls back a failing canary of it, and
# prints what the gateway did.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python demo/run_demo.py
