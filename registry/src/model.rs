//! A validated fleet: what the renderers read. Values here passed every check of
//! `check.rs`, so renderers need no error paths of their own.

use mcp_filter_core::config::ServerId;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How the upstream speaks MCP. Both are plain HTTP to Envoy (POST, JSON or SSE
/// answers), so both are proxied alike; the value is kept for the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    StreamableHttp,
    HttpSse,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::StreamableHttp => "streamable_http",
            Transport::HttpSse => "http_sse",
        }
    }
}

/// The upstream, taken apart for Envoy's cluster and route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as written in the manifest.
    pub url: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The explicit port, or the scheme's default (80, 443).
    pub port: u16,
    /// The path, `/` at least.
    pub path: String,
}

impl Endpoint {
    pub fn is_tls(&self) -> bool {
        self.scheme == "https"
    }
}

/// One tool of a server.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    /// `schema_ref` as written.
    pub schema_ref: String,
    /// `schema_ref` resolved against the manifest's directory.
    pub schema_file: PathBuf,
    /// The tool's input schema (a valid JSON Schema whose root type is `object`).
    pub input_schema: serde_json::Value,
    /// `mcp_filter_core::input_hash::input_hash` of the schema: the digest of its
    /// canonical JSON (RFC 8785), so the filter can tell a server's advertised
    /// `inputSchema` from the registered one whatever its formatting.
    pub schema_digest: String,
    /// The `x-mcp-header` names of the schema's annotated properties (MCP 2026-07-28,
    /// `Mcp-Param-{Name}` headers), in schema order.
    pub param_headers: Vec<String>,
}

/// What happens to a `tools/call` whose arguments do not validate against the tool's
/// registered schema (the authz-service checks, with the body ext_authz sends it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Validation {
    /// Refused with 400 and JSON-RPC -32602 before it reaches the server.
    Enforce,
    /// Forwarded, and the violation audited and counted: the way to roll it out.
    #[default]
    Report,
    /// Not validated (`x-mcp-header` annotations are still checked).
    Off,
}

impl Validation {
    pub fn as_str(self) -> &'static str {
        match self {
            Validation::Enforce => "enforce",
            Validation::Report => "report",
            Validation::Off => "off",
        }
    }
}

/// Whether list answers (`tools/list`) show tools the manifest does not register.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnregisteredTools {
    /// Only registered tools are listed (a tool the registry does not know has no
    /// policy entry, so a call of it would be refused anyway).
    #[default]
    Hide,
    Show,
}

impl UnregisteredTools {
    pub fn as_str(self) -> &'static str {
        match self {
            UnregisteredTools::Hide => "hide",
            UnregisteredTools::Show => "show",
        }
    }
}

/// Window of a rate limit (the ratelimit-service's units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    /// Upper case, as envoyproxy/ratelimit files write it.
    pub fn as_upper(self) -> &'static str {
        match self {
            Unit::Second => "SECOND",
            Unit::Minute => "MINUTE",
            Unit::Hour => "HOUR",
            Unit::Day => "DAY",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub unit: Unit,
    /// At least 1.
    pub requests_per_unit: u32,
}

/// The server's rate limits; each counts one agent's calls of one tool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Any agent, any tool without a limit of its own.
    pub default: Option<Rate>,
    /// By agent id, for tools without a limit of their own.
    pub agents: BTreeMap<String, Rate>,
    /// By tool name (a tool of this server), every agent; wins over `agents`.
    pub tools: BTreeMap<String, Rate>,
}

impl RateLimits {
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.agents.is_empty() && self.tools.is_empty()
    }
}

/// Where the upstream credential comes from; never the credential itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A file holding the whole `Authorization` value; `path` as written, `resolved`
    /// against the manifest's directory.
    File { path: String, resolved: PathBuf },
    /// A Kubernetes Secret in the gateway's namespace, and the key in it.
    Secret { name: String, key: String },
}

/// Scopes beyond the built-in `mcp.server.<id>:<area>.read` ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    /// Extra scopes per tool (tools of this server).
    pub tools: BTreeMap<String, Vec<String>>,
    /// Scopes per method, replacing the built-in ones.
    pub methods: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Route timeout; `Some(ZERO)` means none (long SSE calls). `None`: Envoy's default.
    pub request: Option<Duration>,
    /// Stream idle timeout. `None`: Envoy's default.
    pub idle: Option<Duration>,
}

/// The server's own Istio sidecar, which runs the gateway's filters for the traffic
/// coming in to the server (render/sidecar.rs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IstioSidecar {
    /// The namespace of the server's pods (a DNS label).
    pub namespace: String,
    /// The labels that select the server's pods: at least one, each a valid Kubernetes
    /// label.
    pub workload_labels: BTreeMap<String, String>,
    /// The port the server's container listens on: Istio builds a sidecar's inbound
    /// listener and routes for the container port (a Service's `targetPort`), not the
    /// Service's port.
    pub port: u16,
}

/// Whether a canary whose window passed clean is promoted by the watcher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Promote {
    /// A person promotes it (`mcp-registry canary promote`); the watcher says it may.
    #[default]
    Manual,
    Auto,
}

impl Promote {
    pub fn as_str(self) -> &'static str {
        match self {
            Promote::Manual => "manual",
            Promote::Auto => "auto",
        }
    }
}

/// What the canary watcher compares, and when it acts (the seed: "monitor capability
/// negotiation success rate and tool call error rate for at least 30 minutes before
/// full cutover").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanaryWatch {
    /// The sliding window; also how long a canary must run clean before a promotion.
    pub window: Duration,
    /// Fewest canary calls (for the error ratio) and negotiations (for the negotiation
    /// ratio) before that ratio is judged: one failed call of three is no signal.
    pub min_calls: u32,
    /// Rolled back when the canary's tool-call error ratio exceeds the stable
    /// version's by more than this (absolute, 0-1).
    pub error_margin: f64,
    /// The same for the capability-negotiation failure ratio.
    pub negotiation_margin: f64,
    pub promote: Promote,
}

impl Default for CanaryWatch {
    fn default() -> Self {
        CanaryWatch {
            window: Duration::from_secs(30 * 60),
            min_calls: 20,
            error_margin: 0.02,
            negotiation_margin: 0.01,
            promote: Promote::Manual,
        }
    }
}

/// A second version of a server that gets `weight` percent of its requests. It shares
/// the server's registration (tools, schemas, scopes, limits, credential, timeouts):
/// policy and limits are per server id, so a canary is judged by the same rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    /// Differs from the server's `version`.
    pub version: String,
    /// Same path as the server's endpoint (Envoy rewrites the path per route, not per
    /// weighted cluster), another host or port.
    pub endpoint: Endpoint,
    /// Percent of requests, 0-100, as the manifest says; the rollout state file
    /// (`rollout.rs`) overrides it after a rollback or promotion.
    pub weight: u8,
    pub watch: CanaryWatch,
}

/// A read-only, repeatable tool call `preflight` makes (validated against the tool's
/// registered schema).
#[derive(Debug, Clone, PartialEq)]
pub struct PreflightCall {
    /// A registered tool of the server.
    pub tool: String,
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

/// One registered, validated server.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// The manifest it came from (the fleet directory joined with the file name).
    pub manifest_file: PathBuf,
    pub id: ServerId,
    pub version: String,
    pub transport: Transport,
    pub endpoint: Endpoint,
    /// In manifest order.
    pub tools: Vec<Tool>,
    pub owner: String,
    pub sla_tier: Option<String>,
    pub on_call_runbook: String,
    /// Where the gateway exposes the server (unique in the fleet).
    pub path: String,
    pub scopes: Scopes,
    pub rate_limits: RateLimits,
    pub upstream_credential: Option<Credential>,
    pub timeouts: Timeouts,
    /// Extra Prometheus labels (at most 8).
    pub metric_labels: BTreeMap<String, String>,
    /// When the server's own sidecar runs the gateway's filters.
    pub istio_sidecar: Option<IstioSidecar>,
    /// Argument validation against the registered schemas.
    pub validation: Validation,
    /// Whether list answers show tools the manifest does not register.
    pub unregistered_tools: UnregisteredTools,
    /// A second version getting a share of the requests.
    pub canary: Option<Canary>,
    /// The expected call volume, all agents together (preflight's load test).
    pub expected_calls: Option<Rate>,
    pub preflight_call: Option<PreflightCall>,
    /// MCP protocol versions the server must serve (empty: not declared).
    pub protocol_versions: Vec<String>,
}

impl Server {
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    pub fn has_tool(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.name == name)
    }

    /// Whether ext_authz must send the authz-service the request body: to validate
    /// arguments, or to compare `Mcp-Param-*` headers with them (checked in every
    /// mode). Servers that need neither cost no body buffering.
    pub fn needs_body(&self) -> bool {
        self.validation != Validation::Off || self.tools.iter().any(|t| !t.param_headers.is_empty())
    }
}
