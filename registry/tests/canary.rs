//! `render` of a fleet with a canary (`tests/fixtures/canary/`): the files a canary
//! changes byte for byte against `tests/golden-canary/` (`UPDATE_GOLDEN=1 cargo test
//! -p mcp-registry --test canary` rewrites them), the split's shape read back, the
//! rollout state's overrides, and the `render` command with `--rollout-state`.

use mcp_registry::render::{self, envoy, Options, Output};
use mcp_registry::rollout::RolloutState;
use mcp_registry::Fleet;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

const FIXTURE: &str = "tests/fixtures/canary";

/// The outputs a canary changes (the policy, limits and Kubernetes files do not know
/// about releases; the ConfigMap holds the same routes.yaml and clusters.yaml).
const GOLDEN_FILES: [&str; 5] = [
    "envoy/clusters.yaml",
    "envoy/routes.yaml",
    "istio/gateway-envoyfilter.yaml",
    "istio/gateway-virtualservice.yaml",
    "monitoring/mcp-servers.rules.yaml",
];

fn fleet() -> Fleet {
    Fleet::load(Path::new(FIXTURE)).unwrap_or_else(|p| panic!("{p}"))
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden-canary")
}

fn options() -> Options {
    Options {
        envoy_dir: Some(PathBuf::from("/etc/mcp-gateway/envoy")),
        ..Options::new(golden_dir())
    }
}

fn output<'a>(outputs: &'a [Output], name: &str) -> &'a str {
    &outputs
        .iter()
        .find(|o| o.path == Path::new(name))
        .unwrap_or_else(|| panic!("{name} not rendered"))
        .text
}

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).unwrap()
}

/// Every YAML document of a file, comments and empty documents left out.
fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|d: &Value| !d.is_null())
        .collect()
}

/// The route action of a server in the route list of routes.yaml (the same route as
/// the exact-path map's).
fn route_action(outputs: &[Output], name: &str) -> Value {
    let routes = yaml(output(outputs, "envoy/routes.yaml"));
    let config = &routes["resources"][0]["virtual_hosts"][0]["matcher"];
    let list = config["on_no_match"]["action"]["typed_config"]["routes"]
        .as_array()
        .unwrap();
    let route = list.iter().find(|r| r["name"] == name).unwrap();
    let path = route["match"]["path"].as_str().unwrap();
    let mapped = &config["matcher_tree"]["exact_match_map"]["map"][path]["action"]["typed_config"];
    assert_eq!(
        mapped["route"], route["route"],
        "the map and the list differ"
    );
    route["route"].clone()
}

/// (cluster, weight) of a weighted route.
fn split(action: &Value) -> Vec<(String, u64)> {
    action["weighted_clusters"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["weight"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_canary_fleet_renders_as_the_golden_files() {
    let golden = golden_dir();
    let outputs = render::render(&fleet(), &options());
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        for name in GOLDEN_FILES {
            let file = golden.join(name);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, output(&outputs, name)).unwrap();
        }
    }
    for name in GOLDEN_FILES {
        let expected = std::fs::read_to_string(golden.join(name)).unwrap();
        assert!(
            output(&outputs, name) == expected,
            "{name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it):\n{}",
            output(&outputs, name)
        );
    }
}

#[test]
fn a_canary_route_splits_between_the_two_releases_with_their_own_host_and_version() {
    let outputs = render::render(&fleet(), &options());
    let action = route_action(&outputs, "mcp-server/financial-data");
    // The single-cluster fields are gone: a route-level Host rewrite would send the
    // stable's Host to the canary.
    assert!(action.get("cluster").is_none(), "{action}");
    assert!(action.get("host_rewrite_literal").is_none(), "{action}");
    assert_eq!(
        split(&action),
        [
            ("mcp-server/financial-data".to_owned(), 95),
            ("mcp-server/financial-data/canary".to_owned(), 5),
        ]
    );
    let weighted = &action["weighted_clusters"];
    assert_eq!(weighted["header_name"], "x-mcp-version-pick");
    assert!(weighted.get("total_weight").is_none());
    let clusters = weighted["clusters"].as_array().unwrap();
    assert_eq!(
        clusters[0]["host_rewrite_literal"],
        "financial-data-mcp-v1-3-2.mcp-servers.svc.cluster.local:8000"
    );
    assert_eq!(
        clusters[1]["host_rewrite_literal"],
        "financial-data-mcp-v1-4-0.mcp-servers.svc.cluster.local:8443"
    );
    for (cluster, version) in clusters.iter().zip(["1.3.2", "1.4.0"]) {
        assert_eq!(
            cluster["request_headers_to_add"],
            json!([{
                "header": { "key": "x-mcp-server-version", "value": version },
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }])
        );
    }
    // Shared by both releases: the path rewrite, timeouts and rate limits of the route.
    assert_eq!(action["prefix_rewrite"], "/mcp");
    assert_eq!(action["timeout"], "30s");
    assert_eq!(
        action["rate_limits"][0]["actions"][0]["generic_key"]["descriptor_value"],
        "financial-data"
    );
    // The route's metadata names the stable version (the filter's fallback).
    let routes = yaml(output(&outputs, "envoy/routes.yaml"));
    let text = serde_json::to_string(&routes).unwrap();
    assert!(text.contains(r#""server_version":"1.3.2""#));

    // A server without a canary keeps its one cluster.
    let weather = route_action(&outputs, "mcp-server/weather");
    assert_eq!(weather["cluster"], "mcp-server/weather");
    assert_eq!(
        weather["host_rewrite_literal"],
        "weather-mcp.mcp-servers.svc.cluster.local"
    );
    assert!(weather.get("weighted_clusters").is_none());
}

#[test]
fn every_cluster_names_its_release_and_the_canary_verifies_its_own_tls_name() {
    let outputs = render::render(&fleet(), &options());
    let clusters = yaml(output(&outputs, "envoy/clusters.yaml"));
    let clusters = clusters["resources"].as_array().unwrap();
    let releases: Vec<(&str, Value)> = clusters
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["metadata"]["filter_metadata"]["mcp_gateway"].clone(),
            )
        })
        .collect();
    assert_eq!(
        releases,
        [
            (
                "mcp-server/financial-data",
                json!({"server_id": "financial-data", "server_version": "1.3.2", "track": "stable"})
            ),
            (
                "mcp-server/financial-data/canary",
                json!({"server_id": "financial-data", "server_version": "1.4.0", "track": "canary"})
            ),
            (
                "mcp-server/weather",
                json!({"server_id": "weather", "server_version": "2.0.1", "track": "stable"})
            ),
        ]
    );
    let canary = &clusters[1];
    assert_eq!(
        canary["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"],
        json!({"address": "financial-data-mcp-v1-4-0.mcp-servers.svc.cluster.local", "port_value": 8443})
    );
    assert_eq!(
        canary["transport_socket"]["typed_config"]["sni"],
        "financial-data-mcp-v1-4-0.mcp-servers.svc.cluster.local"
    );
    // The stable one is plain HTTP: no TLS because its canary has it.
    assert!(clusters[0].get("transport_socket").is_none());
    // The Kubernetes ConfigMap carries the same clusters.
    let configmap = yaml(output(&outputs, "kubernetes/envoy-configmap.yaml"));
    assert_eq!(
        configmap["data"]["clusters.yaml"].as_str().unwrap(),
        output(&outputs, "envoy/clusters.yaml")
    );
}

#[test]
fn the_rollout_state_overrides_the_weight_of_exactly_its_canary_version() {
    let fleet = fleet();
    let weights = |rollout: &RolloutState| {
        let outputs = render::render_with_rollout(&fleet, &options(), rollout);
        split(&route_action(&outputs, "mcp-server/financial-data"))
            .into_iter()
            .map(|(_, w)| w)
            .collect::<Vec<_>>()
    };
    let mut rollout = RolloutState::default();
    assert_eq!(weights(&rollout), [95, 5]);
    rollout.record_rollback("financial-data", "1.4.0", "errors", SystemTime::now());
    // Still two clusters (a pinned session's pick of 99 then lands on the stable one).
    assert_eq!(weights(&rollout), [100, 0]);
    rollout.record_promotion("financial-data", "1.4.0", "clean", SystemTime::now());
    assert_eq!(weights(&rollout), [0, 100]);
    // A decision about another release changes nothing.
    rollout.record_rollback("financial-data", "1.3.9", "old", SystemTime::now());
    assert_eq!(weights(&rollout), [95, 5]);
    // Nor one about a server without a canary.
    let mut other = RolloutState::default();
    other.record_rollback("weather", "9.9.9", "x", SystemTime::now());
    let outputs = render::render_with_rollout(&fleet, &options(), &other);
    assert_eq!(
        route_action(&outputs, "mcp-server/weather")["cluster"],
        "mcp-server/weather"
    );
}

#[test]
fn istio_splits_by_destination_and_patches_the_pick_header_and_cluster_metadata() {
    let outputs = render::render(&fleet(), &options());
    let docs = documents(output(&outputs, "istio/gateway-virtualservice.yaml"));
    let service = docs.iter().find(|d| d["kind"] == "VirtualService").unwrap();
    let http = service["spec"]["http"].as_array().unwrap();
    let route = http
        .iter()
        .find(|r| r["name"] == "mcp-server-financial-data")
        .unwrap();
    // No route-level authority: it would apply to both destinations.
    assert_eq!(route["rewrite"], json!({ "uri": "/mcp" }));
    assert_eq!(
        route["route"],
        json!([
            {
                "destination": { "host": "financial-data-mcp-v1-3-2.mcp-servers.svc.cluster.local", "port": { "number": 8000 } },
                "weight": 95,
                "headers": { "request": { "set": {
                    "host": "financial-data-mcp-v1-3-2.mcp-servers.svc.cluster.local:8000",
                    "x-mcp-server-version": "1.3.2",
                }}},
            },
            {
                "destination": { "host": "financial-data-mcp-v1-4-0.mcp-servers.svc.cluster.local", "port": { "number": 8443 } },
                "weight": 5,
                "headers": { "request": { "set": {
                    "host": "financial-data-mcp-v1-4-0.mcp-servers.svc.cluster.local:8443",
                    "x-mcp-server-version": "1.4.0",
                }}},
            },
        ])
    );
    let weather = http
        .iter()
        .find(|r| r["name"] == "mcp-server-weather")
        .unwrap();
    assert_eq!(weather["route"].as_array().unwrap().len(), 1);
    assert!(weather["route"][0].get("headers").is_none());
    // TLS origination for the canary's https endpoint, under a name of its own.
    let rules: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "DestinationRule")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["mcp-canary-financial-data"]);

    let filter = &documents(output(&outputs, "istio/gateway-envoyfilter.yaml"))[0];
    let patches = filter["spec"]["configPatches"].as_array().unwrap();
    let route_patch = patches
        .iter()
        .find(|p| {
            p["applyTo"] == "HTTP_ROUTE"
                && p["match"]["routeConfiguration"]["vhost"]["route"]["name"]
                    == "mcp-server-financial-data"
        })
        .unwrap();
    assert_eq!(
        route_patch["patch"]["value"]["route"]["weighted_clusters"],
        json!({ "header_name": "x-mcp-version-pick" })
    );
    let cluster_patches: Vec<(Value, Value)> = patches
        .iter()
        .filter(|p| p["applyTo"] == "CLUSTER" && p["patch"]["operation"] == "MERGE")
        .map(|p| {
            (
                p["match"]["cluster"].clone(),
                p["patch"]["value"]["metadata"]["filter_metadata"]["mcp_gateway"]["track"].clone(),
            )
        })
        .collect();
    // The canary server's two releases; weather keeps the route's version (no patch).
    assert_eq!(
        cluster_patches,
        [
            (
                json!({"service": "financial-data-mcp-v1-3-2.mcp-servers.svc.cluster.local", "portNumber": 8000}),
                json!("stable")
            ),
            (
                json!({"service": "financial-data-mcp-v1-4-0.mcp-servers.svc.cluster.local", "portNumber": 8443}),
                json!("canary")
            ),
        ]
    );
}

#[test]
fn monitoring_has_one_info_series_per_release() {
    let outputs = render::render(&fleet(), &options());
    let rules = yaml(output(&outputs, "monitoring/mcp-servers.rules.yaml"));
    let labels: Vec<(String, String, String)> = rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let l = &r["labels"];
            (
                l["mcp_server"].as_str().unwrap().to_owned(),
                l["mcp_server_version"].as_str().unwrap().to_owned(),
                l["mcp_track"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("financial-data", "1.3.2", "stable"),
        ("financial-data", "1.4.0", "canary"),
        ("weather", "2.0.1", "stable"),
    ];
    assert_eq!(
        labels,
        expected.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    );
}

#[test]
fn release_helpers_name_clusters_by_role() {
    let fleet = fleet();
    let server = &fleet.servers[0];
    let releases = envoy::releases(server);
    assert_eq!(releases.len(), 2);
    assert_eq!(releases[0].cluster(server), envoy::cluster_name(server));
    assert_eq!(
        releases[1].cluster(server),
        "mcp-server/financial-data/canary"
    );
    assert_eq!(releases[0].weight + releases[1].weight, 100);
    assert_eq!(envoy::releases(&fleet.servers[1]).len(), 1);
}

// --- the command

fn registry(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mcp-registry"))
        .args(args)
        .output()
        .expect("cannot run mcp-registry")
}

fn canary_weight(out: &Path) -> u64 {
    let routes = std::fs::read_to_string(out.join("envoy/routes.yaml")).unwrap();
    let outputs = [Output::new("envoy/routes.yaml", routes)];
    split(&route_action(&outputs, "mcp-server/financial-data"))[1].1
}

#[test]
fn render_reads_the_rollout_state_and_says_what_it_decided() {
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().to_str().unwrap();
    let render = || registry(&["render", FIXTURE, "--out", out_dir]);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    // No state file at the default place: a fleet with a canary is refused (a render
    // into a fresh directory would restore rolled-back canaries), nothing written.
    let state_file = mcp_registry::rollout::default_path(out.path());
    let run = render();
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    let stderr = text(&run.stderr);
    assert!(
        stderr.starts_with(&format!("{}: no rollout state file", state_file.display()))
            && stderr.contains("Pass --rollout-state <file>"),
        "{stderr}"
    );
    assert!(!out.path().join("envoy/routes.yaml").exists());
    // Given explicitly, a missing file is no decisions: the manifest's weight.
    let missing = out.path().join("missing.json");
    let run = registry(&[
        "render",
        FIXTURE,
        "--out",
        out_dir,
        "--rollout-state",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert_eq!(canary_weight(out.path()), 5);
    assert_eq!(text(&run.stderr), "");
    // The empty file `canary watch` creates when it starts: no decisions either.
    std::fs::create_dir_all(state_file.parent().unwrap()).unwrap();
    std::fs::write(&state_file, "{}\n").unwrap();
    let run = render();
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert_eq!(canary_weight(out.path()), 5);

    // The default place, <out>/rollout/state.json.
    let mut state = RolloutState::default();
    state.record_rollback(
        "financial-data",
        "1.4.0",
        "tool_call_error_ratio 0.4 > 0.0 + 0.02",
        SystemTime::now(),
    );
    state.save(&state_file).unwrap();
    let run = render();
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert_eq!(canary_weight(out.path()), 0);
    assert!(
        text(&run.stderr).contains("note: financial-data: canary 1.4.0 rolled back at "),
        "{}",
        text(&run.stderr)
    );
    // Rendering again on the same manifests keeps it.
    let run = render();
    assert_eq!(run.status.code(), Some(0));
    assert_eq!(canary_weight(out.path()), 0);

    // A promotion: all requests on the canary, and the reminder.
    state.record_promotion("financial-data", "1.4.0", "clean window", SystemTime::now());
    state.save(&state_file).unwrap();
    let run = render();
    assert_eq!(canary_weight(out.path()), 100);
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains("move version and endpoint to 1.4.0 and https://financial-data-mcp-v1-4-0.mcp-servers.svc.cluster.local:8443/mcp and drop gateway.canary"),
        "{stderr}"
    );

    // --rollout-state elsewhere; a malformed file stops the render with its name and
    // leaves the last rendered routes alone.
    let elsewhere = out.path().join("elsewhere.json");
    std::fs::write(
        &elsewhere,
        "{\"financial-data\": {\"state\": \"rolled_back\"}}",
    )
    .unwrap();
    let before = std::fs::read_to_string(out.path().join("envoy/routes.yaml")).unwrap();
    let run = registry(&[
        "render",
        FIXTURE,
        "--out",
        out_dir,
        "--rollout-state",
        elsewhere.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = text(&run.stderr);
    assert!(
        stderr.starts_with(&format!(
            "{}: malformed rollout state: missing field",
            elsewhere.display()
        )),
        "{stderr}"
    );
    assert_eq!(text(&run.stdout), "");
    assert_eq!(
        std::fs::read_to_string(out.path().join("envoy/routes.yaml")).unwrap(),
        before
    );
    // A valid file there is used instead of the default one (which says promoted).
    let mut there = RolloutState::default();
    there.record_rollback("financial-data", "1.4.0", "by hand", SystemTime::now());
    there.save(&elsewhere).unwrap();
    let run = registry(&[
        "render",
        FIXTURE,
        "--out",
        out_dir,
        "--rollout-state",
        elsewhere.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert_eq!(canary_weight(out.path()), 0);
}
