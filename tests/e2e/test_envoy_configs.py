"""Every Envoy config render writes (and the bootstrap they are made of) is accepted by
the real Envoy; bad filter configs stop it with a clear message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from harness import ROOT, connection_manager, free_port, render_config, routes, validate
from harness import single
from harness.envoy import filter_settings, wasm_plugin_configs
from harness.registry import EXAMPLES, manifest_text, render

FLEET_BOOTSTRAP = ROOT / "envoy" / "fleet.yaml"


def test_envoy_holds_no_server_config_but_the_bootstrap():
    """The single source of server facts is the manifests: envoy/ ships the bootstrap
    only, every other Envoy config is rendered (issue: no hand-written copy)."""
    assert sorted(p.name for p in (ROOT / "envoy").glob("*.yaml")) == ["fleet.yaml"]
    assert not (ROOT / "envoy" / "compose" / "envoy.yaml").exists()


@pytest.fixture(scope="module")
def example_standalone(tmp_path_factory) -> Path:
    """registry/examples rendered as users render them (no loopback endpoints)."""
    work = tmp_path_factory.mktemp("examples")
    (work / "credentials" / "hr-directory").mkdir(parents=True)
    (work / "credentials" / "hr-directory" / "authorization").write_text("Bearer demo\n")
    render(EXAMPLES, work / "out", work / "credentials", loopback=False)
    return work / "out" / "envoy" / "standalone.yaml"


def rendered_configs(example_standalone: Path) -> dict[str, Path]:
    return {"one-server standalone": single.standalone(), "example fleet standalone": example_standalone}


@pytest.mark.parametrize("which", ["one-server standalone", "example fleet standalone"])
def test_rendered_config_validates(which, example_standalone):
    # Validation loads the wasm VM and runs the filter's on_configure, so the plugin
    # configuration inside the file is checked too. Run from the root: the bootstrap
    # names the .wasm relative to it.
    result = validate(rendered_configs(example_standalone)[which])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


@pytest.mark.parametrize(
    "override, message",
    [
        ({"servers_from_routes": False, "server_id": ""}, 'server_id "" must be 1-128 characters'),
        ({"max_body_bytes": 0}, "max_body_bytes 0 must be between 1 and 67108864"),
        ({"servers_from_routes": False, "server_id": "x", "mcp_paths": ["mcp"]}, 'mcp_paths entry "mcp" must be an absolute path'),
        ({"agent_identity": {"source": "x-agent-id-header"}}, "unknown variant `x-agent-id-header`"),
        ({"max_body_limit": 5}, "unknown field `max_body_limit`"),
    ],
)
def test_invalid_filter_config_stops_envoy(tmp_path, override, message):
    path = render_config(single.standalone(), tmp_path, free_port(), free_port(), {}, override)
    result = validate(path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "invalid MCP filter plugin configuration" in output
    assert message in output


@pytest.mark.parametrize("which", ["bootstrap", "one-server standalone"])
def test_wasm_filters_are_safe(which):
    """Every MCP filter we ship can set headers after the body (else requests hang) and
    reloads a dead VM instead of failing open or answering 503 forever."""
    path = FLEET_BOOTSTRAP if which == "bootstrap" else single.standalone()
    plugins = wasm_plugin_configs(yaml.safe_load(path.read_text()))
    assert plugins, f"{path} has no wasm filter"
    for plugin in plugins:
        assert plugin["allow_on_headers_stop_iteration"] is True
        assert plugin["failure_policy"] == "FAIL_RELOAD"
        assert "fail_open" not in plugin


def test_only_the_mcp_path_reaches_the_server_and_underscores_are_refused():
    """The settings tests/e2e/test_path_variants.py and test_header_hygiene.py rely on,
    named so that a change to them fails here with a clear message."""
    config = yaml.safe_load(single.standalone().read_text())
    hcm = connection_manager(config)
    assert hcm["normalize_path"] is True and hcm["merge_slashes"] is True
    assert hcm["path_with_escaped_slashes_action"] == "REJECT_REQUEST"
    assert hcm["common_http_protocol_options"]["headers_with_underscores_action"] == "REJECT_REQUEST"
    assert filter_settings(wasm_plugin_configs(config)[0])["servers_from_routes"] is True
    every = routes(config)
    # One server route, in the path map and in the list the map falls back to.
    to_server = [r["match"] for r in every if r.get("route", {}).get("cluster") == single.MCP_CLUSTER]
    assert to_server == [{"path": single.PATH}] * 2
    (host,) = connection_manager(config)["route_config"]["virtual_hosts"]
    assert list(host["matcher"]["matcher_tree"]["exact_match_map"]["map"]) == [single.PATH]
    # The list the map falls back to ends with the catch-all, which the filter answers
    # (it is marked unregistered) and which has no upstream of its own.
    catch_all = every[-1]
    assert catch_all["match"] == {"prefix": "/"} and catch_all["direct_response"]["status"] == 404
    assert catch_all["metadata"]["filter_metadata"]["mcp_gateway"] == {"unregistered": "true"}


def test_the_standalone_config_is_the_bootstrap_with_the_xds_files_inline(example_standalone):
    """standalone.yaml is envoy/fleet.yaml without its dynamic resources, with the
    route configuration of routes.yaml as its route_config and the clusters of
    clusters.yaml among its static clusters: the same Envoy as bootstrap.yaml on the
    watched files, in one file."""
    rendered = example_standalone.parent
    expected = yaml.safe_load(FLEET_BOOTSTRAP.read_text())
    del expected["dynamic_resources"]
    hcm = connection_manager(expected)
    del hcm["rds"]
    (route_config,) = yaml.safe_load((rendered / "routes.yaml").read_text())["resources"]
    hcm["route_config"] = {k: v for k, v in route_config.items() if k != "@type"}
    clusters = yaml.safe_load((rendered / "clusters.yaml").read_text())["resources"]
    expected["static_resources"]["clusters"] += [{k: v for k, v in c.items() if k != "@type"} for c in clusters]
    assert yaml.safe_load(example_standalone.read_text()) == expected


EXT_AUTHZ = "envoy.filters.http.ext_authz"


def body_settings(route: dict) -> dict | None:
    per_route = route.get("typed_per_filter_config", {}).get(EXT_AUTHZ, {})
    return per_route.get("check_settings", {}).get("with_request_body")


def test_servers_that_validate_send_ext_authz_the_whole_body_up_to_the_filters_limit():
    """The authz-service validates arguments (issue 16) with the body ext_authz sends it:
    the one-server gateway (validation `report`, the default) asks for it on its route,
    never a partial body, and never with a limit under the MCP filter's own (ext_authz
    would answer a body the filter let through with its own 413, without a JSON-RPC body)."""
    config = yaml.safe_load(single.standalone().read_text())
    limit = filter_settings(wasm_plugin_configs(config)[0])["max_body_bytes"]
    server_routes = [r for r in routes(config) if r.get("route", {}).get("cluster") == single.MCP_CLUSTER]
    assert len(server_routes) == 2  # the path map's and the fallback list's
    for route in server_routes:
        settings = body_settings(route)
        assert settings is not None, route
        assert settings["max_request_bytes"] >= limit
        assert settings["allow_partial_message"] is False
        assert settings["pack_as_bytes"] is True
        metadata = route["metadata"]["filter_metadata"]["mcp_gateway"]
        assert metadata["unregistered_tools"] == "hide"
        assert sorted(json.loads(metadata["schema_digests"])) == sorted(metadata["tools"].split(","))
    # No other route buffers a body for ext_authz.
    assert [r for r in routes(config) if body_settings(r) and r not in server_routes] == []


def test_a_fleet_mixing_validation_modes_validates_and_only_validating_servers_buffer(tmp_path):
    """One server per mode, and one in `off` that mirrors a parameter into a header (its
    annotation is still checked, so it still needs the body): Envoy takes the rendered
    routes, and only the `off` server without annotations sends no body."""
    manifests = tmp_path / "manifests"
    shutil.copytree(EXAMPLES, manifests, ignore=shutil.ignore_patterns("credentials", "*.yaml"))
    (manifests / "schemas" / "mirrored.json").write_text(
        json.dumps({"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}})
    )
    modes = {"strict": ("enforce", None), "rollout": ("report", None), "quiet": ("off", None), "mirrored": ("off", "mirrored.json")}
    for port, (server_id, (mode, schema)) in enumerate(modes.items(), start=9001):
        manifest = yaml.safe_load(manifest_text("weather", port))
        manifest["server_id"] = server_id
        manifest["gateway"] = {"validation": mode}
        if schema:
            manifest["tools"] = [{"name": "lookup", "schema_ref": f"schemas/{schema}"}]
        (manifests / f"{server_id}.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    render(manifests, tmp_path / "out", tmp_path / "credentials")
    standalone = tmp_path / "out" / "envoy" / "standalone.yaml"
    result = validate(standalone)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(standalone.read_text())
    buffering = {
        r["metadata"]["filter_metadata"]["mcp_gateway"]["server_id"]
        for r in routes(config)
        if body_settings(r) and "server_id" in r.get("metadata", {}).get("filter_metadata", {}).get("mcp_gateway", {})
    }
    assert buffering == {"strict", "rollout", "mirrored"}
    schemas = json.loads((tmp_path / "out" / "schemas.json").read_text())
    assert {s: v["validation"] for s, v in schemas["servers"].items()} == {s: m for s, (m, _) in modes.items()}
