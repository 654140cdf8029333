"""Turns the shipped Istio EnvoyFilters into an Envoy bootstrap, applying their patches
the way Istio documents them, so that what the patches carry is validated and run by
the real Envoy instead of being an untested copy."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .envoy import ENVOY_DIR

ISTIO_DIR = ENVOY_DIR / "istio"

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


def envoy_filters() -> list[Path]:
    return sorted(p for p in ISTIO_DIR.glob("*envoyfilter.yaml"))


def load(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def proto_merge(dst: dict, src: dict) -> dict:
    """Protobuf MergeFrom on the JSON form: messages merge, lists append, scalars win."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            proto_merge(dst[key], value)
        elif isinstance(value, list) and isinstance(dst.get(key), list):
            dst[key].extend(copy.deepcopy(value))
        else:
            dst[key] = copy.deepcopy(value)
    return dst


def skeleton() -> dict:
    """What Istio generates before the patches, reduced to what they touch: an HTTP
    listener whose connection manager has only the router, and the routes of
    istio-virtualservice.yaml (named as Istio names them)."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "istio_listener",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": HCM,
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "istio",
                                        "normalize_path": True,
                                        "merge_slashes": True,
                                        "route_config": {
                                            "name": "istio_routes",
                                            "virtual_hosts": [
                                                {
                                                    "name": "mcp",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "name": "mcp-oauth-metadata",
                                                            "match": {"prefix": "/.well-known/oauth-protected-resource"},
                                                            "route": {"cluster": "authz_http"},
                                                        },
                                                        {
                                                            "name": "mcp",
                                                            "match": {"path": "/mcp"},
                                                            "route": {"cluster": "mcp_server", "timeout": "0s"},
                                                        },
                                                    ],
                                                }
                                            ],
                                        },
                                        "http_filters": [
                                            {
                                                "name": ROUTER,
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                                },
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "mcp_server",
                    "type": "STATIC",
                    "connect_timeout": "2s",
                    "load_assignment": {
                        "cluster_name": "mcp_server",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}}]}],
                    },
                }
            ],
        },
    }


def apply(envoy_filter: dict, bootstrap: dict | None = None) -> dict:
    """Applies every patch of an EnvoyFilter to a bootstrap (the skeleton by default).
    Added clusters that name Kubernetes services become STATIC so that the tests can
    point them at loopback ports."""
    bootstrap = copy.deepcopy(bootstrap or skeleton())
    resources = bootstrap["static_resources"]
    hcm = resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    for patch in envoy_filter["spec"]["configPatches"]:
        apply_to, operation = patch["applyTo"], patch["patch"]["operation"]
        value = copy.deepcopy(patch["patch"].get("value", {}))
        if apply_to == "CLUSTER" and operation == "ADD":
            value["type"] = "STATIC"
            resources["clusters"].append(value)
        elif apply_to == "HTTP_FILTER" and operation == "INSERT_BEFORE":
            wanted = patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"]
            filters = hcm["http_filters"]
            index = next(i for i, f in enumerate(filters) if f["name"] == wanted)
            filters.insert(index, value)
        elif apply_to == "NETWORK_FILTER" and operation == "MERGE":
            proto_merge(hcm, value["typed_config"])
        elif apply_to == "VIRTUAL_HOST" and operation == "MERGE":
            for vhost in hcm["route_config"]["virtual_hosts"]:
                proto_merge(vhost, value)
        elif apply_to == "HTTP_ROUTE" and operation == "MERGE":
            name = patch["match"]["routeConfiguration"]["vhost"]["route"]["name"]
            for vhost in hcm["route_config"]["virtual_hosts"]:
                for route in vhost["routes"]:
                    if route.get("name") == name:
                        proto_merge(route, value)
        elif apply_to == "BOOTSTRAP" and operation == "MERGE":
            proto_merge(bootstrap, value)
        else:
            raise ValueError(f"patch not handled by the test harness: {apply_to} {operation}")
    return bootstrap
