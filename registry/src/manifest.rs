//! The manifest file as written: one YAML file per MCP server.
//!
//! The top level holds the seed's registration fields, as the seed document defines
//! them (`server_id` ... `on_call_runbook`); everything the gateway needs beyond them
//! sits in one `gateway:` section, so a team's catalog entry stays recognisable. These
//! types only give the file its shape; keys they do not know are collected while
//! parsing (`serde_ignored`) and refused in `check.rs`, with every other problem at
//! once, rather than stopping the parse at the first. What the values must be is
//! checked there too. Fields
//! the seed requires are `Option` here so that a missing one is reported in our words
//! ("missing"), next to every other problem, instead of stopping the parse.

use serde::Deserialize;
use std::collections::BTreeMap;

/// One server's manifest.
#[derive(Debug, Deserialize)]
pub(crate) struct RawManifest {
    /// The server's registered id (the filter's `ServerId` rule).
    pub server_id: Option<String>,
    /// The server's version: a string (`"1.3.2"`); a YAML number is refused, since
    /// YAML would turn `1.10` into `1.1`.
    pub version: Option<serde_norway::Value>,
    /// `streamable_http` or `http_sse`.
    pub transport: Option<String>,
    /// The upstream URL (http or https).
    pub endpoint: Option<String>,
    /// The tools the server offers.
    pub tools: Option<Vec<RawTool>>,
    /// Who answers for the server (a team address).
    pub owner: Option<String>,
    /// Free text (`tier-1`).
    pub sla_tier: Option<String>,
    /// Must be `true` when given: the gateway authenticates every agent.
    pub auth_required: Option<bool>,
    /// Must be `oauth2` when given: what the authz-service verifies.
    pub auth_scheme: Option<String>,
    /// An http(s) URL of the server's runbook.
    pub on_call_runbook: Option<String>,
    /// What the gateway needs beyond the catalog entry.
    #[serde(default)]
    pub gateway: RawGateway,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawTool {
    pub name: Option<String>,
    /// The tool's input JSON Schema, relative to the manifest's directory.
    pub schema_ref: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawGateway {
    /// Where the gateway exposes the server; default `/<server_id>/mcp`.
    pub path: Option<String>,
    #[serde(default)]
    pub scopes: RawScopes,
    #[serde(default)]
    pub rate_limits: RawRateLimits,
    /// Kept as a map so that an inline secret (`value:`, `token:`) gets a message of its
    /// own rather than serde's "unknown field".
    pub upstream_credential: Option<BTreeMap<String, serde_norway::Value>>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub metric_labels: BTreeMap<String, String>,
    /// The server's own Istio sidecar runs the gateway's filters for it (render
    /// writes an EnvoyFilter for its pods).
    pub istio_sidecar: Option<RawIstioSidecar>,
    /// `enforce`, `report` (default) or `off`: what happens to a `tools/call` whose
    /// arguments do not validate against the tool's schema.
    pub validation: Option<String>,
    /// `hide` (default) or `show`: whether `tools/list` answers show tools this
    /// manifest does not register.
    pub unregistered_tools: Option<String>,
    /// A second version of the server that gets a share of the requests, watched by
    /// `mcp-registry canary watch` and rolled back or promoted on the gateway's metrics.
    pub canary: Option<RawCanary>,
    /// How many calls the server expects, all agents together: the load `preflight`
    /// sends is a multiple of it.
    pub expected_calls: Option<RawRate>,
    /// A read-only tool call `preflight` may repeat (audit, rate limit and load steps):
    /// which call is safe is the team's knowledge, so it sits in the manifest; the
    /// credentials to make it never do.
    pub preflight_call: Option<RawPreflightCall>,
    /// The MCP protocol versions the server must serve (`2026-07-28`, `2025-11-25`):
    /// `preflight` requires each of them, beyond what the server itself claims.
    pub protocol_versions: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawCanary {
    /// The canary's version: the same rules as the top-level `version`.
    pub version: Option<serde_norway::Value>,
    /// The canary's upstream URL: the same rules as `endpoint`, and the same path.
    pub endpoint: Option<String>,
    /// Percent of the server's requests the canary gets (0-100).
    pub weight: Option<u64>,
    /// What the watcher compares and when it acts; every key has a default.
    #[serde(default)]
    pub watch: RawCanaryWatch,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawCanaryWatch {
    /// The sliding window of the comparison (and the clean time before a promotion).
    pub window: Option<String>,
    /// Fewest canary calls (and negotiations) before either rate is judged.
    pub min_calls: Option<u64>,
    /// How much higher (absolute) the canary's tool-call error ratio may be.
    pub error_margin: Option<f64>,
    /// How much higher (absolute) the canary's negotiation failure ratio may be.
    pub negotiation_margin: Option<f64>,
    /// `manual` (default) or `auto`: whether a clean window promotes the canary.
    pub promote: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawPreflightCall {
    pub tool: Option<String>,
    /// The call's arguments; any JSON value here, checked to be an object that
    /// validates against the tool's schema.
    pub arguments: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawIstioSidecar {
    /// The namespace of the server's pods.
    pub namespace: Option<String>,
    /// The labels that select the server's pods (the EnvoyFilter's workloadSelector).
    pub workload_labels: Option<BTreeMap<String, String>>,
    /// The port the server's container listens on; default: the endpoint's port.
    pub port: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawScopes {
    /// Extra scopes per tool, beyond `mcp.server.<id>:tools.read`.
    #[serde(default)]
    pub tools: BTreeMap<String, Vec<String>>,
    /// Scopes per JSON-RPC method, replacing the built-in ones.
    #[serde(default)]
    pub methods: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRateLimits {
    /// Each agent, each tool.
    pub default: Option<RawRate>,
    /// Per agent id, each tool.
    #[serde(default)]
    pub agents: BTreeMap<String, RawRate>,
    /// Per tool, each agent; wins over `agents`.
    #[serde(default)]
    pub tools: BTreeMap<String, RawRate>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawRate {
    pub unit: Option<String>,
    pub requests_per_unit: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawTimeouts {
    /// Route timeout; `0s` means none (long SSE calls).
    pub request: Option<String>,
    /// Stream idle timeout.
    pub idle: Option<String>,
}
