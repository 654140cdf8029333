"""Issue 17, canary on Istio's ingress gateway: two releases of one server behind the
split `mcp-registry render` writes into istio/ (the VirtualService route's two weighted
destinations with their own `headers.request.set`, the EnvoyFilter's
`weighted_clusters.header_name` and the release metadata it MERGEs into istiod's
`outbound|<port>||<host>` clusters), turned into what istiod generates
(tests/harness/istio.py: route.go's weighted destinations, cluster_patch.go's matching,
every patch must match something) and run by the real Envoy with the real filter,
authz-service and ratelimit-service. A re-render reaches the running gateway as istiod
pushes it, over RDS (harness.istio.push_routes); clusters are unchanged by a rollback
(the canary's Service stays), so nothing else is pushed.

The releases are official-SDK servers, as in test_canary_render.py (whose Caller, state
file and manifest edit this reuses): which release handled a call is read from the
servers' own dispatch logs, never from what the gateway says."""

from __future__ import annotations

import copy
import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from e2e.test_canary_render import (
    AGENT,
    CANARY,
    SCOPES,
    SERVER,
    STABLE,
    Caller,
    assert_sessions_stay_on_their_release,
    ok,
    set_canary,
    write_state,
)
from harness import audit_records, free_port, start_echo
from harness import fleet as fleet_harness
from harness.authz import Authz
from harness.catalog_servers import FIXTURES, manifest_catalog, route_path, start_servers
from harness.envoy import Envoy, audit_log_path, connection_manager, render_config, validate
from harness.fleet import route_list
from harness.istio import (
    UnmatchedPatch,
    apply,
    fleet_gateway_skeleton,
    fleet_upstreams,
    load,
    push_routes,
    rendered_gateway,
    translate_route,
    with_pushed_routes,
)
from harness.observe import json_lines
from harness.ratelimit import Ratelimit
from harness.rpc import rpc

ROUTE = f"mcp-server-{SERVER}"


class IstioGateway:
    """The ingress gateway on a render's istio/ output, its routes over RDS."""

    def __init__(self, log_dir: Path, out: Path, authz: Authz, ratelimit: Ratelimit, name: str, envoy_filter: dict | None = None):
        self.out, self.name = out, name
        self.envoy_filter = envoy_filter
        bootstrap = self.assemble()
        self.running, self.rds = with_pushed_routes(bootstrap, log_dir / f"rds-{name}")
        source = log_dir / f"istio-canary-{name}.yaml"
        source.write_text(yaml.safe_dump(self.running, sort_keys=False))
        self.port, admin = free_port(), free_port()
        upstreams = fleet_upstreams(bootstrap, {**authz.upstreams(), **ratelimit.upstreams()}, authz.http_port)
        self.config = render_config(source, log_dir, self.port, admin, upstreams)
        self.audit_path = audit_log_path(log_dir, self.port)
        self.envoy = Envoy(self.config, admin, log_dir, name=f"envoy-{name}")

    def assemble(self) -> dict:
        if self.envoy_filter is None:
            return rendered_gateway(self.out)
        return apply(self.envoy_filter, fleet_gateway_skeleton(self.out / "istio" / "gateway-virtualservice.yaml"))

    def push(self) -> None:
        """istiod's push of the current render (routes only)."""
        push_routes(self.running, self.assemble(), self.rds)

    def stop(self) -> None:
        self.envoy.stop()


@contextmanager
def istio_fleet(log_dir: Path, endpoints: dict[str, int], source: Path):
    """The render of `endpoints`' manifests (from `source`) and the authz- and
    ratelimit-services on it; the gateway is the test's (it adds the canary first)."""
    rendered = fleet_harness.Rendered(log_dir, endpoints, source=source)
    started = []
    try:
        authz = Authz(log_dir, policy=rendered.out / "policy.yaml", schemas=rendered.out / "schemas.json", in_place=True)
        started.append(authz)
        ratelimit = Ratelimit(log_dir, config_dir=rendered.out / "limits")
        started.append(ratelimit)
        yield rendered, authz, ratelimit
    finally:
        for process in reversed(started):
            process.stop()


@contextmanager
def two_releases(log_dir: Path):
    catalog = manifest_catalog(SERVER)
    servers = start_servers(
        log_dir,
        {
            "stable": {"kind": "py", "catalog": {**catalog, "version": STABLE}},
            "canary": {"kind": "py", "catalog": {**catalog, "version": CANARY}},
        },
    )
    try:
        with istio_fleet(log_dir, {SERVER: servers["stable"].port}, FIXTURES) as (rendered, authz, ratelimit):
            yield rendered, authz, ratelimit, servers
    finally:
        for server in servers.values():
            server.stop()


def routes(bootstrap: dict) -> dict[str, dict]:
    (vhost,) = connection_manager(bootstrap)["route_config"]["virtual_hosts"]
    return {route["name"]: route for route in vhost["routes"]}


def clusters(bootstrap: dict) -> dict[str, dict]:
    return {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}


def plain_envoy_split(out: Path) -> list[dict]:
    """The weighted clusters of the server's route in the plain-Envoy render."""
    (route,) = [r for r in route_list(out / "envoy" / "routes.yaml") if r.get("name") == f"mcp-server/{SERVER}"]
    return route["route"]["weighted_clusters"]["clusters"]


def rolled_back(rendered) -> None:
    write_state(
        rendered,
        {SERVER: {"canary_version": CANARY, "state": "rolled_back", "weight": 0,
                  "reason": "test: tool_call_error_ratio", "at": "2026-12-02T10:00:00Z"}},
    )
    rendered.render()


def test_the_harness_translates_weighted_destinations_as_istios_own_test_expects():
    """istio/istio 86c9f01 pilot/pkg/networking/core/route/route_test.go, "for header
    operations for weighted cluster" (virtualServiceWithHeaderOperationsForWeightedCluster)
    and "for header operations" (the route-level Host): per destination, `set` then `add`
    (each sorted), removals, and the `set` authority over the `add` one as the cluster
    weight's Host; the route keeps its own headers and Host. Plus a 0 % destination,
    which applyHTTPRouteDestination leaves out."""
    def operations(color):
        return {
            "request": {"set": {f"x-route-req-set-{color}": "v1", ":authority": f"{color}.foo.extsvc.com"},
                        "add": {f"x-route-req-add-{color}": "v2", ":authority": f"{color}.bar.extsvc.com"},
                        "remove": [f"x-route-req-remove-{color}"]},
            "response": {"set": {f"x-route-resp-set-{color}": "v1"}, "add": {f"x-route-resp-add-{color}": "v2"},
                         "remove": [f"x-route-resp-remove-{color}"]},
        }

    virtual_service = {"metadata": {"name": "acme", "namespace": "default"}}
    http = {
        "route": [
            {"destination": {"host": "c-weighted.extsvc.com", "subset": "blue"}, "headers": operations("blue"), "weight": 9},
            {"destination": {"host": "c-weighted.extsvc.com", "subset": "red"}, "headers": operations("red"), "weight": 0},
            {"destination": {"host": "c-weighted.extsvc.com", "subset": "green"}, "headers": operations("green"), "weight": 1},
        ],
        "headers": {
            "request": {"set": {"x-req-set": "v1", ":authority": "foo.extsvc.com"}, "add": {"x-req-add": "v2", ":authority": "bar.extsvc.com"},
                        "remove": ["x-req-remove"]},
            "response": {"set": {"x-resp-set": "v1"}, "add": {"x-resp-add": "v2"}, "remove": ["x-resp-remove"]},
        },
    }
    route = translate_route(virtual_service, http, None, 8080)

    def option(key, value, append):
        return {"header": {"key": key, "value": value}, "append_action": "APPEND_IF_EXISTS_OR_ADD" if append else "OVERWRITE_IF_EXISTS_OR_ADD"}

    assert route["route"]["host_rewrite_literal"] == "foo.extsvc.com"
    assert route["request_headers_to_add"] == [option("x-req-set", "v1", False), option("x-req-add", "v2", True)]
    assert route["request_headers_to_remove"] == ["x-req-remove"]
    clusters = route["route"]["weighted_clusters"]["clusters"]
    assert [(c["name"], c["weight"]) for c in clusters] == [
        ("outbound|8080|blue|c-weighted.extsvc.com", 9), ("outbound|8080|green|c-weighted.extsvc.com", 1),
    ]
    for cluster, color in zip(clusters, ("blue", "green"), strict=True):
        assert cluster["request_headers_to_add"] == [option(f"x-route-req-set-{color}", "v1", False), option(f"x-route-req-add-{color}", "v2", True)]
        assert cluster["request_headers_to_remove"] == [f"x-route-req-remove-{color}"]
        assert cluster["response_headers_to_add"] == [option(f"x-route-resp-set-{color}", "v1", False), option(f"x-route-resp-add-{color}", "v2", True)]
        assert cluster["response_headers_to_remove"] == [f"x-route-resp-remove-{color}"]
        assert cluster["host_rewrite_literal"] == f"{color}.foo.extsvc.com"
    # GetRouteOperation: more than one cluster, so the VirtualService's name.
    assert route["decorator"] == {"operation": "acme:8080/*"}


def test_istiod_turns_the_rendered_split_into_the_plain_envoy_split(tmp_path):
    """The rendered VirtualService and EnvoyFilter, through istiod's translation, give
    the server's route the same weighted clusters the plain-Envoy target renders (per
    release: weight, Host rewrite, x-mcp-server-version), the filter's pick header, and
    release metadata on both of istiod's clusters beside istiod's own; at weight 0 istiod
    leaves the canary out of the route while its cluster (and its metadata patch) stays."""
    with two_releases(tmp_path) as (rendered, authz, ratelimit, servers):
        stable, canary = servers["stable"].port, servers["canary"].port
        set_canary(rendered, canary)
        names = {STABLE: f"outbound|{stable}||127.0.0.1", CANARY: f"outbound|{canary}||127.0.0.1"}
        bootstrap = split_bootstrap = rendered_gateway(rendered.out)
        route = routes(bootstrap)[ROUTE]
        split = route["route"]["weighted_clusters"]
        assert split["header_name"] == "x-mcp-version-pick"
        assert [(c["name"], c["weight"]) for c in split["clusters"]] == [(names[STABLE], 50), (names[CANARY], 50)]
        # A route-level Host rewrite would send the stable's Host to the canary.
        assert "host_rewrite_literal" not in route["route"] and "cluster" not in route["route"]
        plain = plain_envoy_split(rendered.out)
        for istio_weight, envoy_weight in zip(split["clusters"], plain, strict=True):
            for key in ("weight", "host_rewrite_literal", "request_headers_to_add"):
                assert istio_weight[key] == envoy_weight[key], (key, istio_weight, envoy_weight)
        assert [c["host_rewrite_literal"] for c in split["clusters"]] == [f"127.0.0.1:{stable}", f"127.0.0.1:{canary}"]
        by_name = clusters(bootstrap)
        for version, track in ((STABLE, "stable"), (CANARY, "canary")):
            metadata = by_name[names[version]]["metadata"]["filter_metadata"]
            assert metadata["mcp_gateway"] == {"server_id": SERVER, "server_version": version, "track": track}
            assert metadata["istio"]["services"][0]["host"] == "127.0.0.1"  # istiod's own, kept

        rolled_back(rendered)
        bootstrap = rendered_gateway(rendered.out)
        route = routes(bootstrap)[ROUTE]
        split = route["route"]["weighted_clusters"]
        assert [(c["name"], c["weight"]) for c in split["clusters"]] == [(names[STABLE], 100)]
        assert split["header_name"] == "x-mcp-version-pick"
        # istiod >= 1.19 keeps the one weighted cluster left (no rewrite to `cluster`,
        # see harness.istio.translate_route), with the stable's own Host and version on
        # its cluster weight, so the EnvoyFilter's header_name merges into a split that
        # still has its cluster.
        assert "cluster" not in route["route"] and "host_rewrite_literal" not in route["route"]
        assert split["clusters"][0]["host_rewrite_literal"] == f"127.0.0.1:{stable}"
        assert split["clusters"][0]["request_headers_to_add"] == plain[0]["request_headers_to_add"]
        assert clusters(bootstrap)[names[CANARY]]["metadata"]["filter_metadata"]["mcp_gateway"]["track"] == "canary"

        # Promoted: the stable destination at 0 % is the one left out.
        write_state(
            rendered,
            {SERVER: {"canary_version": CANARY, "state": "promoted", "weight": 100, "reason": "test", "at": "2026-12-02T10:00:00Z"}},
        )
        rendered.render()
        promoted_bootstrap = rendered_gateway(rendered.out)
        split = routes(promoted_bootstrap)[ROUTE]["route"]["weighted_clusters"]
        assert [(c["name"], c["weight"]) for c in split["clusters"]] == [(names[CANARY], 100)]
        assert split["header_name"] == "x-mcp-version-pick"
        assert split["clusters"][0]["host_rewrite_literal"] == f"127.0.0.1:{canary}"
        assert split["clusters"][0]["request_headers_to_add"] == plain[1]["request_headers_to_add"]
        # Both clusters are still built (the stable's Service is still a destination).
        assert clusters(promoted_bootstrap)[names[STABLE]]["metadata"]["filter_metadata"]["mcp_gateway"]["track"] == "stable"

        # A cluster patch for a service the gateway does not have is refused (istiod
        # would skip it silently and the canary's calls would carry the route's version).
        envoy_filter = load(rendered.out / "istio" / "gateway-envoyfilter.yaml")
        wrong = copy.deepcopy(envoy_filter)
        (patch, _) = [p for p in wrong["spec"]["configPatches"] if p["applyTo"] == "CLUSTER" and p["patch"]["operation"] == "MERGE"]
        patch["match"]["cluster"]["service"] = f"{SERVER}.mcp-servers.svc.cluster.local"
        with pytest.raises(UnmatchedPatch, match="matches no cluster"):
            apply(wrong, fleet_gateway_skeleton(rendered.out / "istio" / "gateway-virtualservice.yaml"))

        # The assembled gateway loads in Envoy: split, rolled back and promoted.
        for state, assembled in (("split", split_bootstrap), ("rolled-back", bootstrap), ("promoted", promoted_bootstrap)):
            gateway_config = tmp_path / f"validate-{state}.yaml"
            gateway_config.write_text(yaml.safe_dump(assembled, sort_keys=False))
            upstreams = fleet_upstreams(assembled, {**authz.upstreams(), **ratelimit.upstreams()}, authz.http_port)
            done = validate(render_config(gateway_config, tmp_path, free_port(), free_port(), upstreams))
            assert done.returncode == 0, (state, done.stderr[-2000:])

        # Why the Istio target needs istiod >= 1.19: istiod <= 1.18 rewrote the one
        # weighted cluster left to a single `cluster`, the weight's headers moved to the
        # route (1.18.0 pilot/pkg/networking/core/v1alpha3/route/route.go:565-588). The
        # header_name MERGE then sets the other member of the cluster_specifier oneof:
        # weighted_clusters without clusters, which Envoy refuses (on a live gateway, the
        # whole route update). The promoted render through that older translation:
        legacy = fleet_gateway_skeleton(rendered.out / "istio" / "gateway-virtualservice.yaml")
        action = routes(legacy)[ROUTE]["route"]
        (only,) = action.pop("weighted_clusters")["clusters"]
        action["cluster"] = only["name"]
        action["host_rewrite_literal"] = only["host_rewrite_literal"]
        routes(legacy)[ROUTE]["request_headers_to_add"] = only["request_headers_to_add"]
        assembled = apply(envoy_filter, legacy)
        assert routes(assembled)[ROUTE]["route"]["weighted_clusters"] == {"header_name": "x-mcp-version-pick"}
        assert "cluster" not in routes(assembled)[ROUTE]["route"]
        gateway_config = tmp_path / "validate-legacy.yaml"
        gateway_config.write_text(yaml.safe_dump(assembled, sort_keys=False))
        upstreams = fleet_upstreams(assembled, {**authz.upstreams(), **ratelimit.upstreams()}, authz.http_port)
        done = validate(render_config(gateway_config, tmp_path, free_port(), free_port(), upstreams))
        assert done.returncode != 0 and "Clusters" in done.stderr, done.stderr[-2000:]


def test_each_release_gets_its_own_host_and_version(tmp_path):
    """Header-echo upstreams as the two releases: what each one receives through the
    Istio split is its own Host (the destination's `headers.request.set.host`, which
    istiod makes the cluster weight's host_rewrite_literal) and its own
    x-mcp-server-version, on the endpoint's path; the client's forged copies never."""
    echoes = {}
    try:
        for name in ("stable", "canary"):
            echoes[name] = start_echo(tmp_path, name=name)
        ports = {name: port for name, (_, port) in echoes.items()}
        with istio_fleet(tmp_path, {SERVER: ports["stable"]}, FIXTURES) as (rendered, authz, ratelimit):
            set_canary(rendered, ports["canary"])
            gateway = IstioGateway(tmp_path, rendered.out, authz, ratelimit, "echo")
            try:
                seen: dict[str, list[dict]] = {"stable": [], "canary": []}
                forged = [("x-mcp-server-version", "forged"), ("host", "forged.example")]
                for i in range(60):
                    response = rpc(
                        gateway.port, route_path(SERVER), "tools/call", {"name": "search", "arguments": {"query": f"host-{i}"}},
                        i, AGENT, SCOPES, headers=forged,
                    )
                    assert response.status == 200, (response.status, response.body[:300])
                    echo = json.loads(response.body)
                    seen[echo["upstream"]].append(echo)
                    if min(len(v) for v in seen.values()) >= 3:
                        break
                for name, version in (("stable", STABLE), ("canary", CANARY)):
                    assert seen[name], seen
                    for echo in seen[name]:
                        headers = {}
                        for key, value in echo["headers"]:
                            headers.setdefault(key, []).append(value)
                        assert headers["host"] == [f"127.0.0.1:{ports[name]}"], (name, headers)
                        assert headers["x-mcp-server-version"] == [version], (name, headers)
                        assert echo["path"] == "/mcp"
            finally:
                gateway.stop()
    finally:
        for process, _ in echoes.values():
            process.stop()


def served_versions(caller: Caller, served: dict[int, str], gateway: IstioGateway) -> None:
    """Each audit record names the release that actually served its call."""
    records = audit_records(gateway.audit_path, until=lambda rs: {r.get("jsonrpc_id") for r in rs} >= set(served))
    by_id = {r["jsonrpc_id"]: r for r in records if r.get("method") == "tools/call"}
    for number, name in served.items():
        assert by_id[number]["server_id"] == SERVER
        assert by_id[number]["server_version"] == {"stable": STABLE, "canary": CANARY}[name], (name, by_id[number])


def test_two_releases_behind_the_istio_gateway_and_a_rollback(tmp_path):
    with two_releases(tmp_path) as (rendered, authz, ratelimit, servers):
        set_canary(rendered, servers["canary"].port)
        gateway = IstioGateway(tmp_path, rendered.out, authz, ratelimit, "canary")
        try:
            caller = Caller(gateway, servers)
            posts_from = {name: len(server.posts()) for name, server in servers.items()}
            served: dict[int, str] = {}
            for _ in range(60):
                number, query, response = caller.call("split")
                assert ok(response), (response.status, response.body[:300])
                served[number] = caller.served_by(query)
            counts = {name: list(served.values()).count(name) for name in servers}
            # 60 calls at 50/50: each release at least 10 but for a chance below 1e-8.
            assert counts["stable"] >= 10 and counts["canary"] >= 10, counts
            # Each upstream sees its own version (the destination's headers.request.set,
            # on istiod's cluster weight), never the client's forged copy nor the pick.
            for name, version in (("stable", STABLE), ("canary", CANARY)):
                posts = servers[name].posts()[posts_from[name]:]
                assert posts, name
                assert {p.get("x-mcp-server-version") for p in posts} == {version}, (name, posts[:2])
                assert all("x-mcp-version-pick" not in p for p in posts)
            served_versions(caller, served, gateway)

            # Rollback: the watcher's state at 0 %, re-rendered and pushed while a
            # background caller keeps calling.
            failures: list = []
            background: list = []
            stop = threading.Event()

            def keep_calling():
                while not stop.is_set():
                    _, query, response = caller.call("background", forged=False)
                    background.append(query)
                    if not ok(response):
                        failures.append((response.status, response.body[:300]))

            thread = threading.Thread(target=keep_calling, daemon=True)
            thread.start()
            try:
                time.sleep(0.5)
                rolled_back(rendered)
                gateway.push()
                pushed_at = time.monotonic()
                time.sleep(max(0.0, pushed_at + 1.0 - time.monotonic()))
                after = [caller.call("after-rollback") for _ in range(30)]
                time.sleep(0.5)
            finally:
                stop.set()
                thread.join(timeout=30)
            assert not failures, failures[:3]
            assert len(background) >= 5, len(background)
            assert all(ok(r) for _, _, r in after)
            # Sent with a forged `x-mcp-version-pick: 99`, which would pick the canary
            # were it still in the route: 30 calls, none on the canary.
            assert {caller.served_by(q) for _, q, _ in after} == {"stable"}
            served_versions(caller, {n: "stable" for n, _, _ in after}, gateway)
        finally:
            gateway.stop()


def test_without_the_cluster_patches_the_canary_is_audited_as_stable(tmp_path):
    """The control: the same gateway without the EnvoyFilter's CLUSTER MERGE patches.
    Calls still split (the VirtualService routes them), but the filter can only read the
    route's version, so the canary's calls are audited as the stable release: the audit
    assertion above fails on a render whose cluster patches do not reach istiod's
    clusters."""
    with two_releases(tmp_path) as (rendered, authz, ratelimit, servers):
        set_canary(rendered, servers["canary"].port)
        envoy_filter = load(rendered.out / "istio" / "gateway-envoyfilter.yaml")
        envoy_filter["spec"]["configPatches"] = [
            p for p in envoy_filter["spec"]["configPatches"] if not (p["applyTo"] == "CLUSTER" and p["patch"]["operation"] == "MERGE")
        ]
        gateway = IstioGateway(tmp_path, rendered.out, authz, ratelimit, "no-cluster-metadata", envoy_filter)
        try:
            caller = Caller(gateway, servers)
            on_canary = None
            for _ in range(40):
                number, query, response = caller.call("control")
                assert ok(response), (response.status, response.body[:300])
                if caller.served_by(query) == "canary":
                    on_canary = number
                    break
            assert on_canary is not None
            records = audit_records(gateway.audit_path, until=lambda rs: on_canary in {r.get("jsonrpc_id") for r in rs})
            (record,) = [r for r in records if r.get("jsonrpc_id") == on_canary]
            assert record["server_version"] == STABLE, record
        finally:
            gateway.stop()


def test_handshake_era_sessions_stay_on_their_release_through_istio(tmp_path, monkeypatch):
    """Two releases of the demo server (official Python SDK, stateful sessions) behind
    the Istio split at 50/50: every request of a handshake-era session reaches the
    release that answered its `initialize` (the filter's pin in the route's
    `x-mcp-version-pick`, which the EnvoyFilter adds to istiod's weighted clusters);
    without it about half of the later requests would reach the other release (404)."""
    import mcp.client.session

    from harness.procs import start_mcp_server

    monkeypatch.setattr(mcp.client.session, "LATEST_HANDSHAKE_VERSION", "2025-06-18")
    logs = {name: tmp_path / f"seen-{name}.jsonl" for name in ("stable", "canary")}
    started = []
    try:
        for name in ("stable", "canary"):
            started.append(start_mcp_server(tmp_path, logs[name]))
        (_, stable_port), (_, canary_port) = started
        with istio_fleet(tmp_path, {"financial-data": stable_port}, fleet_harness.EXAMPLES) as (rendered, authz, ratelimit):
            path = rendered.manifests / "financial-data.yaml"
            manifest = yaml.safe_load(path.read_text())
            manifest["gateway"]["canary"] = {"version": "1.4.0", "endpoint": f"http://127.0.0.1:{canary_port}/mcp", "weight": 50}
            path.write_text(yaml.safe_dump(manifest, sort_keys=False))
            rendered.render()
            gateway = IstioGateway(tmp_path, rendered.out, authz, ratelimit, "sessions")
            try:
                assert_sessions_stay_on_their_release(f"http://127.0.0.1:{gateway.port}/financial-data/mcp", logs)
                # And the canary's requests carried its version (its cluster weight's header).
                canary_posts = [dict(r["headers"]) for r in json_lines(logs["canary"]) if r["method"] == "POST"]
                assert {p.get("x-mcp-server-version") for p in canary_posts} == {"1.4.0"}
            finally:
                gateway.stop()
    finally:
        for process, _ in started:
            process.stop()
