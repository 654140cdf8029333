"""Test and demo harness: real processes on loopback, free ports, stopped by PID."""

from .authz import Authz, bearer, token, without_ext_authz
from .ratelimit import Ratelimit, RedisServer
from .envoy import Envoy, connection_manager, envoy_binary, fallback_routes, render_config, routes, start_gateway, validate, wasm_path
from .single import MCP_CLUSTER
from .client import Response, request
from .observe import (
    audit_records, envoy_counter, metric, parse_prometheus, prometheus, prometheus_when, series, service_metrics, wait_until,
)
from .procs import ROOT, Process, free_port, python, start_echo, start_mcp_server, wait_for_http

__all__ = [
    "audit_records",
    "envoy_counter",
    "metric",
    "parse_prometheus",
    "prometheus",
    "prometheus_when",
    "series",
    "service_metrics",
    "wait_until",
    "Ratelimit",
    "RedisServer",
    "Authz",
    "bearer",
    "token",
    "without_ext_authz",
    "ROOT",
    "MCP_CLUSTER",
    "fallback_routes",
    "routes",
    "Envoy",
    "connection_manager",
    "Process",
    "Response",
    "envoy_binary",
    "free_port",
    "python",
    "render_config",
    "request",
    "start_echo",
    "start_gateway",
    "start_mcp_server",
    "validate",
    "wait_for_http",
    "wasm_path",
]
