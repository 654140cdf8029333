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
  (istio/gateway-virtualservice.yaml). An http route with several destinations becomes
  `weighted_clusters` (0 % destinations left out), each destination's `headers` on its
  own cluster weight, its Host as that weight's `host_rewrite_literal`
  (`applyHTTPRouteDestination`, `processWeightedDestination`).
- gateway clusters (`buildOutboundClusters`, `ClusterBuilder.buildCluster`): one
  `outbound|<port>||<host>` per port of every service the gateway sees, whether a route
  sends it traffic or not; here, the services are the VirtualService's destinations
  (all of them, a 0 % one too: its Service still exists), with the `istio` telemetry
  metadata istiod puts on them (`addTelemetryMetadata`).

Both variants are rendered from the server manifests: the gateway's into istio/, a
sidecar's (for each server whose manifest has gateway.istio_sidecar) into
istio-sidecar/envoyfilters.yaml. Nothing of either ships hand-written in envoy/.

Istio-only HTTP filters (istio.metadata_exchange, istio.stats) are not in upstream
Envoy and are left out: they neither route nor rewrite paths. The inbound listener is
an ordinary listener on a test port, not `virtualInbound` with `original_dst`.

Patch semantics follow pilot/pkg/networking/core/envoyfilter: MERGE is protobuf
MergeFrom as pkg/proto/merge does it (messages merge, lists append, scalars and oneof
members replace, a map entry is replaced as a whole); CLUSTER MERGE applies to the
clusters istiod builds (not to ones an ADD patch inserts), matched as clusterMatch
does (cluster_patch.go: by name, else by the subset, service host and port parsed out
of `outbound|<port>|<subset>|<host>`); HTTP_ROUTE
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


# Map fields of the messages the patches merge into (Metadata, Route, VirtualHost,
# Cluster): istio's pkg/proto/merge mergeMap "replaces, rather than merges into existing
# entries", so `filter_metadata.mcp_gateway` replaces a whole entry of that name and
# keeps the other keys (istiod's `istio`).
MAP_FIELDS = {"filter_metadata", "typed_filter_metadata", "typed_per_filter_config", "typed_extension_protocol_options"}


def proto_merge(dst: dict, src: dict) -> dict:
    """Protobuf MergeFrom on the JSON form (istio pkg/proto/merge): messages merge,
    lists append, scalars win, a map entry is replaced as a whole, and a oneof member
    set in `src` replaces whichever member `dst` had."""
    for key, value in src.items():
        for group in ONEOFS:
            if key in group:
                for other in group - {key}:
                    dst.pop(other, None)
        if key in MAP_FIELDS and isinstance(value, dict) and isinstance(dst.get(key), dict):
            for entry, entry_value in value.items():
                dst[key][entry] = copy.deepcopy(entry_value)
        elif isinstance(value, dict) and isinstance(dst.get(key), dict):
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


def resolve_host(name: str, namespace: str | None) -> str:
    """model.ResolveShortnameToFQDN, which ResolveVirtualServiceShortnames applies to
    every destination host before routes and clusters are built: a name without a dot
    (and not `*` or an IP address) is a Service in the VirtualService's own namespace,
    `<name>.<namespace>.svc.cluster.local`; any dotted name is taken as it is."""
    if namespace is None or name == "*" or "." in name or ":" in name:
        return name
    return f"{name}.{namespace}.svc.cluster.local"


def outbound_cluster(destination: dict, namespace: str | None = None, listener_port: int | None = None) -> str:
    """istiod's cluster for a VirtualService destination (route.GetDestinationCluster:
    model.BuildSubsetKey of its subset, host and port, the listener's port when the
    destination names none); `namespace`: the VirtualService's, for the short-name
    resolution (resolve_host)."""
    port = (destination.get("port") or {}).get("number") or listener_port
    return f"outbound|{port}|{destination.get('subset', '')}|{resolve_host(destination['host'], namespace)}"


def parse_subset_key(name: str) -> tuple[str, str, str, int]:
    """model.ParseSubsetKey: (direction, subset, host, port) of `<direction>|<port>|<subset>|<host>`."""
    parts = name.split("|")
    if len(parts) < 4:
        return "", "", "", 0
    try:
        port = int(parts[1])
    except ValueError:
        port = 0
    return parts[0], parts[2], parts[3], port


def gateway_cluster(name: str) -> dict:
    """The outbound cluster istiod builds on a gateway for one port of a Kubernetes
    service (ClusterBuilder.buildCluster, addTelemetryMetadata): EDS in Istio, STATIC on
    a loopback port here (render_config sets it); `alt_stat_name` with istio's `;`
    delimiter (util.DelimitedStatsPrefix); metadata `istio.services` naming the service
    (buildServiceMetadata: its FQDN, short name and namespace). No DestinationRule is
    emulated (TLS origination and the DestinationRule's `istio.config` metadata are not
    added)."""
    _, _, host, _ = parse_subset_key(name)
    labels = host.split(".")
    service = {"host": host, "name": labels[0], "namespace": labels[1] if len(labels) > 2 else ""}
    cluster = _static_cluster(name)
    cluster["alt_stat_name"] = f"{name};"
    cluster["common_lb_config"] = {}
    cluster["metadata"] = {"filter_metadata": {"istio": {"services": [service]}}}
    return cluster


def _gateway_bootstrap(host: str, port: int, routes: list[dict], clusters: list[str] | None = None) -> dict:
    """What istiod generates on an ingress gateway for a Gateway HTTP server on `port`
    with one host, whose VirtualService gave `routes` (in Envoy's form); `clusters`:
    the outbound clusters of the services the gateway sees (default: the ones the
    routes name)."""
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
    if clusters is None:
        clusters = sorted({name for r in routes if "route" in r for name in route_clusters(r)})
    return {
        "admin": _admin(),
        "static_resources": {
            "listeners": [_listener(f"0.0.0.0_{GATEWAY_LISTENER_PORT}", hcm)],
            "clusters": [gateway_cluster(name) for name in clusters],
        },
    }


def route_clusters(route: dict) -> list[str]:
    """The clusters an Envoy route sends to: its `cluster`, or its weighted clusters in order."""
    action = route.get("route") or {}
    if "cluster" in action:
        return [action["cluster"]]
    return [c["name"] for c in (action.get("weighted_clusters") or {}).get("clusters", [])]


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


def _cluster_context(cluster: dict) -> str:
    """The patch context istiod builds a cluster in: a sidecar's inbound clusters in
    SIDECAR_INBOUND, everything the emulated gateway has in GATEWAY."""
    return "SIDECAR_INBOUND" if cluster["name"].startswith("inbound|") else "GATEWAY"


def _cluster_matches(cluster: dict, match: dict) -> bool:
    """commonConditionMatch (the context, ANY for every one) and clusterMatch
    (cluster_patch.go): a `name` decides alone; otherwise subset, service and port are
    compared with what model.ParseSubsetKey reads out of the cluster's name, each only
    when the match sets it (no subset in the match: every subset's cluster matches).
    Inbound clusters' service hosts are not known here (istiod passes the services of
    the port), so a service match on them matches nothing."""
    if match["context"] not in ("ANY", _cluster_context(cluster)):
        return False
    if match.get("proxy"):
        raise ValueError("proxy matches are not emulated")
    wanted = match.get("cluster")
    if not wanted:
        return True
    if wanted.get("name"):
        return wanted["name"] == cluster["name"]
    _, subset, host, port = parse_subset_key(cluster["name"])
    if wanted.get("subset") and wanted["subset"] != subset:
        return False
    if wanted.get("service") and wanted["service"] != host:
        return False
    if wanted.get("portNumber") and int(wanted["portNumber"]) != port:
        return False
    return True


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

    # Cluster MERGE patches apply while istiod builds its clusters, so only to those
    # (ApplyClusterMerge in buildOutboundClusters / conditionallyAppend), never to the
    # ones an ADD patch inserts after them (InsertedClusters).
    generated = list(resources["clusters"])
    for patch in patches:
        if patch["applyTo"] != "CLUSTER" or patch["patch"]["operation"] == "ADD":
            continue
        if patch["patch"]["operation"] != "MERGE":
            fail(patch, "operation not emulated")
        matched = [c for c in generated if _cluster_matches(c, patch["match"])]
        if not matched:
            fail(patch, f"matches no cluster istiod generates ({', '.join(c['name'] for c in generated)})")
        for cluster in matched:
            proto_merge(cluster, copy.deepcopy(patch["patch"]["value"]))

    for patch in patches:
        apply_to, operation = patch["applyTo"], patch["patch"]["operation"]
        value = copy.deepcopy(patch["patch"].get("value", {}))
        context = patch["match"]["context"]
        if apply_to in ("VIRTUAL_HOST", "HTTP_ROUTE") or (apply_to == "CLUSTER" and operation == "MERGE"):
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


def _is_internal_header(key: str) -> bool:
    """route.isInternalHeader: pseudo-headers and Host cannot be set as headers."""
    return key.startswith(":") or key.lower() == "host"


def _header_options(headers: dict[str, str], append: bool) -> list[dict]:
    """translateAppendHeaders: sorted by name, Host/pseudo-headers left out."""
    action = "APPEND_IF_EXISTS_OR_ADD" if append else "OVERWRITE_IF_EXISTS_OR_ADD"
    return [
        {"header": {"key": key, "value": value}, "append_action": action}
        for key, value in sorted(headers.items())
        if not _is_internal_header(key)
    ]


def _authority(headers: dict[str, str]) -> str:
    """translateAppendHeaders' authority: the value of `host` or `:authority`."""
    return next((v for k, v in headers.items() if k.lower() in (":authority", "host")), "")


def header_operations(headers: dict | None) -> dict:
    """route.TranslateHeadersOperations of a `headers` block, in the form of Envoy's
    fields (only the non-empty ones), plus `authority`: `set` before `add` in
    request_headers_to_add, the authority from `set` over the one from `add`, removals
    without Host and pseudo-headers (dropInternal)."""
    request = (headers or {}).get("request") or {}
    response = (headers or {}).get("response") or {}
    out = {
        "request_headers_to_add": _header_options(request.get("set") or {}, False) + _header_options(request.get("add") or {}, True),
        "response_headers_to_add": _header_options(response.get("set") or {}, False) + _header_options(response.get("add") or {}, True),
        "request_headers_to_remove": [k for k in request.get("remove") or [] if not _is_internal_header(k)],
        "response_headers_to_remove": [k for k in response.get("remove") or [] if not _is_internal_header(k)],
    }
    out = {k: v for k, v in out.items() if v}
    authority = _authority(request.get("set") or {}) or _authority(request.get("add") or {})
    if authority:
        out["authority"] = authority
    return out


def translate_route(virtual_service: dict, http: dict, match: dict | None, port: int) -> dict:
    """route.TranslateRoute for one http route and one of its matches (None: no match),
    as far as `mcp-registry render` uses it: uri exact/prefix matches, one or several
    (weighted) destinations with their own `headers`, rewrite of uri and authority,
    timeout, route-level `headers`, directResponse. Checked against istio/istio
    86c9f01 (pilot/pkg/networking/core/route/route.go)."""
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
    operations = header_operations(http.get("headers"))
    authority = operations.pop("authority", "")
    out.update(copy.deepcopy(operations))
    if "directResponse" in http:
        direct = http["directResponse"]
        out["direct_response"] = {"status": direct["status"]}
        if "string" in (direct.get("body") or {}):
            out["direct_response"]["body"] = {"inline_string": direct["body"]["string"]}
    else:
        timeout = http.get("timeout", "0s")
        action: dict = {
            "timeout": timeout,
            # setTimeout: the deprecated max_grpc_timeout, "0s" for no timeout.
            "max_grpc_timeout": timeout,
        }
        rewrite = http.get("rewrite") or {}
        if rewrite.get("uri"):
            action["prefix_rewrite"] = rewrite["uri"]
        # applyHTTPRouteDestination: rewrite.authority over the route's `headers` Host.
        authority = rewrite.get("authority") or authority
        if authority:
            action["host_rewrite_literal"] = authority
        destinations = http["route"]
        if len(destinations) == 1:
            # processDestination: the one destination's headers join the route's
            # (after them), its Host only where the route set none.
            (destination,) = destinations
            action["cluster"] = outbound_cluster(destination["destination"], meta["namespace"], port)
            own = header_operations(destination.get("headers"))
            own_authority = own.pop("authority", "")
            for key, value in own.items():
                out[key] = out.get(key, []) + copy.deepcopy(value)
            if own_authority and "host_rewrite_literal" not in action:
                action["host_rewrite_literal"] = own_authority
        else:
            # applyHTTPRouteDestination: with more than one destination, weighted
            # clusters in the VirtualService's order, "Ignore 0 weighted clusters"
            # (`if dst.Weight == 0 { continue }`: a 0 % destination is not in the
            # route at all, even as the last one left); processWeightedDestination
            # puts each destination's headers on its own cluster weight and its Host
            # (`headers.request.set.host`/`:authority`) in the weight's
            # host_rewrite_literal, whatever the route sets.
            #
            # The one weighted cluster left stays `weighted_clusters` (its headers
            # and Host on its cluster weight): route.go has no single-cluster rewrite
            # since istio/istio 5d25ffc8a6b (#45658, first in 1.19.0), see 86c9f01
            # pilot/pkg/networking/core/route/route.go:686-706 and 747-777, 1.27.0
            # :675-695. Istio <= 1.18 did rewrite it ("rewrite to a single cluster if
            # there is only weighted cluster", 1.18.0
            # pilot/pkg/networking/core/v1alpha3/route/route.go:565-588: `cluster`,
            # the weight's headers moved to the route), and so did ambient waypoints
            # (listener_waypoint.go) until #55280 (0dd4d9e4e4b, 1.26.0) put them on
            # this code; neither is a gateway the render supports (Istio >= 1.27).
            weighted = []
            for destination in destinations:
                weight = destination.get("weight", 0)
                if weight == 0:
                    continue
                cluster_weight: dict = {"name": outbound_cluster(destination["destination"], meta["namespace"], port), "weight": weight}
                own = header_operations(destination.get("headers"))
                own_authority = own.pop("authority", "")
                cluster_weight.update(copy.deepcopy(own))
                if own_authority:
                    cluster_weight["host_rewrite_literal"] = own_authority
                weighted.append(cluster_weight)
            action["weighted_clusters"] = {"clusters": weighted}
        # route/retry ConvertPolicy: no `retries`, the default policy; `attempts: 0`, none.
        if (http.get("retries") or {}).get("attempts", None) != 0:
            action["retry_policy"] = copy.deepcopy(DEFAULT_RETRY)
        out["route"] = action
    out["decorator"] = {"operation": _route_operation(out, meta["name"], port)}
    return out


def virtual_service_clusters(virtual_service: dict) -> list[str]:
    """The outbound clusters of every destination of a VirtualService, 0 % ones too:
    istiod builds a cluster per port of every Service the gateway sees, not per route
    (buildOutboundClusters), and each destination names a Service that exists. With
    PILOT_FILTER_GATEWAY_CLUSTER_CONFIG the gateway gets only the Services its
    VirtualServices name, 0 % destinations included (model.virtualServiceDestinations
    adds every `route` destination, whatever its weight). istio/istio 86c9f01:
    core/cluster.go:64-74 (BuildClusters: the sidecar scope's services, or
    GatewayServices when filtering), features/experimental.go:29 (filtering off by
    default), model/push_context.go:806-849 (virtualServiceDestinations, no weight
    check) and 882-911 (GatewayServices). So the filtered set is emulated: a Service
    no destination names gets no cluster here, and a patch for it fails."""
    namespace = virtual_service["metadata"]["namespace"]
    return sorted(
        {outbound_cluster(d["destination"], namespace) for http in virtual_service["spec"]["http"] for d in http.get("route") or []}
    )


def _is_catch_all(route: dict) -> bool:
    match = route["match"]
    return match.get("prefix") == "/" and not match.get("headers") and not match.get("query_parameters")


def fleet_gateway_skeleton(routes_file: Path) -> dict:
    """What istiod generates on the ingress gateway for a Gateway and VirtualService
    file as `mcp-registry render` writes it (istio/gateway-virtualservice.yaml; other
    kinds in it, such as DestinationRules, are skipped): every http route translated
    by translate_route, catch-alls sorted last (SortVHostRoutes), and the outbound
    cluster of every destination (virtual_service_clusters)."""
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
    return _gateway_bootstrap(host, port, routes, virtual_service_clusters(virtual_service))


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


def rendered_gateway(out: Path) -> dict:
    """What the ingress gateway pods run for a render's output directory: istiod's
    routes and clusters for istio/gateway-virtualservice.yaml with
    istio/gateway-envoyfilter.yaml applied."""
    out = Path(out)
    return apply(load(out / "istio" / "gateway-envoyfilter.yaml"), fleet_gateway_skeleton(out / "istio" / "gateway-virtualservice.yaml"))


ROUTE_CONFIGURATION = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


def with_pushed_routes(bootstrap: dict, directory: Path) -> tuple[dict, Path]:
    """The gateway's routes over RDS, as istiod sends them, from a file in `directory`
    that Envoy watches (push_routes replaces it): the bootstrap with the connection
    manager's inline route configuration swapped for that source, and the file.
    Clusters and listeners stay in the bootstrap: a push that would change them is not
    emulated (push_routes refuses it)."""
    bootstrap = copy.deepcopy(bootstrap)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    hcm = connection_manager(bootstrap)
    route_config = hcm.pop("route_config")
    path = directory / "rds.yaml"
    hcm["rds"] = {
        "route_config_name": route_config["name"],
        "config_source": {
            "resource_api_version": "V3",
            "path_config_source": {"path": str(path), "watched_directory": {"path": str(directory)}},
        },
    }
    # Envoy needs a node for a dynamic source; what an ingress gateway pod announces
    # (pilot-agent: <type>~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local).
    bootstrap.setdefault("node", {
        "id": "router~127.0.0.1~istio-ingressgateway-0.istio-system~istio-system.svc.cluster.local",
        "cluster": "istio-ingressgateway.istio-system",
    })
    _write_routes(path, route_config)
    return bootstrap, path


def _write_routes(path: Path, route_config: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(yaml.safe_dump({"resources": [{"@type": ROUTE_CONFIGURATION, **route_config}]}, sort_keys=False))
    temporary.rename(path)  # Envoy reloads on the move into the watched directory


def push_routes(running: dict, bootstrap: dict, path: Path) -> None:
    """istiod's push after a re-render: the route configuration of `bootstrap` (a new
    rendered_gateway) to the RDS file of a gateway started on `running` (what
    with_pushed_routes returned, before render_config). Refuses a change of clusters or
    listeners, which would need CDS/LDS here."""
    new = copy.deepcopy(bootstrap)
    route_config = connection_manager(new).pop("route_config")
    kept = copy.deepcopy(running)
    connection_manager(kept).pop("rds")
    kept.pop("node", None)
    new.pop("node", None)
    if kept["static_resources"] != new["static_resources"]:
        raise ValueError("the re-render changes clusters or listeners, not only routes: restart the gateway")
    _write_routes(path, route_config)
