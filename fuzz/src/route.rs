//! The text form of the route a fuzzed request matches in the filter's fleet mode
//! (`servers_from_routes`), so that seeds can be written by hand. One line per entry
//! of the route's `mcp_gateway` metadata, which the filter reads as host properties:
//!
//! ```text
//! server_id: hr-directory          <- the route Envoy picks first
//! server_version: 2.0.1
//! tools: find_employee,list_roles
//! unregistered: true               <- a line without ": " is an empty value
//! after server_id: payments        <- the value once the route cache is cleared
//! after tools                      <- gone once the route cache is cleared
//! cluster server_version: 1.4.0    <- the metadata of the cluster that served it
//! cluster track: canary
//! ```
//!
//! Any key is taken (the filter reads `server_id`, `server_version`, `tools` and
//! `unregistered` of the route, `server_id`, `server_version` and `track` of the
//! cluster; others must change nothing); values stay raw bytes, so a route can carry
//! what the filter must refuse (not UTF-8, an invalid id or version).

use crate::input::find;
use mcp_filter_core::route::NAMESPACE;
use std::collections::HashMap;

/// A host property path.
pub type PropertyPath = Vec<String>;

/// The route's metadata before and after Envoy picks the route again, in the shape of
/// the core's `FakeHost::properties` and `FakeHost::properties_after_reroute`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSpec {
    pub before: HashMap<PropertyPath, Vec<u8>>,
    pub after: Vec<(PropertyPath, Option<Vec<u8>>)>,
}

const AFTER: &[u8] = b"after ";
const CLUSTER: &[u8] = b"cluster ";

impl RouteSpec {
    pub fn parse(text: &[u8]) -> RouteSpec {
        let mut spec = RouteSpec::default();
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let (rerouted, line) = match line.strip_prefix(AFTER) {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let (cluster, line) = match line.strip_prefix(CLUSTER) {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let (key, value) = match find(line, b": ") {
                Some(at) => (&line[..at], Some(&line[at + 2..])),
                None => (line, None),
            };
            let key = String::from_utf8_lossy(key);
            let path = match cluster {
                true => cluster_path(&key),
                false => metadata_path(&key),
            };
            if rerouted {
                spec.after.push((path, value.map(<[u8]>::to_vec)));
            } else {
                spec.before.insert(path, value.unwrap_or_default().to_vec());
            }
        }
        spec
    }
}

/// Where a proxy-wasm filter reads the matched route's metadata entry `key`.
pub fn metadata_path(key: &str) -> PropertyPath {
    ["xds", "route_metadata", "filter_metadata", NAMESPACE, key]
        .map(String::from)
        .to_vec()
}

/// Where a proxy-wasm filter reads the metadata entry `key` of the cluster a request
/// went to.
pub fn cluster_path(key: &str) -> PropertyPath {
    ["xds", "cluster_metadata", "filter_metadata", NAMESPACE, key]
        .map(String::from)
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_before_and_after_the_reroute() {
        let spec = RouteSpec::parse(
            b"server_id: hr\nunregistered\n\nafter server_id: a: b\nafter tools\nx: \xff",
        );
        assert_eq!(spec.before.len(), 3);
        assert_eq!(spec.before[&metadata_path("server_id")], b"hr");
        assert_eq!(spec.before[&metadata_path("unregistered")], b"");
        assert_eq!(spec.before[&metadata_path("x")], b"\xff");
        assert_eq!(
            spec.after,
            [
                (metadata_path("server_id"), Some(b"a: b".to_vec())),
                (metadata_path("tools"), None)
            ]
        );
    }

    #[test]
    fn cluster_entries() {
        let spec =
            RouteSpec::parse(b"server_id: fin\ncluster server_version: 1.4.0\ncluster track");
        assert_eq!(spec.before.len(), 3);
        assert_eq!(spec.before[&cluster_path("server_version")], b"1.4.0");
        assert_eq!(spec.before[&cluster_path("track")], b"");
        assert!(!spec.before.contains_key(&metadata_path("server_version")));
    }

    #[test]
    fn an_empty_route_has_no_metadata() {
        assert_eq!(RouteSpec::parse(b""), RouteSpec::default());
    }
}
