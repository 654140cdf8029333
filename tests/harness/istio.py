"""Turns the Istio EnvoyFilters `mcp-registry render` writes into an Envoy bootstrap,
applying their patches the way istiod does, onto the configuration istiod really
generates, so that what the patches carry is validated and run by the real Envoy
instead of being an untested copy.

The generated shapes follow istio/istio (pilot/pkg/networking/core):

- sidecar inbound (`buildSidecarInboundHTTPOpts`, `buildSidecarInboundHTTPRouteConfig`,
  `route.BuildDefaultHTTPInboundRoute`, `buildHTTPConnectionManager`): one route
  configuration `inbound|<port>||` with the virtual host `inbound|http|<port>` whose one
  route, named `default`, sends *every* path (`prefix: /`) to the inbound cluster
  `inbound|<port>||`; the connection manager normalises paths (meshConfig
  `pathNormalization` unset acts as BASE) but merges no slashes, keeps escaped slashes
  (`KEEP_UNCHANGED`) and lets header names with underscores through (no ProxyConfig
  `connectionSettings`; their EDGE profile applies to gateways only).
- gateway (`buildGatewayHTTPRouteConfig`, `route.TranslateRoute`): route configuration
  `http.<server port>`, one virtual host `<host>:<port>` per Gateway host, one route per
  VirtualService match (named after the http route, `exact` -> `path`, `prefix` ->
  `prefix`, `case_sensitive: true` unless `ignoreUriCase`) to the outbound cluster
  `outbound|<port>||<host>`, Istio's default retry policy; unmatched paths get Envoy's
  own 404. Built here from the Gateway and VirtualService `mcp-registry render` writes
  (istio/gateway-virtualservice.yaml).

Both variants are rendered from the server manifests: the gateway's into istio/, a
sidecar's (for each server whose manifest has gateway.istio_sidecar) into
istio-sidecar/envoyfilters.yaml. Nothing of either ships hand-written in envoy/.

Istio-only HTTP filters (istio.metadata_exchange, istio.stats) are not in upstream
Envoy and are left out: they neither route nor rewrite paths. The inbound listener is
an ordinary listener on a test port, not `virtualInbound` with `original_dst`.

Patch semantics follow pilot/pkg/networking/core/envoyfilter: MERGE is protobuf
MergeFrom (messages merge, lists append, scalars and oneof members replace); HTTP_ROUTE
REMOVE/MERGE apply to the routes istiod generated, then ADD appends and INSERT_BEFORE /
INSERT_FIRST without a route match put the route first, in patch order. A patch that
matches nothing is a silent no-op in Istio; here it is an error, so a patch aimed at
something the real configuration does not have cannot pass unnoticed.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import yaml

from .envoy import ENVOY_DIR, connection_manager

# Where hand-written EnvoyFilters used to ship: none remain (each variant holds server
# facts, so each is rendered from the manifests).
ISTIO_DIR = ENVOY_DIR / "istio"
# The sidecar EnvoyFilters in a render's output directory (registry/src/render/sidecar.rs).
SIDECAR_FILE = Path("istio-sidecar") / "envoyfilters.yaml"
# The example server opt_in_sidecar opts in to the sidecar shape. The examples
# themselves opt none in: they are the demo's fleet, reached through the ingress
# gateway, and a server must not have both (the gateway's ext_authz takes the client's
# token off each call, so the sidecar's ext_authz would refuse every one).
SIDECAR_SERVER = "financial-data"
# Its gateway.istio_sidecar: the namespace and labels of its pods (the port is the
# endpoint's, 8000); registry/tests/fixtures/sidecar/ renders the same for the goldens.
SIDECAR_SECTION = {"namespace": "mcp-servers", "workload_labels": {"app": "financial-data-mcp"}}

# EnvoyFilter fields and enums as Istio documents them (networking.istio.io/v1alpha3,
# "EnvoyFilter" reference).
SPEC_FIELDS = {"workloadSelector", "targetRefs", "configPatches", "priority"}
APPLY_TO = {
    "LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER", "ROUTE_CONFIGURATION",
    "VIRTUAL_HOST", "HTTP_ROUTE", "CLUSTER", "EXTENSION_CONFIG", "BOOTSTRAP",
    "LISTENER_FILTER",
}
CONTEXTS = {"ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"}
OPERATIONS = {"MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"}
MATCH_FIELDS = {"context", "proxy", "listener", "routeConfiguration", "cluster"}
# Nested match objects: field names per message (ListenerMatch, FilterChainMatch,
# FilterMatch, SubFilterMatch, RouteConfigurationMatch, VirtualHostMatch, RouteMatch).
NESTED_FIELDS = {
    "listener": {"portNumber", "filterChain", "listenerFilter", "name"},
    "filterChain": {"name", "sni", "transportProtocol", "applicationProtocols", "filter", "destinationPort"},
    "filter": {"name", "subFilter"},
    "subFilter": {"name"},
    "routeConfiguration": {"portNumber", "portName", "gateway", "vhost", "name"},
    "vhost": {"name", "route", "domainName"},
    "route": {"name", "action"},
}

HCM = "envoy.filters.network.http_connection_manager"
ROUTER = "envoy.filters.http.router"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

# The sidecar variant: the MCP server's container port (the EnvoyFilter's portNumber).
SIDECAR_PORT = 8000
INBOUND_CLUSTER = f"inbound|{SIDECAR_PORT}||"
# The ingress gateway's container port for Gateway port 80 (istio-ingressgateway maps
# 80 -> 8080); patches name the Gateway port, the listener binds the container port.
GATEWAY_LISTENER_PORT = 8080

# Oneof groups of the messages the patches merge into: setting one member in a MERGE
# clears the others (protobuf MergeFrom semantics).
ONEOFS = [
    {"prefix", "path", "safe_regex", "connect_matcher", "path_separated_prefix", "path_match_policy"},
    {"route", "redirect", "direct_response", "filter_action", "non_forwarding_action"},
    {"cluster", "cluster_header", "weighted_clusters", "cluster_specifier_plugin", "inline_cluster_specifier_plugin"},
    {"route_config", "rds", "scoped_routes"},
]


def envoy_filters() -> list[Path]:
    """Hand-written Istio files under envoy/istio/ (there must be none)."""
    return sorted(ISTIO_DIR.glob("*.yaml"))


def load(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(Path(path).read_text()) if doc]


def proto_merge(dst: dict, src: dict) -> dict:
    """Protobuf MergeFrom on the JSON form: messages merge, lists append, scalars win,
    and a oneof member set in `src` replaces whichever member `dst` had."""
    for key, value in src.items():
        for group in ONEOFS:
            if key in group:
                for other in group - {key}:
                    dst.pop(other, None)
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            proto_merge(dst[key], value)
        elif isinstance(value, list) and isinstance(dst.get(key), list):
            dst[key].extend(copy.deepcopy(value))
        else:
            dst[key] = copy.deepcopy(value)
    return dst


def _admin() -> dict:
    return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}


def _static_cluster(name: str) -> dict:
    # EDS in Istio; a static loopback endpoint here (render_config sets the port).
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}}]}],
        },
    }


def _router() -> dict:
    return {"name": ROUTER, "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def _hcm_defaults() -> dict:
    """What buildHTTPConnectionManager sets on every Istio HTTP connection manager with
    the default MeshConfig (pathNormalization unset: BASE; no ProxyConfig
    connectionSettings). Checked against istio/istio 86c9f01 (August 2026)."""
    return {
        "@type": HCM_TYPE,
        "codec_type": "AUTO",
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "stream_idle_timeout": "0s",
        "normalize_path": True,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "request_id_extension": {
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig",
                "use_request_id_for_trace_sampling": True,
            }
        },
        "server_name": "istio-envoy",
    }


def _listener(name: str, hcm: dict) -> dict:
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"name": name, "filters": [{"name": HCM, "typed_config": hcm}]}],
    }


def sidecar_skeleton(port: int = SIDECAR_PORT) -> dict:
    """The inbound HTTP filter chain istiod generates for container port `port` of a
    pod whose Service declares it as HTTP (no VirtualService applies to inbound)."""
    cluster = f"inbound|{port}||"
    hcm = {
        **_hcm_defaults(),
        "stat_prefix": f"inbound_0.0.0.0_{port}",
        "use_remote_address": False,
        "forward_client_cert_details": "APPEND_FORWARD",
        "set_current_client_cert_details": {"subject": True, "dns": True, "uri": True},
        "route_config": {
            "name": cluster,
            "validate_clusters": False,
            "virtual_hosts": [
                {
                    "name": f"inbound|http|{port}",
                    "domains": ["*"],
                    "routes": [
                        {
                            "name": "default",
                            "match": {"prefix": "/"},
                            "route": {
                                "cluster": cluster,
                                "timeout": "0s",
                                "max_stream_duration": {"max_stream_duration": "0s", "grpc_timeout_header_max": "0s"},
                                "retry_policy": {"retry_on": "reset-before-request", "num_retries": 2},
                            },
                            "decorator": {"operation": f"financial-data-mcp.mcp-servers.svc.cluster.local:{port}/*"},
                        }
                    ],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.grpc_stats",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
                    "emit_filter_state": True,
                    "stats_for_all_methods": False,
                },
            },
            {"name": "envoy.filters.http.fault", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
            {"name": "envoy.filters.http.cors", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
            _router(),
        ],
    }
    return {
        "admin": _admin(),
        "static_resources": {"listeners": [_listener(f"0.0.0.0_{port}", hcm)], "clusters": [_static_cluster(cluster)]},
    }


# Istio's default outbound retry policy (route/retry: DefaultPolicy), 503 its
# retriable status code.
DEFAULT_RETRY = {
    "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    "retriable_status_codes": [503],
    "num_retries": 2,
    "retry_host_predicate": [
        {
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
        }
    ],
    "host_selection_retry_max_attempts": 5,
}


def outbound_cluster(destination: dict) -> str:
    return f"outbound|{destination['port']['number']}||{destination['host']}"


def _gateway_bootstrap(host: str, port: int, routes: list[dict]) -> dict:
    """What istiod generates on an ingress gateway for a Gateway HTTP server on `port`
    with one host, whose VirtualService gave `routes` (in Envoy's form)."""
    hcm = {
        **_hcm_defaults(),
        "stat_prefix": f"outbound_0.0.0.0_{GATEWAY_LISTENER_PORT}",
        "use_remote_address": True,
        "forward_client_cert_details": "SANITIZE_SET",
        "set_current_client_cert_details": {"subject": True, "cert": True, "dns": True, "uri": True},
        "http_protocol_options": {},
        # RDS `http.<port>` in Istio; inline here with the same content.
        "route_config": {
            "name": f"http.{port}",
            "validate_clusters": False,
            "ignore_port_in_host_matching": True,
            "max_direct_response_body_size_bytes": 1048576,
            "virtual_hosts": [{"name": f"{host}:{port}", "domains": [host], "routes": routes}],
        },
        "http_filters": [
            {"name": "envoy.filters.http.fault", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
            {"name": "envoy.filters.http.cors", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
            _router(),
        ],
    }
    clusters = sorted({r["route"]["cluster"] for r in routes if "route" in r})
    return {
        "admin": _admin(),
        "static_resources": {
            "listeners": [_listener(f"0.0.0.0_{GATEWAY_LISTENER_PORT}", hcm)],
            "clusters": [_static_cluster(name) for name in clusters],
        },
    }


def variant(envoy_filter: dict) -> str:
    """"gateway" or "sidecar", from the patches' contexts."""
    contexts = {p["match"]["context"] for p in envoy_filter["spec"]["configPatches"]}
    return "gateway" if contexts == {"GATEWAY"} else "sidecar"


def sidecar_upstreams(mcp_port: int, services: dict[str, int], port: int = SIDECAR_PORT) -> dict[str, int]:
    """Cluster name -> loopback port for the assembled sidecar: the inbound cluster of
    container port `port` is the MCP server, `services` the patches' clusters (as
    Authz/Ratelimit.upstreams())."""
    return {f"inbound|{port}||": mcp_port, **services}


def sidecar_port(envoy_filter: dict) -> int:
    """The container port a sidecar EnvoyFilter patches (its inbound listener and route
    configuration)."""
    for patch in envoy_filter["spec"]["configPatches"]:
        match = patch["match"]
        port = (match.get("listener") or {}).get("portNumber") or (match.get("routeConfiguration") or {}).get("portNumber")
        if match["context"] == "SIDECAR_INBOUND" and port:
            return port
    return SIDECAR_PORT


def mcp_filter_config(envoy_filter: dict) -> dict:
    """The MCP filter's configuration (the JSON in its plugin config) an EnvoyFilter
    inserts."""
    (value,) = [
        p["patch"]["value"]["typed_config"]["config"]["configuration"]["value"]
        for p in envoy_filter["spec"]["configPatches"]
        if p["applyTo"] == "HTTP_FILTER" and p["patch"]["value"]["name"] == "mcp"
    ]
    return json.loads(value)


def sidecar_filters(out: Path) -> dict[str, dict]:
    """The sidecar EnvoyFilters of a render's output directory, by the server id their
    MCP filter names."""
    return {mcp_filter_config(doc)["server_id"]: doc for doc in load_all(Path(out) / SIDECAR_FILE)}


def opt_in_sidecar(manifests: Path) -> None:
    """An `edit` for harness/fleet.py's render_examples (or any copied manifests
    directory): SIDECAR_SERVER's manifest with gateway.istio_sidecar set to
    SIDECAR_SECTION, the one place the tests write the opt-in."""
    path = Path(manifests) / f"{SIDECAR_SERVER}.yaml"
    manifest = yaml.safe_load(path.read_text())
    manifest.setdefault("gateway", {})["istio_sidecar"] = copy.deepcopy(SIDECAR_SECTION)
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))


def rendered_sidecar_filter(log_dir: Path) -> tuple[dict, Path]:
    """`mcp-registry render` of the example fleet with financial-data opted in to its
    sidecar (opt_in_sidecar), under a new directory of `log_dir`: its sidecar
    EnvoyFilter, and that directory."""
    from .fleet import render_examples  # the fleet harness starts services; only render here

    work = Path(tempfile.mkdtemp(prefix="istio-sidecar-", dir=log_dir))
    out, _ = render_examples(work, opt_in_sidecar)
    return sidecar_filters(out)[SIDECAR_SERVER], work


def rendered_sidecar(log_dir: Path) -> Path:
    """`mcp-registry render` of the example fleet with financial-data opted in to its
    sidecar (opt_in_sidecar), and its sidecar EnvoyFilter from it applied to what istiod
    generates for the server's inbound port (8000): the assembled bootstrap, written
    under `log_dir`, the render's output directory beside it (`out/`: the policy and
    limits rendered with it). Its clusters: sidecar_upstreams(<the MCP server's port>,
    ...)."""
    envoy_filter, work = rendered_sidecar_filter(log_dir)
    bootstrap = apply(envoy_filter)
    path = work / "istio-sidecar.yaml"
    path.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
    return path


def _route_config_matches(context: str, route_config: dict, match: dict | None) -> bool:
    """envoyfilter.routeConfigurationMatch: by name, and by port (sidecars: the port in
    `inbound|<port>||`; gateways: the port in `http.<port>`)."""
    if not match:
        return True
    if match.get("name") and match["name"] != route_config["name"]:
        return False
    if match.get("portNumber"):
        name = route_config["name"]
        port = name.split("|")[1] if context != "GATEWAY" and name.startswith("inbound|") else name.rpartition(".")[2]
        if str(match["portNumber"]) != port:
            return False
    return True


def _vhost_matches(vhost: dict, match: dict | None) -> bool:
    vmatch = (match or {}).get("vhost")
    if not vmatch:
        return True
    return (not vmatch.get("name") or vmatch["name"] == vhost["name"]) and (
        not vmatch.get("domainName") or vmatch["domainName"] in vhost["domains"]
    )


ACTIONS = {"ROUTE": "route", "REDIRECT": "redirect", "DIRECT_RESPONSE": "direct_response"}


def _route_matches(route: dict | None, match: dict | None) -> bool:
    rmatch = ((match or {}).get("vhost") or {}).get("route")
    if not rmatch:
        return True
    if route is None:
        return False
    if rmatch.get("name") and rmatch["name"] != route.get("name"):
        return False
    action = rmatch.get("action", "ANY")
    return action == "ANY" or ACTIONS[action] in route


def _listener_matches(context: str, listener: dict, match: dict | None) -> bool:
    if not match:
        return True
    if match.get("portNumber"):
        # A sidecar's inbound listener is named after its container port (0.0.0.0_<port>).
        own = int(listener["name"].rpartition("_")[2]) if context == "SIDECAR_INBOUND" else GATEWAY_LISTENER_PORT
        if match["portNumber"] != own:
            return False
    wanted = ((match.get("filterChain") or {}).get("filter") or {}).get("name")
    return wanted in (None, HCM)


class UnmatchedPatch(ValueError):
    pass


def apply(envoy_filter: dict, bootstrap: dict | None = None) -> dict:
    """Applies every patch of an EnvoyFilter to a bootstrap (by default the shape istiod
    generates for a sidecar, on the port the patches name; a gateway's comes from its
    VirtualService, so pass fleet_gateway_skeleton(...)). Added clusters that name Kubernetes services become
    STATIC so that the tests can point them at loopback ports. Raises UnmatchedPatch
    for a patch that would not apply to anything."""
    if bootstrap is None:
        if variant(envoy_filter) == "gateway":
            raise ValueError("a gateway EnvoyFilter applies to its VirtualService's routes: pass fleet_gateway_skeleton(...)")
        bootstrap = sidecar_skeleton(sidecar_port(envoy_filter))
    bootstrap = copy.deepcopy(bootstrap)
    resources = bootstrap["static_resources"]
    listener = resources["listeners"][0]
    hcm = connection_manager(bootstrap)
    route_config = hcm["route_config"]
    patches = envoy_filter["spec"]["configPatches"]

    def fail(patch, why):
        raise UnmatchedPatch(f"{patch['applyTo']} {patch['patch']['operation']} {patch['match']}: {why}")

    # Route patches run when istiod builds the route configuration, before the
    # listener patches; REMOVE and MERGE see only the routes istiod generated.
    route_patches = [p for p in patches if p["applyTo"] in ("VIRTUAL_HOST", "HTTP_ROUTE")]
    applied: set[int] = set()
    for vhost in route_config["virtual_hosts"]:
        for i, patch in enumerate(route_patches):
            match = patch["match"].get("routeConfiguration")
            context = patch["match"]["context"]
            if patch["applyTo"] != "VIRTUAL_HOST" or not _route_config_matches(context, route_config, match) or not _vhost_matches(vhost, match):
                continue
            if patch["patch"]["operation"] != "MERGE":
                fail(patch, "operation not emulated")
            proto_merge(vhost, patch["patch"]["value"])
            applied.add(i)
        generated = list(vhost["routes"])
        for i, patch in enumerate(route_patches):
            match = patch["match"].get("routeConfiguration")
            context = patch["match"]["context"]
            operation = patch["patch"]["operation"]
            if patch["applyTo"] != "HTTP_ROUTE" or operation not in ("REMOVE", "MERGE"):
                continue
            if not _route_config_matches(context, route_config, match) or not _vhost_matches(vhost, match):
                continue
            for j, route in enumerate(generated):
                if _route_matches(route, match):
                    applied.add(i)
                    if operation == "REMOVE":
                        generated[j] = None
                    else:
                        proto_merge(route, patch["patch"]["value"])
        routes = generated
        for i, patch in enumerate(route_patches):
            match = patch["match"].get("routeConfiguration")
            context = patch["match"]["context"]
            operation = patch["patch"]["operation"]
            if patch["applyTo"] != "HTTP_ROUTE" or operation in ("REMOVE", "MERGE"):
                continue
            if not _route_config_matches(context, route_config, match) or not _vhost_matches(vhost, match):
                continue
            value = copy.deepcopy(patch["patch"]["value"])
            has_route_match = bool(((match or {}).get("vhost") or {}).get("route"))
            if operation == "ADD" or (operation == "INSERT_AFTER" and not has_route_match):
                routes.append(value)
            elif operation in ("INSERT_BEFORE", "INSERT_FIRST") and not has_route_match:
                routes.insert(0, value)
            else:
                fail(patch, "positional route insertion by route match is not emulated")
            applied.add(i)
        vhost["routes"] = [r for r in routes if r is not None]
    for i, patch in enumerate(route_patches):
        if i not in applied:
            fail(patch, "matches no virtual host or route istiod generates")

    for patch in patches:
        apply_to, operation = patch["applyTo"], patch["patch"]["operation"]
        value = copy.deepcopy(patch["patch"].get("value", {}))
        context = patch["match"]["context"]
        if apply_to in ("VIRTUAL_HOST", "HTTP_ROUTE"):
            continue
        if apply_to == "CLUSTER" and operation == "ADD":
            value["type"] = "STATIC"
            resources["clusters"].append(value)
        elif apply_to == "HTTP_FILTER" and operation == "INSERT_BEFORE":
            if not _listener_matches(context, listener, patch["match"].get("listener")):
                fail(patch, "matches no listener")
            wanted = patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"]
            filters = hcm["http_filters"]
            index = next((i for i, f in enumerate(filters) if f["name"] == wanted), None)
            if index is None:
                fail(patch, f"no {wanted} filter")
            filters.insert(index, value)
        elif apply_to == "NETWORK_FILTER" and operation == "MERGE":
            if not _listener_matches(context, listener, patch["match"].get("listener")):
                fail(patch, "matches no listener")
            if value["typed_config"]["@type"] != hcm["@type"]:
                fail(patch, "typed_config of another type")
            proto_merge(hcm, value["typed_config"])
        elif apply_to == "BOOTSTRAP" and operation == "MERGE":
            proto_merge(bootstrap, value)
        else:
            raise ValueError(f"patch not handled by the test harness: {apply_to} {operation}")
    return bootstrap


# --- The gateway variant, rendered by `mcp-registry render` (istio/): tests/e2e/test_istio.py,
# tests/e2e/test_fleet_istio.py and the "fleet-istio-gateway" deployment.


def _route_operation(route: dict, vs_name: str, port: int) -> str:
    """route.GetRouteOperation: `<host>:<port><path>` for one cluster, else the
    VirtualService's name."""
    match = route["match"]
    path = "/*"
    if "prefix" in match:
        path = match["prefix"] + "*"
    elif "path" in match:
        path = match["path"]
    cluster = route.get("route", {}).get("cluster", "")
    if cluster.startswith("outbound|"):
        _, cluster_port, _, host = cluster.split("|")
        return f"{host}:{cluster_port}{path}"
    return f"{vs_name}:{port}{path}"


def _header_options(headers: dict[str, str], append: bool) -> list[dict]:
    """translateAppendHeaders: sorted by name, Host/pseudo-headers left out."""
    action = "APPEND_IF_EXISTS_OR_ADD" if append else "OVERWRITE_IF_EXISTS_OR_ADD"
    return [
        {"header": {"key": key, "value": value}, "append_action": action}
        for key, value in sorted(headers.items())
        if not key.startswith(":") and key.lower() != "host"
    ]


def translate_route(virtual_service: dict, http: dict, match: dict | None, port: int) -> dict:
    """route.translateRoute for one http route and one of its matches (None: no match),
    as far as `mcp-registry render` uses it: uri exact/prefix matches, one
    destination, rewrite of uri and authority, timeout, route-level response and
    request headers `set`, directResponse."""
    meta = virtual_service["metadata"]
    config = f"/apis/networking.istio.io/v1/namespaces/{meta['namespace']}/virtual-service/{meta['name']}"
    name = http.get("name", "")
    if match and match.get("name"):
        name = f"{name}.{match['name']}"
    # TranslateRouteMatch: no match is `prefix: /` without case_sensitive.
    route_match: dict = {"prefix": "/"}
    if match is not None:
        uri = match.get("uri")
        if uri:
            ((kind, value),) = uri.items()
            route_match = {"exact": {"path": value}, "prefix": {"prefix": value}}[kind]
        route_match["case_sensitive"] = not match.get("ignoreUriCase", False)
    out: dict = {"name": name, "match": route_match, "metadata": {"filter_metadata": {"istio": {"config": config}}}}
    headers = http.get("headers") or {}
    request_set = (headers.get("request") or {}).get("set") or {}
    response_set = (headers.get("response") or {}).get("set") or {}
    if request_set:
        out["request_headers_to_add"] = _header_options(request_set, False)
    if response_set:
        out["response_headers_to_add"] = _header_options(response_set, False)
    authority = next((v for k, v in request_set.items() if k.lower() in (":authority", "host")), "")
    if "directResponse" in http:
        direct = http["directResponse"]
        out["direct_response"] = {"status": direct["status"]}
        if "string" in (direct.get("body") or {}):
            out["direct_response"]["body"] = {"inline_string": direct["body"]["string"]}
    else:
        (destination,) = [d["destination"] for d in http["route"]]
        timeout = http.get("timeout", "0s")
        action: dict = {
            "cluster": outbound_cluster(destination),
            "timeout": timeout,
            # setTimeout: the deprecated max_grpc_timeout, "0s" for no timeout.
            "max_grpc_timeout": timeout,
        }
        rewrite = http.get("rewrite") or {}
        if rewrite.get("uri"):
            action["prefix_rewrite"] = rewrite["uri"]
        authority = rewrite.get("authority") or authority
        if authority:
            action["host_rewrite_literal"] = authority
        # route/retry ConvertPolicy: no `retries`, the default policy; `attempts: 0`, none.
        if (http.get("retries") or {}).get("attempts", None) != 0:
            action["retry_policy"] = copy.deepcopy(DEFAULT_RETRY)
        out["route"] = action
    out["decorator"] = {"operation": _route_operation(out, meta["name"], port)}
    return out


def _is_catch_all(route: dict) -> bool:
    match = route["match"]
    return match.get("prefix") == "/" and not match.get("headers") and not match.get("query_parameters")


def fleet_gateway_skeleton(routes_file: Path) -> dict:
    """What istiod generates on the ingress gateway for a Gateway and VirtualService
    file as `mcp-registry render` writes it (istio/gateway-virtualservice.yaml; other
    kinds in it, such as DestinationRules, are skipped): every http route translated
    by translate_route, catch-alls sorted last (SortVHostRoutes)."""
    docs = load_all(routes_file)
    (gateway,) = [d for d in docs if d["kind"] == "Gateway"]
    (virtual_service,) = [d for d in docs if d["kind"] == "VirtualService"]
    (server,) = gateway["spec"]["servers"]
    (host,) = server["hosts"]
    port = server["port"]["number"]
    routes = []
    for http in virtual_service["spec"]["http"]:
        for match in http.get("match") or [None]:
            routes.append(translate_route(virtual_service, http, match, port))
    routes = [r for r in routes if not _is_catch_all(r)] + [r for r in routes if _is_catch_all(r)]
    return _gateway_bootstrap(host, port, routes)


def fleet_upstreams(bootstrap: dict, services: dict[str, int], authz_http_port: int) -> dict[str, int]:
    """Cluster -> loopback port for an assembled fleet gateway: the outbound clusters
    istiod names after the endpoints (rendered with loopback ports, so the port is in
    the name), the metadata route's to the authz-service's HTTP port, and `services`."""
    ports = dict(services)
    for cluster in bootstrap["static_resources"]["clusters"]:
        name = cluster["name"]
        if name.startswith("outbound|"):
            _, port, _, host = name.split("|")
            ports[name] = authz_http_port if host.startswith("mcp-authz-service.") else int(port)
    return ports
