//! `istio/`: the fleet on an Istio ingress gateway (Istio >= 1.27).
//!
//! - `gateway-envoyfilter.yaml`: the EnvoyFilter `mcp-gateway` (istio-system, pods
//!   labelled `istio: ingressgateway`). It inserts the HTTP filters of
//!   `envoy/fleet.yaml` before the router (the MCP filter with `servers_from_routes`,
//!   ext_authz, ratelimit), adds the two service clusters, merges the connection
//!   manager settings and the stat tag rules, and MERGEs into each route istiod
//!   generates from the VirtualService what a VirtualService cannot say: the route
//!   metadata the filter labels requests with, the rate limit actions, the idle
//!   timeout and, for servers whose calls the authz-service validates, ext_authz's
//!   per-route request body settings. All of it is taken from what the Envoy target renders (envoy.rs) and
//!   from `envoy/fleet.yaml`, so the two deployments cannot drift apart.
//! - `gateway-virtualservice.yaml`: the Gateway `mcp-gateway` (port 80, any host) and
//!   the VirtualService `mcp-gateway`: the RFC 9728 metadata route, one http route
//!   per server (exact, case-sensitive match on the exposure path, rewritten to the
//!   endpoint's path and authority, to the endpoint's host and port as a Kubernetes
//!   service, the manifest's request timeout) and the catch-all `mcp-unregistered`;
//!   a DestinationRule per `https` endpoint (TLS origination).
//!
//! A server with `gateway.canary` gets a weighted split on the gateway: its http route
//! has two destinations (stable first with `100 - w`, the canary last with `w`), each
//! with its own Host (`headers.request.set.host`, which istiod turns into the weighted
//! cluster's `host_rewrite_literal`; a route-level `rewrite.authority` would apply to
//! both) and `x-mcp-server-version`; the EnvoyFilter adds the route's
//! `weighted_clusters.header_name` (the filter's session pin, which a VirtualService
//! cannot say) and MERGEs the `mcp_gateway` release metadata into istiod's two
//! `outbound|<port>||<host>` clusters, where the filter reads which release served a
//! call. Servers without a canary keep a single destination and no cluster patch (the
//! filter falls back to the route's `server_version`, which is then the only one); so
//! does a release whose host and port another release of the fleet also uses (one
//! Istio cluster, which cannot name two releases). istiod leaves a 0 % destination
//! out of the weighted clusters, so a rolled-back canary gets nothing; the one cluster
//! left stays a weighted cluster with its own Host and version, and the 0 % release's
//! cluster is still built (its Service is still a destination), so every patch keeps
//! matching through a rollback or a promotion.
//!
//! The EnvoyFilter comes first (also in `kubectl apply -f istio/` order): a route istiod generates for a new server then already gets its
//! metadata; a patch whose route does not exist yet is a no-op in Istio.
//!
//! The sidecar variant (the filters in one server's own sidecar) is sidecar.rs; it
//! takes the same pieces of `envoy/fleet.yaml` from the functions here.

use super::envoy;
use super::Output;
use crate::check::kube_name;
use crate::fleet::Fleet;
use crate::model::Server;
use serde_json::{json, Map, Value};
use std::time::Duration;

const BOOTSTRAP: &str = include_str!("../../../envoy/fleet.yaml");

pub const NAMESPACE: &str = "istio-system";
/// The Gateway, VirtualService and EnvoyFilter name.
pub const NAME: &str = "mcp-gateway";
/// The Gateway's port; istiod names the virtual host `<host>:<port>`.
pub const GATEWAY_PORT: u16 = 80;
/// Any host: the gateway pods are dedicated to MCP traffic (the EnvoyFilter patches
/// every HTTP listener of the pods it selects), so no host name has to be configured.
pub const GATEWAY_HOST: &str = "*";
/// Where the gateway pods find the filter (an init container or an image layer).
pub const WASM_FILE: &str = "/var/local/lib/wasm/mcp_filter.wasm";
/// Route names of the VirtualService that are not servers'.
pub const OAUTH_METADATA_ROUTE: &str = "mcp-oauth-metadata";
pub const UNREGISTERED_ROUTE: &str = "mcp-unregistered";

const AUTHZ_HOST: &str = "mcp-authz-service.mcp-gateway.svc.cluster.local";
const AUTHZ_GRPC_PORT: u16 = 9191;
const AUTHZ_HTTP_PORT: u16 = 9192;
const RATELIMIT_HOST: &str = "mcp-ratelimit-service.mcp-gateway.svc.cluster.local";
const RATELIMIT_PORT: u16 = 8081;

/// The gateway's own services as Kubernetes services (envoy/kubernetes/), by the
/// names of envoy/fleet.yaml's clusters for them.
const SERVICES: [(&str, &str, u16); 3] = [
    ("authz_service", AUTHZ_HOST, AUTHZ_GRPC_PORT),
    ("authz_http", AUTHZ_HOST, AUTHZ_HTTP_PORT),
    ("ratelimit_service", RATELIMIT_HOST, RATELIMIT_PORT),
];

/// The connection manager settings of envoy/fleet.yaml the gateway must carry. A
/// MERGE sets fields but cannot clear them; each of these is a non-default value, so
/// it replaces what istiod set (Istio merges no slashes, keeps escaped slashes and
/// lets header names with underscores through).
pub(super) const HCM_SETTINGS: [&str; 6] = [
    "normalize_path",
    "merge_slashes",
    "path_with_escaped_slashes_action",
    "common_http_protocol_options",
    "access_log",
    "local_reply_config",
];
pub(super) const HCM: &str = "envoy.filters.network.http_connection_manager";
pub(super) const ROUTER: &str = "envoy.filters.http.router";

/// The name of a server's http route in the VirtualService, which istiod gives the
/// Envoy route it generates (`translateRoute`: the http route's name).
pub fn route_name(server: &Server) -> String {
    format!("mcp-server-{}", server.id())
}

/// The virtual host istiod generates for the Gateway's server (`<host>:<port>`).
pub fn virtual_host() -> String {
    format!("{GATEWAY_HOST}:{GATEWAY_PORT}")
}

/// What the Istio target cannot say in a file: a release whose endpoint host is a
/// short name (no dot). istiod resolves a VirtualService destination's short name in
/// the VirtualService's own namespace (pilot/pkg/model `ResolveShortnameToFQDN`), so
/// `financial-data-mcp` becomes `financial-data-mcp.istio-system.svc.cluster.local`:
/// the calls go to a Service of that name in istio-system, and the EnvoyFilter's
/// cluster patches (a canary's release metadata) match nothing, which Istio skips
/// without a word. Short names are right for docker-compose and plain Envoy, so this
/// is a note, not a problem.
pub fn notes(fleet: &Fleet) -> Vec<String> {
    fleet
        .servers
        .iter()
        .filter(|server| server.istio_sidecar.is_none())
        .flat_map(|server| {
            envoy::releases(server)
                .into_iter()
                .filter(|release| is_short_name(&release.endpoint.host))
                .map(move |release| {
                    format!(
                        "{}: istio/: the {} endpoint's host {:?} is a short name, which istiod resolves in the VirtualService's namespace ({NAMESPACE}); for Istio write <service>.<namespace>.svc.cluster.local",
                        server.id(),
                        release.track,
                        release.endpoint.host
                    )
                })
        })
        .collect()
}

/// A host name without a dot (an IPv6 address has colons, an IPv4 one dots).
fn is_short_name(host: &str) -> bool {
    !host.contains('.') && !host.contains(':')
}

pub fn render(fleet: &Fleet) -> Vec<Output> {
    // What the Istio routes must carry comes from the Envoy target's own route
    // builders, so the two cannot drift.
    vec![
        Output::new("istio/gateway-envoyfilter.yaml", envoy_filter(fleet)),
        Output::new("istio/gateway-virtualservice.yaml", gateway_routes(fleet)),
    ]
}

pub(super) fn bootstrap() -> Value {
    serde_norway::from_str(BOOTSTRAP).unwrap_or_default()
}

pub(super) fn connection_manager(bootstrap: &Value) -> Value {
    let filters = bootstrap
        .pointer("/static_resources/listeners/0/filter_chains/0/filters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    filters
        .into_iter()
        .find(|f| f["name"] == HCM)
        .map(|f| f["typed_config"].clone())
        .unwrap_or_default()
}

/// envoy/fleet.yaml's cluster `name` for one of the gateway's services, pointed at its
/// Kubernetes service ([`SERVICES`]).
pub(super) fn service_cluster(bootstrap: &Value, name: &str) -> Option<Value> {
    let (_, host, port) = SERVICES.iter().find(|(service, _, _)| *service == name)?;
    let clusters = bootstrap
        .pointer("/static_resources/clusters")?
        .as_array()?;
    let mut cluster = clusters.iter().find(|c| c["name"] == name)?.clone();
    cluster["type"] = json!("STRICT_DNS");
    cluster["load_assignment"]["endpoints"] = json!([{ "lb_endpoints": [{ "endpoint":
        { "address": { "socket_address": { "address": host, "port_value": port } } } }] }]);
    Some(cluster)
}

/// envoy/fleet.yaml's HTTP filters before the router, in order (mcp (wasm) ->
/// ext_authz -> ratelimit), the MCP filter loading the .wasm from [`WASM_FILE`].
pub(super) fn http_filters(hcm: &Value) -> Vec<Value> {
    let mut filters: Vec<Value> = hcm["http_filters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f["name"] != ROUTER)
        .collect();
    for filter in &mut filters {
        if let Some(code) = filter.pointer_mut("/typed_config/config/vm_config/code/local") {
            code["filename"] = json!(WASM_FILE);
        }
    }
    filters
}

/// The connection manager's `typed_config` to MERGE into istiod's: [`HCM_SETTINGS`]
/// of envoy/fleet.yaml.
pub(super) fn hcm_settings(hcm: &Value) -> Value {
    let mut settings = Map::new();
    settings.insert("@type".into(), hcm["@type"].clone());
    for key in HCM_SETTINGS {
        settings.insert(key.into(), hcm[key].clone());
    }
    Value::Object(settings)
}

fn envoy_filter(fleet: &Fleet) -> String {
    let bootstrap = bootstrap();
    let hcm = connection_manager(&bootstrap);
    let mut patches = Vec::new();

    // The gateway's own services. Not authz_http: the VirtualService routes the RFC
    // 9728 metadata to its Kubernetes service, which istiod makes a cluster of.
    for name in ["authz_service", "ratelimit_service"] {
        if let Some(cluster) = service_cluster(&bootstrap, name) {
            patches.push(patch("CLUSTER", json!({}), "ADD", cluster));
        }
    }

    // Each inserted before the router, in this order.
    let listener = json!({ "listener": { "filterChain": { "filter": {
        "name": HCM, "subFilter": { "name": ROUTER } } } } });
    for filter in http_filters(&hcm) {
        patches.push(patch(
            "HTTP_FILTER",
            listener.clone(),
            "INSERT_BEFORE",
            filter,
        ));
    }

    patches.push(patch(
        "NETWORK_FILTER",
        json!({ "listener": { "filterChain": { "filter": { "name": HCM } } } }),
        "MERGE",
        json!({ "typed_config": hcm_settings(&hcm) }),
    ));

    // The routes istiod generates from the VirtualService, by name.
    let route_match = |name: &str| {
        json!({ "routeConfiguration": { "vhost": {
            "name": virtual_host(), "route": { "name": name } } } })
    };
    let oauth = envoy::oauth_metadata_route();
    patches.push(patch(
        "HTTP_ROUTE",
        route_match(OAUTH_METADATA_ROUTE),
        "MERGE",
        json!({ "typed_per_filter_config": oauth["typed_per_filter_config"] }),
    ));
    for server in &fleet.servers {
        let route = envoy::server_route(server);
        let mut value = json!({
            "metadata": route["metadata"],
            "route": {
                "rate_limits": route["route"]["rate_limits"],
                "idle_timeout": route["route"]["idle_timeout"],
            },
        });
        if server.canary.is_some() {
            // istiod generates weighted_clusters for a route with two destinations,
            // even when it leaves a 0 % one out and one cluster is left (Istio >= 1.19:
            // istio/istio route.go applyHTTPRouteDestination, 1.27.0 lines 675-695),
            // so this merges into it and never replaces a single `cluster`. Istio
            // <= 1.18 rewrote a lone weighted cluster to `cluster`; this MERGE would
            // then leave weighted_clusters without clusters, which Envoy refuses
            // (tests/e2e/test_canary_istio.py shows it), hence Istio >= 1.19 at least.
            value["route"]["weighted_clusters"] =
                json!({ "header_name": envoy::VERSION_PICK_HEADER });
        }
        // The request body for the authz-service, per route as on plain Envoy: the
        // MERGE adds the route's ExtAuthzPerRoute (as the metadata route's `disabled`
        // above), so only servers that validate or mirror headers buffer a body.
        if let Some(per_route) = route.get("typed_per_filter_config") {
            value["typed_per_filter_config"] = per_route.clone();
        }
        patches.push(patch(
            "HTTP_ROUTE",
            route_match(&route_name(server)),
            "MERGE",
            value,
        ));
    }
    patches.extend(release_cluster_patches(fleet));
    let unregistered = envoy::unregistered_route();
    patches.push(patch(
        "HTTP_ROUTE",
        route_match(UNREGISTERED_ROUTE),
        "MERGE",
        json!({ "metadata": unregistered["metadata"] }),
    ));

    patches.push(patch(
        "BOOTSTRAP",
        json!({}),
        "MERGE",
        json!({ "stats_config": bootstrap["stats_config"] }),
    ));

    let filter = json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": { "name": NAME, "namespace": NAMESPACE },
        "spec": {
            "workloadSelector": { "labels": { "istio": "ingressgateway" } },
            "configPatches": patches,
        },
    });
    let comment = format!(
        "# The MCP gateway for the fleet on the Istio ingress gateway: the filters, clusters and\n\
         # connection manager settings of envoy/fleet.yaml, and per server route (by the names of\n\
         # gateway-virtualservice.yaml, in the virtual host {vhost}) the route metadata\n\
         # mcp_gateway: {{server_id, server_version, tools, schema_digests, unregistered_tools}} the\n\
         # MCP filter labels requests with, the rate limit actions [server_id, tool_call, agent_id],\n\
         # the idle timeout and, where the authz-service validates calls, ext_authz's request body; the\n\
         # catch-all {UNREGISTERED_ROUTE} is marked unregistered (404 -31014 with an audit record).\n\
         # Needs: the services (kubectl apply -f envoy/kubernetes/, then this render's\n\
         # kubernetes/), the .wasm in the gateway pods at\n\
         # {WASM_FILE}, and gateway pods dedicated to MCP traffic.\n\
         # The BOOTSTRAP patch applies when gateway pods start: restart them after the first apply.\n",
        vhost = virtual_host(),
    );
    document(&comment, &[filter])
}

/// The `mcp_gateway` release metadata of canary servers' clusters, MERGEd into the
/// clusters istiod generates for their destinations (`outbound|<port>||<host>`). Left
/// out for a host and port that more than one release of the fleet uses: that Istio
/// cluster would carry one release's labels for the other's calls.
fn release_cluster_patches(fleet: &Fleet) -> Vec<Value> {
    let mut uses: std::collections::BTreeMap<(&str, u16), usize> = Default::default();
    for server in &fleet.servers {
        for release in envoy::releases(server) {
            *uses
                .entry((release.endpoint.host.as_str(), release.endpoint.port))
                .or_default() += 1;
        }
    }
    let mut patches = Vec::new();
    for server in fleet.servers.iter().filter(|s| s.canary.is_some()) {
        for release in envoy::releases(server) {
            let endpoint = release.endpoint;
            if uses[&(endpoint.host.as_str(), endpoint.port)] > 1 {
                continue;
            }
            patches.push(patch(
                "CLUSTER",
                json!({ "cluster": { "service": endpoint.host, "portNumber": endpoint.port } }),
                "MERGE",
                json!({ "metadata": envoy::cluster_metadata(server, &release) }),
            ));
        }
    }
    patches
}

fn patch(apply_to: &str, matching: Value, operation: &str, value: Value) -> Value {
    patch_in("GATEWAY", apply_to, matching, operation, value)
}

/// One EnvoyFilter config patch, its match in `context`.
pub(super) fn patch_in(
    context: &str,
    apply_to: &str,
    matching: Value,
    operation: &str,
    value: Value,
) -> Value {
    let mut matching = matching;
    matching["context"] = json!(context);
    json!({
        "applyTo": apply_to,
        "match": matching,
        "patch": { "operation": operation, "value": value },
    })
}

fn gateway_routes(fleet: &Fleet) -> String {
    let gateway = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": { "name": NAME, "namespace": NAMESPACE },
        "spec": {
            "selector": { "istio": "ingressgateway" },
            "servers": [{
                "port": { "number": GATEWAY_PORT, "name": "http", "protocol": "HTTP" },
                "hosts": [GATEWAY_HOST],
            }],
        },
    });
    let mut http = vec![json!({
        "name": OAUTH_METADATA_ROUTE,
        "match": [{ "uri": { "prefix": "/.well-known/oauth-protected-resource" } }],
        "route": [{ "destination": { "host": AUTHZ_HOST, "port": { "number": AUTHZ_HTTP_PORT } } }],
    })];
    http.extend(
        fleet
            .servers
            .iter()
            .map(|s| server_route(s, &envoy::server_route(s))),
    );
    // No match: istiod makes it `prefix: /` and sorts it last.
    let unregistered = envoy::unregistered_route();
    http.push(json!({
        "name": UNREGISTERED_ROUTE,
        "directResponse": {
            "status": unregistered["direct_response"]["status"],
            "body": { "string": unregistered["direct_response"]["body"]["inline_string"] },
        },
        "headers": { "response": { "set": { "content-type": "application/json" } } },
    }));
    let virtual_service = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": { "name": NAME, "namespace": NAMESPACE },
        "spec": { "hosts": [GATEWAY_HOST], "gateways": [NAME], "http": http },
    });
    let mut documents = vec![gateway];
    documents.extend(fleet.servers.iter().flat_map(|server| {
        envoy::releases(server)
            .into_iter()
            .filter(|release| release.endpoint.is_tls())
            .map(|release| destination_rule(server, &release))
            .collect::<Vec<_>>()
    }));
    documents.push(virtual_service);
    let comment = "# The fleet's routes on the Istio ingress gateway: one http route per registered server\n\
         # (exact, case-sensitive match on its path: a looser one would let \"/X/MCP\" or \"/x/mcp/\"\n\
         # reach a server unlabelled), the RFC 9728 metadata route and the catch-all.\n\
         # gateway-envoyfilter.yaml patches these routes by name.\n";
    document(comment, &documents)
}

fn server_route(server: &Server, envoy_route: &Value) -> Value {
    let endpoint = &server.endpoint;
    let mut rewrite = Map::new();
    if let Some(path) = envoy_route["route"]["prefix_rewrite"].as_str() {
        // With an exact match, istiod's prefix_rewrite replaces the whole path.
        rewrite.insert("uri".into(), json!(path));
    }
    if let Some(authority) = envoy_route["route"]["host_rewrite_literal"].as_str() {
        rewrite.insert("authority".into(), json!(authority));
    }
    let mut route = json!({
        "name": route_name(server),
        "match": [{ "uri": { "exact": server.path } }],
        "route": [{ "destination": {
            "host": endpoint.host,
            "port": { "number": endpoint.port },
        } }],
    });
    if server.canary.is_some() {
        // Per destination: its weight, its Host and its version for the upstream
        // (istiod: ClusterWeight host_rewrite_literal and request_headers_to_add).
        let destinations: Vec<Value> = envoy::releases(server)
            .iter()
            .map(|release| {
                json!({
                    "destination": {
                        "host": release.endpoint.host,
                        "port": { "number": release.endpoint.port },
                    },
                    "weight": release.weight,
                    "headers": { "request": { "set": {
                        "host": envoy::authority(release.endpoint),
                        envoy::SERVER_VERSION_HEADER: release.version,
                    }}},
                })
            })
            .collect();
        route["route"] = json!(destinations);
        // The filter pins a handshake-era session with this header (istiod's clusters
        // of a canary server carry the track); removed before the request leaves
        // (istiod: Route.request_headers_to_remove), as on the plain Envoy routes.
        route["headers"] = json!({ "request": { "remove": [envoy::VERSION_PICK_HEADER] } });
    }
    if !rewrite.is_empty() {
        route["rewrite"] = Value::Object(rewrite);
    }
    // No retries: istiod's default retries a 503 twice, and a tools/call is not
    // idempotent (transfer_funds would run again, counted once by the rate limiter).
    // Plain Envoy routes have no retry policy either. `attempts: 0` turns them off.
    route["retries"] = json!({ "attempts": 0 });
    // Istio's validation refuses a timeout under 1 ms, and no timeout is istiod's
    // default: "0s" (none) is written by leaving it out.
    match server.timeouts.request {
        Some(timeout) if !timeout.is_zero() => route["timeout"] = json!(duration(timeout)),
        _ => {}
    }
    route
}

/// TLS to an `https` endpoint of a release, verifying the manifest's host name.
fn destination_rule(server: &Server, release: &envoy::Release<'_>) -> Value {
    let endpoint = release.endpoint;
    // `mcp-canary-<id>`, not `mcp-server-<id>-canary`: that is the name of a server
    // whose id ends in `-canary`.
    let name = match release.track {
        envoy::CANARY => format!("mcp-canary-{}", kube_name(server.id())),
        _ => format!("mcp-server-{}", kube_name(server.id())),
    };
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
        },
        "spec": {
            "host": endpoint.host,
            "exportTo": ["."],
            "trafficPolicy": { "portLevelSettings": [{
                "port": { "number": endpoint.port },
                "tls": { "mode": "SIMPLE", "sni": endpoint.host },
            }]},
        },
    })
}

/// Istio durations: whole milliseconds at most.
fn duration(value: Duration) -> String {
    if value.subsec_millis() == 0 {
        format!("{}s", value.as_secs())
    } else {
        format!("{}ms", value.as_millis())
    }
}

pub(super) fn document(comment: &str, documents: &[Value]) -> String {
    let mut out = format!("{}{comment}", super::HEADER);
    for (i, doc) in documents.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&super::yaml::to_yaml(doc));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_bootstrap_has_what_the_patches_take() {
        let bootstrap = bootstrap();
        let hcm = connection_manager(&bootstrap);
        for key in HCM_SETTINGS {
            assert!(!hcm[key].is_null(), "{key}");
        }
        let names: Vec<&str> = hcm["http_filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "mcp",
                "envoy.filters.http.ext_authz",
                "envoy.filters.http.ratelimit",
                ROUTER
            ]
        );
        assert!(bootstrap["stats_config"]["stats_tags"].is_array());
    }

    #[test]
    fn short_names_are_told_from_full_names_and_addresses() {
        for short in ["financial-data-mcp", "localhost", "svc"] {
            assert!(is_short_name(short), "{short}");
        }
        for full in [
            "financial-data-mcp.mcp-servers.svc.cluster.local",
            "10.0.0.7",
            "::1",
            "mcp.internal",
        ] {
            assert!(!is_short_name(full), "{full}");
        }
    }

    #[test]
    fn durations_in_whole_milliseconds() {
        assert_eq!(duration(Duration::from_secs(15)), "15s");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
    }
}
