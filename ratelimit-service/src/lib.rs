//! MCP gateway rate limit service (work in progress: configuration, matching and the
//! in-memory limiter are here; the gRPC server, Redis store and Envoy wiring are not
//! built yet).
#![forbid(unsafe_code)]

pub mod config;
pub mod limiter;
pub mod store;
