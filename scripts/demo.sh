#!/usr/bin/env bash
# The demo: installs what it needs, then runs an official-SDK MCP client against an
# official-SDK MCP server through Envoy with the MCP filter, and prints what it did.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python demo/run_demo.py
