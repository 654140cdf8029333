//! MCP protocol logic of the Envoy MCP gateway filter.
//!
//! Pure code, no proxy-wasm dependency: it builds natively (and is tested there) and
//! for `wasm32-wasip1`, where the thin adapter in `mcp-filter` feeds it what the host
//! returns and applies what it decides. The services use it for the shared header
//! names and JSON-RPC error bodies.
#![forbid(unsafe_code)]

pub mod audit;
pub mod call;
pub mod config;
pub mod drift;
pub mod envoy_reply;
pub mod error;
#[cfg(any(test, feature = "test-support"))]
pub mod fake_host;
pub mod flow;
pub mod headers;
pub mod host;
pub mod input_hash;
pub mod label;
pub mod list_filter;
pub mod list_stream;
pub mod lists;
pub mod message;
pub mod metric_ids;
pub mod outcome;
pub mod pick;
pub mod protocol;
pub mod reply_scan;
pub mod request_head;
pub mod route;
pub mod sentinel;
pub mod session_ref;
pub mod session_table;
pub mod sse;
pub mod stats;
pub mod trace;
pub mod wire;

pub use config::{AgentIdentity, ConfigError, FilterConfig};
pub use error::{error_body, Rejection, RequestError};
pub use label::{
    check_body_size, head_action, label_request, label_request_with_facts, on_request_head,
    HeadAction, Labels, RequestFacts,
};
pub use pick::folds_to;
pub use request_head::{ClientHeader, RequestHead};
