//! The filter's configuration: JSON in the Envoy plugin config
//! (`envoy.extensions.wasm.v3.PluginConfig.configuration`).
//!
//! Values that must have a shape are newtypes checked while deserialising, so an
//! invalid configuration cannot exist in memory and the plugin refuses to start with a
//! message naming the field and the reason.

use serde::Deserialize;

/// Default request body limit (1 MiB). Keep Envoy's own buffer limit
/// (`per_connection_buffer_limit_bytes`) above it, or Envoy answers 413 itself,
/// without the JSON-RPC body clients need.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

/// Upper bound on `max_body_bytes`: the whole body sits in the wasm VM's memory.
pub const MAX_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// The plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// One server behind this filter: its registered id, sent as `x-mcp-server-id`
    /// (for example `financial-data`). Either this or `servers_from_routes`.
    #[serde(default)]
    pub server_id: Option<ServerId>,
    /// A fleet behind one filter: each route names its server in its metadata
    /// (`filter_metadata.mcp_gateway.server_id`, and `server_version`), as
    /// `mcp-registry render` writes them; see [`crate::route`].
    #[serde(default)]
    pub servers_from_routes: bool,
    /// With `server_id`: request paths (without query string) that carry MCP; requests
    /// to other paths only get the gateway headers stripped. Default `["/mcp"]`. With
    /// `servers_from_routes` the routes decide, so it must be absent.
    #[serde(default)]
    pub mcp_paths: Option<Vec<McpPath>>,
    /// With `server_id`: the registered version, for the audit record.
    #[serde(default)]
    pub server_version: Option<ServerVersion>,
    /// Largest request body read, in bytes; larger bodies get 413. Default 1 MiB,
    /// at most 64 MiB.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: BodyLimit,
    /// Longest JSON-RPC `method` accepted, in bytes. A longer one is refused (400,
    /// -32600) before any side call: it would become a header sent to the authz and
    /// ratelimit services and a field of the audit line. Default 128, at most 4096.
    #[serde(default = "default_max_method_bytes")]
    pub max_method_bytes: MethodBound,
    /// Longest resource URI (`params.uri`) accepted, in bytes; a longer one is refused
    /// (400, -32602) for the same reason. Default 2048, at most 16384.
    #[serde(default = "default_max_uri_bytes")]
    pub max_uri_bytes: UriBound,
    /// Where a verified agent identity comes from inside Envoy. Default: none (the
    /// authz-service sets `x-agent-id` from the verified token).
    #[serde(default)]
    pub agent_identity: AgentIdentity,
    /// Labels of the filter's metrics.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Per-caller lists: where the filter learns which entries of a `tools/list`,
    /// `prompts/list`, `resources/list` or `resources/templates/list` answer the caller
    /// may see. Default `authz`: from the authz-service's decision (ext_authz dynamic
    /// metadata); without it every entry is hidden (fail closed). `off` passes lists
    /// unfiltered: only for deployments without the authz-service (jwt_authn, mTLS),
    /// whose lists then show every tool.
    #[serde(default)]
    pub list_filtering: ListFiltering,
    /// Largest list answer (a JSON body, or one SSE event) the filter holds to filter
    /// it, in bytes; a larger one is replaced by a JSON-RPC error. Default 8 MiB, at
    /// most 64 MiB.
    #[serde(default = "default_max_list_bytes")]
    pub max_list_bytes: ListLimit,
}

/// See [`FilterConfig::list_filtering`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListFiltering {
    #[default]
    Authz,
    Off,
}

/// Default `max_list_bytes` (8 MiB).
pub const DEFAULT_MAX_LIST_BYTES: u64 = 8 * 1024 * 1024;

fn default_max_list_bytes() -> ListLimit {
    ListLimit(DEFAULT_MAX_LIST_BYTES)
}

/// `max_list_bytes`, checked while deserialising.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct ListLimit(u64);

impl ListLimit {
    pub fn bytes(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl TryFrom<u64> for ListLimit {
    type Error = String;
    fn try_from(value: u64) -> Result<Self, Self::Error> {
        if value == 0 || value > MAX_MAX_BODY_BYTES {
            return Err(format!(
                "max_list_bytes {value} must be between 1 and {MAX_MAX_BODY_BYTES}"
            ));
        }
        Ok(ListLimit(value))
    }
}

/// Most tool names a configuration may list for metric labels.
pub const MAX_METRIC_TOOL_NAMES: usize = 1000;

/// Metric label settings. Every distinct label value is a separate Envoy stat, so tool
/// names come from an allow-list: an agent calling made-up tool names cannot grow
/// the stats without bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Tool names that get their own `mcp_tool` label; every other tool is counted
    /// as `other`. Default: none.
    #[serde(default)]
    pub tool_names: ToolNames,
}

/// The allow-list of tool names, checked while deserialising. Kept sorted, so a
/// request's tool is found by binary search (up to 1,000 names), and a name's place in
/// the list identifies its label without a string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct ToolNames(Vec<String>);

impl ToolNames {
    pub fn contains(&self, name: &str) -> bool {
        self.index(name).is_some()
    }

    /// The position of `name` in the allow-list.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.0.binary_search_by(|n| n.as_str().cmp(name)).ok()
    }

    /// The name at `index`.
    pub fn get(&self, index: usize) -> Option<&str> {
        self.0.get(index).map(String::as_str)
    }
}

impl TryFrom<Vec<String>> for ToolNames {
    type Error = String;
    fn try_from(names: Vec<String>) -> Result<Self, Self::Error> {
        if names.len() > MAX_METRIC_TOOL_NAMES {
            return Err(format!(
                "metrics.tool_names lists {} names; at most {MAX_METRIC_TOOL_NAMES}",
                names.len()
            ));
        }
        // MCP 2025-11-25 "Tool names": 1-128 characters of A-Z a-z 0-9 _ - . (which
        // also keeps them safe inside a stat name and the tag-extraction regexes).
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if let Some(bad) = names
            .iter()
            .find(|n| n.is_empty() || n.len() > 128 || !n.chars().all(allowed))
        {
            return Err(format!(
                "metrics.tool_names entry {bad:?} must be 1-128 characters of A-Z a-z 0-9 _ - ."
            ));
        }
        let mut names = names;
        names.sort_unstable();
        names.dedup();
        Ok(ToolNames(names))
    }
}

/// The trusted sources of `x-agent-id` that exist inside Envoy. Nothing here is
/// something the client can choose: a header would be.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentIdentity {
    /// Leave `x-agent-id` unset (after stripping client copies).
    #[default]
    None,
    /// The first URI SAN of the verified client certificate (mTLS), e.g. a SPIFFE id.
    PeerCertificateUriSan,
    /// A claim of the JWT that Envoy's `jwt_authn` filter verified, read from the
    /// dynamic metadata it writes (`payload_in_metadata`).
    JwtAuthn {
        /// `payload_in_metadata` of the jwt_authn provider.
        payload_in_metadata: NonEmpty,
        /// The claim naming the agent. Default `sub`.
        #[serde(default = "default_claim")]
        claim: NonEmpty,
    },
}

/// A configuration error, worded for the Envoy log.
#[derive(Debug, thiserror::Error)]
#[error("invalid MCP filter plugin configuration: {0}")]
pub struct ConfigError(String);

impl FilterConfig {
    /// Parses the plugin configuration bytes.
    pub fn from_json(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError(
                "configuration is empty; it needs at least {\"server_id\": \"...\"}".into(),
            ));
        }
        let config: FilterConfig =
            serde_json::from_slice(bytes).map_err(|e| ConfigError(e.to_string()))?;
        let problem = match (&config.server_id, config.servers_from_routes) {
            (None, false) => Some("set server_id (one MCP server) or servers_from_routes: true (a fleet: each route's metadata names its server)"),
            (Some(_), true) => Some("server_id and servers_from_routes exclude each other: one server, or the routes name theirs"),
            (None, true) if config.mcp_paths.is_some() => Some("mcp_paths does not apply with servers_from_routes: the routes decide which paths are MCP"),
            (None, true) if config.server_version.is_some() => Some("server_version does not apply with servers_from_routes: each route carries its server's version"),
            (None, true) if config.metrics.tool_names != ToolNames::default() => Some("metrics.tool_names does not apply with servers_from_routes: each route lists its server's registered tools"),
            _ => None,
        };
        match problem {
            Some(problem) => Err(ConfigError(problem.into())),
            None => Ok(config),
        }
    }

    /// With a fixed `server_id`: that id when `path` (which may carry a query string)
    /// is one of the MCP paths. `None` with `servers_from_routes`, where routes decide.
    pub fn fixed_server_for(&self, path: &str) -> Option<&ServerId> {
        let server = self.server_id.as_ref()?;
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let on_mcp_path = match &self.mcp_paths {
            Some(paths) => paths.iter().any(|p| p.0 == path),
            None => path == DEFAULT_MCP_PATH,
        };
        on_mcp_path.then_some(server)
    }

    /// True when `path` is one of the MCP paths of a fixed `server_id`.
    pub fn is_mcp_path(&self, path: &str) -> bool {
        self.fixed_server_for(path).is_some()
    }
}

/// The MCP path of a fixed server when `mcp_paths` is not set.
const DEFAULT_MCP_PATH: &str = "/mcp";

fn default_max_body_bytes() -> BodyLimit {
    BodyLimit(DEFAULT_MAX_BODY_BYTES)
}

fn default_max_method_bytes() -> MethodBound {
    MethodBound(128)
}

fn default_max_uri_bytes() -> UriBound {
    UriBound(2048)
}

/// `max_method_bytes`: 1 to 4096.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct MethodBound(usize);

/// `max_uri_bytes`: 1 to 16384.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct UriBound(usize);

impl MethodBound {
    pub fn bytes(self) -> usize {
        self.0
    }
}

impl UriBound {
    pub fn bytes(self) -> usize {
        self.0
    }
}

fn bound(field: &str, value: u64, max: u64) -> Result<usize, String> {
    match usize::try_from(value) {
        Ok(bytes) if (1..=max).contains(&value) => Ok(bytes),
        _ => Err(format!("{field} {value} must be between 1 and {max}")),
    }
}

impl TryFrom<u64> for MethodBound {
    type Error = String;
    fn try_from(value: u64) -> Result<Self, Self::Error> {
        bound("max_method_bytes", value, 4096).map(MethodBound)
    }
}

impl TryFrom<u64> for UriBound {
    type Error = String;
    fn try_from(value: u64) -> Result<Self, Self::Error> {
        bound("max_uri_bytes", value, 16384).map(UriBound)
    }
}

fn default_claim() -> NonEmpty {
    NonEmpty("sub".into())
}

/// A server id: 1-128 characters of `A-Z a-z 0-9 . _ : -`, so that it is a valid
/// header value, metric tag and scope segment as it is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ServerId(String);

impl ServerId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServerId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        if value.is_empty() || value.len() > 128 || !value.chars().all(allowed) {
            return Err(format!(
                "server_id {value:?} must be 1-128 characters of A-Z a-z 0-9 . _ : -"
            ));
        }
        Ok(ServerId(value))
    }
}

/// A server's registered version as the audit record and the `mcp_server_version`
/// metric label carry it: 1-64 of `A-Z a-z 0-9 . _ + : -` (SemVer with pre-release
/// and build metadata fits). Route and cluster metadata are configuration, but the
/// value becomes part of every audit line and of Envoy stat names, where a `;` or `=`
/// would inject a stat tag (see `crate::stats`), so the rule is this narrow.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ServerVersion(String);

impl ServerVersion {
    /// Longest version accepted.
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The one rule, also for callers that check a version without keeping it.
    pub fn is_valid(value: &str) -> bool {
        !value.is_empty()
            && value.len() <= Self::MAX_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b':' | b'-'))
    }
}

impl TryFrom<String> for ServerVersion {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if !ServerVersion::is_valid(&value) {
            return Err(format!(
                "server_version {value:?} must be 1-64 of A-Z a-z 0-9 . _ + : -"
            ));
        }
        Ok(ServerVersion(value))
    }
}

/// An absolute request path without query string.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct McpPath(String);

impl TryFrom<String> for McpPath {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if !value.starts_with('/')
            || value.contains(['?', '#'])
            || value.contains(char::is_whitespace)
        {
            return Err(format!(
                "mcp_paths entry {value:?} must be an absolute path without query string"
            ));
        }
        Ok(McpPath(value))
    }
}

/// The body limit, 1 byte to 64 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct BodyLimit(u64);

impl BodyLimit {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl TryFrom<u64> for BodyLimit {
    type Error = String;
    fn try_from(value: u64) -> Result<Self, Self::Error> {
        if value == 0 || value > MAX_MAX_BODY_BYTES {
            return Err(format!(
                "max_body_bytes {value} must be between 1 and {MAX_MAX_BODY_BYTES}"
            ));
        }
        Ok(BodyLimit(value))
    }
}

/// A non-empty string.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct NonEmpty(String);

impl NonEmpty {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NonEmpty {
    type Error = &'static str;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.is_empty() {
            return Err("value must not be empty");
        }
        Ok(NonEmpty(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_takes_defaults() {
        let config = FilterConfig::from_json(br#"{"server_id":"financial-data"}"#).unwrap();
        assert_eq!(
            config.server_id.as_ref().unwrap().as_str(),
            "financial-data"
        );
        assert_eq!(config.max_body_bytes.bytes(), DEFAULT_MAX_BODY_BYTES);
        assert_eq!(config.agent_identity, AgentIdentity::None);
        assert!(config.is_mcp_path("/mcp"));
        assert!(config.is_mcp_path("/mcp?session=1"));
        assert!(!config.is_mcp_path("/mcp/"));
        assert!(!config.is_mcp_path("/MCP"));
    }

    #[test]
    fn full_config() {
        let config = FilterConfig::from_json(
            br#"{"server_id":"kb","mcp_paths":["/a","/b"],"max_body_bytes":10,
                "agent_identity":{"source":"jwt_authn","payload_in_metadata":"jwt_payload"}}"#,
        )
        .unwrap();
        assert!(config.is_mcp_path("/b"));
        assert!(!config.metrics.tool_names.contains("x"));
        assert_eq!(
            config.agent_identity,
            AgentIdentity::JwtAuthn {
                payload_in_metadata: NonEmpty("jwt_payload".into()),
                claim: NonEmpty("sub".into())
            }
        );
    }

    #[test]
    fn versions_cannot_carry_stat_tag_syntax() {
        for ok in [
            "1.3.2",
            "2.0.0-rc.1+build.7",
            "1.4.0+build:7",
            "v2_beta",
            "0",
        ] {
            assert!(ServerVersion::try_from(ok.to_owned()).is_ok(), "{ok}");
        }
        let longest = "9".repeat(64);
        assert!(ServerVersion::try_from(longest.clone()).is_ok());
        // `;` and `=` would add a tag to the stat name (`;version=1;tool=x`), the rest
        // is outside the rule: spaces, `/`, quotes, `*`, non-ASCII, control bytes.
        for bad in [
            "", "1;tool=x", "1=2", "1 2", "1/2", "\"1\"", "1*", "1,2", "é", "1\n",
        ] {
            let error = ServerVersion::try_from(bad.to_owned()).unwrap_err();
            assert_eq!(
                error,
                format!("server_version {bad:?} must be 1-64 of A-Z a-z 0-9 . _ + : -")
            );
        }
        assert!(ServerVersion::try_from(format!("{longest}9")).is_err());
    }

    /// One case per error, with the exact message the Envoy log shows.
    #[test]
    fn config_errors_name_field_and_reason() {
        let table: &[(&str, &str)] = &[
            (
                "",
                "invalid MCP filter plugin configuration: configuration is empty; it needs at least {\"server_id\": \"...\"}",
            ),
            (
                "{}",
                "invalid MCP filter plugin configuration: set server_id (one MCP server) or servers_from_routes: true (a fleet: each route's metadata names its server)",
            ),
            (
                r#"{"server_id":"a","servers_from_routes":true}"#,
                "invalid MCP filter plugin configuration: server_id and servers_from_routes exclude each other: one server, or the routes name theirs",
            ),
            (
                r#"{"servers_from_routes":true,"mcp_paths":["/mcp"]}"#,
                "invalid MCP filter plugin configuration: mcp_paths does not apply with servers_from_routes: the routes decide which paths are MCP",
            ),
            (
                r#"{"servers_from_routes":true,"server_version":"1"}"#,
                "invalid MCP filter plugin configuration: server_version does not apply with servers_from_routes: each route carries its server's version",
            ),
            (
                r#"{"servers_from_routes":true,"metrics":{"tool_names":["a"]}}"#,
                "invalid MCP filter plugin configuration: metrics.tool_names does not apply with servers_from_routes: each route lists its server's registered tools",
            ),
            (
                r#"{"server_id":"a","server_version":"1 2"}"#,
                "invalid MCP filter plugin configuration: server_version \"1 2\" must be 1-64 of A-Z a-z 0-9 . _ + : - at line 1 column 40",
            ),
            (
                r#"{"server_id":"a b"}"#,
                "invalid MCP filter plugin configuration: server_id \"a b\" must be 1-128 characters of A-Z a-z 0-9 . _ : - at line 1 column 19",
            ),
            (
                r#"{"server_id":"a","max_body_bytes":0}"#,
                "invalid MCP filter plugin configuration: max_body_bytes 0 must be between 1 and 67108864 at line 1 column 36",
            ),
            (
                r#"{"server_id":"a","max_method_bytes":5000}"#,
                "invalid MCP filter plugin configuration: max_method_bytes 5000 must be between 1 and 4096 at line 1 column 41",
            ),
            (
                r#"{"server_id":"a","max_uri_bytes":0}"#,
                "invalid MCP filter plugin configuration: max_uri_bytes 0 must be between 1 and 16384 at line 1 column 35",
            ),
            (
                r#"{"server_id":"a","mcp_paths":["mcp"]}"#,
                "invalid MCP filter plugin configuration: mcp_paths entry \"mcp\" must be an absolute path without query string at line 1 column 36",
            ),
            (
                r#"{"server_id":"a","body_limit":5}"#,
                "invalid MCP filter plugin configuration: unknown field `body_limit`, expected one of `server_id`, `servers_from_routes`, `mcp_paths`, `server_version`, `max_body_bytes`, `max_method_bytes`, `max_uri_bytes`, `agent_identity`, `metrics`, `list_filtering`, `max_list_bytes` at line 1 column 29",
            ),
            (
                r#"{"server_id":"a","agent_identity":{"source":"header"}}"#,
                "invalid MCP filter plugin configuration: unknown variant `header`, expected one of `none`, `peer_certificate_uri_san`, `jwt_authn` at line 1 column 52",
            ),
            (
                r#"{"server_id":"a","agent_identity":{"source":"jwt_authn"}}"#,
                "invalid MCP filter plugin configuration: missing field `payload_in_metadata` at line 1 column 57",
            ),
            (
                r#"{"server_id":"a","metrics":{"tool_names":["ok","not ok"]}}"#,
                "invalid MCP filter plugin configuration: metrics.tool_names entry \"not ok\" must be 1-128 characters of A-Z a-z 0-9 _ - . at line 1 column 57",
            ),
            (
                r#"{"server_id":"a","metrics":{"tools":[]}}"#,
                "invalid MCP filter plugin configuration: unknown field `tools`, expected `tool_names` at line 1 column 35",
            ),
            (
                "not json",
                "invalid MCP filter plugin configuration: expected ident at line 1 column 2",
            ),
        ];
        for (input, message) in table {
            let error = FilterConfig::from_json(input.as_bytes()).unwrap_err();
            assert_eq!(error.to_string(), *message, "input {input}");
        }
    }
}
