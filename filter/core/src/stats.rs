//! Names of the filter's Envoy stats, with their labels encoded in the name.
//!
//! proxy-wasm metrics have no labels (proxy_define_metric takes only a name), so each
//! label set is its own stat named `<metric>;<label>=<value>;...`. The bootstrap's
//! `stats_config.stats_tags` (shipped in envoy/fleet.yaml, so in every rendered config) has one extraction rule
//! per label, so `/stats/prometheus` shows `mcp_tool_calls_total{mcp_server=...}`.
//! Envoy puts wasm stats under the custom namespace `wasmcustom.`, which the
//! Prometheus output drops. Label values never contain `;` or `=`: server ids,
//! server versions (`ServerVersion`: `A-Z a-z 0-9 . _ + : -`) and allow-listed tool
//! names are checked at configuration or when read from metadata, everything else is
//! fixed.
//!
//! Every stat of a server carries its version (`;version=<v>`, the `mcp_server_version`
//! label) whenever the server has one, not only while a canary runs: a server's series
//! keep their names when a canary starts, and `sum by (mcp_server)` still adds up all
//! versions. The exception: a request that reached no server (refused by the gateway,
//! or never finished) has no version, since no release served it and the cluster
//! Envoy holds for it may be the client's own pick (see `Call::finish`).

use crate::config::FilterConfig;
use crate::drift::DriftKind;
use crate::host::MetricKind;
use crate::outcome::{Decision, Outcome};
use crate::reply_scan::Reply;
use std::fmt;
use std::rc::Rc;

/// The label value for tools outside the allow-list.
pub const OTHER: &str = "other";

/// The labels naming a server in every one of its stats: `server=<id>` and, when the
/// server has a version, `;version=<version>` (the `mcp_server_version` tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLabel<'a> {
    pub id: &'a str,
    pub version: Option<&'a str>,
}

impl<'a> ServerLabel<'a> {
    pub fn new(id: &'a str, version: Option<&'a str>) -> Self {
        ServerLabel { id, version }
    }
}

impl fmt::Display for ServerLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server={}", self.id)?;
        match self.version {
            Some(version) => write!(f, ";version={version}"),
            None => Ok(()),
        }
    }
}

/// JSON-RPC methods of MCP (2025-03-26 .. 2026-07-28) that get their own label;
/// anything else is `other`, so a client cannot create stats by inventing methods.
const METHODS: [&str; 24] = [
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "subscriptions/listen",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/message",
];

/// The `mcp_tool` label of a tool: its place in the allow-list, a tool the route's
/// server is registered with (`servers_from_routes`), or `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolLabel {
    Listed(usize),
    Registered(ToolKey),
    Other,
}

/// A registered tool name interned for the metric id cache (see `metric_ids`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ToolKey(pub u32);

/// The `mcp_tool` label of a tool name.
pub fn tool_label(config: &FilterConfig, tool: &str) -> ToolLabel {
    match config.metrics.tool_names.index(tool) {
        Some(index) => ToolLabel::Listed(index),
        None => ToolLabel::Other,
    }
}

impl ToolLabel {
    /// The label value; `registered` holds the interned registered tool names.
    pub fn as_str<'a>(self, config: &'a FilterConfig, registered: &'a [Rc<str>]) -> &'a str {
        match self {
            ToolLabel::Listed(index) => config.metrics.tool_names.get(index).unwrap_or(OTHER),
            ToolLabel::Registered(ToolKey(key)) => usize::try_from(key)
                .ok()
                .and_then(|i| registered.get(i))
                .map_or(OTHER, |name| name),
            ToolLabel::Other => OTHER,
        }
    }
}

/// One of the filter's stats with its labels, as a small value: the per-request key of
/// the metric id cache (`metric_ids`), so a request formats no stat name; the name is
/// written once, when the stat is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stat {
    Requests {
        method: &'static str,
        decision: Decision,
    },
    ToolCalls {
        tool: ToolLabel,
        outcome: &'static str,
    },
    ToolCallDuration {
        tool: ToolLabel,
    },
    NegotiationFailures(NegotiationFailure),
    Sessions {
        event: &'static str,
    },
    SessionDuration,
    SessionToolCalls,
    /// A `tools/call` whose arguments do not match the registered schema: `refused`
    /// (validation `enforce`) or `reported` (`report`).
    ArgumentViolations {
        tool: ToolLabel,
        outcome: &'static str,
    },
    SchemaDrift(DriftKind),
}

impl Stat {
    pub fn kind(self) -> MetricKind {
        match self {
            Stat::ToolCallDuration { .. } | Stat::SessionDuration | Stat::SessionToolCalls => {
                MetricKind::Histogram
            }
            _ => MetricKind::Counter,
        }
    }

    /// The Envoy stat name, labels included; `registered` holds the interned
    /// registered tool names ([`ToolLabel::Registered`]).
    pub fn name(
        self,
        config: &FilterConfig,
        server: ServerLabel<'_>,
        registered: &[Rc<str>],
    ) -> String {
        match self {
            Stat::Requests { method, decision } => requests(server, method, decision),
            Stat::ToolCalls { tool, outcome } => {
                tool_calls(server, tool.as_str(config, registered), outcome)
            }
            Stat::ToolCallDuration { tool } => {
                tool_call_duration(server, tool.as_str(config, registered))
            }
            Stat::NegotiationFailures(kind) => negotiation_failures(server, kind),
            Stat::Sessions { event } => sessions(server, event),
            Stat::SessionDuration => session_duration(server),
            Stat::SessionToolCalls => session_tool_calls(server),
            Stat::ArgumentViolations { tool, outcome } => {
                argument_violations(server, tool.as_str(config, registered), outcome)
            }
            Stat::SchemaDrift(kind) => schema_drift(server, kind),
        }
    }
}

/// The `mcp_method` label: the JSON-RPC method, `response` for a client's response
/// message, `http_<verb>` for requests without a JSON-RPC body (handshake-era GET
/// stream, DELETE), `invalid` for a body that could not be read.
pub fn method_label(method: Option<&str>, is_response: bool, http_method: &str) -> &'static str {
    if let Some(method) = method {
        return METHODS
            .iter()
            .find(|known| **known == method)
            .copied()
            .unwrap_or(OTHER);
    }
    if is_response {
        return "response";
    }
    match http_method {
        "POST" => "invalid",
        "GET" => "http_get",
        "DELETE" => "http_delete",
        "OPTIONS" => "http_options",
        "HEAD" => "http_head",
        _ => "http_other",
    }
}

/// The `mcp_outcome` label: the output status of an allowed call, else the decision.
pub fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome.decision {
        Decision::Allowed => outcome.status.as_str(),
        other => other.as_str(),
    }
}

/// Counter: every MCP request, by server, method and decision.
pub fn requests(server: ServerLabel<'_>, method: &str, decision: Decision) -> String {
    format!(
        "mcp_requests_total;{server};method={method};decision={}",
        decision.as_str()
    )
}

/// Counter: `tools/call` requests by server, tool and outcome.
pub fn tool_calls(server: ServerLabel<'_>, tool: &str, outcome: &str) -> String {
    format!("mcp_tool_calls_total;{server};tool={tool};outcome={outcome}")
}

/// Histogram (milliseconds): allowed `tools/call` latency by server and tool.
pub fn tool_call_duration(server: ServerLabel<'_>, tool: &str) -> String {
    format!("mcp_tool_call_duration_ms;{server};tool={tool}")
}

/// Counter: `tools/call` requests whose arguments do not validate against the tool's
/// registered schema, by server, tool and what happened (`refused`, `reported`).
pub fn argument_violations(server: ServerLabel<'_>, tool: &str, outcome: &str) -> String {
    format!("mcp_argument_violations_total;{server};tool={tool};outcome={outcome}")
}

/// Counter: changes of a server's advertised tools against its registration, by server
/// and kind (`extra`, `missing`, `changed`); counted once per change, not per answer.
pub fn schema_drift(server: ServerLabel<'_>, kind: DriftKind) -> String {
    format!("mcp_schema_drift_total;{server};kind={}", kind.as_str())
}

/// Counter: failed capability/version negotiation by server and kind.
pub fn negotiation_failures(server: ServerLabel<'_>, kind: NegotiationFailure) -> String {
    format!(
        "mcp_negotiation_failures_total;{server};kind={}",
        kind.as_str()
    )
}

/// Counter: handshake-era sessions by server and event (`started`, `ended`,
/// `untracked` when the host refused to write the session's slot; the table is a ring
/// of fixed slots, so it is never full: a new session takes over an old one's slot).
pub fn sessions(server: ServerLabel<'_>, event: &str) -> String {
    format!("mcp_sessions_total;{server};event={event}")
}

/// Histogram (milliseconds): duration of handshake-era sessions that ended (DELETE).
pub fn session_duration(server: ServerLabel<'_>) -> String {
    format!("mcp_session_duration_ms;{server}")
}

/// Histogram: tool calls made in each handshake-era session that ended.
pub fn session_tool_calls(server: ServerLabel<'_>) -> String {
    format!("mcp_session_tool_calls;{server}")
}

/// The kinds of negotiation failure on-call engineers watch for: a spike means a
/// client or server release speaks a version the other side does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NegotiationFailure {
    /// `initialize` (handshake era) did not succeed.
    Initialize,
    /// `server/discover` (2026-07-28) did not succeed.
    ServerDiscover,
    /// Any request answered with UnsupportedProtocolVersion (-32022; -32004 in
    /// drafts before the 2026-07-28 renumbering).
    UnsupportedVersion,
}

impl NegotiationFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            NegotiationFailure::Initialize => "initialize",
            NegotiationFailure::ServerDiscover => "server_discover",
            NegotiationFailure::UnsupportedVersion => "unsupported_version",
        }
    }
}

/// Whether a request's end is a negotiation failure. Refusals by authz and rate
/// limits are not: they are counted by decision instead.
pub fn negotiation_failure(
    method: Option<&str>,
    outcome: &Outcome,
    reply: Option<Reply>,
) -> Option<NegotiationFailure> {
    if !matches!(outcome.decision, Decision::Allowed | Decision::Invalid) {
        return None;
    }
    if matches!(
        reply,
        Some(Reply::Error {
            code: Some(-32022 | -32004)
        })
    ) {
        return Some(NegotiationFailure::UnsupportedVersion);
    }
    if outcome.status == crate::outcome::OutputStatus::Success {
        return None;
    }
    match method {
        Some("initialize") => Some(NegotiationFailure::Initialize),
        Some("server/discover") => Some(NegotiationFailure::ServerDiscover),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::OutputStatus;

    const FIN: ServerLabel<'static> = ServerLabel {
        id: "fin",
        version: None,
    };

    fn config() -> FilterConfig {
        FilterConfig::from_json(br#"{"server_id":"fin","metrics":{"tool_names":["get.balance"]}}"#)
            .unwrap()
    }

    #[test]
    fn labels_are_bounded() {
        let config = config();
        assert_eq!(
            tool_label(&config, "get.balance").as_str(&config, &[]),
            "get.balance"
        );
        assert_eq!(tool_label(&config, "made-up-123"), ToolLabel::Other);
        assert_eq!(
            tool_label(&config, "made-up-123").as_str(&config, &[]),
            OTHER
        );
        let registered: [Rc<str>; 1] = [Rc::from("find_employee")];
        let label = ToolLabel::Registered(ToolKey(0));
        assert_eq!(label.as_str(&config, &registered), "find_employee");
        assert_eq!(
            ToolLabel::Registered(ToolKey(1)).as_str(&config, &registered),
            OTHER
        );
        assert_eq!(
            method_label(Some("tools/call"), false, "POST"),
            "tools/call"
        );
        assert_eq!(method_label(Some("x/y;z=1"), false, "POST"), OTHER);
        assert_eq!(method_label(None, true, "POST"), "response");
        assert_eq!(method_label(None, false, "POST"), "invalid");
        assert_eq!(method_label(None, false, "GET"), "http_get");
    }

    #[test]
    fn names_carry_their_labels() {
        assert_eq!(
            tool_calls(FIN, "get.balance", "success"),
            "mcp_tool_calls_total;server=fin;tool=get.balance;outcome=success"
        );
        assert_eq!(
            requests(FIN, "tools/call", Decision::RateLimited),
            "mcp_requests_total;server=fin;method=tools/call;decision=rate_limited"
        );
    }

    #[test]
    fn a_servers_version_follows_its_id_in_every_name() {
        let config = config();
        let v = ServerLabel::new("fin", Some("1.4.0+build:7"));
        assert_eq!(v.to_string(), "server=fin;version=1.4.0+build:7");
        let tool = tool_label(&config, "get.balance");
        let names = [
            Stat::Requests {
                method: "tools/call",
                decision: Decision::Allowed,
            }
            .name(&config, v, &[]),
            Stat::ToolCalls {
                tool,
                outcome: "error",
            }
            .name(&config, v, &[]),
            Stat::ToolCallDuration { tool }.name(&config, v, &[]),
            Stat::NegotiationFailures(NegotiationFailure::Initialize).name(&config, v, &[]),
            Stat::Sessions { event: "started" }.name(&config, v, &[]),
            Stat::SessionDuration.name(&config, v, &[]),
            Stat::SessionToolCalls.name(&config, v, &[]),
            Stat::ArgumentViolations {
                tool,
                outcome: "reported",
            }
            .name(&config, v, &[]),
            Stat::SchemaDrift(DriftKind::Changed).name(&config, v, &[]),
        ];
        assert_eq!(
            names,
            [
                "mcp_requests_total;server=fin;version=1.4.0+build:7;method=tools/call;decision=allowed",
                "mcp_tool_calls_total;server=fin;version=1.4.0+build:7;tool=get.balance;outcome=error",
                "mcp_tool_call_duration_ms;server=fin;version=1.4.0+build:7;tool=get.balance",
                "mcp_negotiation_failures_total;server=fin;version=1.4.0+build:7;kind=initialize",
                "mcp_sessions_total;server=fin;version=1.4.0+build:7;event=started",
                "mcp_session_duration_ms;server=fin;version=1.4.0+build:7",
                "mcp_session_tool_calls;server=fin;version=1.4.0+build:7",
                "mcp_argument_violations_total;server=fin;version=1.4.0+build:7;tool=get.balance;outcome=reported",
                "mcp_schema_drift_total;server=fin;version=1.4.0+build:7;kind=changed",
            ]
        );
        // Every `;` starts one tag the bootstrap's rules extract: nothing else in the
        // name can look like one.
        for name in &names {
            let tags: Vec<&str> = name.split(';').skip(1).collect();
            assert!(tags.iter().all(|t| t.matches('=').count() == 1), "{name}");
        }
    }

    #[test]
    fn stat_keys_name_their_stats() {
        let config = config();
        let tool = tool_label(&config, "get.balance");
        let calls = Stat::ToolCalls {
            tool,
            outcome: "success",
        };
        assert_eq!(
            calls.name(&config, FIN, &[]),
            "mcp_tool_calls_total;server=fin;tool=get.balance;outcome=success"
        );
        assert_eq!(calls.kind(), MetricKind::Counter);
        let duration = Stat::ToolCallDuration {
            tool: ToolLabel::Other,
        };
        assert_eq!(
            duration.name(&config, FIN, &[]),
            "mcp_tool_call_duration_ms;server=fin;tool=other"
        );
        assert_eq!(duration.kind(), MetricKind::Histogram);
        assert_eq!(
            Stat::Sessions { event: "ended" }.name(&config, FIN, &[]),
            "mcp_sessions_total;server=fin;event=ended"
        );
    }

    #[test]
    fn negotiation_failures_by_kind() {
        let allowed = |status| Outcome {
            decision: Decision::Allowed,
            status,
            error_code: None,
        };
        let version_error = Some(Reply::Error { code: Some(-32022) });
        assert_eq!(
            negotiation_failure(
                Some("tools/list"),
                &allowed(OutputStatus::Error),
                version_error
            ),
            Some(NegotiationFailure::UnsupportedVersion)
        );
        assert_eq!(
            negotiation_failure(Some("initialize"), &allowed(OutputStatus::Error), None),
            Some(NegotiationFailure::Initialize)
        );
        assert_eq!(
            negotiation_failure(
                Some("server/discover"),
                &allowed(OutputStatus::Timeout),
                None
            ),
            Some(NegotiationFailure::ServerDiscover)
        );
        assert_eq!(
            negotiation_failure(Some("initialize"), &allowed(OutputStatus::Success), None),
            None
        );
        let denied = Outcome {
            decision: Decision::Denied,
            status: OutputStatus::Error,
            error_code: None,
        };
        assert_eq!(negotiation_failure(Some("initialize"), &denied, None), None);
    }
}
