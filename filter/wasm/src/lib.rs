//! Envoy MCP gateway filter: the proxy-wasm adapter around `mcp-filter-core`.
//!
//! Build with `cargo build --release --target wasm32-wasip1 -p mcp-filter`; load the
//! `.wasm` with `allow_on_headers_stop_iteration: true` and `failure_policy:
//! FAIL_RELOAD` (see `envoy/envoy.yaml`).
#![deny(unsafe_code)]

pub mod audit;
pub mod flow;
pub mod metrics;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(target_arch = "wasm32")]
mod host;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(filter::McpRoot::default())
    });
}}
