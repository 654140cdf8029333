//! One HTTP request's path through the filter, against an abstract [`Host`].
//!
//! This is the filter's whole behaviour per request (strip, decide, buffer, label or
//! refuse; read the response; audit) with the host calls behind the [`Host`] trait, so
//! it runs natively in tests with a fake host that can refuse any call. An adapter
//! (the proxy-wasm crate `mcp-filter`) implements `Host` and forwards callbacks.

use crate::call::{Call, Reader};
use crate::error::RATE_LIMITED;
use crate::headers::{is_gateway_header, X_AGENT_ID, X_MCP_VERSION_PICK};
use crate::host::{Host, Level};
use crate::list_filter::ListKind;
use crate::lists::ListCall;
use crate::message::Target;
use crate::metric_ids::MetricIds;
use crate::route::{lists_tool, route_server, routed_server, RouteServer, Track};
use crate::session_ref::audit_ref;
use crate::session_table::pinned_track;
use crate::wire;
use crate::{
    check_body_size, error_body, head_action, label_request_with_facts, sentinel, AgentIdentity,
    FilterConfig, HeadAction, Rejection, RequestError, RequestFacts, RequestHead,
};
use serde_json::value::RawValue;
use std::rc::Rc;

/// What a callback tells the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Pause,
}

enum State {
    /// Not an MCP POST, or already labelled.
    PassThrough,
    /// Buffering an MCP POST body; `seen` is the body size the host last reported.
    Reading { head: Box<RequestHead>, seen: usize },
    /// A local reply was sent: nothing of this request may continue upstream.
    Replied,
}

/// The filter's state for one HTTP request.
pub struct RequestFlow {
    config: Rc<FilterConfig>,
    metrics: Rc<MetricIds>,
    state: State,
    /// A JSON-RPC error body that replaces the body of Envoy's local reply.
    new_body: Option<String>,
    /// What the audit record of a request on an MCP path needs; `None` elsewhere.
    call: Option<Box<Call>>,
    /// The registered server the request was labelled for.
    server: Option<Rc<str>>,
    /// The release a handshake-era session is pinned to (the one its `initialize`
    /// reached), applied when the route is picked again.
    pin: Option<Track>,
}

impl RequestFlow {
    pub fn new(config: Rc<FilterConfig>, metrics: Rc<MetricIds>) -> Self {
        RequestFlow {
            config,
            metrics,
            state: State::PassThrough,
            new_body: None,
            call: None,
            server: None,
            pin: None,
        }
    }

    fn server_id(&self) -> &str {
        self.server.as_deref().unwrap_or_default()
    }

    pub fn on_headers(&mut self, host: &mut impl Host, end_of_stream: bool) -> Verdict {
        let head = match strip_and_read_head(host) {
            Ok(head) => head,
            Err(rejection) => return self.reject(host, rejection),
        };
        let server = match route_server(host, &self.config, &head.path) {
            Ok(RouteServer::Server(server)) => server,
            Ok(RouteServer::NotMcp) => return Verdict::Continue,
            Ok(RouteServer::Unregistered) => {
                // Never a default route to some upstream: refused here, and audited.
                self.call = Some(Box::new(Call::start(host, &head, None)));
                let path = head.path.split(['?', '#']).next().unwrap_or_default();
                let error = RequestError::Unregistered(shown_path(path));
                return self.reject(host, Rejection::new(error));
            }
            Err(error) => {
                // A route that claims the request for MCP with metadata the filter
                // cannot use (a broken render, a hand edit): refused, and audited like
                // every MCP request, with no server.
                self.call = Some(Box::new(Call::start(host, &head, None)));
                let rejection = internal(host, error.to_string());
                return self.reject(host, rejection);
            }
        };
        // Only rendered fleets split a server between releases (cluster metadata
        // `track`), so only they pay the shared-data read.
        if let (true, Some(session)) = (self.config.servers_from_routes, &head.session_id) {
            self.pin = pinned_track(host, &server.id, &audit_ref(session));
        }
        self.server = Some(server.id.clone());
        self.call = Some(Box::new(Call::start(host, &head, Some(server))));
        match head_action(&self.config, self.server_id(), &head) {
            HeadAction::PassThrough => Verdict::Continue,
            HeadAction::Forward(labels) => {
                if let Err(rejection) = set_labels(host, &labels.headers) {
                    return self.reject(host, rejection);
                }
                self.reroute(host)
            }
            HeadAction::Reject(rejection) => self.reject(host, rejection),
            HeadAction::ReadBody if end_of_stream => self.label(host, &head, Vec::new()),
            // Pausing holds the headers while the body is buffered; Envoy lets the body
            // callback change them only with `allow_on_headers_stop_iteration`.
            HeadAction::ReadBody => {
                self.state = State::Reading {
                    head: Box::new(head),
                    seen: 0,
                };
                Verdict::Pause
            }
        }
    }

    pub fn on_body(
        &mut self,
        host: &mut impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Verdict {
        let seen = match &mut self.state {
            State::Reading { seen, .. } => seen,
            State::Replied => return Verdict::Pause,
            State::PassThrough => return Verdict::Continue,
        };
        // With the headers paused, Envoy buffers the body and reports its total size.
        *seen = body_size;
        if let Some(rejection) = check_body_size(&self.config, body_size as u64) {
            return self.reject(host, rejection);
        }
        if !end_of_stream {
            return Verdict::Pause;
        }
        self.finish(host)
    }

    /// A request with trailers ends here instead of in the body callback.
    pub fn on_trailers(&mut self, host: &mut impl Host) -> Verdict {
        match self.state {
            State::Reading { .. } => self.finish(host),
            State::Replied => Verdict::Pause,
            State::PassThrough => Verdict::Continue,
        }
    }

    /// Reads how the response starts (status, type, session id) for the audit record,
    /// and reshapes Envoy's own answers for a labelled request.
    ///
    /// The rate limit filter's 429 and an unreachable authz-service's 503 pass back
    /// through here; they get a JSON-RPC error body carrying the request's id, which
    /// only this filter knows. The `local_reply_config` in envoy/fleet.yaml gives them
    /// a body to replace.
    pub fn on_response_headers(&mut self, host: &mut impl Host, end_of_stream: bool) -> Verdict {
        let Some(call) = self.call.as_deref_mut() else {
            return Verdict::Continue;
        };
        call.on_response_headers(host, &self.config, end_of_stream);
        if end_of_stream || call.rejected.is_some() {
            return Verdict::Continue;
        }
        // The id of a labelled request (a refused one returned above).
        let Some(id) = call.facts.jsonrpc_id.clone() else {
            return Verdict::Continue;
        };
        // Envoy's own replies (the rate limit filter's 429, an unreachable authz-service's
        // 503, the router's 503/504 when the MCP server fails) mean nothing to an MCP
        // client as they are: the core's one table says what the client is told.
        let Some(reply) = call.envoy_reply().filter(|reply| reply.rewrite) else {
            return Verdict::Continue;
        };
        let message = match (
            reply.code,
            host.response_header("retry-after").ok().flatten(),
        ) {
            (RATE_LIMITED, Some(seconds)) => {
                format!("{}; retry after {seconds} seconds", reply.message)
            }
            _ => reply.message.to_owned(),
        };
        let code = reply.code;
        // Envoy's body is replaced, not read.
        call.reader = Reader::Off;
        let id = RawValue::from_string(id).ok();
        let body = error_body(id.as_deref(), code, &message);
        // The new body is longer than the one Envoy computed content-length for.
        let prepared = host
            .remove_response_header("content-length")
            .and_then(|()| host.set_response_header("content-type", "application/json"));
        match prepared {
            Ok(()) => self.new_body = Some(body),
            Err(status) => host.log(
                Level::Error,
                &format!("cannot reshape a local reply: {status}"),
            ),
        }
        Verdict::Continue
    }

    /// Response bytes pass on unchanged as they come (`Continue`): the filter reads
    /// each chunk into the incremental reader and keeps nothing of it. Only a local
    /// reply being reshaped is held until its end.
    pub fn on_response_body(
        &mut self,
        host: &mut impl Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Verdict {
        if let Some(call) = self.call.as_deref_mut() {
            // A list answer being filtered: each chunk is replaced by what the client
            // gets for it (the filter holds the rest).
            if let Some(replacement) = call.on_response_body(host, body_size, end_of_stream) {
                if let Err(status) = host.replace_response_body(body_size, &replacement) {
                    host.log(
                        Level::Error,
                        &format!("cannot replace a list answer chunk: {status}"),
                    );
                }
            }
        }
        if self.new_body.is_none() {
            return Verdict::Continue;
        }
        if !end_of_stream {
            return Verdict::Pause;
        }
        if let Some(body) = self.new_body.take() {
            if let Err(status) = host.replace_response_body(body_size, body.as_bytes()) {
                host.log(
                    Level::Error,
                    &format!("cannot replace a local reply body: {status}"),
                );
            }
        }
        Verdict::Continue
    }

    pub fn on_response_trailers(&mut self) -> Verdict {
        if let Some(call) = self.call.as_deref_mut() {
            call.complete = true;
        }
        Verdict::Continue
    }

    /// The request is over (Envoy calls this before its access loggers run): publish
    /// the audit record and count the metrics.
    pub fn on_log(&mut self, host: &mut impl Host) {
        if let Some(call) = self.call.take() {
            call.finish(host, &self.config, &self.metrics);
        }
    }

    fn finish(&mut self, host: &mut impl Host) -> Verdict {
        let State::Reading { head, seen } = std::mem::replace(&mut self.state, State::PassThrough)
        else {
            return Verdict::Continue;
        };
        match host.request_body(seen) {
            Ok(body) => self.label(host, &head, body),
            Err(status) => {
                let rejection = internal(host, format!("cannot read the request body: {status}"));
                self.reject(host, rejection)
            }
        }
    }

    fn label(&mut self, host: &mut impl Host, head: &RequestHead, body: Vec<u8>) -> Verdict {
        self.state = State::PassThrough;
        let mut scratch = RequestFacts::default();
        let facts = match self.call.as_deref_mut() {
            Some(call) => &mut call.facts,
            None => &mut scratch,
        };
        let server = self.server.clone().unwrap_or_else(|| Rc::from(""));
        let labels = match label_request_with_facts(&self.config, &server, head, &body, facts) {
            Ok(labels) => labels,
            Err(rejection) => return self.reject(host, rejection),
        };
        if let Some(call) = self.call.as_deref_mut() {
            call.body_labelled();
            if let (true, Some(Target::Tool(tool))) =
                (self.config.servers_from_routes, &call.facts.target)
            {
                // Only the metric label depends on it: a failed read counts the call
                // as `other`, it does not refuse it.
                call.tool_registered = lists_tool(host, tool).unwrap_or_else(|error| {
                    host.log(Level::Error, &error.to_string());
                    false
                });
            }
            let list_kind = call.facts.method.as_deref().and_then(ListKind::of_method);
            if let Some(kind) = list_kind {
                let has_cursor = call.facts.has_cursor;
                match ListCall::start(host, &self.config, kind, has_cursor) {
                    Ok(list) => {
                        call.list = Some(list);
                        // A compressed answer could not be filtered: ask for a plain one.
                        if let Err(status) = host.remove_request_header("accept-encoding") {
                            host.log(
                                Level::Error,
                                &format!(
                                    "cannot remove a list request's accept-encoding: {status}"
                                ),
                            );
                        }
                    }
                    Err(error) => {
                        // Without the route's view of the tools the answer could not be
                        // filtered by the registration: refused like a broken route.
                        let rejection = internal(host, error.to_string());
                        return self.reject(host, rejection);
                    }
                }
            }
        }
        let agent = match agent_identity(host, &self.config.agent_identity) {
            Ok(agent) => agent,
            Err(rejection) => return self.reject(host, rejection),
        };
        let mut headers = labels.headers;
        if let Some(agent) = agent {
            headers.push((X_AGENT_ID, sentinel::encode(&agent)));
        }
        if let Err(rejection) = set_labels(host, &headers) {
            return self.reject(host, rejection);
        }
        self.reroute(host)
    }

    /// After the labels are set: the route is picked again with them, and the request
    /// must still be going to the server it was labelled (and will be authorised,
    /// limited and audited) for.
    fn reroute(&mut self, host: &mut impl Host) -> Verdict {
        // A pinned session: Envoy's weighted pick follows the header once the cache is
        // cleared (a client's copy was stripped with the other gateway headers). Not
        // a label: without it the request still goes on, to a random release, and a
        // release that does not know the session answers 404 (the client starts over).
        if let Some(track) = self.pin {
            if let Err(status) = host.set_request_header(X_MCP_VERSION_PICK, track.pick_value()) {
                host.log(
                    Level::Error,
                    &format!("cannot set {X_MCP_VERSION_PICK}: {status}"),
                );
            }
        }
        // Envoy 1.40 re-selects the route after a filter changes request headers, but
        // that has changed between releases (envoyproxy/envoy#36671); clearing the cache
        // explicitly keeps routes on x-mcp-* headers working on every version.
        if let Err(status) = host.clear_route_cache() {
            host.log(
                Level::Error,
                &format!("cannot clear the route cache: {status}"),
            );
        }
        let routed = match routed_server(host, &self.config) {
            Ok(routed) => routed,
            Err(error) => {
                let rejection = internal(host, error.to_string());
                return self.reject(host, rejection);
            }
        };
        if self.config.servers_from_routes && routed.as_deref() != self.server.as_deref() {
            let message = format!(
                "labelled for MCP server {}, routed to {}",
                self.server_id(),
                routed.as_deref().unwrap_or("no MCP server")
            );
            let rejection = internal(host, message);
            return self.reject(host, rejection);
        }
        if let Some(call) = self.call.as_deref_mut() {
            call.forwarded();
        }
        Verdict::Continue
    }

    fn reject(&mut self, host: &mut impl Host, rejection: Rejection) -> Verdict {
        self.state = State::Replied;
        if let Some(call) = self.call.as_deref_mut() {
            call.rejected = Some((rejection.error.code(), rejection.status()));
        }
        let mut headers = vec![("content-type", "application/json")];
        headers.extend_from_slice(rejection.extra_headers());
        let body = rejection.body();
        if let Err(status) = host.send_response(rejection.status(), &headers, body.as_bytes()) {
            // The request stays paused (Envoy times it out) rather than going upstream.
            host.log(
                Level::Error,
                &format!("cannot send the error response: {status}"),
            );
        }
        Verdict::Pause
    }
}

/// Sets the gateway headers. Never forward an MCP request without its labels (design
/// brief): a failed write is a refusal.
fn set_labels(host: &mut impl Host, headers: &[(&str, String)]) -> Result<(), Rejection> {
    for (name, value) in headers {
        if let Err(status) = host.set_request_header(name, value) {
            return Err(internal(
                host,
                format!("cannot set header {name}: {status}"),
            ));
        }
    }
    Ok(())
}

/// Removes every client copy of the gateway headers, then reads what the decision needs.
fn strip_and_read_head(host: &mut impl Host) -> Result<RequestHead, Rejection> {
    let serialized = match host.request_headers() {
        Ok(serialized) => serialized,
        Err(status) => {
            return Err(internal(
                host,
                format!("cannot read the request headers: {status}"),
            ))
        }
    };
    let Some(pairs) = wire::parse_pairs(&serialized) else {
        return Err(internal(
            host,
            "malformed request header map from the host".into(),
        ));
    };
    for (name, _) in pairs.iter().filter(|(name, _)| is_gateway_header(name)) {
        if let Err(status) = host.remove_request_header(name) {
            return Err(internal(
                host,
                format!("cannot remove header {name}: {status}"),
            ));
        }
    }
    Ok(RequestHead::from_headers(pairs))
}

/// The agent identity from the configured trusted source, if it has one for this
/// request. A source with no value (no client certificate, no verified JWT) leaves the
/// header unset; the authz-service then refuses or fills it.
fn agent_identity(
    host: &mut impl Host,
    source: &AgentIdentity,
) -> Result<Option<String>, Rejection> {
    let path: Vec<&str> = match source {
        AgentIdentity::None => return Ok(None),
        // Envoy returns the first URI SAN of the verified peer certificate.
        AgentIdentity::PeerCertificateUriSan => vec!["connection", "uri_san_peer_certificate"],
        // One claim of jwt_authn's `payload_in_metadata` struct; string leaves come back
        // as raw UTF-8.
        AgentIdentity::JwtAuthn {
            payload_in_metadata,
            claim,
        } => vec![
            "metadata",
            "filter_metadata",
            "envoy.filters.http.jwt_authn",
            payload_in_metadata.as_str(),
            claim.as_str(),
        ],
    };
    match host.property(&path) {
        Ok(value) => Ok(value
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|agent| !agent.is_empty())),
        Err(status) => Err(internal(
            host,
            format!("cannot read the agent identity: {status}"),
        )),
    }
}

/// Longest part of a client's path repeated in an error message.
const MAX_SHOWN_PATH: usize = 128;

/// The client's path as an error message shows it: bounded (Envoy accepts paths of
/// tens of kilobytes, and the reply should not echo them whole).
fn shown_path(path: &str) -> String {
    match path.char_indices().nth(MAX_SHOWN_PATH) {
        Some((end, _)) => format!("{}...", &path[..end]),
        None => path.to_owned(),
    }
}

fn internal(host: &mut impl Host, message: String) -> Rejection {
    host.log(Level::Error, &message);
    Rejection::new(RequestError::Internal(message))
}

#[cfg(test)]
mod canary_tests;
#[cfg(test)]
mod list_tests;
#[cfg(test)]
mod tests;
