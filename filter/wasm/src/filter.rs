//! The proxy-wasm contexts: collect inputs from the host, call the core, apply its
//! decision. No protocol logic lives here.

use crate::host::{self, Level};
use crate::wire;
use mcp_filter_core::headers::X_AGENT_ID;
use mcp_filter_core::{
    check_body_size, headers::is_gateway_header, label_request, on_request_head, sentinel,
    AgentIdentity, FilterConfig, HeadAction, Rejection, RequestError, RequestHead,
};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::rc::Rc;

pub struct McpRoot {
    config: Option<Rc<FilterConfig>>,
}

impl McpRoot {
    pub fn new() -> Self {
        McpRoot { config: None }
    }
}

impl Context for McpRoot {}

impl RootContext for McpRoot {
    /// Returning `false` makes Envoy refuse the plugin, so a bad configuration stops
    /// the filter from starting (with this log line) instead of running unconfigured.
    fn on_configure(&mut self, _size: usize) -> bool {
        let parsed = host::plugin_configuration()
            .map_err(|status| format!("cannot read the plugin configuration: {status}"))
            .and_then(|bytes| FilterConfig::from_json(&bytes).map_err(|e| e.to_string()));
        match parsed {
            Ok(config) => {
                host::log(
                    Level::Info,
                    &format!(
                        "mcp filter configured for server_id {}",
                        config.server_id.as_str()
                    ),
                );
                self.config = Some(Rc::new(config));
                true
            }
            Err(message) => {
                host::log(Level::Critical, &message);
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Without a configuration Envoy has already refused the plugin; `None` here makes
        // the SDK fail the stream rather than let it pass unlabelled.
        let config = self.config.clone()?;
        Some(Box::new(McpRequest {
            config,
            state: State::PassThrough,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

enum State {
    /// Not an MCP POST, or already labelled or refused.
    PassThrough,
    /// Buffering an MCP POST body; `seen` is the body size the host last reported.
    Reading { head: RequestHead, seen: usize },
    /// A local reply was sent: nothing of this request may continue upstream.
    Replied,
}

struct McpRequest {
    config: Rc<FilterConfig>,
    state: State,
}

impl Context for McpRequest {}

impl HttpContext for McpRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let head = match strip_and_read_head() {
            Ok(head) => head,
            Err(rejection) => return self.reject(rejection),
        };
        match on_request_head(&self.config, &head) {
            HeadAction::PassThrough => Action::Continue,
            HeadAction::Reject(rejection) => self.reject(rejection),
            HeadAction::ReadBody if end_of_stream => self.label(&head, Vec::new()),
            // Pausing here holds the headers while the body is buffered; Envoy lets the
            // body callback change them only with `allow_on_headers_stop_iteration`.
            HeadAction::ReadBody => {
                self.state = State::Reading { head, seen: 0 };
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let seen = match &mut self.state {
            State::Reading { seen, .. } => seen,
            State::Replied => return Action::Pause,
            State::PassThrough => return Action::Continue,
        };
        *seen = body_size;
        if let Some(rejection) = check_body_size(&self.config, body_size as u64) {
            return self.reject(rejection);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.finish()
    }

    /// A request with trailers ends here instead of in the body callback.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        match self.state {
            State::Reading { .. } => self.finish(),
            State::Replied => Action::Pause,
            State::PassThrough => Action::Continue,
        }
    }
}

impl McpRequest {
    fn finish(&mut self) -> Action {
        let State::Reading { head, seen } = std::mem::replace(&mut self.state, State::PassThrough)
        else {
            return Action::Continue;
        };
        match host::request_body(seen) {
            Ok(body) => self.label(&head, body),
            Err(status) => self.reject(internal(format!("cannot read the request body: {status}"))),
        }
    }

    fn label(&mut self, head: &RequestHead, body: Vec<u8>) -> Action {
        self.state = State::PassThrough;
        let labels = match label_request(&self.config, head, &body) {
            Ok(labels) => labels,
            Err(rejection) => return self.reject(rejection),
        };
        let agent = match agent_identity(&self.config.agent_identity) {
            Ok(agent) => agent,
            Err(rejection) => return self.reject(rejection),
        };
        let agent_header = agent.map(|agent| (X_AGENT_ID, sentinel::encode(&agent)));
        for (name, value) in labels.headers.iter().chain(agent_header.iter()) {
            // Never forward an MCP request without its labels (design brief).
            if let Err(status) = host::set_request_header(name, value) {
                return self.reject(internal(format!("cannot set header {name}: {status}")));
            }
        }
        // Envoy 1.40 re-selects the route after a filter changes request headers, but
        // that has changed between releases (envoyproxy/envoy#36671); clearing the cache
        // explicitly keeps routes on x-mcp-* headers working on every version.
        if let Err(status) = host::clear_route_cache() {
            host::log(
                Level::Error,
                &format!("cannot clear the route cache: {status}"),
            );
        }
        Action::Continue
    }

    fn reject(&mut self, rejection: Rejection) -> Action {
        self.state = State::Replied;
        let mut headers = vec![("content-type", "application/json")];
        headers.extend_from_slice(rejection.extra_headers());
        if let Err(status) =
            host::send_response(rejection.status(), &headers, rejection.body().as_bytes())
        {
            // The request stays paused (Envoy times it out) rather than going upstream.
            host::log(
                Level::Error,
                &format!("cannot send the error response: {status}"),
            );
        }
        Action::Pause
    }
}

/// Removes every client copy of the gateway headers, then reads what the decision needs.
fn strip_and_read_head() -> Result<RequestHead, Rejection> {
    let serialized = host::request_headers()
        .map_err(|status| internal(format!("cannot read the request headers: {status}")))?;
    let pairs = wire::parse_pairs(&serialized)
        .ok_or_else(|| internal("malformed request header map from the host".into()))?;
    for (name, _) in pairs.iter().filter(|(name, _)| is_gateway_header(name)) {
        host::remove_request_header(name)
            .map_err(|status| internal(format!("cannot remove header {name}: {status}")))?;
    }
    Ok(RequestHead::from_headers(pairs))
}

/// The agent identity from the configured trusted source, if it has one for this
/// request. A source that has no value (no client certificate, no verified JWT) leaves
/// the header unset; the authz-service then refuses or fills it.
fn agent_identity(source: &AgentIdentity) -> Result<Option<String>, Rejection> {
    let path: Vec<&str> = match source {
        AgentIdentity::None => return Ok(None),
        AgentIdentity::PeerCertificateUriSan => vec!["connection", "uri_san_peer_certificate"],
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
    let value = host::property(&path)
        .map_err(|status| internal(format!("cannot read the agent identity: {status}")))?;
    Ok(value
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|agent| !agent.is_empty()))
}

fn internal(message: String) -> Rejection {
    host::log(Level::Error, &message);
    Rejection::new(RequestError::Internal(message))
}
