//! The whole filter as Envoy drives it (request headers, body chunks, response, log)
//! against the core's [`FakeHost`], with one host call failing where the input says,
//! in both of the filter's modes: one server (`server_id`) and a fleet
//! (`servers_from_routes`, the matched route's metadata names the server).
//!
//! Input: byte 0 is the number of the host call that fails (0: none; 255: the host
//! returns the rest of the input as a malformed header map), byte 1 the request body
//! chunk size (0: one chunk), byte 2 the response type (even: JSON, odd: SSE) and the
//! rest a request in the `input` text form; a line `--response--` after the body
//! starts the response body, and a line `--route--` after that (or after the body)
//! starts the route of the fleet mode in the `route` text form.
//!
//! Every input runs in both modes, so the corpus that fuzzing kept for the one-server
//! mode keeps its meaning there (no input had a `--route--` line) and also drives the
//! fleet mode from its first run; the route section only adds to an input. Without
//! one, the route names the one-server configuration's server and registered tool
//! (`server_id: fuzz`, `tools: get_account_balance`), so on the one server's MCP path
//! the two modes must end a request the same way. Host call numbers differ between
//! the modes (the fleet reads the route's metadata), so a failing call byte hits
//! other calls there: more failure points for the same corpus.
//!
//! Properties, in both modes: the filter never panics; a request that goes upstream
//! carries no gateway header the filter did not set itself, and exactly the labels the
//! core computes for it with its server (so no host failure lets a request through
//! unlabelled or mislabelled); a request ends with at most one audit record, a JSON
//! object, and exactly one for an MCP request when no host call failed.
//!
//! In the fleet mode, the server is the route's, read from its metadata by the
//! core's own route reader on a host that never fails:
//! - upstream, `x-mcp-server-id` is the route's server (never the client's) and the
//!   route Envoy holds after the route cache is cleared names that same server: a
//!   request re-routed to another server, to none or to an unregistered path stays
//!   here, refused 500 -31000 where it would have gone upstream on a stable route;
//! - a request on an unregistered route, or on a route whose metadata is unusable,
//!   never goes upstream; on an unregistered one it gets 404 -31014, on an unusable one
//!   500 -31000, and one audit record (when no host call failed); a route with no
//!   metadata forwards the request with no gateway header at all;
//! - an audit record names the route's server (`null` for an unregistered path or
//!   unusable metadata), and, for a request forwarded and allowed, the version of the
//!   cluster that served it when that cluster's metadata is usable (else the route's
//!   version): a version outside the rules never reaches the record or a stat name;
//! - a request that reached no server (refused, by the filter or later, or never
//!   forwarded) has the route's version in its record and none in its stats, whatever
//!   cluster Envoy holds: that cluster can be the client's own pick.

use crate::input::{find, FuzzRequest};
use crate::request::config;
use crate::route::RouteSpec;
use mcp_filter_core::error::{RequestError, GATEWAY_INTERNAL};
use mcp_filter_core::fake_host::{FakeHost, Reply};
use mcp_filter_core::flow::{RequestFlow, Verdict};
use mcp_filter_core::headers::{is_gateway_header, X_MCP_SERVER_ID};
use mcp_filter_core::host::Host;
use mcp_filter_core::metric_ids::MetricIds;
use mcp_filter_core::route::{
    cluster_release, route_server, routed_server, RouteError, RouteServer,
};
use mcp_filter_core::wire::parse_pairs;
use mcp_filter_core::{
    head_action, label_request_with_facts, FilterConfig, HeadAction, Labels, RequestFacts,
    RequestHead,
};
use serde::Deserialize;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::OnceLock;

const RESPONSE_MARK: &[u8] = b"\n--response--\n";
const ROUTE_MARK: &[u8] = b"\n--route--\n";
/// The route of an input without a route section: what the one-server configuration
/// ([`config`]) says, so that both modes must agree on it.
const DEFAULT_ROUTE: &[u8] = b"server_id: fuzz\ntools: get_account_balance";

/// A request header map.
pub type Headers = Vec<(String, Vec<u8>)>;

/// The fleet configuration: the one-server configuration's limits, the server from
/// the route.
pub fn fleet_config() -> &'static FilterConfig {
    static CONFIG: OnceLock<FilterConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        FilterConfig::from_json(br#"{"servers_from_routes":true,"max_body_bytes":65536}"#)
            .unwrap_or_else(|e| panic!("the fuzz fleet configuration is valid: {e}"))
    })
}

pub fn run(data: &[u8]) {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let single = one_server(&input);
    let fleet = routed(&input);
    if input.route.is_none() {
        check_modes_agree(&input, &single, &fleet);
    }
}

/// Runs one input in the one-server mode and checks it; returns the request headers
/// that went upstream.
pub fn drive(data: &[u8]) -> Option<Headers> {
    one_server(&Input::parse(data)?).forwarded
}

/// Runs one input in the fleet mode and checks it.
pub fn drive_routed(data: &[u8]) -> Option<Run> {
    Some(routed(&Input::parse(data)?))
}

/// One input, split into its parts.
struct Input<'a> {
    fail_at: u8,
    chunk: u8,
    response_kind: u8,
    /// Everything after the control bytes but the route section: the host's header
    /// map when `fail_at` is 255.
    rest: &'a [u8],
    request: FuzzRequest<'a>,
    response_body: &'a [u8],
    route: Option<&'a [u8]>,
}

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Option<Input<'a>> {
        let [fail_at, chunk, response_kind, rest @ ..] = data else {
            return None;
        };
        let (rest, route) = match find(rest, ROUTE_MARK) {
            Some(at) => (&rest[..at], Some(&rest[at + ROUTE_MARK.len()..])),
            None => (rest, None),
        };
        let (request_part, response_body) = match find(rest, RESPONSE_MARK) {
            Some(at) => (&rest[..at], &rest[at + RESPONSE_MARK.len()..]),
            None => (rest, &rest[..0]),
        };
        Some(Input {
            fail_at: *fail_at,
            chunk: *chunk,
            response_kind: *response_kind,
            rest,
            request: FuzzRequest::parse(request_part),
            response_body,
            route,
        })
    }

    fn malformed_map(&self) -> bool {
        self.fail_at == 255
    }

    /// The request header map the host holds.
    fn headers(&self) -> Headers {
        if self.malformed_map() {
            // The host's map is what the raw bytes say, when they say anything.
            return parse_pairs(self.rest)
                .unwrap_or_default()
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_vec()))
                .collect();
        }
        self.request
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), v.to_vec()))
            .collect()
    }

    /// The route of the fleet mode.
    fn route(&self) -> RouteSpec {
        RouteSpec::parse(self.route.unwrap_or(DEFAULT_ROUTE))
    }
}

/// What one request left behind.
pub struct Run {
    /// The request headers that went upstream, if the request did.
    pub forwarded: Option<Headers>,
    /// The host after the request (replies, audit record, route properties).
    pub host: FakeHost,
    /// The request header map the filter was handed.
    pub headers: Headers,
}

impl Run {
    /// The head the filter decides on (gateway headers play no part in it).
    fn head(&self) -> RequestHead {
        RequestHead::from_headers(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())))
    }

    /// True when a host call failed, or the host handed a malformed header map.
    fn failed(&self, input: &Input<'_>) -> bool {
        self.host.failed || input.malformed_map()
    }
}

/// Drives one request through a filter with `config` on a host holding `route`.
fn simulate(config: &FilterConfig, input: &Input<'_>, route: &RouteSpec) -> Run {
    let headers = input.headers();
    let mut host = FakeHost {
        headers: headers.clone(),
        fail_at: u32::from(input.fail_at),
        raw_header_map: input.malformed_map().then(|| input.rest.to_vec()),
        properties: route.before.clone(),
        properties_after_reroute: route.after.clone(),
        ..FakeHost::default()
    };
    let mut flow = RequestFlow::new(Rc::new(config.clone()), Rc::new(MetricIds::default()));

    // Request: Envoy hands the headers, then (headers paused) the body as it buffers,
    // reporting the total buffered size; a local reply ends the request path.
    let body = input.request.body;
    let mut forwarded = None;
    let verdict = flow.on_headers(&mut host, body.is_empty());
    if verdict == Verdict::Continue {
        forwarded = Some(host.headers.clone());
    }
    let step = if input.chunk == 0 {
        body.len()
    } else {
        usize::from(input.chunk)
    };
    let mut seen = 0;
    while seen < body.len() && host.replies.is_empty() {
        seen = (seen + step).min(body.len());
        let end = seen == body.len();
        let size = if forwarded.is_some() {
            // Not paused: each chunk passes on as it comes.
            host.body = body[seen - step.min(seen)..seen].to_vec();
            host.body.len()
        } else {
            host.body = body[..seen].to_vec();
            seen
        };
        let verdict = flow.on_body(&mut host, size, end);
        if forwarded.is_none() && end && verdict == Verdict::Continue {
            forwarded = Some(host.headers.clone());
        }
    }
    if !host.replies.is_empty() {
        forwarded = None;
    }

    if forwarded.is_some() {
        // Response: the upstream answers.
        // Odd: SSE (`% 2 == 1` rather than `is_multiple_of`, which is newer than the
        // workspace's rust-version).
        let content_type = if input.response_kind % 2 == 1 {
            "text/event-stream"
        } else {
            "application/json"
        };
        host.response_headers = vec![
            (":status".into(), "200".into()),
            ("content-type".into(), content_type.into()),
        ];
        flow.on_response_headers(&mut host, input.response_body.is_empty());
        let pieces = input
            .response_body
            .chunks(usize::from(input.response_kind / 2).max(1));
        let count = pieces.len();
        for (index, piece) in pieces.enumerate() {
            host.response_body = piece.to_vec();
            flow.on_response_body(&mut host, piece.len(), index + 1 == count);
        }
    }
    flow.on_log(&mut host);
    Run {
        forwarded,
        host,
        headers,
    }
}

fn one_server(input: &Input<'_>) -> Run {
    let config = config();
    let run = simulate(config, input, &RouteSpec::default());
    let head = run.head();
    let server = config.fixed_server_for(&head.path);
    if let Some(headers) = &run.forwarded {
        check_set_by_filter(&run.host, headers);
        match server {
            Some(server) => {
                let labels = expected_labels(config, server.as_str(), &head, input.request.body);
                check_labels(headers, &labels);
            }
            None => assert!(
                run.host.set_by_filter.is_empty(),
                "labelled a request off the MCP paths"
            ),
        }
    }
    let records = audit_records(&run.host);
    if server.is_some() && !run.failed(input) {
        assert_eq!(records.len(), 1, "no audit record for an MCP request");
    }
    run
}

fn routed(input: &Input<'_>) -> Run {
    let spec = input.route();
    let run = simulate(fleet_config(), input, &spec);
    check_routed(input, &spec, &run);
    run
}

/// The fleet mode's properties (module documentation) for `run`, the outcome of
/// `input` on a route that `spec` describes.
fn check_routed(input: &Input<'_>, spec: &RouteSpec, run: &Run) {
    let config = fleet_config();
    let route = RouteFacts::of(spec);
    let failed = run.failed(input);
    if let Some(headers) = &run.forwarded {
        check_set_by_filter(&run.host, headers);
        match &route.before {
            Ok(RouteServer::Server(server)) => {
                let labels = expected_labels(config, &server.id, &run.head(), input.request.body);
                check_labels(headers, &labels);
                assert_eq!(
                    header(headers, X_MCP_SERVER_ID),
                    [server.id.as_bytes()],
                    "upstream, the server is not the route's"
                );
                // The route Envoy holds now, after clearing the route cache (or not, if
                // that failed) is the one the request was labelled for.
                let now = routed_server(&mut metadata_host(run.host.properties.clone()), config);
                assert_eq!(
                    now,
                    Ok(Some(server.id.to_string())),
                    "went upstream on a route that is not its server's"
                );
                if !failed {
                    assert!(run.host.route_cleared, "the route was not picked again");
                    assert_eq!(
                        route.after,
                        Ok(Some(server.id.to_string())),
                        "went upstream re-routed"
                    );
                }
            }
            Ok(RouteServer::NotMcp) => assert!(
                run.host.set_by_filter.is_empty(),
                "labelled a request whose route names no server"
            ),
            Ok(RouteServer::Unregistered) => {
                panic!("a request on an unregistered route went upstream")
            }
            Err(error) => panic!("went upstream on a route with unusable metadata: {error}"),
        }
    }

    let records = audit_records(&run.host);
    if let Some(record) = records.first() {
        let server = match &route.before {
            Ok(RouteServer::Server(server)) => Some(&*server.id),
            Ok(RouteServer::Unregistered) | Err(_) => None,
            // Reading the route failed: refused and audited, with no server.
            Ok(RouteServer::NotMcp) if failed => None,
            other => panic!("an audit record for a request on the route {other:?}"),
        };
        // A failed read of the route's metadata leaves the request without a server.
        if !(failed && record.server_id.is_none()) {
            assert_eq!(
                record.server_id.as_deref(),
                server,
                "the audit record names another server than the route"
            );
        }
        if let (Ok(RouteServer::Server(server)), false) = (&route.before, failed) {
            // The cluster's properties as the host holds them at the end (an `after`
            // line can change them with the re-pick). The track is read (and must be
            // usable) only for an `initialize` that started a session: either
            // reading can be the filter's.
            let reached = run.forwarded.is_some() && record.decision == "allowed";
            let expected = [false, true].map(|with_track| {
                let mut host = metadata_host(run.host.properties.clone());
                cluster_release(&mut host, &server.id, with_track)
                    .ok()
                    .filter(|_| reached)
                    .and_then(|release| release.version)
                    .map(|v| v.as_str().to_owned())
                    .or_else(|| server.version.as_deref().map(str::to_owned))
            });
            assert!(
                expected.contains(&record.server_version),
                "the audit record's version {:?} is neither the cluster's nor the route's: {expected:?} (reached a server: {reached})",
                record.server_version
            );
            // The stats carry the record's version, as their one version tag, when a
            // release served the request; none otherwise.
            for name in &run.host.metric_names {
                let tags: Vec<&str> = name
                    .split(';')
                    .filter(|t| t.starts_with("version="))
                    .collect();
                let expected: Vec<String> = record
                    .server_version
                    .iter()
                    .filter(|_| reached)
                    .map(|v| format!("version={v}"))
                    .collect();
                assert_eq!(tags, expected, "the version tags of {name}");
            }
        }
    }
    if failed {
        return;
    }
    match &route.before {
        Ok(RouteServer::Server(server)) => {
            assert_eq!(records.len(), 1, "no audit record for an MCP request");
            if route.after != Ok(Some(server.id.to_string())) {
                check_reroute_refused(input, spec, run);
            }
        }
        Ok(RouteServer::Unregistered) => {
            let unregistered = RequestError::Unregistered(String::new());
            assert_eq!(records.len(), 1, "no audit record for an unregistered path");
            assert_eq!(records[0].error_code, Some(unregistered.code()));
            assert_eq!(
                replies(&run.host),
                [(unregistered.status(), Some(unregistered.code()))],
                "an unregistered path"
            );
        }
        Ok(RouteServer::NotMcp) => assert!(records.is_empty(), "an audit record off MCP"),
        // Unusable metadata: refused 500 -31000, audited with no server.
        Err(_) => {
            assert_eq!(
                records.len(),
                1,
                "no audit record for a route with unusable metadata"
            );
            assert_eq!(records[0].error_code, Some(-31000));
            assert_eq!(
                replies(&run.host),
                [(500, Some(-31000))],
                "a route with unusable metadata"
            );
        }
    }
}

/// A request on a route that changes server when picked again, with no host call
/// failing: where the same request on a stable route goes upstream, it is refused
/// 500 -31000; otherwise it ends the same way (refused before the re-pick).
fn check_reroute_refused(input: &Input<'_>, spec: &RouteSpec, run: &Run) {
    let stable = RouteSpec {
        before: spec.before.clone(),
        after: Vec::new(),
    };
    let on_stable_route = simulate(fleet_config(), input, &stable);
    if on_stable_route.forwarded.is_some() {
        assert_eq!(
            replies(&run.host),
            [(500, Some(GATEWAY_INTERNAL))],
            "a re-routed request"
        );
    } else {
        assert_eq!(run.host.replies, on_stable_route.host.replies);
    }
}

/// Without a route section, on the one server's MCP path and with no host call
/// failing, the fleet mode (route `DEFAULT_ROUTE`) ends the request as the one-server
/// mode does: the same headers upstream, or the same local reply.
fn check_modes_agree(input: &Input<'_>, single: &Run, fleet: &Run) {
    if single.failed(input) || fleet.failed(input) || !config().is_mcp_path(&single.head().path) {
        return;
    }
    assert_eq!(
        single.forwarded, fleet.forwarded,
        "the modes forward different headers"
    );
    assert_eq!(
        single.host.replies, fleet.host.replies,
        "the modes reply differently"
    );
}

/// What the route's metadata says, read by the core's route reader.
struct RouteFacts {
    /// The first-picked route.
    before: Result<RouteServer, RouteError>,
    /// The server of the route picked after the route cache is cleared.
    after: Result<Option<String>, RouteError>,
}

impl RouteFacts {
    fn of(spec: &RouteSpec) -> RouteFacts {
        let config = fleet_config();
        let mut host = metadata_host(spec.before.clone());
        // The path plays no part when the routes name the servers.
        let before = route_server(&mut host, config, "/");
        host.properties_after_reroute = spec.after.clone();
        let after = host
            .clear_route_cache()
            .map_err(RouteError::Host)
            .and_then(|()| routed_server(&mut host, config));
        RouteFacts { before, after }
    }
}

/// A host that holds only these properties and fails no call.
fn metadata_host(properties: HashMap<Vec<String>, Vec<u8>>) -> FakeHost {
    FakeHost {
        properties,
        ..FakeHost::default()
    }
}

/// What the core decides for a request that went upstream, labelled for `server`.
fn expected_labels(config: &FilterConfig, server: &str, head: &RequestHead, body: &[u8]) -> Labels {
    match head_action(config, server, head) {
        HeadAction::Forward(labels) => labels,
        HeadAction::ReadBody => {
            label_request_with_facts(config, server, head, body, &mut RequestFacts::default())
                .unwrap_or_else(|rejection| {
                    panic!("forwarded a request the core refuses: {rejection:?}")
                })
        }
        HeadAction::Reject(rejection) => {
            panic!("forwarded a request the core refuses by its head: {rejection:?}")
        }
        HeadAction::PassThrough => Labels::default(),
    }
}

/// Every gateway header upstream was set by the filter.
fn check_set_by_filter(host: &FakeHost, headers: &[(String, Vec<u8>)]) {
    for (name, value) in headers.iter().filter(|(n, _)| is_gateway_header(n)) {
        let set = host.set_by_filter.get(name);
        assert_eq!(
            set.map(String::as_bytes),
            Some(value.as_slice()),
            "{name} went upstream without the filter setting it"
        );
    }
}

/// The gateway headers upstream are exactly `labels`, one copy each.
fn check_labels(headers: &[(String, Vec<u8>)], labels: &Labels) {
    let mut upstream: Vec<(&str, &[u8])> = headers
        .iter()
        .filter(|(n, _)| is_gateway_header(n))
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let mut expected: Vec<(&str, &[u8])> = labels
        .headers
        .iter()
        .map(|(n, v)| (*n, v.as_bytes()))
        .collect();
    upstream.sort_unstable();
    expected.sort_unstable();
    assert_eq!(upstream, expected, "the gateway headers upstream");
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
        .collect()
}

/// The local replies, as (status, JSON-RPC error code).
fn replies(host: &FakeHost) -> Vec<(u16, Option<i64>)> {
    host.replies
        .iter()
        .map(|Reply { status, body, .. }| {
            let code = serde_json::from_slice::<ErrorReply>(body)
                .ok()
                .map(|reply| reply.error.code);
            (*status, code)
        })
        .collect()
}

/// The audit records the request left: at most one, each a JSON object.
fn audit_records(host: &FakeHost) -> Vec<Record> {
    let records: Vec<Record> = host
        .set_properties
        .iter()
        .filter(|(name, _)| name == "mcp_audit")
        .map(|(_, value)| {
            // Numbers are copied as sent (a JSON-RPC id of 400 digits), so the members
            // not read here are skipped rather than converted.
            serde_json::from_slice(value)
                .unwrap_or_else(|e| panic!("the audit record is not JSON: {e}"))
        })
        .collect();
    assert!(records.len() <= 1, "{} audit records", records.len());
    for record in &records {
        assert!(!record.decision.is_empty());
    }
    records
}

#[derive(Deserialize)]
struct Record {
    decision: String,
    server_id: Option<String>,
    server_version: Option<String>,
    error_code: Option<i64>,
}

#[derive(Deserialize)]
struct ErrorReply {
    error: ErrorMember,
}

#[derive(Deserialize)]
struct ErrorMember {
    code: i64,
}

#[cfg(test)]
mod tests;
