//! `envoy/`: what Envoy runs for the fleet.
//!
//! - `clusters.yaml` and `routes.yaml`: file-based xDS resources (a `resources:` list,
//!   as Envoy's `path_config_source` reads them). One cluster and one route per
//!   server; the route matches the exposure path exactly, rewrites it to the
//!   endpoint's path, sends the rate limit descriptor `[server_id, tool_call,
//!   agent_id]` and carries the metadata the MCP filter labels requests with
//!   (`mcp_gateway: {server_id, server_version, tools, schema_digests,
//!   unregistered_tools}`, see filter/core/src/route.rs); a server whose calls the
//!   authz-service checks against their schemas has ext_authz send it the body. A
//!   catch-all route marked `mcp_gateway: {unregistered: "true"}` comes last: the filter
//!   answers it with 404 -31014 and an audit record (its direct response is only the
//!   fallback should the filter be missing). Envoy reloads both files when render
//!   renames a new version into the directory: no restart.
//! - `bootstrap.yaml`: `envoy/fleet.yaml` (the one bootstrap, which holds no server
//!   facts) pointing at the directory where Envoy finds the two files.
//! - `standalone.yaml`: the same fleet in one file (the bootstrap with the same route
//!   configuration and clusters inline), for a fixed fleet where a watched directory is
//!   not wanted: a change needs a new render and an Envoy restart.
//! - `compose/envoy.yaml`: the bootstrap for envoy/compose/docker-compose.yaml, where
//!   the rendered `envoy/` directory is mounted at the shipped path and the two services
//!   share Envoy's network namespace (so their 127.0.0.1 clusters stand): only the
//!   listener and the admin bind every address of the container, so the published
//!   ports reach them.

use super::Output;
use crate::fleet::Fleet;
use crate::model::{Endpoint, Server};
use mcp_filter_core::config::DEFAULT_MAX_BODY_BYTES;
use mcp_filter_core::route::NAMESPACE;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// The bootstrap, with its xDS directory as shipped (the container layout).
const BOOTSTRAP: &str = include_str!("../../../envoy/fleet.yaml");
const SHIPPED_XDS_DIR: &str = "/etc/mcp-gateway/envoy";

/// The route configuration's name (the bootstrap's `rds.route_config_name`).
pub const ROUTE_CONFIG: &str = "mcp_fleet";

/// Without a manifest timeout: no overall route timeout (SSE answers and handshake-era
/// streams can last), and an idle timeout instead.
const DEFAULT_TIMEOUT: Duration = Duration::ZERO;
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Every Envoy output; `xds_dir` is the directory as Envoy sees it.
pub fn render(fleet: &Fleet, xds_dir: &Path) -> Vec<Output> {
    // The routes and clusters are built once, for the xDS files and the standalone config.
    let xds = Xds::of(fleet);
    let mut outputs = xds.files();
    outputs.extend([
        Output::new("envoy/bootstrap.yaml", bootstrap(xds_dir)),
        Output::new("envoy/standalone.yaml", standalone(&xds)),
        Output::new("compose/envoy.yaml", compose_bootstrap()),
    ]);
    outputs
}

/// The fleet's route configuration and clusters, as xDS resources.
pub struct Xds {
    routes: Value,
    clusters: Vec<Value>,
}

impl Xds {
    pub fn of(fleet: &Fleet) -> Xds {
        Xds {
            routes: route_configuration(fleet),
            clusters: fleet.servers.iter().flat_map(clusters).collect(),
        }
    }

    /// `envoy/clusters.yaml` and `envoy/routes.yaml`.
    pub fn files(&self) -> Vec<Output> {
        vec![
            Output::new(
                "envoy/clusters.yaml",
                document(
                    "the registered MCP servers' clusters (Envoy CDS from a file)",
                    json!({ "resources": self.clusters }),
                ),
            ),
            Output::new(
                "envoy/routes.yaml",
                document(
                    "the registered MCP servers' routes (Envoy RDS from a file)",
                    json!({ "resources": [self.routes] }),
                ),
            ),
        ]
    }
}

/// The cluster of a server (its stable release when it has a canary).
pub fn cluster_name(server: &Server) -> String {
    format!("mcp-server/{}", server.id())
}

/// The cluster of a server's canary. Named by role, not version: a new release
/// replaces the cluster's endpoint instead of adding a cluster (and a set of cluster
/// stats) per release; the version is in the cluster's metadata.
pub fn canary_cluster_name(server: &Server) -> String {
    format!("mcp-server/{}/canary", server.id())
}

/// The request header whose number Envoy takes as the weighted pick's random value
/// (`weighted_clusters.header_name`): the MCP filter sets it to pin a handshake-era
/// session to the release that issued it (`0` lands on the stable cluster, `99` on the
/// canary: the weights sum to 100, stable first) and strips clients' copies.
pub const VERSION_PICK_HEADER: &str = "x-mcp-version-pick";

/// The header the upstream gets with the version of the release it runs, set by
/// Envoy's router for the cluster it finally used (a client's copy is overwritten).
pub const SERVER_VERSION_HEADER: &str = "x-mcp-server-version";

/// One release of a server behind its route: the stable one, and the canary if the
/// manifest has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release<'a> {
    /// `stable` or `canary` (cluster metadata `track`, the filter's `Track`).
    pub track: &'static str,
    pub version: &'a str,
    pub endpoint: &'a Endpoint,
    /// Percent of the route's requests; the releases of a server sum to 100.
    pub weight: u8,
}

impl Release<'_> {
    /// The release's cluster name.
    pub fn cluster(&self, server: &Server) -> String {
        match self.track {
            CANARY => canary_cluster_name(server),
            _ => cluster_name(server),
        }
    }
}

pub const STABLE: &str = "stable";
pub const CANARY: &str = "canary";

/// The releases of a server, stable first. The canary's weight is the server's
/// `canary.weight` as given: render applies the rollout state to the fleet first
/// ([`crate::rollout::RolloutState::apply`]).
pub fn releases(server: &Server) -> Vec<Release<'_>> {
    let canary_weight = server.canary.as_ref().map_or(0, |c| c.weight.min(100));
    let mut releases = vec![Release {
        track: STABLE,
        version: &server.version,
        endpoint: &server.endpoint,
        weight: 100 - canary_weight,
    }];
    if let Some(canary) = &server.canary {
        releases.push(Release {
            track: CANARY,
            version: &canary.version,
            endpoint: &canary.endpoint,
            weight: canary_weight,
        });
    }
    releases
}

/// The cluster metadata the filter reads in `on_log` (`mcp_gateway: {server_id,
/// server_version, track}`): under a weighted split only the cluster knows which
/// release served a request. Every server cluster carries it, canary or not, so a
/// server's labels keep their shape when a canary starts.
pub fn cluster_metadata(server: &Server, release: &Release<'_>) -> Value {
    json!({ "filter_metadata": { NAMESPACE: {
        "server_id": server.id(),
        "server_version": release.version,
        "track": release.track,
    }}})
}

/// A server's clusters: the stable release's, then the canary's. Both have the same
/// connect timeout and TLS rules (each verifying its own host name).
fn clusters(server: &Server) -> Vec<Value> {
    releases(server)
        .iter()
        .map(|release| cluster(server, release))
        .collect()
}

fn cluster(server: &Server, release: &Release<'_>) -> Value {
    let endpoint = release.endpoint;
    let name = release.cluster(server);
    // An address is used as it is; a host name is resolved (and re-resolved) by Envoy.
    let is_ip = endpoint.host.parse::<std::net::IpAddr>().is_ok();
    let mut cluster = json!({
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": name,
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                "address": endpoint.host,
                "port_value": endpoint.port,
            }}}}]}],
        },
        "metadata": cluster_metadata(server, release),
    });
    if endpoint.is_tls() {
        // Verify the server: the system trust store, and the name in the manifest.
        cluster["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": endpoint.host,
                "common_tls_context": { "validation_context": {
                    "trusted_ca": { "filename": "/etc/ssl/certs/ca-certificates.crt" },
                    "match_typed_subject_alt_names": [{
                        "san_type": "DNS",
                        "matcher": { "exact": endpoint.host },
                    }],
                }},
            },
        });
    }
    cluster
}

/// Every route, in the order Envoy tries them.
pub fn route_list(fleet: &Fleet) -> Vec<Value> {
    let mut routes = vec![oauth_metadata_route()];
    routes.extend(fleet.servers.iter().map(server_route));
    routes.push(unregistered_route());
    routes
}

/// The route configuration of the fleet (`@type` included: an xDS resource).
///
/// The virtual host picks a request's route with a matcher: a hash map from the exact
/// `:path` to the server's route, so the cost per request does not grow with the fleet
/// (Envoy tries a route list in order, and the filter makes it pick twice: about 55 ns
/// per route ahead of the match, each time; BENCHMARKS.md, "Fleet scale"). `:path`
/// holds the query string, so a miss (a query string, the metadata route, a path no
/// server is at) falls back to the whole route list, which decides exactly as a plain
/// list would: the map is only a shortcut to the same route.
fn route_configuration(fleet: &Fleet) -> Value {
    let list = route_list(fleet);
    // The server routes of the list (between the metadata route and the catch-all).
    let server_routes = &list[1..list.len() - 1];
    let map: serde_json::Map<String, Value> = fleet
        .servers
        .iter()
        .zip(server_routes)
        .map(|(server, route)| {
            let mut typed = json!({ "@type": "type.googleapis.com/envoy.config.route.v3.Route" });
            if let (Some(typed), Some(route)) = (typed.as_object_mut(), route.as_object()) {
                typed.extend(route.clone());
            }
            let action = json!({ "action": { "name": route["name"], "typed_config": typed } });
            (server.path.clone(), action)
        })
        .collect();
    let matcher = json!({
        "matcher_tree": {
            "input": {
                "name": "path",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
                    "header_name": ":path",
                },
            },
            "exact_match_map": { "map": map },
        },
        "on_no_match": { "action": {
            "name": "mcp-route-list",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.route.v3.RouteList",
                "routes": list,
            },
        }},
    });
    json!({
        "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        "name": ROUTE_CONFIG,
        "virtual_hosts": [{ "name": ROUTE_CONFIG, "domains": ["*"], "matcher": matcher }],
    })
}

/// RFC 9728 protected resource metadata, served by the authz-service and readable
/// without a token (MCP clients fetch it after a 401).
pub fn oauth_metadata_route() -> Value {
    json!({
        "name": "mcp-oauth-metadata",
        "match": { "prefix": "/.well-known/oauth-protected-resource" },
        "route": { "cluster": "authz_http" },
        "typed_per_filter_config": { EXT_AUTHZ: {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
            "disabled": true,
        }},
    })
}

/// The route metadata the filter reads (`mcp_gateway`): strings only, since the filter
/// reads each leaf as a raw string.
/// - `tools` gives the registered tools their own metric label and tells the filter
///   which tools a `tools/list` answer may show (MCP tool names hold no commas);
/// - `schema_digests`, a JSON object as a string, `{"<tool>":"sha256:<hex>"}`: what
///   the filter compares a `tools/list` answer's `inputSchema`s with (schema drift),
///   `input_hash` of the registered schema, so formatting never counts as drift;
/// - `unregistered_tools`: `hide` or `show`, for tools the answer has and `tools` lacks.
pub fn route_metadata(server: &Server) -> Value {
    let tools: Vec<&str> = server.tools.iter().map(|t| t.name.as_str()).collect();
    let digests: serde_json::Map<String, Value> = server
        .tools
        .iter()
        .map(|t| (t.name.clone(), json!(t.schema_digest)))
        .collect();
    json!({
        "server_id": server.id(),
        "server_version": server.version,
        "tools": tools.join(","),
        "schema_digests": Value::Object(digests).to_string(),
        "unregistered_tools": server.unregistered_tools.as_str(),
    })
}

/// The ext_authz filter's name in envoy/fleet.yaml (and the key of its per-route config).
pub const EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";

/// The MCP filter's `max_body_bytes` in envoy/fleet.yaml (its default if unset), read
/// once (every server route needs it).
pub fn filter_max_body_bytes() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| max_body_bytes_in(BOOTSTRAP))
}

fn max_body_bytes_in(bootstrap: &str) -> u64 {
    let bootstrap: Value = serde_norway::from_str(bootstrap).unwrap_or_default();
    let filters = bootstrap
        .pointer(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
        )
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    filters
        .iter()
        .filter_map(|f| {
            f.pointer("/typed_config/config/configuration/value")?
                .as_str()
        })
        .filter_map(|text| serde_json::from_str::<Value>(text).ok())
        .find_map(|config| config["max_body_bytes"].as_u64())
        .unwrap_or(DEFAULT_MAX_BODY_BYTES)
}

/// The route's ext_authz settings when the authz-service needs the request body (the
/// server validates arguments, or has `x-mcp-header` parameters): ext_authz buffers it
/// and sends it along. Routes of servers that need neither send no body and buffer
/// nothing for ext_authz.
///
/// `max_request_bytes` is the MCP filter's `max_body_bytes`: the filter has refused
/// anything larger (413 with a JSON-RPC body), so ext_authz never answers a large body
/// itself; and with `allow_partial_message: false` the service always sees a whole body.
/// `pack_as_bytes` asks for `raw_body`, but Envoy (1.40) takes that flag from the filter's
/// own configuration only (envoyproxy/envoy#35623): per route, the body arrives in the
/// string field `body`. The MCP filter let only well-formed JSON (UTF-8) through, so the
/// two hold the same bytes and the service reads whichever is set.
pub fn ext_authz_per_route(server: &Server) -> Option<Value> {
    server.needs_body().then(|| {
        json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
            "check_settings": { "with_request_body": {
                "max_request_bytes": filter_max_body_bytes(),
                "allow_partial_message": false,
                "pack_as_bytes": true,
            }},
        })
    })
}

/// A server's route: exact path, its cluster, rewrites, timeouts, rate limit
/// descriptor, the metadata the filter labels by and, when the authz-service needs
/// it, the body for ext_authz.
pub fn server_route(server: &Server) -> Value {
    let endpoint = &server.endpoint;
    let metadata = route_metadata(server);
    let mut route = json!({
        "timeout": duration(server.timeouts.request.unwrap_or(DEFAULT_TIMEOUT)),
        "idle_timeout": duration(server.timeouts.idle.unwrap_or(DEFAULT_IDLE_TIMEOUT)),
        // One tools/call is one hit, counted per server, tool and verified agent
        // (x-agent-id as ext_authz set it; client copies were stripped). Requests
        // without x-mcp-tool-name send no descriptor.
        "rate_limits": [{ "actions": [
            { "generic_key": { "descriptor_key": "server_id", "descriptor_value": server.id() } },
            { "request_headers": { "header_name": "x-mcp-tool-name", "descriptor_key": "tool_call" } },
            { "request_headers": { "header_name": "x-agent-id", "descriptor_key": "agent_id" } },
        ]}],
    });
    match &server.canary {
        None => {
            route["cluster"] = json!(cluster_name(server));
            route["host_rewrite_literal"] = json!(authority(endpoint));
        }
        Some(_) => route["weighted_clusters"] = weighted_clusters(server),
    }
    if endpoint.path != server.path {
        // With an exact `path` match, prefix_rewrite replaces the whole path (the
        // query string stays).
        route["prefix_rewrite"] = json!(endpoint.path);
    }
    let mut entry = json!({
        "name": format!("mcp-server/{}", server.id()),
        "match": { "path": server.path },
        "metadata": { "filter_metadata": { NAMESPACE: metadata } },
        "route": route,
        // The filter sets the pick header on a handshake-era session's requests (its
        // release, from the cluster's track). Envoy reads it when it picks the cluster;
        // the router removes it before the request leaves, so no server sees it.
        "request_headers_to_remove": [VERSION_PICK_HEADER],
    });
    if let Some(per_route) = ext_authz_per_route(server) {
        entry["typed_per_filter_config"] = json!({ EXT_AUTHZ: per_route });
    }
    entry
}

/// A canary server's split: stable first with `100 - w`, the canary last with `w`
/// (always summing to 100, so `x-mcp-version-pick: 0` and `99` land on the stable and
/// the canary cluster, and a weight of 0 or 100 is still a valid split). Per release,
/// the Host rewrite to its own endpoint (route-level rewrites apply to every cluster)
/// and `x-mcp-server-version`, applied by the router for the cluster it used. Both
/// releases share the route's path rewrite (check.rs: same endpoint path), timeouts,
/// rate limits and upstream credential (set by ext_authz before the pick matters).
pub fn weighted_clusters(server: &Server) -> Value {
    let clusters: Vec<Value> = releases(server)
        .iter()
        .map(|release| {
            json!({
                "name": release.cluster(server),
                "weight": release.weight,
                "host_rewrite_literal": authority(release.endpoint),
                "request_headers_to_add": [{
                    "header": { "key": SERVER_VERSION_HEADER, "value": release.version },
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }],
            })
        })
        .collect();
    json!({ "clusters": clusters, "header_name": VERSION_PICK_HEADER })
}

/// The Host an endpoint is reached with: its host, and its port unless the scheme's.
pub fn authority(endpoint: &Endpoint) -> String {
    let default_port = if endpoint.is_tls() { 443 } else { 80 };
    if endpoint.port == default_port {
        host_for_authority(&endpoint.host)
    } else {
        format!("{}:{}", host_for_authority(&endpoint.host), endpoint.port)
    }
}

/// The catch-all: the filter answers it with 404 -31014 and an audit record.
pub fn unregistered_route() -> Value {
    json!({
        "name": "mcp-unregistered",
        "match": { "prefix": "/" },
        "metadata": { "filter_metadata": { NAMESPACE: { "unregistered": "true" } } },
        "direct_response": {
            "status": 404,
            "body": { "inline_string":
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-31014,"message":"no MCP server is registered at this path"}}"# },
        },
        "response_headers_to_add": [{
            "header": { "key": "content-type", "value": "application/json" },
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }],
    })
}

fn bootstrap(xds_dir: &Path) -> String {
    BOOTSTRAP.replace(SHIPPED_XDS_DIR, &xds_dir.display().to_string())
}

/// The listener's and the admin's binds in the bootstrap, and in a container.
const LOCAL_BINDS: [(&str, &str); 2] = [
    (
        "socket_address: { address: 127.0.0.1, port_value: 10000 }",
        "socket_address: { address: 0.0.0.0, port_value: 10000 }",
    ),
    (
        "socket_address: { address: 127.0.0.1, port_value: 9901 }",
        "socket_address: { address: 0.0.0.0, port_value: 9901 }",
    ),
];

fn compose_bootstrap() -> String {
    let mut text = format!(
        "{}# envoy/fleet.yaml for envoy/compose/docker-compose.yaml: the listener and the admin on every\n\
         # address of the container (the published ports), the xDS files at {SHIPPED_XDS_DIR}.\n",
        super::HEADER
    );
    let mut bootstrap = BOOTSTRAP.to_owned();
    for (local, container) in LOCAL_BINDS {
        if !bootstrap.contains(local) {
            // Only a changed envoy/fleet.yaml gets here (the golden test fails first).
            text.push_str(&format!(
                "# not rendered: envoy/fleet.yaml has no `{local}`\n"
            ));
            return text;
        }
        bootstrap = bootstrap.replacen(local, container, 1);
    }
    text.push_str(&bootstrap);
    text
}

/// The bootstrap with the fleet inline: `rds` becomes the `route_config` routes.yaml
/// holds, the dynamic clusters join the static ones, nothing is watched. Built from
/// the parsed bootstrap, so the two cannot drift apart; its comments are envoy/fleet.yaml's.
fn standalone(xds: &Xds) -> String {
    match inline_fleet(xds) {
        Ok(config) => document(
            "the fleet in one Envoy config (envoy -c standalone.yaml); envoy/fleet.yaml explains each part.\n\
             # Read once at start: after a new render, restart Envoy (bootstrap.yaml reloads live instead)",
            config,
        ),
        // The bootstrap is this crate's own file, checked by the tests: only a broken
        // build gets here, and an empty file makes Envoy refuse it loudly.
        Err(reason) => format!("{}# not rendered: {reason}\n", super::HEADER),
    }
}

fn inline_fleet(xds: &Xds) -> Result<Value, String> {
    let mut config: Value = serde_norway::from_str(BOOTSTRAP).map_err(|e| e.to_string())?;
    let root = config
        .as_object_mut()
        .ok_or("the bootstrap is not a mapping")?;
    root.remove("dynamic_resources");
    let hcm = config
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
        .and_then(Value::as_object_mut)
        .ok_or("the bootstrap has no connection manager")?;
    hcm.remove("rds")
        .ok_or("the bootstrap's connection manager has no rds")?;
    let mut routes = xds.routes.clone();
    if let Some(routes) = routes.as_object_mut() {
        // A field of the connection manager, not an Any: no type URL.
        routes.remove("@type");
    }
    hcm.insert("route_config".into(), routes);
    let clusters = config
        .pointer_mut("/static_resources/clusters")
        .and_then(Value::as_array_mut)
        .ok_or("the bootstrap has no static clusters")?;
    for cluster in &xds.clusters {
        let mut cluster = cluster.clone();
        if let Some(cluster) = cluster.as_object_mut() {
            cluster.remove("@type");
        }
        clusters.push(cluster);
    }
    Ok(config)
}

fn host_for_authority(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// A protobuf JSON duration: seconds with up to nine decimals and an `s`.
fn duration(value: Duration) -> String {
    if value.subsec_nanos() == 0 {
        format!("{}s", value.as_secs())
    } else {
        format!("{}.{:09}s", value.as_secs(), value.subsec_nanos())
    }
}

fn document(what: &str, value: Value) -> String {
    let yaml = super::yaml::to_yaml(&value);
    format!("{}# {what}\n{yaml}", super::HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_protobuf_json() {
        assert_eq!(duration(Duration::ZERO), "0s");
        assert_eq!(duration(Duration::from_millis(1500)), "1.500000000s");
        assert_eq!(duration(Duration::from_secs(300)), "300s");
    }

    #[test]
    fn the_body_limit_is_the_shipped_filters() {
        // envoy/fleet.yaml sets the MCP filter's max_body_bytes explicitly (1 MiB).
        const SHIPPED: &str = "\"max_body_bytes\": 1048576";
        assert!(BOOTSTRAP.contains(SHIPPED));
        assert_eq!(filter_max_body_bytes(), 1_048_576);
        // Read from the filter's configuration, not assumed...
        let raised = BOOTSTRAP.replace(SHIPPED, "\"max_body_bytes\": 4194304");
        assert_eq!(max_body_bytes_in(&raised), 4_194_304);
        // ...and the filter's own default when the configuration has none.
        let unset = BOOTSTRAP.replace(SHIPPED, "\"not_the_limit\": 1");
        assert_eq!(max_body_bytes_in(&unset), DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn ipv6_hosts_are_bracketed_in_the_authority() {
        assert_eq!(host_for_authority("::1"), "[::1]");
        assert_eq!(host_for_authority("mcp.internal"), "mcp.internal");
    }
}
