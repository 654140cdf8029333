//! Envoy MCP gateway filter: the proxy-wasm adapter around `mcp-filter-core`.
//!
//! Only the ABI (`host.rs`: the core's `Host` trait over proxy-wasm host calls) and the
//! callback glue (`filter.rs`: each callback forwarded to the core's `RequestFlow`);
//! every decision is made in the core. Build with
//! `cargo build --release --target wasm32-wasip1 -p mcp-filter`; load the `.wasm` with `allow_on_headers_stop_iteration: true` and `failure_policy:
//! FAIL_RELOAD` (see `envoy/fleet.yaml`).
#![deny(unsafe_code)]

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
