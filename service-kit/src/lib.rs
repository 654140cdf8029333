//! Plumbing the MCP gateway's gRPC services (authz-service, ratelimit-service) share,
//! so that each piece exists once and behaves the same in both:
//!
//! - [`cli`]: what `main` does around its own flags: logging, `--validate`, the exit
//!   status, binding the two listeners, the shutdown signal.
//! - [`readiness`]: one notion of "ready" behind both gRPC health and HTTP `/ready`.
//! - [`serve`]: gRPC (the service plus `grpc.health.v1`) and HTTP side by side, with
//!   TCP_NODELAY and graceful shutdown; periodic background tasks.
//! - [`reload`]: hot reload of files and directories through their directory, with
//!   the reads off the runtime threads.
//! - [`http`]: `/metrics` (Prometheus text) and `/ready`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod http;
pub mod readiness;
pub mod reload;
pub mod serve;
#[cfg(feature = "testing")]
pub mod testing;

pub use cli::Listeners;
pub use readiness::Readiness;
pub use serve::{every, serve, Periodic, ServeError};
