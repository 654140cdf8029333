//! Checks one manifest: every problem of the file, in field order, and the validated
//! [`Server`] when there is none. Fleet-wide rules (duplicate ids and paths) are in
//! `fleet.rs`.

use crate::duration;
use crate::fleet_file;
use crate::manifest::{RawGateway, RawManifest, RawRate};
use crate::model::{
    Credential, Endpoint, Rate, RateLimits, Scopes, Server, Timeouts, Tool, Transport, Unit,
    UnregisteredTools, Validation,
};
use crate::problems::{FileProblems, Problem};
use crate::schema;
use mcp_filter_core::config::{McpPath, ServerId, ServerVersion, ToolNames};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Label names the gateway's own metrics and `mcp_server_info` carry (`mcp_server`,
/// `mcp_tool`, `mcp_server_version`, ...) all start with this; a manifest label that
/// does would clash with them.
pub const RESERVED_LABEL_PREFIX: &str = "mcp_";

/// Longest route or idle timeout: far beyond any call, and far inside what Envoy takes
/// (a duration it cannot hold makes it refuse the whole route file, every server's).
const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Most extra metric labels per server: each one multiplies nothing by itself, but
/// every label is carried on every series of the server.
pub const MAX_METRIC_LABELS: usize = 8;

/// What a fleet may do beyond the defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules {
    /// Endpoints on this machine (`127.0.0.0/8`, `::1`, `localhost`): for local
    /// development and tests. Off by default: an endpoint there reaches what the gateway
    /// itself listens on (Envoy's admin interface: a config dump, `/healthcheck/fail`).
    pub allow_loopback_endpoints: bool,
}

/// Longest server id the registry takes (the filter's rule allows 128): the id names
/// Kubernetes objects (`<id>-upstream` Secrets, DestinationRules), whose names are
/// DNS labels of at most 63 characters.
pub const MAX_SERVER_ID: usize = 54;

/// Parses and checks one manifest's text.
pub(crate) fn manifest(file: &Path, text: &str, rules: &Rules) -> Result<Server, Vec<Problem>> {
    let mut problems = FileProblems::new(file);
    let mut unknown = Vec::new();
    let parsed = serde_ignored::deserialize(serde_norway::Deserializer::from_str(text), |path| {
        unknown.push(field_path(&path))
    });
    let raw: RawManifest = match parsed {
        Ok(raw) => raw,
        Err(e) => {
            // A value of the wrong type (or YAML that does not parse): serde names where,
            // and stops there, so this is the file's only problem.
            problems.add("", e.to_string());
            return Err(problems.found);
        }
    };
    // Unknown keys are refused, every one of them, next to every other problem.
    for field in unknown {
        problems.add(
            &field,
            "unknown key (not part of the manifest format: the seed's fields and one gateway section)",
        );
    }
    let base = file.parent().unwrap_or(Path::new("."));
    let server = check(&raw, base, rules, &mut problems);
    match server {
        Some(server) if problems.found.is_empty() => Ok(server),
        _ => Err(problems.found),
    }
}

/// A key's place as problems name it: `gateway.rate_limits.default.burst`, `tools[0].description`.
pub(crate) fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

fn check(
    raw: &RawManifest,
    base: &Path,
    rules: &Rules,
    p: &mut FileProblems<'_>,
) -> Option<Server> {
    let id = match &raw.server_id {
        None => {
            p.add("server_id", "missing");
            None
        }
        Some(id) => match ServerId::try_from(id.clone()) {
            Ok(_) if id.len() > MAX_SERVER_ID => {
                p.add(
                    "server_id",
                    format!("{id:?} is longer than {MAX_SERVER_ID} characters (it names Kubernetes objects)"),
                );
                None
            }
            Ok(_)
                if !(id.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && id.ends_with(|c: char| c.is_ascii_alphanumeric())) =>
            {
                p.add(
                    "server_id",
                    format!("{id:?} must start and end with a letter or digit"),
                );
                None
            }
            Ok(id) => Some(id),
            Err(_) => {
                p.add(
                    "server_id",
                    format!("{id:?} is not a valid server id (1-128 of A-Z a-z 0-9 . _ : -)"),
                );
                None
            }
        },
    };
    let version = version(raw.version.as_ref(), p);
    let transport = match raw.transport.as_deref() {
        None => {
            p.add("transport", "missing (streamable_http or http_sse)");
            None
        }
        Some("streamable_http") => Some(Transport::StreamableHttp),
        Some("http_sse") => Some(Transport::HttpSse),
        Some(other) => {
            p.add(
                "transport",
                format!("{other:?} is not one of streamable_http, http_sse"),
            );
            None
        }
    };
    let endpoint = match raw.endpoint.as_deref() {
        None => {
            p.add("endpoint", "missing");
            None
        }
        Some(url) => endpoint(url, rules)
            .map_err(|reason| p.add("endpoint", reason))
            .ok(),
    };
    let tools = tools(raw, base, p);
    // The seed's rule: no declared version and owner, no production agent traffic.
    let owner = required_text("owner", raw.owner.as_deref(), p);
    if raw.auth_required == Some(false) {
        p.add(
            "auth_required",
            "must be true: the gateway authenticates every agent (OAuth 2.1 bearer tokens)",
        );
    }
    if let Some(scheme) = raw.auth_scheme.as_deref().filter(|s| *s != "oauth2") {
        p.add(
            "auth_scheme",
            format!("{scheme:?} is not supported: the gateway verifies oauth2 tokens only"),
        );
    }
    if raw.sla_tier.as_deref().is_some_and(|tier| !one_line(tier)) {
        p.add(
            "sla_tier",
            "must be one line of text (no control characters)",
        );
    }
    let runbook = match raw.on_call_runbook.as_deref() {
        None | Some("") => {
            p.add("on_call_runbook", "missing (an http or https URL)");
            None
        }
        Some(url) => match web_url(url) {
            Ok(()) => Some(url.to_owned()),
            Err(reason) => {
                p.add("on_call_runbook", reason);
                None
            }
        },
    };
    let tool_names: BTreeSet<&str> = raw
        .tools
        .iter()
        .flatten()
        .filter_map(|t| t.name.as_deref())
        .collect();
    let g = &raw.gateway;
    let path = gateway_path(g, id.as_ref(), p);
    let scopes = scopes(g, &tool_names, p);
    let rate_limits = rate_limits(g, &tool_names, p);
    let upstream_credential = credential(g, base, id.as_ref(), p);
    let timeouts = Timeouts {
        request: timeout("gateway.timeouts.request", g.timeouts.request.as_deref(), p),
        idle: timeout("gateway.timeouts.idle", g.timeouts.idle.as_deref(), p),
    };
    metric_labels(&g.metric_labels, p);
    let tool_count = raw.tools.as_ref().map_or(0, Vec::len);
    let istio_sidecar = istio_sidecar::istio_sidecar(g, endpoint.as_ref(), tool_count, p);
    let validation = choice(
        "gateway.validation",
        g.validation.as_deref(),
        &[
            ("enforce", Validation::Enforce),
            ("report", Validation::Report),
            ("off", Validation::Off),
        ],
        p,
    );
    let unregistered_tools = choice(
        "gateway.unregistered_tools",
        g.unregistered_tools.as_deref(),
        &[
            ("hide", UnregisteredTools::Hide),
            ("show", UnregisteredTools::Show),
        ],
        p,
    );
    let canary = canary::canary(
        g,
        version.as_deref(),
        endpoint.as_ref(),
        istio_sidecar.is_some(),
        rules,
        p,
    );
    let expected_calls = g
        .expected_calls
        .as_ref()
        .and_then(|raw| rate("gateway.expected_calls", raw, p));
    let preflight_call = preflight::preflight_call(g, tools.as_deref(), p);
    let protocol_versions = preflight::protocol_versions(g, p);
    Some(Server {
        manifest_file: p.file.to_owned(),
        id: id?,
        version: version?,
        transport: transport?,
        endpoint: endpoint?,
        tools: tools?,
        owner: owner?,
        sla_tier: raw.sla_tier.clone(),
        on_call_runbook: runbook?,
        path: path?,
        scopes,
        rate_limits,
        upstream_credential,
        timeouts,
        metric_labels: g.metric_labels.clone(),
        istio_sidecar,
        validation: validation?,
        unregistered_tools: unregistered_tools?,
        canary,
        expected_calls,
        preflight_call,
        protocol_versions,
    })
}

/// One of a field's fixed values; absent: the default (`T::default()`).
pub(crate) fn choice<T: Copy + Default>(
    field: &str,
    value: Option<&str>,
    options: &[(&str, T)],
    p: &mut FileProblems<'_>,
) -> Option<T> {
    let Some(value) = value else {
        return Some(T::default());
    };
    let found = options.iter().find(|(name, _)| *name == value);
    if found.is_none() {
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        p.add(
            field,
            format!("{value:?} is not one of {}", names.join(", ")),
        );
    }
    found.map(|(_, v)| *v)
}

fn version(value: Option<&serde_norway::Value>, p: &mut FileProblems<'_>) -> Option<String> {
    version_at("version", value, p)
}

/// A version as `field` writes it (the server's, or its canary's).
pub(crate) fn version_at(
    field: &str,
    value: Option<&serde_norway::Value>,
    p: &mut FileProblems<'_>,
) -> Option<String> {
    use serde_norway::Value;
    match value {
        None | Some(Value::Null) => p.add(field, "missing (a quoted string, e.g. \"1.3.2\")"),
        // The filter's rule (it refuses a route whose server_version breaks it), so a
        // registered version always reaches the audit record; it also names metrics
        // (`;version=` in a stat name), so it has no `;` or `=`.
        Some(Value::String(s)) if !s.trim().is_empty() => match ServerVersion::try_from(s.clone()) {
            Ok(_) => return Some(s.clone()),
            Err(_) => p.add(
                field,
                format!("{s:?} must be 1-64 of A-Z a-z 0-9 . _ + : - (it names metrics and audit records)"),
            ),
        },
        Some(Value::String(_)) => p.add(field, "must not be empty"),
        Some(Value::Number(n)) => p.add(
            field,
            format!("a YAML number (read as {n}); quote it so it stays as written, e.g. version: \"1.10\""),
        ),
        Some(_) => p.add(field, "must be a quoted string, e.g. \"1.3.2\""),
    }
    None
}

fn required_text(field: &str, value: Option<&str>, p: &mut FileProblems<'_>) -> Option<String> {
    match value.map(str::trim) {
        None => p.add(field, "missing"),
        Some("") => p.add(field, "must not be empty"),
        Some(text) if !one_line(text) => {
            p.add(field, "must be one line of text (no control characters)")
        }
        Some(_) => return value.map(str::to_owned),
    }
    None
}

/// Catalog text (owner, tier) goes into the rendered files' comments and Prometheus
/// labels: one line, no control characters.
fn one_line(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
}

/// An http(s) URL with a host.
fn web_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{text:?} is not an http or https URL with a host"));
    }
    Ok(())
}

pub(crate) fn endpoint(text: &str, rules: &Rules) -> Result<Endpoint, String> {
    web_url(text)?;
    let url = url::Url::parse(text).map_err(|e| e.to_string())?;
    // Credentials never sit in a manifest (the seed: settled at registration time,
    // never hardcoded): they go in gateway.upstream_credential.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{text:?} carries user information; reference a credential in gateway.upstream_credential instead"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must not have a query or fragment"));
    }
    let host = match url.host() {
        Some(url::Host::Ipv6(address)) => address.to_string(),
        Some(host) => host.to_string(),
        None => return Err(format!("{text:?} has no host")),
    };
    if host.contains('*') {
        return Err(format!("{text:?}: a wildcard host names no one server"));
    }
    match reach(url.host()) {
        Reach::Forbidden(what) => {
            return Err(format!(
                "{text:?} points at {what}: the gateway would send agents' calls there"
            ))
        }
        Reach::Loopback if !rules.allow_loopback_endpoints => {
            return Err(format!(
                "{text:?} points at this machine, where the gateway's own ports are (Envoy's admin interface); allowed only with --allow-loopback-endpoints (local development)"
            ))
        }
        _ => {}
    }
    Ok(Endpoint {
        url: text.to_owned(),
        scheme: url.scheme().to_owned(),
        host,
        // Known for http and https, the only schemes let through.
        port: url.port_or_known_default().unwrap_or(80),
        path: url.path().to_owned(),
    })
}

enum Reach {
    Network,
    Loopback,
    Forbidden(&'static str),
}

/// Where an endpoint host leads, as far as its name or address says (a name is not
/// resolved: DNS can change after validation; these are the names that always mean
/// this machine or the cloud's metadata service).
fn reach(host: Option<url::Host<&str>>) -> Reach {
    use std::net::IpAddr;
    let ip = match host {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            return if name == "localhost" || name.ends_with(".localhost") {
                Reach::Loopback
            } else if name == "metadata.google.internal" || name == "metadata" {
                Reach::Forbidden("the cloud metadata service")
            } else {
                Reach::Network
            };
        }
        None => return Reach::Network,
    };
    if ip.is_unspecified() {
        return Reach::Forbidden("the unspecified address");
    }
    if ip.is_loopback() {
        return Reach::Loopback;
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        // 169.254.169.254 and fd00:ec2::254 are where clouds serve instance metadata.
        return Reach::Forbidden("a link-local address (the cloud metadata service lives there)");
    }
    if ip == IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)) {
        return Reach::Forbidden("the cloud metadata service");
    }
    Reach::Network
}

/// MCP's tool-name rule (server/tools, "Tool names": 1-128 characters, case-sensitive,
/// A-Z a-z 0-9 _ - .), as the filter core applies it to its metric allow-list.
pub fn is_tool_name(name: &str) -> bool {
    ToolNames::try_from(vec![name.to_owned()]).is_ok()
}

fn tools(raw: &RawManifest, base: &Path, p: &mut FileProblems<'_>) -> Option<Vec<Tool>> {
    let Some(raw_tools) = &raw.tools else {
        p.add("tools", "missing (a list of {name, schema_ref})");
        return None;
    };
    let mut tools = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ok = true;
    for (index, tool) in raw_tools.iter().enumerate() {
        let field = format!("tools[{index}]");
        let name = match tool.name.as_deref() {
            None => {
                p.add(format!("{field}.name"), "missing");
                None
            }
            Some(name) if !is_tool_name(name) => {
                p.add(
                    format!("{field}.name"),
                    format!("{name:?} is not a valid MCP tool name (1-128 of A-Z a-z 0-9 _ - .)"),
                );
                None
            }
            Some(name) => {
                if let Some(first) = seen.insert(name, index) {
                    p.add(
                        format!("{field}.name"),
                        format!("{name:?} is already the name of tools[{first}]"),
                    );
                }
                Some(name)
            }
        };
        let schema = match tool.schema_ref.as_deref() {
            None | Some("") => {
                p.add(format!("{field}.schema_ref"), "missing");
                None
            }
            Some(shown) => {
                let loaded = fleet_file::resolve(base, shown)
                    .and_then(|file| schema::load(&file, shown).map(|schema| (file, schema)));
                match loaded {
                    Ok((file, schema)) => Some((shown, file, schema)),
                    Err(reason) => {
                        p.add(format!("{field}.schema_ref"), reason);
                        None
                    }
                }
            }
        };
        match (name, schema) {
            (Some(name), Some((shown, file, loaded))) => tools.push(Tool {
                name: name.to_owned(),
                schema_ref: shown.to_owned(),
                schema_file: file,
                input_schema: loaded.schema,
                schema_digest: loaded.digest,
                param_headers: loaded.param_headers,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(tools)
}

fn gateway_path(g: &RawGateway, id: Option<&ServerId>, p: &mut FileProblems<'_>) -> Option<String> {
    let path = match (&g.path, id) {
        (Some(path), _) => path.clone(),
        (None, Some(id)) => format!("/{}/mcp", id.as_str()),
        (None, None) => return None,
    };
    if McpPath::try_from(path.clone()).is_err() {
        p.add(
            "gateway.path",
            format!("{path:?} must be an absolute path without query string, fragment or spaces"),
        );
        return None;
    }
    // Envoy matches the path it has normalised (dot segments resolved, slashes merged,
    // escapes of unreserved characters decoded): a path that is not already in that
    // form could never match. Plain segments only.
    if !path[1..]
        .split('/')
        .all(|segment| fleet_file::plain_segment(segment, b"~:"))
    {
        p.add(
            "gateway.path",
            format!("{path:?} must be plain segments (A-Z a-z 0-9 . _ ~ - :, no empty, . or .. segments): Envoy would never route another form to it"),
        );
        return None;
    }
    // The gateway's own: RFC 9728 metadata (the URL every 401 names) and the like.
    if path == "/.well-known" || path.starts_with("/.well-known/") {
        p.add(
            "gateway.path",
            format!("{path:?}: paths under /.well-known/ are the gateway's own (OAuth protected resource metadata)"),
        );
        return None;
    }
    Some(path)
}

/// RFC 6750 section 3: scope tokens are %x21 / %x23-5B / %x5D-7E (they end up in
/// `WWW-Authenticate: ... scope="..."`). The same rule as the authz-service's policy
/// loader (`check_scopes`, private there).
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

fn scope_list(field: &str, scopes: &[String], p: &mut FileProblems<'_>) {
    for scope in scopes {
        if !is_scope_token(scope) {
            p.add(field, format!("{scope:?} is not a valid OAuth scope token"));
        }
    }
}

fn scopes(g: &RawGateway, tools: &BTreeSet<&str>, p: &mut FileProblems<'_>) -> Scopes {
    for (tool, scopes) in &g.scopes.tools {
        let field = format!("gateway.scopes.tools.{tool}");
        if !tools.contains(tool.as_str()) {
            p.add(&field, format!("{tool:?} is not a tool of this server"));
        }
        scope_list(&field, scopes, p);
    }
    for (method, scopes) in &g.scopes.methods {
        let field = format!("gateway.scopes.methods.{method}");
        if method.is_empty() || method.contains(char::is_whitespace) {
            p.add(&field, format!("{method:?} is not a JSON-RPC method name"));
        }
        scope_list(&field, scopes, p);
    }
    Scopes {
        tools: g.scopes.tools.clone(),
        methods: g.scopes.methods.clone(),
    }
}

pub(crate) fn rate(field: &str, raw: &RawRate, p: &mut FileProblems<'_>) -> Option<Rate> {
    // Case-insensitive, as the ratelimit-service reads envoyproxy/ratelimit's `MINUTE`.
    let unit = match raw.unit.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => {
            p.add(
                format!("{field}.unit"),
                "missing (second, minute, hour or day)",
            );
            None
        }
        Some("second") => Some(Unit::Second),
        Some("minute") => Some(Unit::Minute),
        Some("hour") => Some(Unit::Hour),
        Some("day") => Some(Unit::Day),
        Some(_) => {
            let unit = raw.unit.as_deref().unwrap_or_default();
            p.add(
                format!("{field}.unit"),
                format!("{unit:?} is not one of second, minute, hour, day"),
            );
            None
        }
    };
    let requests = match raw.requests_per_unit {
        None => {
            p.add(format!("{field}.requests_per_unit"), "missing");
            None
        }
        Some(n) => match u32::try_from(n) {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                p.add(
                    format!("{field}.requests_per_unit"),
                    format!("{n} must be between 1 and {}", u32::MAX),
                );
                None
            }
        },
    };
    Some(Rate {
        unit: unit?,
        requests_per_unit: requests?,
    })
}

fn rate_limits(g: &RawGateway, tools: &BTreeSet<&str>, p: &mut FileProblems<'_>) -> RateLimits {
    let raw = &g.rate_limits;
    let mut limits = RateLimits {
        default: raw
            .default
            .as_ref()
            .and_then(|r| rate("gateway.rate_limits.default", r, p)),
        ..RateLimits::default()
    };
    for (agent, r) in &raw.agents {
        let field = format!("gateway.rate_limits.agents.{agent}");
        // The value Envoy sends is the verified x-agent-id, a header value; a `*`
        // would make the ratelimit-service read the value as a wildcard prefix.
        if agent.is_empty()
            || !agent
                .bytes()
                .all(|b| (0x21..0x7f).contains(&b) && b != b'*')
        {
            p.add(
                &field,
                format!("{agent:?} is not an agent id (printable ASCII without spaces or *)"),
            );
        }
        if let Some(r) = rate(&field, r, p) {
            limits.agents.insert(agent.clone(), r);
        }
    }
    for (tool, r) in &raw.tools {
        let field = format!("gateway.rate_limits.tools.{tool}");
        if !tools.contains(tool.as_str()) {
            p.add(&field, format!("{tool:?} is not a tool of this server"));
        }
        if let Some(r) = rate(&field, r, p) {
            limits.tools.insert(tool.clone(), r);
        }
    }
    limits
}

/// Keys that would hold the secret itself: refused with a message of their own.
const INLINE_SECRET_KEYS: [&str; 6] = [
    "value",
    "token",
    "password",
    "credential",
    "bearer",
    "authorization",
];

/// The Kubernetes name a server id gives its objects (`<name>-upstream` Secret,
/// DestinationRule): lower case, `.` `_` `:` as `-`. Two ids with one name are refused
/// in a fleet (fleet.rs), so a name always means one server.
pub fn kube_name(id: &str) -> String {
    id.replace([':', '_', '.'], "-").to_ascii_lowercase()
}

/// The one Secret a server's upstream credential may come from. Per server and fixed,
/// so a manifest cannot name another team's credential, or the authz-service's session
/// keys, and have the gateway send it to its own upstream.
pub fn credential_secret(id: &str) -> String {
    format!("{}-upstream", kube_name(id))
}

fn credential(
    g: &RawGateway,
    base: &Path,
    id: Option<&ServerId>,
    p: &mut FileProblems<'_>,
) -> Option<Credential> {
    let map = g.upstream_credential.as_ref()?;
    const FIELD: &str = "gateway.upstream_credential";
    let text = |key: &str, p: &mut FileProblems<'_>| -> Option<String> {
        match map.get(key)? {
            serde_norway::Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => {
                p.add(format!("{FIELD}.{key}"), "must be a non-empty string");
                None
            }
        }
    };
    let mut ok = true;
    for key in map.keys() {
        if INLINE_SECRET_KEYS.contains(&key.to_ascii_lowercase().as_str()) {
            p.add(
                format!("{FIELD}.{key}"),
                "a credential is never written in a manifest; reference it: {file: <path>} or {secret: <name>, key: <key>}",
            );
            ok = false;
        } else if !matches!(key.as_str(), "file" | "secret" | "key") {
            p.add(
                format!("{FIELD}.{key}"),
                "unknown key (expected file, or secret and key)",
            );
            ok = false;
        }
    }
    let file = text("file", p);
    let secret = text("secret", p);
    let key = text("key", p);
    let has = |k: &str| map.contains_key(k);
    match (has("file"), has("secret"), has("key")) {
        (true, false, false) => {
            let path = file?;
            let id = id?.as_str();
            // A server's own credentials only: credentials/<id>, or a file below
            // credentials/<id>/ (the fleet directory is the platform's, and each team
            // reads only its own).
            let own = path == format!("credentials/{id}")
                || path.starts_with(&format!("credentials/{id}/"));
            if !own {
                p.add(
                    format!("{FIELD}.file"),
                    format!("{path:?} must be credentials/{id} or a file below credentials/{id}/ in the fleet directory (a server's own credential)"),
                );
                return None;
            }
            // What the authz-service accepts (an Authorization header value: one line
            // of printable ASCII), checked here: a file it refuses would make it refuse
            // the whole rendered policy, every team's change with it.
            let usable = |resolved: &Path| {
                let text = std::fs::read(resolved).unwrap_or_default();
                let text = String::from_utf8_lossy(&text);
                let value = text.trim();
                !value.is_empty() && value.bytes().all(|b| (0x20..0x7f).contains(&b))
            };
            match fleet_file::resolve(base, &path) {
                Ok(resolved) if !usable(&resolved) => {
                    p.add(
                        format!("{FIELD}.file"),
                        format!("{path} must hold one line of printable ASCII (an Authorization header value)"),
                    );
                    None
                }
                Ok(resolved) if ok => Some(Credential::File { resolved, path }),
                Ok(_) => None,
                Err(reason) => {
                    p.add(format!("{FIELD}.file"), reason);
                    None
                }
            }
        }
        (false, true, true) => {
            let (name, key) = (secret?, key?);
            let expected = credential_secret(id?.as_str());
            if name != expected {
                p.add(
                    format!("{FIELD}.secret"),
                    format!("{name:?} must be {expected:?}: a server's upstream credential comes from its own Secret"),
                );
                ok = false;
            }
            let key_ok = key.len() <= 253
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
                && key != "."
                && key != "..";
            if !key_ok {
                p.add(
                    format!("{FIELD}.key"),
                    format!("{key:?} is not a Secret key (A-Z a-z 0-9 - . _)"),
                );
                ok = false;
            }
            ok.then_some(Credential::Secret { name, key })
        }
        _ if !ok => None,
        _ => {
            p.add(
                FIELD,
                "must be {file: <path>} or {secret: <name>, key: <key>}",
            );
            None
        }
    }
}

fn timeout(
    field: &str,
    text: Option<&str>,
    p: &mut FileProblems<'_>,
) -> Option<std::time::Duration> {
    match duration::parse(text?) {
        Ok(d) if d > MAX_TIMEOUT => {
            p.add(
                field,
                format!(
                    "{:?} is longer than 24h (0s means none)",
                    text.unwrap_or_default()
                ),
            );
            None
        }
        Ok(d) => Some(d),
        Err(reason) => {
            p.add(field, reason);
            None
        }
    }
}

fn metric_labels(labels: &BTreeMap<String, String>, p: &mut FileProblems<'_>) {
    if labels.len() > MAX_METRIC_LABELS {
        p.add(
            "gateway.metric_labels",
            format!("{} labels; at most {MAX_METRIC_LABELS}", labels.len()),
        );
    }
    for (name, value) in labels {
        let field = format!("gateway.metric_labels.{name}");
        // Prometheus: [a-zA-Z_][a-zA-Z0-9_]*, and names starting "__" are reserved.
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            p.add(
                &field,
                format!("{name:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
            );
        } else if name.starts_with("__") {
            p.add(
                &field,
                format!("{name:?}: label names starting with \"__\" are reserved by Prometheus"),
            );
        } else if name.starts_with(RESERVED_LABEL_PREFIX) {
            p.add(
                &field,
                format!("{name:?}: label names starting with \"{RESERVED_LABEL_PREFIX}\" are the gateway's own"),
            );
        }
        if value.is_empty() || value.len() > 64 || !value.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            p.add(
                &field,
                format!("{value:?} must be 1-64 printable ASCII characters"),
            );
        }
    }
}

mod canary;
mod istio_sidecar;
mod preflight;

#[cfg(test)]
mod tests;
