"""The Istio sidecar shape as `mcp-registry render` writes it
(istio-sidecar/envoyfilters.yaml): one EnvoyFilter per server whose manifest has
gateway.istio_sidecar, for the pods, namespace and container port the manifest names.
The example fleet opts no server in (it goes through the ingress gateway, and a server
never has both); the tests add the section with harness/istio.py opt_in_sidecar.
What every variant shares (documented fields, fleet.yaml's chain, the routes, the whole
chain end to end) is tests/e2e/test_istio.py's; here: which servers get one, that the
container port is the one patched, the assembled bootstrap the deployments run
(harness/istio.py `rendered_sidecar`), and that the server's rendered limits, nested
under its id, hold in its sidecar."""

from __future__ import annotations

import copy
from urllib.parse import urlsplit

import pytest
import yaml
from e2e.helpers import AGENT, modern_call
from e2e.test_istio import check_envoy_filter_fields
from harness import bearer, free_port, metric, render_config, request, start_gateway, validate
from harness.authz import Authz
from harness.envoy import connection_manager
from harness.fleet import EXAMPLES, render_examples
from harness.istio import (
    SIDECAR_FILE,
    SIDECAR_SECTION,
    SIDECAR_SERVER,
    UnmatchedPatch,
    apply,
    load_all,
    mcp_filter_config,
    opt_in_sidecar,
    rendered_sidecar,
    sidecar_filters,
    sidecar_port,
    sidecar_skeleton,
    sidecar_upstreams,
)
from harness.ratelimit import Ratelimit

SERVICES = ("authz_service", "authz_http", "ratelimit_service")


def edit_manifest(server_id: str, change):
    """An `edit` for render_examples: `change(manifest dict)` on one example manifest."""

    def edit(manifests):
        path = manifests / f"{server_id}.yaml"
        manifest = yaml.safe_load(path.read_text())
        change(manifest)
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))

    return edit


def validates(bootstrap: dict, logs, port: int = 8000) -> None:
    source = logs / f"sidecar-{free_port()}.yaml"
    source.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
    services = {name: free_port() for name in SERVICES}
    config = render_config(source, logs, free_port(), free_port(), sidecar_upstreams(free_port(), services, port))
    result = validate(config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_example_fleet_renders_no_sidecar(tmp_path):
    """The example manifests as they are: the demo's fleet, reached through the ingress
    gateway (istio/), so no server asks for a sidecar too (the gateway's ext_authz takes
    the client's token off each call: the sidecar's would refuse every one). The file
    stays, empty, so that an apply of it removes nothing by surprise."""
    out, _ = render_examples(tmp_path)
    assert sidecar_filters(out) == {}
    assert load_all(out / SIDECAR_FILE) == []
    assert "nothing to apply" in (out / SIDECAR_FILE).read_text()
    for manifest in EXAMPLES.glob("*.yaml"):
        assert "istio_sidecar" not in (yaml.safe_load(manifest.read_text()).get("gateway") or {}), manifest


def test_an_opted_in_example_server_gets_its_sidecar(tmp_path):
    """financial-data opted in (opt_in_sidecar): the pods of its Service, in its
    namespace, on its port; hr-directory and weather get none."""
    out, _ = render_examples(tmp_path, opt_in_sidecar)
    filters = sidecar_filters(out)
    assert list(filters) == [SIDECAR_SERVER]
    envoy_filter = filters[SIDECAR_SERVER]
    check_envoy_filter_fields(envoy_filter)
    assert envoy_filter["metadata"] == {"name": "mcp-sidecar-financial-data", "namespace": SIDECAR_SECTION["namespace"]}
    assert envoy_filter["spec"]["workloadSelector"] == {"labels": SIDECAR_SECTION["workload_labels"]}
    # The opt-in is consistent with the example's endpoint: the Service's namespace and port.
    example = yaml.safe_load((EXAMPLES / f"{SIDECAR_SERVER}.yaml").read_text())
    endpoint = urlsplit(example["endpoint"])
    assert endpoint.hostname.split(".")[1] == SIDECAR_SECTION["namespace"] == "mcp-servers"
    assert sidecar_port(envoy_filter) == endpoint.port == 8000
    config = mcp_filter_config(envoy_filter)
    assert config["server_id"] == SIDECAR_SERVER and config["mcp_paths"] == [endpoint.path]


def test_only_servers_that_opt_in_get_an_envoy_filter(tmp_path):
    """The EnvoyFilters follow the sections: weather opted in instead of financial-data
    gets the one EnvoyFilter; both opted in, one each (and without any section, none:
    test_the_example_fleet_renders_no_sidecar)."""
    weather = edit_manifest(
        "weather",
        lambda m: m.setdefault("gateway", {}).update(istio_sidecar={"namespace": "mcp-servers", "workload_labels": {"app": "weather-mcp"}}),
    )
    out, _ = render_examples(tmp_path / "weather", weather)
    (envoy_filter,) = sidecar_filters(out).values()
    assert envoy_filter["metadata"]["name"] == "mcp-sidecar-weather"
    assert mcp_filter_config(envoy_filter)["server_id"] == "weather"

    def both(manifests):
        opt_in_sidecar(manifests)
        weather(manifests)

    out, _ = render_examples(tmp_path / "both", both)
    assert sorted(sidecar_filters(out)) == [SIDECAR_SERVER, "weather"]


def test_the_container_port_is_the_one_patched(tmp_path, logs):
    """Istio builds a sidecar's inbound listener and route configuration for the
    container port (the Service's targetPort), so that is the port the patches name:
    a Service mapping 8000 to container port 9000 gets its filters on 9000, and the
    patches would match nothing of istiod's configuration for 8000."""
    def edit(manifests):
        opt_in_sidecar(manifests)
        edit_manifest(SIDECAR_SERVER, lambda m: m["gateway"]["istio_sidecar"].update(port=9000))(manifests)

    out, _ = render_examples(tmp_path, edit)
    envoy_filter = sidecar_filters(out)[SIDECAR_SERVER]
    assert sidecar_port(envoy_filter) == 9000
    with pytest.raises(UnmatchedPatch):
        apply(envoy_filter, sidecar_skeleton(8000))
    bootstrap = apply(envoy_filter)
    (vhost,) = connection_manager(bootstrap)["route_config"]["virtual_hosts"]
    (to_server,) = [r for r in vhost["routes"] if "route" in r and r["route"]["cluster"].startswith("inbound|")]
    assert to_server["route"]["cluster"] == "inbound|9000||"
    assert to_server["match"] == {"path": "/mcp"}
    validates(bootstrap, logs, 9000)


def test_the_deployments_sidecar_bootstrap_validates(logs):
    """What tests/e2e/deployments.py runs as "istio-sidecar"."""
    path = rendered_sidecar(logs)
    validates(yaml.safe_load(path.read_text()), logs)


def without_server_id_action(config: dict) -> None:
    """Envoy config mutation: the sidecar's route without its first rate limit action
    (the server's id), as the hand-written sidecar had it."""
    for host in connection_manager(config)["route_config"]["virtual_hosts"]:
        for route in host["routes"]:
            for limit in route.get("route", {}).get("rate_limits", []):
                assert limit["actions"][0]["generic_key"]["descriptor_key"] == "server_id"
                del limit["actions"][0]


def test_the_servers_rendered_limits_hold_in_its_sidecar(logs, echo):
    """The example manifest limits generate_report to 10 calls a minute per agent; the
    rendered limits nest every limit under the server's id, so the sidecar's route must
    send it first. With it, an agent's 11th call in a window is refused (429 -31020) and
    another agent still passes; without it (the hand-written sidecar's actions), the
    descriptor matches no limit and nothing is ever refused."""
    bootstrap = rendered_sidecar(logs)
    out = bootstrap.parent / "out"
    authz = Authz(logs, policy=out / "policy.yaml", in_place=True)
    ratelimit = Ratelimit(logs, config_dir=out / "limits")
    started = [authz, ratelimit]
    try:
        upstreams = sidecar_upstreams(echo, {**authz.upstreams(), **ratelimit.upstreams()})

        def call(port: int, agent: str, request_id) -> object:
            body, headers = modern_call("generate_report", request_id, {"account_id": "acc-001"}, auth=False)
            return request(port, "POST", "/mcp", body, headers + [bearer(agent)])

        envoy, port = start_gateway(logs, upstreams, source=bootstrap)
        started.append(envoy)
        # Fixed one-minute windows: 10 calls, or up to 20 when they straddle a window
        # boundary, pass before the first refusal.
        statuses = []
        for i in range(21):
            response = call(port, AGENT, f"r-{i}")
            statuses.append(response.status)
            if response.status != 200:
                break
        allowed = statuses.count(200)
        assert statuses[-1] == 429 and 10 <= allowed <= 20, statuses
        assert response.json()["error"]["code"] == -31020, response.body
        assert call(port, "agent-other", "o-1").status == 200
        assert metric(ratelimit.metrics(), "mcp_ratelimit_over_limit_total", key="server_id.tool_call.agent_id") >= 1

        plain, plain_port = start_gateway(logs, copy.deepcopy(upstreams), source=bootstrap, mutate=without_server_id_action)
        started.append(plain)
        unlimited = [call(plain_port, "agent-third", f"t-{i}").status for i in range(21)]
        assert unlimited == [200] * 21, unlimited
    finally:
        for process in reversed(started):
            process.stop()
