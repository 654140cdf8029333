//! MCP protocol logic of the Envoy MCP gateway filter.
//!
//! Pure code, no proxy-wasm dependency: it builds natively (and is tested there) and
//! for `wasm32-wasip1`, where the thin adapter in `mcp-filter` feeds it what the host
//! returns and applies what it decides. The services use it for the shared header
//! names and JSON-RPC error bodies.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod headers;
pub mod label;
pub mod message;
mod pick;
pub mod protocol;
pub mod request_head;
pub mod sentinel;

pub use config::{AgentIdentity, ConfigError, FilterConfig};
pub use error::{error_body, Rejection, RequestError};
pub use label::{check_body_size, label_request, on_request_head, HeadAction, Labels};
pub use request_head::{ClientHeader, RequestHead};
