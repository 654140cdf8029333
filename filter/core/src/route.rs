//! Which registered MCP server a request is for: the one decision that both the labels
//! and the audit record hang on.
//!
//! With a fixed `server_id` (one server per filter) it is that id on the configured MCP
//! paths. With `servers_from_routes` (a fleet, rendered by `mcp-registry`) the matched
//! route says it in its metadata, under the namespace [`NAMESPACE`]:
//! `server_id` and `server_version` on a registered server's route, `unregistered` on
//! the catch-all route of the MCP virtual host. A proxy-wasm filter reads a leaf of
//! route metadata as the raw string through `["xds","route_metadata",...]` in the
//! request callbacks (checked on Envoy 1.40); the filter has no per-route
//! configuration of its own.
//!
//! The filter clears the route cache after labelling, so Envoy picks the route again
//! with the new headers; the server is read again then ([`routed_server`]), and a
//! request that would reach another server than the one it was labelled for is
//! refused. On Envoy 1.40 that read still returns the route picked before (Envoy picks
//! again only when a later filter or the router asks; found by the issue 17 canary
//! spike), so the gate that holds is the authz-service's: ext_authz asks for the route
//! after the re-pick and sends its `mcp_gateway` metadata
//! (`route_metadata_context_namespaces`), and the service refuses a route whose server
//! is not the label's (tests/e2e/test_misrouting.py). The rendered routes match on the
//! path only, so this does not happen unless someone adds routes on gateway headers.
//!
//! Canary releases (issue 17): a server's route may split its traffic between two
//! clusters (`weighted_clusters`, stable first, canary last), and every server cluster
//! carries `mcp_gateway: {server_id, server_version, track}` in its own metadata. Which
//! cluster served a request is only certain in the response callbacks and `on_log`
//! (a pick can move after the filter's reads, see above), so [`cluster_release`] is
//! read there; the route's `server_version` (the stable one) is the fallback.

use crate::config::{FilterConfig, ServerId, ServerVersion};
use crate::host::{Host, HostStatus};
use std::rc::Rc;

/// The route metadata namespace `mcp-registry` writes.
pub const NAMESPACE: &str = "mcp_gateway";

const SERVER_ID: [&str; 5] = [
    "xds",
    "route_metadata",
    "filter_metadata",
    NAMESPACE,
    "server_id",
];
const SERVER_VERSION: [&str; 5] = [
    "xds",
    "route_metadata",
    "filter_metadata",
    NAMESPACE,
    "server_version",
];
const TOOLS: [&str; 5] = [
    "xds",
    "route_metadata",
    "filter_metadata",
    NAMESPACE,
    "tools",
];
const UNREGISTERED_TOOLS: [&str; 5] = [
    "xds",
    "route_metadata",
    "filter_metadata",
    NAMESPACE,
    "unregistered_tools",
];
const SCHEMA_DIGESTS: [&str; 5] = [
    "xds",
    "route_metadata",
    "filter_metadata",
    NAMESPACE,
    "schema_digests",
];
const UNREGISTERED: [&str; 5] = [
    "xds",
    "route_metadata",
    "filter_metadata",
    NAMESPACE,
    "unregistered",
];

const CLUSTER_SERVER_ID: [&str; 5] = [
    "xds",
    "cluster_metadata",
    "filter_metadata",
    NAMESPACE,
    "server_id",
];
const CLUSTER_SERVER_VERSION: [&str; 5] = [
    "xds",
    "cluster_metadata",
    "filter_metadata",
    NAMESPACE,
    "server_version",
];
const CLUSTER_TRACK: [&str; 5] = [
    "xds",
    "cluster_metadata",
    "filter_metadata",
    NAMESPACE,
    "track",
];

/// The registered server a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub id: Rc<str>,
    pub version: Option<Rc<str>>,
}

/// What the request's route says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteServer {
    /// A registered server's MCP endpoint.
    Server(Server),
    /// A path of the MCP virtual host that no server is registered at: 404, audited.
    Unregistered,
    /// Not MCP at all: gateway headers stripped, nothing else.
    NotMcp,
}

/// Why the route's metadata could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("cannot read the route metadata: {0}")]
    Host(HostStatus),
    #[error("the route's mcp_gateway metadata is invalid: {0}")]
    Invalid(String),
    #[error("the upstream cluster's mcp_gateway metadata is invalid: {0}")]
    Cluster(String),
}

/// The server of a request, as its route (or the fixed configuration) says.
pub fn route_server(
    host: &mut impl Host,
    config: &FilterConfig,
    path: &str,
) -> Result<RouteServer, RouteError> {
    if !config.servers_from_routes {
        return Ok(match config.fixed_server_for(path) {
            Some(id) => RouteServer::Server(Server {
                id: Rc::from(id.as_str()),
                version: config.server_version.as_ref().map(|v| Rc::from(v.as_str())),
            }),
            None => RouteServer::NotMcp,
        });
    }
    if let Some(id) = read(host, &SERVER_ID)? {
        let id = ServerId::try_from(id).map_err(RouteError::Invalid)?;
        let version = read(host, &SERVER_VERSION)?
            .map(ServerVersion::try_from)
            .transpose()
            .map_err(RouteError::Invalid)?;
        return Ok(RouteServer::Server(Server {
            id: Rc::from(id.as_str()),
            version: version.map(|v| Rc::from(v.as_str())),
        }));
    }
    Ok(match read(host, &UNREGISTERED)? {
        Some(_) => RouteServer::Unregistered,
        None => RouteServer::NotMcp,
    })
}

/// The server id of the route Envoy picks now (after the route cache was cleared);
/// `None` when the routes do not name servers (a fixed `server_id`) or the route has
/// none.
pub fn routed_server(
    host: &mut impl Host,
    config: &FilterConfig,
) -> Result<Option<String>, RouteError> {
    if !config.servers_from_routes {
        return Ok(None);
    }
    read(host, &SERVER_ID)
}

/// True when the route lists `tool` among its server's registered tools (route
/// metadata `tools`, comma-separated: MCP tool names hold no commas). Registered tools
/// get their own `mcp_tool` metric label; the registry bounds them, the client cannot.
pub fn lists_tool(host: &mut impl Host, tool: &str) -> Result<bool, RouteError> {
    Ok(read(host, &TOOLS)?.is_some_and(|tools| tools.split(',').any(|t| t == tool)))
}

/// What the route says about its server's tools, for list answers: the registered
/// names (sorted), whether tools the registry does not know are shown (`show`; absent
/// or anything else: hidden), and the registered schema digests (`None` without them:
/// no drift check). Read only for list calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTools {
    pub registered: Vec<String>,
    pub show_unregistered: bool,
    pub schema_digests: Option<String>,
}

pub fn route_tools(host: &mut impl Host, with_digests: bool) -> Result<RouteTools, RouteError> {
    let mut registered: Vec<String> = read(host, &TOOLS)?
        .map(|tools| {
            tools
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    registered.sort_unstable();
    let show_unregistered = read(host, &UNREGISTERED_TOOLS)?.as_deref() == Some("show");
    let schema_digests = if with_digests {
        read(host, &SCHEMA_DIGESTS)?
    } else {
        None
    };
    Ok(RouteTools {
        registered,
        show_unregistered,
        schema_digests,
    })
}

/// Which release of a server a cluster runs: cluster metadata `track`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Stable,
    Canary,
}

impl Track {
    pub fn parse(value: &str) -> Option<Track> {
        match value {
            "stable" => Some(Track::Stable),
            "canary" => Some(Track::Canary),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Track::Stable => "stable",
            Track::Canary => "canary",
        }
    }

    /// The `x-mcp-version-pick` value that makes Envoy pick this track's cluster.
    /// The rendered route's `weighted_clusters.header_name` takes the header's number
    /// as its random value: value % total weight (the render's weights sum to 100),
    /// walked in cluster order, stable first (checked on Envoy 1.40). 0 lands on the
    /// stable cluster, 99 on the canary; with the canary at 0 % (rolled back) 99 lands
    /// on the stable one too (a pinned session is then lost and the client starts
    /// over, as it would be with the canary gone).
    pub fn pick_value(self) -> &'static str {
        match self {
            Track::Stable => "0",
            Track::Canary => "99",
        }
    }
}

/// What the metadata of the cluster that served a request says about its release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    pub version: Option<ServerVersion>,
    pub track: Option<Track>,
}

/// The release of the cluster that served a request for `server_id`, from the
/// cluster's `mcp_gateway` metadata; empty when the cluster has none (a direct
/// response, a cluster nobody rendered). Read it in the response callbacks or
/// `on_log` only: before that, the cluster can still change. `track` is read only when
/// asked for (one host call less on every other request). A cluster whose metadata
/// names another server, or holds a version or track outside the rules, is an error:
/// the caller falls back to the route's version.
pub fn cluster_release(
    host: &mut impl Host,
    server_id: &str,
    with_track: bool,
) -> Result<Release, RouteError> {
    let version = read_cluster(host, &CLUSTER_SERVER_VERSION)?;
    let track = match with_track {
        true => read_cluster(host, &CLUSTER_TRACK)?,
        false => None,
    };
    if version.is_none() && track.is_none() {
        return Ok(Release::default());
    }
    // A request labelled for one server that reached another's cluster (an operator's
    // route; the authz-service refuses it) must not be counted under that version.
    if read_cluster(host, &CLUSTER_SERVER_ID)?.is_some_and(|id| id != server_id) {
        return Err(RouteError::Cluster(format!(
            "server_id is not {server_id:?}"
        )));
    }
    let version = version
        .map(ServerVersion::try_from)
        .transpose()
        .map_err(RouteError::Cluster)?;
    let track = track
        .map(|t| {
            Track::parse(&t)
                .ok_or_else(|| RouteError::Cluster("track must be stable or canary".into()))
        })
        .transpose()?;
    Ok(Release { version, track })
}

/// [`read`], with a non-UTF-8 value blamed on the cluster.
fn read_cluster(host: &mut impl Host, path: &[&str]) -> Result<Option<String>, RouteError> {
    read(host, path).map_err(|error| match error {
        RouteError::Invalid(message) => RouteError::Cluster(message),
        other => other,
    })
}

fn read(host: &mut impl Host, path: &[&str]) -> Result<Option<String>, RouteError> {
    match host.property(path).map_err(RouteError::Host)? {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| RouteError::Invalid("not UTF-8".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::FakeHost;

    fn fleet() -> FilterConfig {
        FilterConfig::from_json(br#"{"servers_from_routes":true}"#).unwrap()
    }

    fn with_metadata(pairs: &[(&str, &str)]) -> FakeHost {
        let mut host = FakeHost::default();
        for (key, value) in pairs {
            let path = ["xds", "route_metadata", "filter_metadata", NAMESPACE, key];
            host.properties.insert(
                path.iter().map(|s| s.to_string()).collect(),
                value.as_bytes().to_vec(),
            );
        }
        host
    }

    #[test]
    fn a_fixed_server_owns_its_paths_only() {
        let config = FilterConfig::from_json(
            br#"{"server_id":"fin","server_version":"1.3.2","mcp_paths":["/a"]}"#,
        )
        .unwrap();
        let mut host = FakeHost::default();
        let server = route_server(&mut host, &config, "/a?x=1").unwrap();
        assert_eq!(
            server,
            RouteServer::Server(Server {
                id: "fin".into(),
                version: Some("1.3.2".into())
            })
        );
        assert_eq!(
            route_server(&mut host, &config, "/b").unwrap(),
            RouteServer::NotMcp
        );
        assert_eq!(host.calls, 0, "no host call for a fixed server");
    }

    #[test]
    fn the_route_names_the_server_or_says_unregistered() {
        let mut host = with_metadata(&[("server_id", "hr"), ("server_version", "2.0.1")]);
        assert_eq!(
            route_server(&mut host, &fleet(), "/anything").unwrap(),
            RouteServer::Server(Server {
                id: "hr".into(),
                version: Some("2.0.1".into())
            })
        );
        let mut host = with_metadata(&[("server_id", "hr")]);
        let RouteServer::Server(server) = route_server(&mut host, &fleet(), "/").unwrap() else {
            panic!("a server")
        };
        assert_eq!(server.version, None);
        let mut host = with_metadata(&[("unregistered", "true")]);
        assert_eq!(
            route_server(&mut host, &fleet(), "/x").unwrap(),
            RouteServer::Unregistered
        );
        let mut host = FakeHost::default();
        assert_eq!(
            route_server(&mut host, &fleet(), "/x").unwrap(),
            RouteServer::NotMcp
        );
    }

    fn with_cluster(pairs: &[(&str, &str)]) -> FakeHost {
        let mut host = FakeHost::default();
        for (key, value) in pairs {
            let path = ["xds", "cluster_metadata", "filter_metadata", NAMESPACE, key];
            host.properties.insert(
                path.iter().map(|s| s.to_string()).collect(),
                value.as_bytes().to_vec(),
            );
        }
        host
    }

    #[test]
    fn the_cluster_names_the_release_that_served() {
        let mut host = with_cluster(&[
            ("server_id", "fin"),
            ("server_version", "1.4.0+build:7"),
            ("track", "canary"),
        ]);
        let release = cluster_release(&mut host, "fin", true).unwrap();
        assert_eq!(release.version.unwrap().as_str(), "1.4.0+build:7");
        assert_eq!(release.track, Some(Track::Canary));
        let calls = host.calls;
        let release = cluster_release(&mut host, "fin", false).unwrap();
        assert_eq!(release.track, None, "the track only when asked for");
        assert_eq!(host.calls - calls, 2, "version and server_id, not track");

        // Without a server_id the version is taken (a hand-written cluster).
        let mut host = with_cluster(&[("server_version", "2.0.1"), ("track", "stable")]);
        let release = cluster_release(&mut host, "fin", true).unwrap();
        assert_eq!(release.version.unwrap().as_str(), "2.0.1");
        assert_eq!(release.track, Some(Track::Stable));

        // No metadata (a direct response, an unrendered cluster): one read, nothing.
        let mut host = FakeHost::default();
        assert_eq!(
            cluster_release(&mut host, "fin", false).unwrap(),
            Release::default()
        );
        assert_eq!(host.calls, 1);
    }

    #[test]
    fn a_cluster_release_outside_the_rules_is_an_error() {
        let cases: [&[(&str, &str)]; 4] = [
            &[("server_id", "kb"), ("server_version", "1.0.0")],
            &[("server_id", "fin"), ("server_version", "1;tool=x")],
            &[("server_id", "fin"), ("server_version", "")],
            &[("server_id", "fin"), ("track", "beta")],
        ];
        for pairs in cases {
            let mut host = with_cluster(pairs);
            assert!(
                matches!(
                    cluster_release(&mut host, "fin", true),
                    Err(RouteError::Cluster(_))
                ),
                "{pairs:?}"
            );
        }
        let mut host = with_cluster(&[("server_version", "1.0.0")]);
        host.properties.insert(
            CLUSTER_SERVER_VERSION.map(String::from).to_vec(),
            b"\xff".to_vec(),
        );
        assert!(matches!(
            cluster_release(&mut host, "fin", false),
            Err(RouteError::Cluster(_))
        ));
        host.refuse.push("property");
        assert!(matches!(
            cluster_release(&mut host, "fin", false),
            Err(RouteError::Host(_))
        ));
    }

    #[test]
    fn tracks_pick_their_cluster_by_number() {
        assert_eq!(Track::parse("stable"), Some(Track::Stable));
        assert_eq!(Track::parse("canary"), Some(Track::Canary));
        assert_eq!(Track::parse("Canary"), None);
        // Stable first, canary last, weights summing to 100 (the render's contract):
        // 0 is always inside the first cluster's share, 99 inside the last one's.
        for canary_weight in 1..100u32 {
            let stable_weight = 100 - canary_weight;
            let pick = |value: u32| {
                if value % 100 < stable_weight {
                    "stable"
                } else {
                    "canary"
                }
            };
            assert_eq!(pick(Track::Stable.pick_value().parse().unwrap()), "stable");
            assert_eq!(pick(Track::Canary.pick_value().parse().unwrap()), "canary");
        }
    }

    #[test]
    fn the_route_lists_its_servers_tools() {
        let mut host = with_metadata(&[("server_id", "hr"), ("tools", "find,list_roles")]);
        assert!(lists_tool(&mut host, "find").unwrap());
        assert!(lists_tool(&mut host, "list_roles").unwrap());
        assert!(!lists_tool(&mut host, "fin").unwrap());
        assert!(!lists_tool(&mut host, "find,list_roles").unwrap());
        let mut host = with_metadata(&[("server_id", "hr")]);
        assert!(!lists_tool(&mut host, "find").unwrap());
    }

    #[test]
    fn bad_metadata_and_host_failures_are_errors() {
        let mut host = with_metadata(&[("server_id", "a b")]);
        assert!(matches!(
            route_server(&mut host, &fleet(), "/"),
            Err(RouteError::Invalid(_))
        ));
        let mut host = with_metadata(&[("server_id", "hr"), ("server_version", "")]);
        assert!(matches!(
            route_server(&mut host, &fleet(), "/"),
            Err(RouteError::Invalid(_))
        ));
        let mut host = with_metadata(&[("server_id", "hr")]);
        host.refuse.push("property");
        assert!(matches!(
            route_server(&mut host, &fleet(), "/"),
            Err(RouteError::Host(_))
        ));
    }
}
