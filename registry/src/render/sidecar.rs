//! `istio-sidecar/envoyfilters.yaml`: the gateway in the Istio sidecar of one MCP
//! server, for inbound traffic to it. One EnvoyFilter per server whose manifest has
//! `gateway.istio_sidecar` (the namespace and labels of its pods, the container port),
//! in that namespace, named `mcp-sidecar-<server>`.
//!
//! The filters, their order and configuration, the connection manager settings, the
//! services' clusters and the stat tag rules come from the functions istio.rs builds
//! the gateway's EnvoyFilter with (from `envoy/fleet.yaml`), and the route's rate limit
//! actions and timeouts from the Envoy target's own server route (envoy.rs), so the
//! sidecar, the gateway and plain Envoy cannot drift apart. What differs is only what a
//! sidecar is: the MCP filter names its one server (`server_id`, `server_version`,
//! `mcp_paths` = the endpoint's path, the registered tools as metric labels) instead of
//! reading it from route metadata, and the routes patched are istiod's inbound ones,
//! not a VirtualService's: the server's own path only (its request arrives unchanged,
//! so no rewrite), the RFC 9728 metadata route, and a 404 for anything else.
//!
//! Its own directory, not `istio/`: `kubectl apply -f <out>/istio/` installs the
//! ingress gateway, and a server must not get both (the gateway's ext_authz removes
//! the client's token, or puts the registered upstream credential in its place, and the
//! sidecar's ext_authz would refuse every call that came through the gateway).

use super::{comment, envoy, istio, Output};
use crate::check::kube_name;
use crate::fleet::Fleet;
use crate::model::{IstioSidecar, Server};
use serde_json::{json, Value};

/// The rendered file, relative to the output directory.
pub const FILE: &str = "istio-sidecar/envoyfilters.yaml";

pub fn render(fleet: &Fleet) -> Vec<Output> {
    vec![Output::new(FILE, envoy_filters(fleet))]
}

/// The EnvoyFilter's name: one per server, in the namespace of its pods.
pub fn name(server: &Server) -> String {
    format!("mcp-sidecar-{}", kube_name(server.id()))
}

/// Istio's inbound cluster for a container port (`inbound|<port>||`).
pub fn inbound_cluster(port: u16) -> String {
    format!("inbound|{port}||")
}

const ABOUT: &str = "\
# The MCP gateway in the Istio sidecar of one MCP server (Istio >= 1.27, whose Envoy is
# >= 1.35), for inbound traffic to it: one EnvoyFilter per server whose manifest has
# gateway.istio_sidecar (the namespace and labels of its pods, the port its container
# listens on). kubectl apply -f this file, then restart the servers' pods.
#
# The filters, their order and their configuration are envoy/fleet.yaml's, but for the
# MCP filter naming its one server (server_id, server_version, mcp_paths: the endpoint's
# path, and the registered tools as metric labels) instead of reading it from the route.
# An EnvoyFilter and not a WasmPlugin: the filter sets headers after reading the body,
# which Envoy allows only with allow_on_headers_stop_iteration, a field WasmPlugin does
# not have. Mount the .wasm into the sidecar with the pod annotations
#   sidecar.istio.io/userVolume: '{\"mcp-wasm\":{\"configMap\":{\"name\":\"mcp-filter-wasm\"}}}'
#   sidecar.istio.io/userVolumeMount: '{\"mcp-wasm\":{\"mountPath\":\"/var/local/lib/wasm\",\"readOnly\":true}}'
# (a ConfigMap holds binary data up to 1 MiB: kubectl create configmap mcp-filter-wasm
# --from-file=mcp_filter.wasm), or fetch it as an OCI image (README, \"Install on Istio\").
# The BOOTSTRAP patch (the stat tag rules of the metric labels) applies when pods start:
# restart them after the first apply.
#
# What istiod generates for an inbound port sends EVERY path to the server: the virtual
# host `inbound|http|<service port>` of route configuration `inbound|<port>||` has one
# route, `default`, matching `prefix: /`; its connection manager normalises paths but
# merges no slashes, keeps escaped slashes and lets header names with underscores
# through. The filter labels only its exact mcp_paths, so a server that also answers
# \"/MCP\", \"/mcp/\", \"//mcp\" or \"/mcp%2F\" (Express, many Go and Java routers) would get
# those requests without labels. The route and connection manager patches below make
# this listener route and normalise as the gateway does: only the endpoint's path
# reaches the server, the RFC 9728 metadata goes to the authz-service, anything else
# gets a 404 with a JSON-RPC error.
#
# Requirements on the workload: the Service must declare the port with protocol HTTP
# (port name `http`/`http-*` or appProtocol `http`), or istiod builds no HTTP chain for
# it to patch and inbound traffic passes as TCP, unfiltered; and the pod must not be
# reachable around its sidecar (no hostNetwork, no excluded inbound ports).
# Not for a server reached through the ingress gateway's filters too (istio/): the
# gateway's ext_authz removes the client's token (or puts the registered upstream
# credential in its place), and this sidecar's ext_authz would refuse every such call.
";

const CLUSTERS: &str = "\
The gateway's services (envoy/fleet.yaml's clusters, at their Kubernetes services),
added with the outbound clusters (context SIDECAR_OUTBOUND), as Istio builds them.";

const FILTERS: &str = "\
The HTTP filters of envoy/fleet.yaml on the inbound listener of the server's port, each
inserted before the router, in order: mcp -> ext_authz -> ratelimit -> router.";

const SETTINGS: &str = "\
The connection manager settings of envoy/fleet.yaml (see its comments), merged into
Istio's. A MERGE sets fields but cannot clear them; each value here is a non-default
protobuf value, so it replaces whatever Istio set:
- merge_slashes: true (\"//mcp\" is \"/mcp\" for the route and the filter alike);
- path_with_escaped_slashes_action: REJECT_REQUEST (Istio keeps \"%2F\" unchanged; a
  lenient server decodes it after the route decided, e.g. \"/mcp%2F\" -> \"/mcp/\"). A 400
  is safer than forwarding or redirecting to the unescaped path;
- normalize_path: true (Istio's default already; set so that a mesh with
  pathNormalization NONE still normalises here);
- headers_with_underscores_action: REJECT_REQUEST (Istio lets \"x_agent_id\" through;
  CGI-style servers read it as \"x-agent-id\");
- the audit access log and the JSON-RPC bodies of Envoy's own replies.";

const REMOVE: &str = "\
Routes. Istio's inbound route (`default`, `prefix: /` to the inbound cluster) is
removed: no route name or virtual host name is matched, so whatever routes istiod
generates for the port go, whatever it names them. Then three routes are put in, each
INSERT_BEFORE without a route match going to the FRONT of the list, so they are listed
last-first and end up in the gateway's order: metadata, the server's path, 404. Being
first, they decide even if a route of Istio's survived the REMOVE.";

const NOT_FOUND: &str = "\
Anything else: 404 with the gateway's JSON-RPC error (its catch-all's answer; the MCP
filter of one server reads no route metadata). ext_authz stays on: a request the filter
did not label is refused before its token is looked at.";

const SERVER_ROUTE: &str = "\
Exactly the filter's mcp_paths (the endpoint's path), case-sensitive, to the MCP server
(Istio's inbound cluster for the port), with the gateway route's rate limit actions
([server_id, tool_call, agent_id]: the rendered limits sit under the server's id),
timeouts and, when the authz-service validates the server's calls, ext_authz's request
body settings. No rewrite: the request arrives at the server's own path and host.";

const METADATA: &str = "\
RFC 9728 protected resource metadata from the authz-service, readable without a token
(ext_authz disabled on this route): MCP clients fetch it from the server's origin.";

const BOOTSTRAP: &str = "\
The stat tag rules of envoy/fleet.yaml: the MCP filter's metric labels.";

fn envoy_filters(fleet: &Fleet) -> String {
    let mut out = format!("{}{ABOUT}", super::HEADER);
    let servers: Vec<(&Server, &IstioSidecar)> = fleet
        .servers
        .iter()
        .filter_map(|s| s.istio_sidecar.as_ref().map(|sidecar| (s, sidecar)))
        .collect();
    if servers.is_empty() {
        out.push_str("#\n# No server's manifest has gateway.istio_sidecar: nothing to apply.\n");
    }
    let pieces = Pieces::new();
    for (index, (server, sidecar)) in servers.into_iter().enumerate() {
        out.push_str(if index > 0 { "---\n" } else { "\n" });
        if let Some(canary) = &server.canary {
            // check.rs refuses the combination; should a fleet get here anyway, say so
            // in the file rather than render a filter that names one version only.
            let about = format!(
                "{}: gateway.canary {} is not rendered: the server's own sidecar sees the pods it runs in, one version; split the traffic with the mesh's routing",
                server.id(),
                canary.version
            );
            out.push_str(&format!("# {}\n", comment(&about)));
        }
        out.push_str(&annotated_yaml(server, sidecar, &pieces));
    }
    out
}

/// What every sidecar takes from `envoy/fleet.yaml`, parsed once.
struct Pieces {
    bootstrap: Value,
    hcm: Value,
}

impl Pieces {
    fn new() -> Pieces {
        let bootstrap = istio::bootstrap();
        let hcm = istio::connection_manager(&bootstrap);
        Pieces { bootstrap, hcm }
    }
}

/// One server's EnvoyFilter; its config patches in order, each group with its comment.
fn envoy_filter(
    server: &Server,
    sidecar: &IstioSidecar,
    pieces: &Pieces,
) -> (Value, Vec<(Option<&'static str>, Value)>) {
    let port = sidecar.port;
    let inbound = |apply_to: &str, matching: Value, operation: &str, value: Value| {
        istio::patch_in("SIDECAR_INBOUND", apply_to, matching, operation, value)
    };
    let mut patches = Vec::new();

    for (index, name) in ["authz_service", "authz_http", "ratelimit_service"]
        .into_iter()
        .enumerate()
    {
        if let Some(cluster) = istio::service_cluster(&pieces.bootstrap, name) {
            let patch = istio::patch_in("SIDECAR_OUTBOUND", "CLUSTER", json!({}), "ADD", cluster);
            patches.push(((index == 0).then_some(CLUSTERS), patch));
        }
    }

    let before_router = json!({ "listener": { "portNumber": port, "filterChain": { "filter": {
        "name": istio::HCM, "subFilter": { "name": istio::ROUTER } } } } });
    for (index, mut filter) in istio::http_filters(&pieces.hcm).into_iter().enumerate() {
        if let Some(value) = filter.pointer_mut("/typed_config/config/configuration/value") {
            *value = json!(filter_config(value.as_str().unwrap_or_default(), server));
        }
        let patch = inbound(
            "HTTP_FILTER",
            before_router.clone(),
            "INSERT_BEFORE",
            filter,
        );
        patches.push(((index == 0).then_some(FILTERS), patch));
    }

    patches.push((
        Some(SETTINGS),
        inbound(
            "NETWORK_FILTER",
            json!({ "listener": { "portNumber": port, "filterChain": { "filter": {
                "name": istio::HCM } } } }),
            "MERGE",
            json!({ "typed_config": istio::hcm_settings(&pieces.hcm) }),
        ),
    ));

    let routes = json!({ "routeConfiguration": { "portNumber": port } });
    let route_patch = |route: Value| inbound("HTTP_ROUTE", routes.clone(), "INSERT_BEFORE", route);
    let remove = json!({
        "applyTo": "HTTP_ROUTE",
        "match": { "context": "SIDECAR_INBOUND", "routeConfiguration": { "portNumber": port } },
        "patch": { "operation": "REMOVE" },
    });
    patches.push((Some(REMOVE), remove));
    let mut not_found = envoy::unregistered_route();
    if let Some(route) = not_found.as_object_mut() {
        route.remove("metadata");
    }
    patches.push((Some(NOT_FOUND), route_patch(not_found)));
    patches.push((Some(SERVER_ROUTE), route_patch(server_route(server, port))));
    patches.push((Some(METADATA), route_patch(envoy::oauth_metadata_route())));

    patches.push((
        Some(BOOTSTRAP),
        inbound(
            "BOOTSTRAP",
            json!({}),
            "MERGE",
            json!({ "stats_config": pieces.bootstrap["stats_config"] }),
        ),
    ));

    let head = json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": { "name": name(server), "namespace": sidecar.namespace },
        "spec": { "workloadSelector": { "labels": sidecar.workload_labels } },
    });
    (head, patches)
}

/// The sidecar's route to the server: the gateway's route for it (envoy.rs) where the
/// decision is the same (rate limit actions, timeouts), the endpoint's own path to
/// Istio's inbound cluster where it is not.
fn server_route(server: &Server, port: u16) -> Value {
    let gateway = envoy::server_route(server);
    let mut route = json!({
        "name": gateway["name"],
        "match": { "path": server.endpoint.path },
        "route": {
            "cluster": inbound_cluster(port),
            "rate_limits": gateway["route"]["rate_limits"],
            "timeout": gateway["route"]["timeout"],
            "idle_timeout": gateway["route"]["idle_timeout"],
        },
    });
    // The route is the sidecar's own (INSERT_BEFORE, not a MERGE into Istio's), so it
    // carries the gateway route's ext_authz body settings as they are.
    if let Some(per_route) = gateway.get("typed_per_filter_config") {
        route["typed_per_filter_config"] = per_route.clone();
    }
    route
}

/// The MCP filter's configuration: envoy/fleet.yaml's, with the one server named in it
/// rather than read from each route (the filter takes one or the other).
fn filter_config(fleet_config: &str, server: &Server) -> String {
    let mut config: serde_json::Map<String, Value> =
        serde_json::from_str(fleet_config).unwrap_or_default();
    config.remove("servers_from_routes");
    let tools: Vec<&str> = server.tools.iter().map(|t| t.name.as_str()).collect();
    config.insert("server_id".into(), json!(server.id()));
    config.insert("server_version".into(), json!(server.version));
    config.insert("mcp_paths".into(), json!([server.endpoint.path]));
    config.insert("metrics".into(), json!({ "tool_names": tools }));
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    text
}

/// The EnvoyFilter as YAML with each group of patches under its comment (a YAML writer
/// drops comments, so the patches are written one by one, indented into the list).
fn annotated_yaml(server: &Server, sidecar: &IstioSidecar, pieces: &Pieces) -> String {
    let (head, patches) = envoy_filter(server, sidecar, pieces);
    let labels: Vec<String> = sidecar
        .workload_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    // One line, whatever the manifest's file name holds.
    let about = format!(
        "{} ({}): pods labelled {} in namespace {}, port {}, MCP path {}",
        server.id(),
        super::policy::file_name(&server.manifest_file),
        labels.join(","),
        sidecar.namespace,
        sidecar.port,
        server.endpoint.path
    );
    let mut out = format!("# {}\n", comment(&about));
    out.push_str(&super::yaml::to_yaml(&head));
    out.push_str("  configPatches:\n");
    for (about, patch) in patches {
        if let Some(about) = about {
            out.push_str(&comment_lines("  ", about));
        }
        let item = super::yaml::to_yaml(&Value::Array(vec![patch.clone()]));
        for line in item.lines() {
            if !line.is_empty() {
                out.push_str("  ");
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// One of this module's comments, each line commented out.
fn comment_lines(indent: &str, text: &str) -> String {
    text.lines()
        .map(|line| format!("{indent}# {line}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, RateLimits, Scopes, Timeouts, Tool, Transport};
    use mcp_filter_core::config::{FilterConfig, ServerId};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn server(id: &str, sidecar: Option<IstioSidecar>) -> Server {
        let tool = |name: &str| Tool {
            name: name.into(),
            schema_ref: "s.json".into(),
            schema_file: PathBuf::from("s.json"),
            input_schema: json!({"type": "object"}),
            schema_digest: format!("sha256:{}", "0".repeat(64)),
            param_headers: Vec::new(),
        };
        Server {
            manifest_file: PathBuf::from(format!("fleet/{id}.yaml")),
            id: ServerId::try_from(id.to_owned()).unwrap(),
            version: "2.0.1".into(),
            transport: Transport::StreamableHttp,
            endpoint: Endpoint {
                url: format!("http://{id}.team.svc.cluster.local/v1/mcp"),
                scheme: "http".into(),
                host: format!("{id}.team.svc.cluster.local"),
                port: 80,
                path: "/v1/mcp".into(),
            },
            tools: vec![tool("lookup"), tool("update")],
            owner: "team@company.com".into(),
            sla_tier: None,
            on_call_runbook: "https://wiki/x".into(),
            path: format!("/{id}/mcp"),
            scopes: Scopes::default(),
            rate_limits: RateLimits::default(),
            upstream_credential: None,
            timeouts: Timeouts::default(),
            metric_labels: BTreeMap::new(),
            istio_sidecar: sidecar,
            validation: Default::default(),
            unregistered_tools: Default::default(),
            canary: None,
            expected_calls: None,
            preflight_call: None,
            protocol_versions: Vec::new(),
        }
    }

    fn sidecar(port: u16) -> IstioSidecar {
        IstioSidecar {
            namespace: "team".into(),
            workload_labels: BTreeMap::from([("app".into(), "svc".into())]),
            port,
        }
    }

    fn fleet(servers: Vec<Server>) -> Fleet {
        Fleet {
            dir: PathBuf::from("fleet"),
            servers,
        }
    }

    fn documents(text: &str) -> Vec<Value> {
        serde_norway::Deserializer::from_str(text)
            .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
            .filter(|doc: &Value| !doc.is_null())
            .collect()
    }

    #[test]
    fn only_servers_that_ask_get_an_envoy_filter() {
        let text = envoy_filters(&fleet(vec![
            server("a-svc", Some(sidecar(8000))),
            server("b", None),
            server("c.svc", Some(sidecar(9000))),
        ]));
        let docs = documents(&text);
        let names: Vec<&str> = docs
            .iter()
            .map(|d| d["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["mcp-sidecar-a-svc", "mcp-sidecar-c-svc"]);
        assert!(docs.iter().all(|d| d["metadata"]["namespace"] == "team"));
        assert_eq!(
            docs[0]["spec"]["workloadSelector"]["labels"],
            json!({"app": "svc"})
        );

        let text = envoy_filters(&fleet(vec![server("b", None)]));
        assert!(documents(&text).is_empty());
        assert!(text.contains("nothing to apply"));
    }

    /// The comments interleaved with the patches change nothing of what a YAML reader
    /// (kubectl) gets: the document is exactly the EnvoyFilter built.
    #[test]
    fn the_annotated_yaml_reads_back_as_the_envoy_filter() {
        let pieces = Pieces::new();
        let (server, sidecar) = (server("svc", None), sidecar(8000));
        let (mut head, patches) = envoy_filter(&server, &sidecar, &pieces);
        head["spec"]["configPatches"] = Value::Array(patches.into_iter().map(|(_, p)| p).collect());
        let text = annotated_yaml(&server, &sidecar, &pieces);
        assert_eq!(documents(&text), [head]);
        assert!(text.contains("\n  # Routes. Istio's inbound route"));
    }

    fn patches(doc: &Value) -> &Vec<Value> {
        doc["spec"]["configPatches"].as_array().unwrap()
    }

    #[test]
    fn the_filter_names_its_one_server_and_the_filter_core_takes_it() {
        let (server, sidecar) = (server("svc", None), sidecar(8000));
        let doc = &documents(&annotated_yaml(&server, &sidecar, &Pieces::new()))[0];
        let mcp = patches(doc)
            .iter()
            .find(|p| p["patch"]["value"]["name"] == "mcp")
            .unwrap();
        let text = mcp
            .pointer("/patch/value/typed_config/config/configuration/value")
            .and_then(Value::as_str)
            .unwrap();
        let config = FilterConfig::from_json(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.server_id.as_ref().unwrap().as_str(), "svc");
        assert!(!config.servers_from_routes);
        assert_eq!(config.server_version.as_ref().unwrap().as_str(), "2.0.1");
        assert!(config.is_mcp_path("/v1/mcp"));
        assert!(!config.is_mcp_path("/svc/mcp"));
        assert!(config.metrics.tool_names.contains("update"));
        // envoy/fleet.yaml's other settings stay.
        let json: Value = serde_json::from_str(text).unwrap();
        assert_eq!(json["max_body_bytes"], 1048576);
    }

    #[test]
    fn every_inbound_patch_names_the_container_port() {
        let (server, sidecar) = (server("svc", None), sidecar(9000));
        let doc = &documents(&annotated_yaml(&server, &sidecar, &Pieces::new()))[0];
        for patch in patches(doc) {
            let matching = &patch["match"];
            match patch["applyTo"].as_str().unwrap() {
                "CLUSTER" => assert_eq!(matching["context"], "SIDECAR_OUTBOUND"),
                "HTTP_FILTER" | "NETWORK_FILTER" => {
                    assert_eq!(matching["listener"]["portNumber"], 9000)
                }
                "HTTP_ROUTE" => assert_eq!(matching["routeConfiguration"]["portNumber"], 9000),
                "BOOTSTRAP" => assert_eq!(matching["context"], "SIDECAR_INBOUND"),
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn the_server_route_is_the_endpoint_path_with_the_gateway_routes_limits() {
        let (server, sidecar) = (server("svc", None), sidecar(9000));
        let doc = &documents(&annotated_yaml(&server, &sidecar, &Pieces::new()))[0];
        let routes: Vec<&Value> = patches(doc)
            .iter()
            .filter(|p| p["applyTo"] == "HTTP_ROUTE")
            .map(|p| &p["patch"])
            .collect();
        let operations: Vec<&str> = routes
            .iter()
            .map(|p| p["operation"].as_str().unwrap())
            .collect();
        assert_eq!(
            operations,
            ["REMOVE", "INSERT_BEFORE", "INSERT_BEFORE", "INSERT_BEFORE"]
        );
        // Inserted last-first: the 404, the server, the metadata.
        assert_eq!(routes[1]["value"]["direct_response"]["status"], 404);
        assert!(routes[1]["value"].get("metadata").is_none());
        let route = &routes[2]["value"];
        assert_eq!(route["match"], json!({"path": "/v1/mcp"}));
        assert_eq!(route["route"]["cluster"], "inbound|9000||");
        let gateway = envoy::server_route(&server);
        assert_eq!(
            route["route"]["rate_limits"],
            gateway["route"]["rate_limits"]
        );
        let actions = &route["route"]["rate_limits"][0]["actions"];
        assert_eq!(
            actions[0],
            json!({"generic_key": {"descriptor_key": "server_id", "descriptor_value": "svc"}})
        );
        assert!(route["route"].get("prefix_rewrite").is_none());
        assert!(route["route"].get("host_rewrite_literal").is_none());
        // No route metadata (the filter names its one server in its configuration), but
        // the gateway route's ext_authz body settings (the default validation mode,
        // report, needs the body).
        assert!(route.get("metadata").is_none());
        assert_eq!(
            route["typed_per_filter_config"][envoy::EXT_AUTHZ]["check_settings"]
                ["with_request_body"]["max_request_bytes"],
            1048576
        );
        assert_eq!(routes[3]["value"], envoy::oauth_metadata_route());
    }

    #[test]
    fn manifest_text_in_comments_stays_on_its_line() {
        let mut server = server("svc", None);
        server.manifest_file = PathBuf::from("fleet/a\nkind: Secret.yaml");
        let text = annotated_yaml(&server, &sidecar(8000), &Pieces::new());
        assert!(text.starts_with("# svc (a?kind: Secret.yaml): pods labelled app=svc in namespace team, port 8000, MCP path /v1/mcp\napiVersion:"));
    }
}
