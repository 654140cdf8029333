//! `render`'s Istio sidecar shape (`istio-sidecar/envoyfilters.yaml`) byte for byte.
//! The example fleet goes through the ingress gateway, so none of its servers opts in
//! (the gateway's ext_authz takes the client's token off each call, and a sidecar
//! running the same filters would refuse every call that came that way); a fleet of
//! its own does, `tests/fixtures/sidecar/`, rendered against
//! `tests/golden-sidecar/envoyfilters.yaml` (`UPDATE_GOLDEN=1 cargo test -p
//! mcp-registry --test sidecar` rewrites it, as `tests/render.rs` does `tests/golden/`).

use mcp_registry::render::{self, sidecar, Options};
use mcp_registry::Fleet;
use std::path::{Path, PathBuf};

/// The sidecar file `render` writes for the fleet in `dir` (relative to the crate).
fn rendered_sidecar(dir: &str) -> String {
    let fleet = Fleet::load(Path::new(dir)).unwrap_or_else(|p| panic!("{p}"));
    // The same options as the example's golden render: no output depends on where
    // the checkout is.
    let options = Options {
        envoy_dir: Some(PathBuf::from("/etc/mcp-gateway/envoy")),
        ..Options::new(golden_dir())
    };
    let outputs = render::render(&fleet, &options);
    let mut files = outputs
        .into_iter()
        .filter(|o| o.path == Path::new(sidecar::FILE));
    let output = files.next().expect("render writes the sidecar file");
    assert!(files.next().is_none(), "{} written twice", sidecar::FILE);
    output.text
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden-sidecar")
}

/// The YAML documents of a rendered file (comments and empty documents left out).
fn documents(text: &str) -> Vec<serde_norway::Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|d: &serde_norway::Value| !d.is_null())
        .collect()
}

#[test]
fn the_sidecar_fixture_renders_as_its_golden_file() {
    let text = rendered_sidecar("tests/fixtures/sidecar");
    // Before any golden is (re)written: a fixture that no longer opts in would
    // otherwise pass against a golden file of no EnvoyFilter at all.
    let docs = documents(&text);
    assert_eq!(
        docs.len(),
        1,
        "one EnvoyFilter, for the one server:\n{text}"
    );
    assert_eq!(docs[0]["kind"].as_str(), Some("EnvoyFilter"));
    assert_eq!(
        docs[0]["metadata"]["name"].as_str(),
        Some("mcp-sidecar-financial-data")
    );
    let golden = golden_dir().join("envoyfilters.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&golden, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", golden.display()));
    assert!(
        text == expected,
        "{} differs from {} (UPDATE_GOLDEN=1 rewrites it):\n{text}",
        sidecar::FILE,
        golden.display()
    );
}

/// The example fleet is the demo's, reached through the ingress gateway (istio/):
/// no server of it may opt in to a sidecar too.
#[test]
fn no_example_server_has_a_sidecar() {
    let text = rendered_sidecar("examples");
    let names: Vec<String> = documents(&text)
        .iter()
        .map(|d| format!("{:?}", d["metadata"]["name"]))
        .collect();
    assert!(
        names.is_empty(),
        "EnvoyFilters for example servers: {names:?}"
    );
}
