//! One MCP request's audit record and metrics: what the filter learns from the
//! request head, the body, the response head and the response body, put together in
//! `on_log`.

use crate::audit::{iso8601, latency_ms, request_id, AuditRecord};
use crate::envoy_reply::{envoy_reply, EnvoyReply};
use crate::error::{HEADER_MISMATCH, INVALID_PARAMS};
use crate::headers::{
    EXT_AUTHZ_NAMESPACE, MCP_SESSION_ID, SESSION_KEY_METADATA, X_AGENT_ID, X_USER_ID,
};
use crate::host::{Host, Level, CAS_MISMATCH};
use crate::list_stream::Framing;
use crate::lists::{ListCall, ListReader};
use crate::message::Target;
use crate::metric_ids::{MetricIds, ServerKey};
use crate::outcome::{classify, Decision, Ending, Outcome, OutputStatus};
use crate::reply_scan::{Reply, ReplyScanner};
use crate::route::{cluster_release, Release, Server, Track};
use crate::session_ref::{self, ResponseSession};
use crate::session_table::{slot_key, SessionEntry};
use crate::sse::SseReader;
use crate::stats::{self, ServerLabel, Stat, ToolLabel};
use crate::{sentinel, trace, FilterConfig, RequestFacts, RequestHead};
use serde_json::value::RawValue;

/// The filter state the access log prints (`%FILTER_STATE(wasm.mcp_audit:PLAIN)%`).
pub const AUDIT_PROPERTY: &str = "mcp_audit";

/// How the response body is read.
#[derive(Debug, Default)]
pub enum Reader {
    /// Not read: no JSON-RPC response expected, already found, or being replaced.
    #[default]
    Off,
    Json(ReplyScanner),
    Sse(Box<SseReader>),
    /// A list answer, filtered for the caller (see `lists`).
    List(Box<ListReader>),
}

/// What is known so far about one request on an MCP path.
#[derive(Debug, Default)]
pub struct Call {
    /// The registered server, as its route says; `None` on an unregistered path.
    server: Option<Server>,
    start_nanos: u64,
    http_method: String,
    /// The client's `Mcp-Session-Id`: a session reference (see `session_ref`).
    session_id: Option<String>,
    traceparent: Option<String>,
    /// The gateway's own id for this request.
    request_id: Option<String>,
    pub facts: RequestFacts,
    /// The filter refused the request: (JSON-RPC code, HTTP status).
    pub rejected: Option<(i64, u16)>,
    /// The body was read and labelled, and the request went on.
    labelled: bool,
    /// The filter let the request go on after picking its route again (see
    /// [`Call::forwarded`]).
    forwarded: bool,
    /// The route lists the called tool among its server's registered tools.
    pub tool_registered: bool,
    http_status: Option<u16>,
    pub code_details: Option<String>,
    /// The session reference the client got in this response (`initialize`).
    response_session: Option<String>,
    pub reader: Reader,
    reply: Option<Reply>,
    /// The response's end of stream was seen.
    pub complete: bool,
    /// A list call: what its answer is filtered by (until the answer starts).
    pub list: Option<ListCall>,
}

impl Call {
    pub fn start(host: &mut impl Host, head: &RequestHead, server: Option<Server>) -> Call {
        let start_nanos = host.now_nanos().unwrap_or_else(|status| {
            host.log(Level::Error, &format!("cannot read the time: {status}"));
            0
        });
        let mut random = [0u8; 16];
        let request_id = match host.random(&mut random) {
            Ok(()) => Some(request_id(random)),
            Err(status) => {
                host.log(Level::Error, &format!("cannot draw a request id: {status}"));
                None
            }
        };
        Call {
            server,
            start_nanos,
            http_method: head.http_method.clone(),
            session_id: head.session_id.clone(),
            traceparent: head.traceparent.clone(),
            request_id,
            ..Call::default()
        }
    }

    pub fn body_labelled(&mut self) {
        self.labelled = true;
    }

    /// The filter let the request go on to the router, with Envoy's route (and so its
    /// weighted cluster) picked again after the client's gateway headers were stripped.
    pub fn forwarded(&mut self) {
        self.forwarded = true;
    }

    /// A JSON-RPC response is expected: a labelled request with an id.
    fn expects_reply(&self) -> bool {
        self.labelled && self.facts.jsonrpc_id.is_some()
    }

    pub fn on_response_headers(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        end_of_stream: bool,
    ) {
        let status = host
            .response_header(":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse::<u16>().ok());
        self.http_status = status;
        self.complete = end_of_stream;
        // Envoy's own answers (authz, rate limit, timeouts) say why in code_details;
        // an upstream's answers say `via_upstream`, which is not worth a host call.
        if status.is_none_or(|s| s >= 400) {
            self.code_details = host
                .property(&["response", "code_details"])
                .ok()
                .flatten()
                .and_then(|bytes| String::from_utf8(bytes).ok());
        }
        let initialize = self.facts.method.as_deref() == Some("initialize");
        if initialize || self.session_id.is_some() {
            self.bind_session(host, initialize);
        }
        if end_of_stream || !self.expects_reply() || self.rejected.is_some() {
            return;
        }
        let content_type = host
            .response_header("content-type")
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_ascii_lowercase();
        // MCP Streamable HTTP: a POST is answered with application/json or
        // text/event-stream.
        let framing = if content_type.starts_with("text/event-stream") {
            Some(Framing::Sse)
        } else if content_type.starts_with("application/json") {
            Some(Framing::Json)
        } else {
            None
        };
        let list = self
            .list
            .take()
            .filter(|list| status == Some(200) && list.needs_reader(config));
        self.reader = match (framing, list) {
            (Some(framing), Some(list)) => self.list_reader(host, config, list, framing),
            (Some(Framing::Sse), None) => Reader::Sse(Box::default()),
            (Some(Framing::Json), None) => Reader::Json(ReplyScanner::default()),
            (None, _) => Reader::Off,
        };
    }

    /// The reader of a list answer. A filtered answer changes length, and differs per
    /// caller, so no shared HTTP cache may keep it either.
    fn list_reader(
        &self,
        host: &mut impl Host,
        config: &FilterConfig,
        list: ListCall,
        framing: Framing,
    ) -> Reader {
        let id = self.facts.jsonrpc_id.as_deref().unwrap_or("null");
        let modern = self
            .facts
            .protocol_version
            .as_deref()
            .is_some_and(|v| v >= crate::protocol::STATELESS_SINCE);
        let mut reader = list.reader(host, config, framing, id, modern);
        let encoded = host
            .response_header("content-encoding")
            .ok()
            .flatten()
            .is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"));
        if encoded && reader.rewrites() {
            reader.refuse_encoded();
            if let Err(status) = host.remove_response_header("content-encoding") {
                host.log(
                    Level::Error,
                    &format!("cannot remove a list answer's content-encoding: {status}"),
                );
            }
        }
        if reader.rewrites() {
            let private = host
                .response_header("cache-control")
                .ok()
                .flatten()
                .is_some_and(|v| {
                    let v = v.to_ascii_lowercase();
                    v.contains("private") || v.contains("no-store")
                });
            let prepared = host
                .remove_response_header("content-length")
                .and_then(|()| {
                    if private {
                        Ok(())
                    } else {
                        host.set_response_header("cache-control", "private")
                    }
                });
            if let Err(status) = prepared {
                // The answer cannot be changed safely: the caller gets none of it.
                host.log(
                    Level::Error,
                    &format!("cannot prepare a list answer for filtering: {status}"),
                );
            }
        }
        Reader::List(Box::new(reader))
    }

    /// Envoy's own reply, if the response is one (see the core's `envoy_reply` table).
    pub fn envoy_reply(&self) -> Option<EnvoyReply> {
        envoy_reply(self.code_details.as_deref()?, self.http_status)
    }

    /// Handshake-era sessions: the client sees the server's `Mcp-Session-Id` only as a
    /// reference bound to the verified agent (see `session_ref`). Only `initialize`
    /// responses and requests of a session are looked at (a session id anywhere else is
    /// refused by the authz-service when it comes back, as it is not a reference).
    fn bind_session(&mut self, host: &mut impl Host, initialize: bool) {
        let Some(server_value) = host.response_header(MCP_SESSION_ID).ok().flatten() else {
            return;
        };
        // The binding key: from the authz-service, for an allowed initialize only.
        let key = if initialize {
            authz_metadata(host, SESSION_KEY_METADATA)
        } else {
            None
        };
        let decision = session_ref::response_session(
            &server_value,
            key.as_deref(),
            self.session_id.as_deref(),
        );
        let applied = match &decision {
            ResponseSession::Set(reference) => host.set_response_header(MCP_SESSION_ID, reference),
            ResponseSession::Remove => {
                host.log(
                    Level::Info,
                    "removed an Mcp-Session-Id the gateway cannot bind to the caller",
                );
                host.remove_response_header(MCP_SESSION_ID)
            }
        };
        match (applied, decision) {
            (Ok(()), ResponseSession::Set(reference)) if initialize => {
                self.response_session = Some(reference);
            }
            (Ok(()), _) => {}
            // The raw id may reach the client; it cannot be used through the gateway
            // (the authz-service accepts references only), so this fails closed.
            (Err(status), _) => host.log(
                Level::Error,
                &format!("cannot rewrite the response's Mcp-Session-Id: {status}"),
            ),
        }
    }

    /// Reads a response chunk; returns what the client gets instead of it, when that
    /// differs (a list answer being filtered).
    pub fn on_response_body(
        &mut self,
        host: &mut impl Host,
        size: usize,
        end_of_stream: bool,
    ) -> Option<Vec<u8>> {
        if end_of_stream {
            self.complete = true;
        }
        let list = matches!(self.reader, Reader::List(_));
        if matches!(self.reader, Reader::Off) || (size == 0 && !(list && end_of_stream)) {
            return None;
        }
        let chunk = match host.response_body(size) {
            Ok(chunk) => chunk,
            Err(status) => {
                host.log(
                    Level::Error,
                    &format!("cannot read a response chunk: {status}"),
                );
                if list {
                    // Filtering cannot go on: the caller gets nothing more of the list.
                    self.reply = Some(Reply::Error {
                        code: Some(crate::error::GATEWAY_INTERNAL),
                    });
                    self.reader = Reader::Off;
                    return Some(Vec::new());
                }
                self.reader = Reader::Off;
                return None;
            }
        };
        if let Reader::List(reader) = &mut self.reader {
            let out = reader.feed(&chunk, end_of_stream);
            return Some(out);
        }
        let request_id = self.facts.jsonrpc_id.as_deref();
        let mut found = None;
        match &mut self.reader {
            Reader::Off | Reader::List(_) => {}
            Reader::Json(scanner) => {
                scanner.feed(&chunk);
                if end_of_stream {
                    found = scanner.finish().reply_to(request_id);
                }
            }
            Reader::Sse(reader) => reader.feed(&chunk, &mut |summary| {
                if found.is_none() {
                    found = summary.reply_to(request_id);
                }
            }),
        }
        if found.is_some() {
            self.reply = found;
            // The response is known; the rest of the stream is not read.
            self.reader = Reader::Off;
        }
        None
    }

    /// Publishes the audit record and counts the metrics.
    pub fn finish(
        mut self: Box<Self>,
        host: &mut impl Host,
        config: &FilterConfig,
        metrics: &MetricIds,
    ) {
        let end_nanos = host.now_nanos().unwrap_or(self.start_nanos);
        if let Reader::Json(scanner) = &mut self.reader {
            // A JSON body whose last chunk came without end of stream (rare).
            if self.complete {
                self.reply = scanner.finish().reply_to(self.facts.jsonrpc_id.as_deref());
            }
        }
        let mut hidden = None;
        if let Reader::List(reader) = &self.reader {
            self.reply = self.reply.or(reader.result().reply);
            hidden = reader.result().hidden;
        }
        if self.http_status.is_none() {
            self.http_status = self
                .rejected
                .map(|(_, status)| status)
                .or_else(|| response_code(host));
        }
        // Why a response ended early: a stream that had started (200) and was cut by
        // the route timeout says `upstream_response_timeout` only here.
        let cut_short = self.http_status.is_none() || (!self.complete && self.reply.is_none());
        if self.code_details.is_none() && self.rejected.is_none() && cut_short {
            self.code_details = host
                .property(&["response", "code_details"])
                .ok()
                .flatten()
                .and_then(|bytes| String::from_utf8(bytes).ok());
        }
        let outcome = classify(&Ending {
            rejected: self.rejected,
            http_status: self.http_status,
            code_details: self.code_details.as_deref(),
            reply: self.reply,
            complete: self.complete,
            // A POST not yet labelled (the client left while sending it) still
            // expected an answer; a labelled notification did not.
            expects_reply: self.http_method == "POST"
                && (!self.labelled || self.facts.jsonrpc_id.is_some()),
        });
        let mut outcome = outcome;
        // The authz-service's own refusals (not this filter's).
        let authz_refused = self.rejected.is_none()
            && matches!(outcome.decision, Decision::Denied | Decision::Invalid);
        // Its 400s: -32602 (arguments) or -32020 (Mcp-Param headers), told apart by the
        // code it names in the metadata.
        if authz_refused
            && outcome.decision == Decision::Invalid
            && authz_metadata(host, "error_code").as_deref() == Some("-32020")
        {
            outcome.error_code = Some(HEADER_MISMATCH);
        }
        let mut agent = identity_header(host, X_AGENT_ID);
        let mut user = identity_header(host, X_USER_ID);
        if agent.is_none() && authz_refused {
            // A valid token without the scopes: the authz-service names the agent in
            // ext_authz's dynamic metadata, since a denied request keeps no headers.
            agent = authz_metadata(host, "agent_id");
            user = authz_metadata(host, "user_id");
        }
        let session_id = self
            .session_id
            .as_deref()
            .or(self.response_session.as_deref())
            .map(session_ref::audit_ref);
        let trace_id = self
            .traceparent
            .as_deref()
            .and_then(trace::trace_id)
            .or_else(|| {
                self.facts
                    .meta_traceparent
                    .as_deref()
                    .and_then(trace::trace_id)
            });
        let jsonrpc_id = self
            .facts
            .jsonrpc_id
            .as_deref()
            .and_then(|id| RawValue::from_string(id.to_owned()).ok());
        let (tool, prompt, resource) = match &self.facts.target {
            Some(Target::Tool(name)) => (Some(name.as_str()), None, None),
            Some(Target::Prompt(name)) => (None, Some(name.as_str()), None),
            Some(Target::Resource(uri)) => (None, None, Some(uri.as_str())),
            None => (None, None, None),
        };
        // What the authz-service found wrong with the arguments (validation `report`
        // allows the call and says so; `enforce` refuses it).
        let schema_violation = match (tool, outcome.decision) {
            (Some(_), Decision::Allowed | Decision::Invalid) => {
                authz_metadata(host, "schema_violation")
            }
            _ => None,
        };
        let argument_violation = match (outcome.decision, outcome.error_code) {
            (Decision::Invalid, Some(INVALID_PARAMS)) if authz_refused => Some("refused"),
            (Decision::Allowed, _) if schema_violation.is_some() => Some("reported"),
            _ => None,
        };
        let initialize = self.facts.method.as_deref() == Some("initialize");
        // Only a request that reached a server is labelled with the release that
        // served it. Envoy picks a route's weighted cluster before any filter runs, by
        // the client's own `x-mcp-version-pick`; the filter strips that header and
        // clears the route cache, but Envoy picks again only when someone asks for the
        // route (the router, ext_authz). A request refused on the way (by this filter,
        // ext_authz, the rate limit) or left unfinished can reach `on_log` with the
        // client's pick, so its cluster says what the client chose, not what served
        // it: anyone could put refusals under the canary's version (and get a healthy
        // canary rolled back) or the stable one's (and mask a broken canary). Those
        // carry the route's version in the record (the stable one, as before canaries)
        // and no version in their stats. A forwarded request was picked again by the
        // router without the client's header (or with the filter's session pin).
        let reached = self.forwarded && outcome.decision == Decision::Allowed;
        // The release that served the request, from its cluster (the route's version,
        // the stable one, when the cluster names none): the audit record and the
        // metrics of a canary carry the canary's version.
        let release = match &self.server {
            Some(server) if config.servers_from_routes && reached => {
                let with_track = initialize && self.response_session.is_some();
                served_release(host, &server.id, with_track)
            }
            _ => Release::default(),
        };
        let server = self.server.as_ref();
        let version = release
            .version
            .as_ref()
            .map(|v| v.as_str())
            .or_else(|| server.and_then(|s| s.version.as_deref()));
        // The version tag of the stats: none for a request no release served.
        let stat_version = version.filter(|_| reached);
        let record = AuditRecord {
            timestamp: iso8601(self.start_nanos),
            agent_id: agent.as_deref(),
            user_id: user.as_deref(),
            server_id: server.map(|s| &*s.id),
            server_version: version,
            http_method: &self.http_method,
            method: self.facts.method.as_deref(),
            tool_name: tool,
            prompt_name: prompt,
            resource_uri: resource,
            input_hash: self.facts.input_hash.as_deref(),
            output_status: outcome.status,
            latency_ms: latency_ms(self.start_nanos, end_nanos),
            session_id: session_id.as_deref(),
            trace_id,
            request_id: self.request_id.as_deref(),
            protocol_version: self.facts.protocol_version.as_deref(),
            jsonrpc_id: jsonrpc_id.as_deref(),
            http_status: self.http_status.filter(|s| *s != 0),
            decision: outcome.decision,
            error_code: outcome.error_code,
            hidden_entries: hidden,
            schema_violation: schema_violation.as_deref(),
        };
        if let Err(status) = host.set_property(&[AUDIT_PROPERTY], record.to_json().as_bytes()) {
            host.log(
                Level::Error,
                &format!("cannot publish the audit record: {status}"),
            );
        }

        // Metrics are per server: a path no server is registered at has the audit
        // record (and Envoy's own 404 stats), no server series.
        let Some(server) = &self.server else {
            return;
        };
        let key = &metrics.server_key(&server.id, stat_version);
        let method = self.facts.method.as_deref();
        let method_label = stats::method_label(method, self.facts.is_response, &self.http_method);
        let requests = Stat::Requests {
            method: method_label,
            decision: outcome.decision,
        };
        metrics.add(host, config, *key, requests, 1);
        if let Some(tool) = tool {
            let tool = if !config.servers_from_routes {
                stats::tool_label(config, tool)
            } else if self.tool_registered {
                ToolLabel::Registered(metrics.tool_key(tool))
            } else {
                ToolLabel::Other
            };
            let outcome_label = stats::outcome_label(&outcome);
            let calls = Stat::ToolCalls {
                tool,
                outcome: outcome_label,
            };
            metrics.add(host, config, *key, calls, 1);
            if outcome.decision == Decision::Allowed {
                let millis = end_nanos.saturating_sub(self.start_nanos) / 1_000_000;
                let duration = Stat::ToolCallDuration { tool };
                metrics.record(host, config, *key, duration, millis);
            }
            if let Some(outcome) = argument_violation {
                let violations = Stat::ArgumentViolations { tool, outcome };
                metrics.add(host, config, *key, violations, 1);
            }
        }
        // The drift check looks at whole answers the server completed.
        if let Reader::List(reader) = &self.reader {
            if self.complete && matches!(self.reply, Some(Reply::Result { .. })) {
                let drift_server = ServerLabel::new(&server.id, stat_version);
                reader.record_drift(host, config, metrics, (drift_server, *key));
            }
        }
        if let Some(kind) = stats::negotiation_failure(method, &outcome, self.reply) {
            metrics.add(host, config, *key, Stat::NegotiationFailures(kind), 1);
        }
        self.track_session(
            host,
            config,
            metrics,
            (&server.id, *key),
            (&outcome, release.track),
            end_nanos,
        );
    }

    /// Handshake-era sessions: started by a successful `initialize` that got an
    /// `Mcp-Session-Id`, counted on each allowed `tools/call`, ended by DELETE.
    fn track_session(
        &self,
        host: &mut impl Host,
        config: &FilterConfig,
        metrics: &MetricIds,
        (server, metric_key): (&str, ServerKey),
        (outcome, track): (&Outcome, Option<Track>),
        now: u64,
    ) {
        if outcome.decision != Decision::Allowed {
            return;
        }
        let method = self.facts.method.as_deref();
        if let (Some("initialize"), Some(reference), OutputStatus::Success) =
            (method, self.response_session.as_deref(), outcome.status)
        {
            // Slots are keyed by the audit form: the table holds no bearer secrets.
            let id = session_ref::audit_ref(reference);
            // The release it started on: later requests are pinned to it (see
            // `flow`), since the other release does not know the session.
            let entry = SessionEntry {
                id: id.clone(),
                start_nanos: now,
                tool_calls: 0,
                track,
            };
            // Unconditional write: a slot still held by a session that never ended
            // goes to the newer one.
            let key = slot_key(server, &id);
            let event = match host.set_shared_data(&key, &entry.encode(), 0) {
                Ok(()) => "started",
                Err(_) => "untracked",
            };
            metrics.add(host, config, metric_key, Stat::Sessions { event }, 1);
            return;
        }
        let Some(id) = self.session_id.as_deref().map(session_ref::audit_ref) else {
            return;
        };
        let id = id.as_str();
        let key = slot_key(server, id);
        if method == Some("tools/call") {
            update_session(host, &key, id, |entry| {
                entry.tool_calls = entry.tool_calls.saturating_add(1);
                Some(entry.encode())
            });
        } else if self.http_method == "DELETE"
            && self.http_status.is_some_and(|s| (200..300).contains(&s))
        {
            let mut ended = None;
            update_session(host, &key, id, |entry| {
                ended = Some(entry.clone());
                Some(Vec::new())
            });
            if let Some(entry) = ended {
                let millis = now.saturating_sub(entry.start_nanos) / 1_000_000;
                metrics.record(host, config, metric_key, Stat::SessionDuration, millis);
                metrics.record(
                    host,
                    config,
                    metric_key,
                    Stat::SessionToolCalls,
                    entry.tool_calls,
                );
                metrics.add(
                    host,
                    config,
                    metric_key,
                    Stat::Sessions { event: "ended" },
                    1,
                );
            }
        }
    }
}

/// Read-modify-write of one session slot with compare-and-swap (another worker may
/// write the same slot); gives up after a few lost races rather than spin.
fn update_session(
    host: &mut impl Host,
    key: &str,
    id: &str,
    mut change: impl FnMut(&mut SessionEntry) -> Option<Vec<u8>>,
) {
    for _ in 0..4 {
        let Ok((Some(bytes), cas)) = host.shared_data(key) else {
            return;
        };
        let Some(mut entry) = SessionEntry::decode(&bytes).filter(|e| e.id == id) else {
            return;
        };
        let Some(value) = change(&mut entry) else {
            return;
        };
        match host.set_shared_data(key, &value, cas) {
            Err(status) if status == CAS_MISMATCH => continue,
            _ => return,
        }
    }
}

/// The release of the cluster that served the request; a cluster whose metadata is
/// outside the rules counts as none (logged: a render or hand edit to fix), so the
/// route's version stands in and the request is never failed for it.
fn served_release(host: &mut impl Host, server: &str, with_track: bool) -> Release {
    cluster_release(host, server, with_track).unwrap_or_else(|error| {
        host.log(Level::Warning, &error.to_string());
        Release::default()
    })
}

/// The verified identity headers as they left Envoy (ext_authz's overwrite), decoded
/// from the header-safe form.
fn identity_header(host: &mut impl Host, name: &str) -> Option<String> {
    let value = host.request_header(name).ok().flatten()?;
    sentinel::decode(&value).ok().filter(|v| !v.is_empty())
}

/// A string the authz-service put into ext_authz's dynamic metadata.
fn authz_metadata(host: &mut impl Host, key: &str) -> Option<String> {
    let path = ["metadata", "filter_metadata", EXT_AUTHZ_NAMESPACE, key];
    let bytes = host.property(&path).ok().flatten()?;
    String::from_utf8(bytes).ok().filter(|v| !v.is_empty())
}

/// `response.code` (an integer property: 8 little-endian bytes).
fn response_code(host: &mut impl Host) -> Option<u16> {
    let bytes = host.property(&["response", "code"]).ok().flatten()?;
    let raw: [u8; 8] = bytes.as_slice().try_into().ok()?;
    u16::try_from(i64::from_le_bytes(raw))
        .ok()
        .filter(|code| *code != 0)
}
