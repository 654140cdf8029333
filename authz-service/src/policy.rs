//! The authorization policy: which scopes each MCP call needs.
//!
//! Scope names follow the seed documents' convention, `mcp.server.<server>:<area>.read`,
//! with per-tool scopes for `tools/call`:
//!
//! | call | scopes needed |
//! |---|---|
//! | `initialize`, `ping`, `server/discover`, `notifications/*`, GET/DELETE, client responses | a valid token only |
//! | `tools/list` | `mcp.server.<S>:tools.read` |
//! | `tools/call` of tool T | `mcp.server.<S>:tools.read` + the scopes the policy lists for T |
//! | `resources/list`, `resources/templates/list`, `resources/read`, `resources/subscribe`, `resources/unsubscribe` | `mcp.server.<S>:resources.read` |
//! | `prompts/list`, `prompts/get` | `mcp.server.<S>:prompts.read` |
//! | any other method | what the server's `methods` entry lists; unlisted: refused |
//!
//! A server's `methods` entry replaces the built-in scopes of that method. Servers and
//! tools the policy does not name are refused unless `unknown_server` / `unknown_tool`
//! say `allow` (then an unknown tool needs the built-in `tools/call` scopes only).

use mcp_filter_core::config::ServerId;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// One MCP call, as the filter labelled it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Call<'a> {
    pub server: Option<&'a str>,
    pub method: Option<&'a str>,
    pub tool: Option<&'a str>,
}

/// Why the policy refuses a call whatever the token's scopes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("MCP server {0:?} is not registered with the gateway")]
    UnknownServer(String),
    #[error("tool {tool:?} is not registered for MCP server {server:?}")]
    UnknownTool { server: String, tool: String },
    #[error("method {method:?} is not allowed on MCP server {server:?}")]
    UnknownMethod { server: String, method: String },
    #[error("the request carries no MCP server id")]
    NoServer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unknown {
    #[default]
    Deny,
    Allow,
}

/// The loaded, checked policy: made only by [`Policy::parse`] / [`Policy::load`], so
/// every server id follows the gateway's rule ([`ServerId`]) and every scope is a
/// valid OAuth scope token.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    unknown_server: Unknown,
    unknown_tool: Unknown,
    /// By server id, each checked with [`ServerId`] at load (kept as `String` keys so
    /// a request's `&str` looks them up without allocating).
    servers: BTreeMap<String, ServerPolicy>,
}

/// What the policy says about one server.
#[derive(Debug, Clone, Default)]
pub struct ServerPolicy {
    /// Extra scopes per tool (beyond `tools.read`).
    tools: BTreeMap<String, Vec<String>>,
    /// Scopes per method, replacing the built-in ones.
    methods: BTreeMap<String, Vec<String>>,
    /// Credential sent upstream instead of the client's token (`Authorization` value).
    upstream_credential: Option<String>,
    /// Each tool with every scope its `tools/call` needs (for `allowed_tools`).
    callable: CallableTools,
}

impl ServerPolicy {
    /// Extra scopes per tool (beyond `tools.read`).
    pub fn tools(&self) -> &BTreeMap<String, Vec<String>> {
        &self.tools
    }

    /// Scopes per method, replacing the built-in ones.
    pub fn methods(&self) -> &BTreeMap<String, Vec<String>> {
        &self.methods
    }
}

impl Policy {
    pub fn unknown_server(&self) -> Unknown {
        self.unknown_server
    }

    pub fn unknown_tool(&self) -> Unknown {
        self.unknown_tool
    }

    /// The policy of a server the policy names.
    pub fn server(&self, id: &str) -> Option<&ServerPolicy> {
        self.servers.get(id)
    }

    /// Whether the policy names this server (metrics label only named servers, so a
    /// client cannot grow them).
    pub fn knows(&self, id: &str) -> bool {
        self.servers.contains_key(id)
    }

    /// Every scope the call needs, or why it is refused outright.
    pub fn required_scopes(&self, call: &Call<'_>) -> Result<Vec<String>, Refusal> {
        let Some(method) = call.method else {
            // GET stream, DELETE, or a client's JSON-RPC response: a valid token only.
            return Ok(Vec::new());
        };
        let server = call.server.ok_or(Refusal::NoServer)?;
        let fallback = ServerPolicy::default();
        let rules = match self.servers.get(server) {
            Some(rules) => rules,
            None if self.unknown_server == Unknown::Allow => &fallback,
            None => return Err(Refusal::UnknownServer(server.to_owned())),
        };
        let prefix = format!("mcp.server.{server}");
        let mut scopes = match rules.methods.get(method) {
            Some(scopes) => scopes.clone(),
            None => builtin(&prefix, method).ok_or_else(|| Refusal::UnknownMethod {
                server: server.to_owned(),
                method: method.to_owned(),
            })?,
        };
        if method == "tools/call" {
            let tool = call.tool.unwrap_or_default();
            match rules.tools.get(tool) {
                Some(extra) => scopes.extend(extra.iter().cloned()),
                None if self.unknown_tool == Unknown::Allow => {}
                None => {
                    return Err(Refusal::UnknownTool {
                        server: server.to_owned(),
                        tool: tool.to_owned(),
                    })
                }
            }
        }
        scopes.sort();
        scopes.dedup();
        Ok(scopes)
    }

    /// Every scope the policy can ask for (RFC 9728 `scopes_supported`).
    pub fn scopes_supported(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for (server, rules) in &self.servers {
            let prefix = format!("mcp.server.{server}");
            for area in ["tools", "resources", "prompts"] {
                all.push(format!("{prefix}:{area}.read"));
            }
            all.extend(rules.tools.values().flatten().cloned());
            all.extend(rules.methods.values().flatten().cloned());
        }
        all.sort();
        all.dedup();
        all
    }

    pub fn upstream_credential(&self, server: Option<&str>) -> Option<&str> {
        self.servers.get(server?)?.upstream_credential.as_deref()
    }

    /// The `allowed_tools` leaf of a `tools/list` on `server`: the policy's tools of
    /// that server whose `tools/call` a token with `scopes` passes, as a sorted JSON
    /// array (`[]` for a server the policy does not name: it lists no tools).
    pub fn allowed_tools(&self, server: &str, scopes: &BTreeSet<String>) -> String {
        match self.servers.get(server) {
            Some(rules) => rules.callable.allowed_json(scopes),
            None => "[]".to_owned(),
        }
    }

    /// Whether a token with `scopes` may call `method` on `server` (the rule a
    /// `prompts/list` or `resources/list` answer is filtered by: the policy has no
    /// per-prompt or per-resource scopes, so a list shows all entries or none).
    pub fn permits(&self, server: &str, method: &str, scopes: &BTreeSet<String>) -> bool {
        let call = Call {
            server: Some(server),
            method: Some(method),
            tool: None,
        };
        self.required_scopes(&call)
            .is_ok_and(|required| required.iter().all(|scope| scopes.contains(scope)))
    }
}

fn builtin(prefix: &str, method: &str) -> Option<Vec<String>> {
    let area = match method {
        "initialize" | "ping" | "server/discover" => return Some(Vec::new()),
        m if m.starts_with("notifications/") => return Some(Vec::new()),
        "tools/list" | "tools/call" => "tools",
        "resources/list"
        | "resources/templates/list"
        | "resources/read"
        | "resources/subscribe"
        | "resources/unsubscribe" => "resources",
        "prompts/list" | "prompts/get" => "prompts",
        _ => return None,
    };
    Some(vec![format!("{prefix}:{area}.read")])
}

// ---- loading -------------------------------------------------------------------

/// A policy file error: the file, the field and the reason, every one found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    pub problems: Vec<String>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self
            .problems
            .iter()
            .map(|problem| format!("{}: {problem}", self.file.display()))
            .collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for PolicyError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    unknown_server: Unknown,
    #[serde(default)]
    unknown_tool: Unknown,
    #[serde(default)]
    servers: BTreeMap<String, RawServer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default)]
    tools: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    methods: BTreeMap<String, Vec<String>>,
    upstream_credential_file: Option<PathBuf>,
}

impl Policy {
    /// Reads and checks a policy file. Relative `upstream_credential_file` paths are
    /// resolved against the policy file's directory.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let fail = |problem: String| PolicyError {
            file: path.to_owned(),
            problems: vec![problem],
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        Policy::parse(&text, path)
    }

    /// Parses policy text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = serde_norway::from_str(text).map_err(|e| PolicyError {
            file: path.to_owned(),
            problems: vec![e.to_string()],
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut problems = Vec::new();
        let mut servers = BTreeMap::new();
        for (id, server) in raw.servers {
            let field = format!("servers.{id}");
            // The filter's rule for `server_id` (the value the filter labels requests
            // with): an id it refuses could never match a request.
            if ServerId::try_from(id.clone()).is_err() {
                problems.push(format!(
                    "{field}: server id must be 1-128 characters of A-Z a-z 0-9 . _ : -"
                ));
            }
            for (tool, scopes) in &server.tools {
                if tool.is_empty() {
                    problems.push(format!("{field}.tools: tool name must not be empty"));
                }
                check_scopes(&format!("{field}.tools.{tool}"), scopes, &mut problems);
            }
            for (method, scopes) in &server.methods {
                if method.is_empty() || method.contains(char::is_whitespace) {
                    problems.push(format!(
                        "{field}.methods.{method}: not a JSON-RPC method name"
                    ));
                }
                check_scopes(&format!("{field}.methods.{method}"), scopes, &mut problems);
            }
            let upstream_credential = match &server.upstream_credential_file {
                None => None,
                Some(file) => match read_credential(&base.join(file)) {
                    Ok(value) => Some(value),
                    Err(reason) => {
                        problems.push(format!("{field}.upstream_credential_file: {reason}"));
                        None
                    }
                },
            };
            // The same rule as `required_scopes` for `tools/call`, kept per tool.
            let call_scopes = match server.methods.get("tools/call") {
                Some(scopes) => scopes.clone(),
                None => builtin(&format!("mcp.server.{id}"), "tools/call").unwrap_or_default(),
            };
            let callable = CallableTools::new(&call_scopes, &server.tools);
            servers.insert(
                id,
                ServerPolicy {
                    tools: server.tools,
                    methods: server.methods,
                    upstream_credential,
                    callable,
                },
            );
        }
        if !problems.is_empty() {
            return Err(PolicyError {
                file: path.to_owned(),
                problems,
            });
        }
        Ok(Policy {
            unknown_server: raw.unknown_server,
            unknown_tool: raw.unknown_tool,
            servers,
        })
    }
}

/// Scopes end up in `WWW-Authenticate: ... scope="a b"` (RFC 6750 section 3: scope
/// tokens are %x21 / %x23-5B / %x5D-7E), so anything else is refused here.
fn check_scopes(field: &str, scopes: &[String], problems: &mut Vec<String>) {
    for scope in scopes {
        let valid = !scope.is_empty()
            && scope
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !valid {
            problems.push(format!(
                "{field}: {scope:?} is not a valid OAuth scope token"
            ));
        }
    }
}

/// Reads an upstream credential: the whole `Authorization` value (e.g. `Bearer ...`).
fn read_credential(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = text.trim();
    if value.is_empty() || value.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
        return Err(format!(
            "{} must hold one line of printable ASCII (an Authorization header value)",
            path.display()
        ));
    }
    Ok(value.to_owned())
}

mod listing;

pub use listing::CallableTools;

#[cfg(test)]
mod tests;
