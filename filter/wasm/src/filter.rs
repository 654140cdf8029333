//! The proxy-wasm contexts: forward each callback to [`RequestFlow`] with the real host.

use crate::host::{self, WasmHost};
use mcp_filter_core::flow::{RequestFlow, Verdict};
use mcp_filter_core::host::Level;
use mcp_filter_core::metric_ids::MetricIds;
use mcp_filter_core::FilterConfig;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::rc::Rc;

#[derive(Default)]
pub struct McpRoot {
    config: Option<Rc<FilterConfig>>,
    metrics: Rc<MetricIds>,
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
                let message = match &config.server_id {
                    Some(server) => {
                        format!("mcp filter configured for server_id {}", server.as_str())
                    }
                    None => "mcp filter configured for the servers its routes name".to_owned(),
                };
                host::log(Level::Info, &message);
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
        // Without a configuration Envoy has already refused the plugin; `None` makes
        // the SDK fail the stream rather than let it pass unlabelled.
        let config = self.config.clone()?;
        Some(Box::new(McpHttp(RequestFlow::new(
            config,
            self.metrics.clone(),
        ))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct McpHttp(RequestFlow);

impl Context for McpHttp {}

impl HttpContext for McpHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.0.on_headers(&mut WasmHost, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.0.on_body(&mut WasmHost, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.0.on_trailers(&mut WasmHost))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.0.on_response_headers(&mut WasmHost, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.0
                .on_response_body(&mut WasmHost, body_size, end_of_stream),
        )
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.0.on_response_trailers())
    }

    /// Envoy runs this before the connection manager's access loggers (checked on
    /// 1.40), so the filter state set here is what the access log prints.
    fn on_log(&mut self) {
        self.0.on_log(&mut WasmHost)
    }
}

fn action(verdict: Verdict) -> Action {
    match verdict {
        Verdict::Continue => Action::Continue,
        Verdict::Pause => Action::Pause,
    }
}
