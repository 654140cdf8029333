//! The MCP server registry: one YAML manifest per server (the seed's registration
//! fields plus a `gateway:` section), validated as a fleet ([`Fleet::load`]) and
//! rendered into what the gateway runs on ([`render::render`]).

#![forbid(unsafe_code)]

#[cfg(feature = "canary")]
pub mod canary;
mod check;
pub mod duration;
pub mod fleet;
mod fleet_file;
mod manifest;
pub mod model;
#[cfg(feature = "preflight")]
pub mod preflight;
pub mod problems;
pub mod render;
pub mod rollout;
mod schema;
pub mod write;

pub use check::{
    credential_secret, is_scope_token, is_tool_name, kube_name, Rules, MAX_METRIC_LABELS,
    MAX_SERVER_ID, RESERVED_LABEL_PREFIX,
};
pub use fleet::Fleet;
pub use model::{
    Credential, Endpoint, Rate, RateLimits, Scopes, Server, Timeouts, Tool, Transport, Unit,
    UnregisteredTools, Validation,
};
pub use problems::{Problem, Problems};
