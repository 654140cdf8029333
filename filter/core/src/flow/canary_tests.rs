//! A server split between a stable and a canary release (issue 17): the version the
//! audit record and the metrics carry comes from the cluster that served the request,
//! and handshake-era sessions stay on the release that started them.

use super::tests::{on_route, McpPost};
use super::*;
use crate::fake_host::FakeHost;
use crate::headers::{X_MCP_SERVER_VERSION, X_MCP_VERSION_PICK};
use crate::host::Level;
use crate::metric_ids::MetricIds;
use crate::session_ref;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
const CALL: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t"}}"#;

fn cluster_key(key: &str) -> Vec<String> {
    [
        "xds",
        "cluster_metadata",
        "filter_metadata",
        "mcp_gateway",
        key,
    ]
    .map(String::from)
    .to_vec()
}

/// The metadata of the cluster Envoy picked (what render writes on every cluster).
fn on_cluster(host: &mut FakeHost, pairs: &[(&str, &str)]) {
    for (key, value) in pairs {
        host.properties
            .insert(cluster_key(key), value.as_bytes().to_vec());
    }
}

const STABLE: &[(&str, &str)] = &[
    ("server_id", "fin"),
    ("server_version", "1.3.2"),
    ("track", "stable"),
];
const CANARY: &[(&str, &str)] = &[
    ("server_id", "fin"),
    ("server_version", "1.4.0"),
    ("track", "canary"),
];

fn fleet(metrics: &Rc<MetricIds>) -> RequestFlow {
    let config = FilterConfig::from_json(br#"{"servers_from_routes":true}"#).unwrap();
    RequestFlow::new(Rc::new(config), metrics.clone())
}

/// One `tools/call` of `fin` (route version 1.3.2) answered with success; `cluster`
/// is the metadata of the cluster that served it, known from the response on.
fn call_served_by(metrics: &Rc<MetricIds>, cluster: &[(&str, &str)]) -> FakeHost {
    let mut flow = fleet(metrics);
    let mut host = FakeHost::mcp_post(&[]);
    on_route(
        &mut host,
        &[("server_id", "fin"), ("server_version", "1.3.2")],
    );
    // Envoy's first pick named the stable cluster; the router may still go elsewhere.
    on_cluster(&mut host, STABLE);
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    let size = host.body.len();
    assert_eq!(flow.on_body(&mut host, size, true), Verdict::Continue);
    for key in ["server_id", "server_version", "track"] {
        host.properties.remove(&cluster_key(key));
    }
    on_cluster(&mut host, cluster);
    host.response_headers = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
    ];
    flow.on_response_headers(&mut host, false);
    host.response_body = br#"{"jsonrpc":"2.0","id":3,"result":{}}"#.to_vec();
    let size = host.response_body.len();
    flow.on_response_body(&mut host, size, true);
    flow.on_log(&mut host);
    host
}

#[test]
fn the_record_and_metrics_name_the_release_that_served() {
    let metrics = Rc::new(MetricIds::default());
    let host = call_served_by(&metrics, CANARY);
    assert_eq!(host.record()["server_id"], "fin");
    assert_eq!(host.record()["server_version"], "1.4.0");
    assert_eq!(
        host.counters["mcp_tool_calls_total;server=fin;version=1.4.0;tool=other;outcome=success"],
        1,
        "{:?}",
        host.counters
    );
    assert_eq!(
        host.counters
            ["mcp_requests_total;server=fin;version=1.4.0;method=tools/call;decision=allowed"],
        1
    );
    assert_eq!(
        host.histograms["mcp_tool_call_duration_ms;server=fin;version=1.4.0;tool=other"].len(),
        1
    );
    // The stable release's calls are their own series, in the same VM.
    let host = call_served_by(&metrics, STABLE);
    assert_eq!(host.record()["server_version"], "1.3.2");
    assert_eq!(
        host.metric_names,
        [
            "mcp_requests_total;server=fin;version=1.3.2;method=tools/call;decision=allowed",
            "mcp_tool_calls_total;server=fin;version=1.3.2;tool=other;outcome=success",
            "mcp_tool_call_duration_ms;server=fin;version=1.3.2;tool=other",
        ]
    );
}

#[test]
fn without_a_usable_cluster_version_the_routes_version_stands() {
    let metrics = Rc::new(MetricIds::default());
    let bad_clusters: [&[(&str, &str)]; 5] = [
        // A direct response or a cluster nobody rendered.
        &[],
        // Values that would inject a stat tag, or are not versions at all.
        &[("server_id", "fin"), ("server_version", "1;tool=x")],
        &[("server_id", "fin"), ("server_version", "")],
        // Another server's cluster (an operator's route; refused by the authz-service).
        &[("server_id", "kb"), ("server_version", "9.9.9")],
        &[("server_id", "fin"), ("server_version", "1.4.0 beta")],
    ];
    for cluster in bad_clusters {
        let host = call_served_by(&metrics, cluster);
        assert_eq!(host.record()["server_version"], "1.3.2", "{cluster:?}");
        let warned = host.logs.iter().any(|(level, _)| *level == Level::Warning);
        assert_eq!(warned, !cluster.is_empty(), "{cluster:?}: {:?}", host.logs);
        assert!(
            host.counters
                .keys()
                .all(|name| name.contains(";server=fin;version=1.3.2;")),
            "{cluster:?}: {:?}",
            host.counters
        );
    }
}

#[test]
fn a_fixed_server_keeps_its_configured_version() {
    let config = FilterConfig::from_json(
        br#"{"server_id":"financial-data","server_version":"1.3.2","max_body_bytes":1000}"#,
    )
    .unwrap();
    let mut flow = RequestFlow::new(Rc::new(config), Rc::new(MetricIds::default()));
    let mut host = FakeHost::mcp_post(&[]);
    on_cluster(&mut host, CANARY);
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    let size = host.body.len();
    assert_eq!(flow.on_body(&mut host, size, true), Verdict::Continue);
    host.refuse.push("property");
    flow.on_log(&mut host);
    assert_eq!(host.record()["server_version"], "1.3.2");
    assert!(
        host.metric_names
            .iter()
            .all(|name| name.contains(";server=financial-data;version=1.3.2;")),
        "{:?}",
        host.metric_names
    );
}

#[test]
fn client_sent_release_headers_are_stripped() {
    let metrics = Rc::new(MetricIds::default());
    let mut flow = fleet(&metrics);
    let mut host = FakeHost::mcp_post(&[
        (X_MCP_VERSION_PICK, "99"),
        ("X-MCP-Version-Pick", "99"),
        (X_MCP_SERVER_VERSION, "1.4.0"),
    ]);
    on_route(
        &mut host,
        &[("server_id", "fin"), ("server_version", "1.3.2")],
    );
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    let size = host.body.len();
    assert_eq!(flow.on_body(&mut host, size, true), Verdict::Continue);
    assert!(host.route_cleared);
    for name in [
        X_MCP_VERSION_PICK,
        "X-MCP-Version-Pick",
        X_MCP_SERVER_VERSION,
    ] {
        assert!(host.header(name).is_empty(), "{name}");
        assert!(
            host.headers_at_reroute.iter().all(|(k, _)| k != name),
            "{name} reached the route pick"
        );
    }
}

/// Handshake-era requests of one client against a fleet server split 50/50, sharing the
/// VM's shared data and metric ids as a worker does.
struct Sessions {
    metrics: Rc<MetricIds>,
    /// What the VM keeps between requests: shared data and the metrics defined.
    vm: FakeHost,
    binding: [u8; 32],
}

impl Sessions {
    fn new() -> Sessions {
        Sessions {
            metrics: Rc::new(MetricIds::default()),
            vm: FakeHost::default(),
            binding: session_ref::binding_key(b"master key of at least 32 bytes!", "fin", "a"),
        }
    }

    /// One request (POST with `body`, or `method` without one) whose response came
    /// from `cluster`; returns the host after `on_log`.
    fn exchange(
        &mut self,
        method: &str,
        body: &str,
        session: Option<&str>,
        cluster: &[(&str, &str)],
        response_session: Option<&str>,
        extra: &[(&str, &str)],
    ) -> FakeHost {
        let mut host = FakeHost {
            headers: vec![
                (":method".into(), method.into()),
                (":path".into(), "/fin/mcp".into()),
            ],
            body: body.as_bytes().to_vec(),
            shared: std::mem::take(&mut self.vm.shared),
            metric_names: std::mem::take(&mut self.vm.metric_names),
            counters: std::mem::take(&mut self.vm.counters),
            histograms: std::mem::take(&mut self.vm.histograms),
            ..FakeHost::default()
        };
        for (k, v) in session.map(|s| ("mcp-session-id", s)).iter().chain(extra) {
            host.headers.push((k.to_string(), v.as_bytes().to_vec()));
        }
        let hex_key: String = self.binding.iter().map(|b| format!("{b:02x}")).collect();
        host.properties.insert(
            [
                "metadata",
                "filter_metadata",
                "envoy.filters.http.ext_authz",
                "session_key",
            ]
            .map(String::from)
            .to_vec(),
            hex_key.into_bytes(),
        );
        on_route(
            &mut host,
            &[("server_id", "fin"), ("server_version", "1.3.2")],
        );
        let mut flow = fleet(&self.metrics);
        let end = body.is_empty();
        let verdict = flow.on_headers(&mut host, end);
        if !end {
            assert_eq!(verdict, Verdict::Pause);
            let size = host.body.len();
            assert_eq!(flow.on_body(&mut host, size, true), Verdict::Continue);
        }
        assert!(host.replies.is_empty(), "{:?}", host.replies);
        on_cluster(&mut host, cluster);
        host.response_headers = vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/json".into()),
        ];
        if let Some(s) = response_session {
            host.response_headers
                .push(("mcp-session-id".into(), s.into()));
        }
        flow.on_response_headers(&mut host, false);
        let id = if body.contains("\"id\":1") { "1" } else { "2" };
        host.response_body = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#).into_bytes();
        let size = host.response_body.len();
        flow.on_response_body(&mut host, size, true);
        flow.on_log(&mut host);
        self.vm.shared = std::mem::take(&mut host.shared);
        self.vm.metric_names = host.metric_names.clone();
        self.vm.counters = host.counters.clone();
        self.vm.histograms = host.histograms.clone();
        host
    }

    /// An `initialize` served by `cluster`: the client's session reference.
    fn start(&mut self, cluster: &[(&str, &str)], server_session: &str) -> String {
        let host = self.exchange("POST", INIT, None, cluster, Some(server_session), &[]);
        let reference = host
            .response_headers
            .iter()
            .find(|(name, _)| name == "mcp-session-id")
            .map(|(_, value)| value.clone())
            .expect("a session reference");
        reference
    }
}

/// The pick header as Envoy's new route pick saw it (every copy).
fn pick_at_reroute(host: &FakeHost) -> Vec<&str> {
    host.headers_at_reroute
        .iter()
        .filter(|(k, _)| k == X_MCP_VERSION_PICK)
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
        .collect()
}

#[test]
fn a_session_stays_on_the_release_that_started_it() {
    let mut sessions = Sessions::new();
    let on_canary = sessions.start(CANARY, "sess-c");
    let on_stable = sessions.start(STABLE, "sess-s");
    // Later requests of each session: POST, the GET stream, DELETE; a forged pick
    // from the client is replaced, never added to.
    for (method, body) in [("POST", CALL), ("GET", ""), ("DELETE", "")] {
        let forged = [(X_MCP_VERSION_PICK, "0")];
        let host = sessions.exchange(method, body, Some(&on_canary), CANARY, None, &forged);
        assert_eq!(pick_at_reroute(&host), ["99"], "{method}");
        let forged = [(X_MCP_VERSION_PICK, "99")];
        let host = sessions.exchange(method, body, Some(&on_stable), STABLE, None, &forged);
        assert_eq!(pick_at_reroute(&host), ["0"], "{method}");
    }
    // Each session's life is counted under its release's version.
    let counters = &sessions.vm.counters;
    for version in ["1.3.2", "1.4.0"] {
        for event in ["started", "ended"] {
            let name = format!("mcp_sessions_total;server=fin;version={version};event={event}");
            assert_eq!(counters.get(&name), Some(&1), "{name}: {counters:?}");
        }
        let name = format!("mcp_session_tool_calls;server=fin;version={version}");
        assert_eq!(sessions.vm.histograms[&name], [1], "{name}");
    }
    // The slots are free again: the DELETEs ended them.
    assert!(sessions
        .vm
        .shared
        .values()
        .all(|(value, _)| value.is_empty()));
    let host = sessions.exchange("POST", CALL, None, CANARY, None, &[]);
    assert!(pick_at_reroute(&host).is_empty(), "no session, no pin");
}

#[test]
fn the_session_table_records_the_track() {
    let mut sessions = Sessions::new();
    let reference = sessions.start(CANARY, "sess-c");
    let id = session_ref::audit_ref(&reference);
    let (entry, _) = &sessions.vm.shared[&crate::session_table::slot_key("fin", &id)];
    let entry = crate::session_table::SessionEntry::decode(entry).unwrap();
    assert_eq!(entry.track, Some(Track::Canary));
    assert!(entry.encode().len() < 100, "entries stay small");
}

#[test]
fn sessions_without_a_track_are_not_pinned() {
    let mut sessions = Sessions::new();
    // A cluster with a version but no track (a server without a canary, rendered
    // before tracks existed, or by hand).
    let plain: &[(&str, &str)] = &[("server_id", "fin"), ("server_version", "1.3.2")];
    let reference = sessions.start(plain, "sess-1");
    let host = sessions.exchange("POST", CALL, Some(&reference), plain, None, &[]);
    assert!(pick_at_reroute(&host).is_empty());
    // A session id the table does not hold (another Envoy started it, or its slot was
    // taken over) is not pinned either.
    let stranger = session_ref::wrap(&sessions.binding, "sess-x").unwrap();
    let host = sessions.exchange("POST", CALL, Some(&stranger), CANARY, None, &[]);
    assert!(pick_at_reroute(&host).is_empty());
    assert!(host.header(X_MCP_VERSION_PICK).is_empty());
}

/// A POST of `body` on `fin`'s route (version 1.3.2) with the client's own pick for the
/// canary: Envoy picked the route's cluster by that header before the filter ran, so
/// the cluster it holds is the canary's until something asks for the route again.
fn picking_the_canary(body: &str) -> FakeHost {
    let mut host = FakeHost::with_headers(&[
        (":method", "POST"),
        (":path", "/fin/mcp"),
        (X_MCP_VERSION_PICK, "99"),
    ]);
    host.body = body.as_bytes().to_vec();
    on_route(
        &mut host,
        &[("server_id", "fin"), ("server_version", "1.3.2")],
    );
    on_cluster(&mut host, CANARY);
    host
}

/// No stat of `host` names a version.
fn assert_no_version(host: &FakeHost) {
    assert!(!host.metric_names.is_empty());
    assert!(
        host.metric_names
            .iter()
            .all(|name| !name.contains(";version=")),
        "{:?}",
        host.metric_names
    );
}

#[test]
fn a_request_the_filter_refuses_carries_no_release() {
    // An `initialize` whose Mcp-Method header says otherwise: refused here (400), so
    // the canary cluster Envoy holds is only the client's pick.
    let metrics = Rc::new(MetricIds::default());
    let mut flow = fleet(&metrics);
    let mut host = picking_the_canary(INIT);
    host.headers
        .push(("mcp-method".into(), b"tools/list".to_vec()));
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    let size = host.body.len();
    assert_eq!(flow.on_body(&mut host, size, true), Verdict::Pause);
    assert_eq!(host.replies.len(), 1);
    flow.on_log(&mut host);
    assert_eq!(host.record()["decision"], "invalid");
    assert_eq!(host.record()["method"], "initialize");
    assert_eq!(host.record()["server_version"], "1.3.2");
    assert_no_version(&host);
    assert_eq!(
        host.counters["mcp_negotiation_failures_total;server=fin;kind=initialize"], 1,
        "{:?}",
        host.counters
    );
    assert_eq!(
        host.counters["mcp_requests_total;server=fin;method=initialize;decision=invalid"],
        1
    );
}

#[test]
fn a_request_a_later_filter_refuses_carries_no_release() {
    // Forwarded by the filter, then refused by ext_authz (no token): no release served
    // it, whatever cluster Envoy holds at the end.
    let metrics = Rc::new(MetricIds::default());
    let mut flow = fleet(&metrics);
    let mut host = picking_the_canary(INIT);
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    let size = host.body.len();
    assert_eq!(flow.on_body(&mut host, size, true), Verdict::Continue);
    host.properties.insert(
        vec!["response".into(), "code_details".into()],
        b"ext_authz_denied".to_vec(),
    );
    host.response_headers = vec![(":status".into(), "401".into())];
    flow.on_response_headers(&mut host, true);
    flow.on_log(&mut host);
    assert_eq!(host.record()["decision"], "denied");
    assert_eq!(host.record()["server_version"], "1.3.2");
    assert_no_version(&host);
    assert_eq!(
        host.counters["mcp_requests_total;server=fin;method=initialize;decision=denied"], 1,
        "{:?}",
        host.counters
    );
    // Nor is a session pinned to the canary.
    assert!(host.shared.is_empty(), "{:?}", host.shared);
}

#[test]
fn a_request_that_never_went_on_carries_no_release() {
    // The client left while sending the body: never forwarded, yet `allowed` (nothing
    // refused it), with the client's pick still in Envoy's hands.
    let metrics = Rc::new(MetricIds::default());
    let mut flow = fleet(&metrics);
    let mut host = picking_the_canary(INIT);
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    assert_eq!(flow.on_body(&mut host, 10, false), Verdict::Pause);
    flow.on_log(&mut host);
    assert_eq!(host.record()["decision"], "allowed");
    assert_eq!(host.record()["server_version"], "1.3.2");
    assert_no_version(&host);
}

#[test]
fn an_initialize_the_canary_served_carries_its_release() {
    // The same request let through: the router's pick (here the canary) served it.
    let metrics = Rc::new(MetricIds::default());
    let mut flow = fleet(&metrics);
    let mut host = picking_the_canary(INIT);
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    let size = host.body.len();
    assert_eq!(flow.on_body(&mut host, size, true), Verdict::Continue);
    host.response_headers = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
    ];
    flow.on_response_headers(&mut host, false);
    host.response_body =
        br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"no"}}"#.to_vec();
    let size = host.response_body.len();
    flow.on_response_body(&mut host, size, true);
    flow.on_log(&mut host);
    assert_eq!(host.record()["decision"], "allowed");
    assert_eq!(host.record()["server_version"], "1.4.0");
    assert_eq!(
        host.counters["mcp_negotiation_failures_total;server=fin;version=1.4.0;kind=initialize"], 1,
        "{:?}",
        host.counters
    );
    assert!(host
        .metric_names
        .iter()
        .all(|name| name.contains(";server=fin;version=1.4.0;")));
}
