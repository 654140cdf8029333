"""Every deployment shape, started for real in front of the lenient MCP upstream, each
on what `mcp-registry render` writes for the financial-data manifest exposed at /mcp:
the standalone Envoy config (envoy/standalone.yaml, the tests' one-server gateway,
harness/single.py), the bootstrap with live xDS files (envoy/bootstrap.yaml; the
docker-compose bootstrap differs from it only in its binds, tests/e2e/test_deploy.py),
the Istio sidecar EnvoyFilter applied to the configuration istiod generates
(tests/harness/istio.py), and Istio's ingress gateway. Module-scoped: one set of
services per test module, one Envoy per deployment."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from harness import MCP_CLUSTER, Authz, Envoy, Ratelimit, audit_records, bearer, envoy_counter, free_port, render_config
from harness.authz import READ_SCOPES
from harness.client import Response
from harness import single
from harness.envoy import audit_log_path
from harness.fleet import Rendered
from harness.istio import (
    apply, fleet_gateway_skeleton, fleet_upstreams, load, rendered_sidecar, rendered_sidecar_filter, sidecar_upstreams,
)
from harness.paths import Received, h2_request, raw_request, start_lenient

from e2e.helpers import AGENT, modern_call

DEPLOYMENTS = ["standalone", "istio-sidecar", "fleet", "fleet-istio-gateway"]
TOOL = "get_account_balance"
NO_SCOPES = ""


@dataclass
class Services:
    logs: Path
    authz: Authz
    ratelimit: Ratelimit
    upstream_port: int
    received: Received


@dataclass
class Deployment:
    name: str
    envoy: Envoy
    port: int
    host: str

    def counter(self, name: str) -> int:
        return envoy_counter(self.envoy.admin_port, name)

    def audit(self, until=None) -> list[dict]:
        return audit_records(self.envoy.audit_path, until=until)


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    logs = tmp_path_factory.mktemp("deployments")
    started = []
    try:
        authz = Authz(logs)
        started.append(authz)
        ratelimit = Ratelimit(logs)
        started.append(ratelimit)
        upstream, port, received = start_lenient(logs)
        started.append(upstream)
        yield Services(logs, authz, ratelimit, port, received)
    finally:
        for proc in reversed(started):
            proc.stop()


def sidecar_filter(logs: Path) -> dict:
    """The financial-data server's sidecar EnvoyFilter as render writes it for
    registry/examples with the server opted in (harness/istio.py opt_in_sidecar)."""
    return rendered_sidecar_filter(logs)[0]


def start(name: str, services: Services, source: Path | None = None) -> Deployment:
    """Renders and starts one deployment (`source` overrides the config file)."""
    authz, ratelimit = services.authz, services.ratelimit
    # The rendered Gateway serves any host; the others have no host-based routing.
    host = "127.0.0.1"
    if name.startswith("fleet"):
        source, upstreams = fleet_source(name, services)
    elif name == "standalone":
        source = source or single.standalone()
        upstreams = {MCP_CLUSTER: services.upstream_port, **authz.upstreams(), **ratelimit.upstreams()}
    elif name == "istio-sidecar":
        source = source or rendered_sidecar(services.logs)
        upstreams = sidecar_upstreams(services.upstream_port, {**authz.upstreams(), **ratelimit.upstreams()})
    else:
        raise ValueError(f"no deployment {name!r}")
    listener, admin = free_port(), free_port()
    path = render_config(source, services.logs, listener, admin, upstreams)
    envoy = Envoy(path, admin, services.logs)
    envoy.audit_path = audit_log_path(services.logs, listener)
    return Deployment(name, envoy, listener, host)


def fleet_source(name: str, services: Services) -> tuple[Path, dict[str, int]]:
    """A fleet of one rendered by mcp-registry: the example financial-data manifest,
    pointed at the lenient upstream and exposed at /mcp, so the same path variants
    apply; the policy and limits are the services' (same tools and scopes)."""
    logs = services.logs / f"{name}-{uuid.uuid4().hex[:8]}"
    rendered = Rendered(logs, {"financial-data": services.upstream_port}, paths={"financial-data": "/mcp"})
    ports = {**services.authz.upstreams(), **services.ratelimit.upstreams()}
    if name == "fleet":
        return rendered.out / "envoy" / "bootstrap.yaml", ports
    bootstrap = apply(
        load(rendered.out / "istio" / "gateway-envoyfilter.yaml"),
        fleet_gateway_skeleton(rendered.out / "istio" / "gateway-virtualservice.yaml"),
    )
    source = logs / "istio-fleet-gateway.yaml"
    source.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
    return source, fleet_upstreams(bootstrap, ports, services.authz.http_port)


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def deployment(request, services):
    deployed = start(request.param, services)
    yield deployed
    deployed.envoy.stop()


@dataclass
class Probe:
    """One request sent, and what became of it."""

    protocol: str
    method: str
    target: str
    scopes: str
    probe_id: str
    jsonrpc_id: int
    response: Response | None  # None: the stream was reset / the connection closed
    received: list[dict]

    @property
    def status(self) -> int:
        return self.response.status if self.response else 0

    def __str__(self) -> str:
        scopes = "read-scopes" if self.scopes == READ_SCOPES else f"scopes={self.scopes!r}"
        answer = self.response.body[:160] if self.response else "reset"
        return f"{self.protocol} {self.method} {self.target!r} {scopes}: {self.status} {answer}"


_ids = iter(range(10_000, 10**9))


def tool_call(
    deployment: Deployment,
    target: str,
    protocol: str = "http/1.1",
    scopes: str | None = None,
    method: str = "POST",
    extra: list[tuple[str, str]] = (),
) -> tuple[Response | None, str, int]:
    """Sends a 2026-07-28 tools/call of TOOL (as a compliant client would) to `target`
    with a valid token for AGENT carrying `scopes` (default: the read scopes). Every
    request carries its own `x-probe` header so the upstream's records can be told
    apart. Returns (response or None if reset, probe id, JSON-RPC id)."""
    jsonrpc_id = next(_ids)
    body, headers = modern_call(TOOL, jsonrpc_id, {"account_id": "acc-001"})
    if scopes is not None:
        headers = [h for h in headers if h[0] != "authorization"] + [bearer(AGENT, scopes)]
    probe_id = uuid.uuid4().hex
    headers = headers + [("x-probe", probe_id), *extra]
    payload = body.encode() if method == "POST" else b""
    if method != "POST":
        # The handshake-era GET stream / DELETE of a session: no body, no mirrored
        # 2026-07-28 headers (that revision has neither).
        headers = [h for h in headers if h[0] in ("authorization", "x-probe")]
        headers += [("accept", "text/event-stream"), ("mcp-protocol-version", "2025-11-25")]
    try:
        if protocol == "http/1.1":
            response = raw_request(deployment.port, method, target.format(host=deployment.host), headers, payload, host=deployment.host)
        else:
            response = h2_request(deployment.port, method, target.format(host=deployment.host), headers, payload, authority=deployment.host)
    except ConnectionError:
        response = None
    if response is not None and response.status == 0:
        response = None
    return response, probe_id, jsonrpc_id


def probe(deployment: Deployment, services: Services, target: str, protocol: str = "http/1.1", scopes: str | None = None, method: str = "POST", extra=()) -> Probe:
    response, probe_id, jsonrpc_id = tool_call(deployment, target, protocol, scopes, method, extra)
    received = services.received.with_header("x-probe", probe_id)
    return Probe(protocol, method, target, READ_SCOPES if scopes is None else scopes, probe_id, jsonrpc_id, response, received)


def header(record: dict, name: str) -> str | None:
    values = [v for k, v in record["headers"] if k == name]
    assert len(values) <= 1, (name, values)
    return values[0] if values else None


def jsonrpc_error_code(response: Response) -> int | None:
    try:
        return json.loads(response.body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
