//! `preflight.yaml`: what the platform team controls for preflight (the test
//! identities' credentials, key rotation, the audit sink, load settings). Never part of
//! a manifest: a team's manifest must not carry credentials.
//!
//! As the manifests: snake_case, unknown keys refused, every problem named by file,
//! field and reason, all of them in one pass. Relative paths are relative to the file.

use super::identity::SigningKey;
use crate::duration;
use crate::problems::{Problem, Problems};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The identities the steps use, by what each is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Lists tools and makes the audited call: every scope the server needs.
    Schema,
    /// Lacks the preflight tool's scope (step 2's 403).
    NoScope,
    /// An expired token (step 2's 401).
    Expired,
    /// Runs into its rate limit (step 3).
    Ratelimit,
    /// Sends the load (step 6).
    Load,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Schema,
        Role::NoScope,
        Role::Expired,
        Role::Ratelimit,
        Role::Load,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Role::Schema => "schema",
            Role::NoScope => "no_scope",
            Role::Expired => "expired",
            Role::Ratelimit => "ratelimit",
            Role::Load => "load",
        }
    }

    fn from_key(key: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.key() == key)
    }
}

/// Where a token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A program (argv, no shell) whose stdout is the token.
    Command(Vec<String>),
    /// A file holding the token.
    File(PathBuf),
}

/// Tokens preflight signs itself, for a pre-production issuer the authz-service trusts.
#[derive(Debug, Clone)]
pub struct Mint {
    pub key: SigningKey,
    pub kid: String,
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
    /// The agent id each role's token names (`sub` and `azp`).
    pub agents: BTreeMap<Role, String>,
    /// The authz-service's clock leeway: an expired token is minted this much (plus a
    /// minute) in the past, so it is expired for the service too.
    pub leeway: Duration,
}

/// How the JWKS the authz-service reads learns the next key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    /// preflight adds the next key's public JWK to this file, and restores the file.
    JwksFile(PathBuf),
    /// Programs that publish and restore (an IdP, a Secret the platform updates).
    Commands {
        publish: Vec<String>,
        restore: Vec<String>,
    },
}

/// The token from the next signing key.
#[derive(Debug, Clone)]
pub enum NextToken {
    Mint { key: SigningKey, kid: String },
    Command(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Rotation {
    pub next: NextToken,
    pub publish: Publish,
    /// How long the new key may take to be accepted (the authz-service refreshes an
    /// unknown kid at most every 5 s).
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSource {
    /// The gateway's audit file (JSON lines), read from its size before the call.
    File(PathBuf),
    /// A program whose stdout is JSON lines (`kubectl logs ...`).
    Command(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSink {
    pub source: AuditSource,
    /// How long to look for the record (Envoy flushes access logs every 10 s by default).
    pub wait: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadSettings {
    pub max_in_flight: usize,
    pub request_timeout: Duration,
    /// Errors / sent above this fails the step.
    pub max_error_rate: f64,
    /// Optional latency bound (the issue asks only that latency is reported).
    pub max_p99_ms: Option<f64>,
    /// One call in ten is also sent straight to the manifest's endpoint, for the
    /// gateway's added latency by paired samples (needs the endpoint reachable from
    /// here, and a `{file:}` upstream credential if any).
    pub direct_samples: bool,
}

impl Default for LoadSettings {
    fn default() -> Self {
        LoadSettings {
            max_in_flight: 256,
            request_timeout: Duration::from_secs(10),
            max_error_rate: 0.01,
            max_p99_ms: None,
            direct_samples: false,
        }
    }
}

/// A checked `preflight.yaml`.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub identities: BTreeMap<Role, TokenSource>,
    pub mint: Option<Mint>,
    pub rotation: Option<Rotation>,
    pub audit: Option<AuditSink>,
    pub load: LoadSettings,
    /// Most calls step 3 sends to reach a limit.
    pub max_probe_calls: u32,
    /// argv with `{owner}` and `{server_id}`; exit 0: the rotation includes the server.
    pub on_call: Option<Vec<String>>,
}

impl Config {
    /// Whether `role` has a token source (its own, or minted).
    pub fn has(&self, role: Role) -> bool {
        self.identities.contains_key(&role) || self.mint.is_some()
    }
}

#[derive(Deserialize, Default)]
struct RawConfig {
    identities: Option<BTreeMap<String, RawSource>>,
    mint: Option<RawMint>,
    rotation: Option<RawRotation>,
    audit: Option<RawAudit>,
    load: Option<RawLoad>,
    rate_limit: Option<RawRateLimit>,
    on_call: Option<RawOnCall>,
}

#[derive(Deserialize)]
struct RawSource {
    token_command: Option<Vec<String>>,
    token_file: Option<String>,
}

#[derive(Deserialize)]
struct RawMint {
    key_file: Option<String>,
    kid: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    ttl: Option<String>,
    leeway: Option<String>,
    agents: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawRotation {
    next_key_file: Option<String>,
    next_kid: Option<String>,
    token_command: Option<Vec<String>>,
    publish: Option<RawPublish>,
    timeout: Option<String>,
}

#[derive(Deserialize)]
struct RawPublish {
    jwks_file: Option<String>,
    publish_command: Option<Vec<String>>,
    restore_command: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawAudit {
    file: Option<String>,
    command: Option<Vec<String>>,
    wait: Option<String>,
}

#[derive(Deserialize)]
struct RawLoad {
    max_in_flight: Option<u64>,
    request_timeout: Option<String>,
    max_error_rate: Option<f64>,
    max_p99_ms: Option<f64>,
    direct_samples: Option<bool>,
}

#[derive(Deserialize)]
struct RawRateLimit {
    max_probe_calls: Option<u64>,
}

#[derive(Deserialize)]
struct RawOnCall {
    command: Option<Vec<String>>,
}

/// Collects problems of one file.
struct Found<'a> {
    file: &'a Path,
    problems: Vec<Problem>,
}

impl Found<'_> {
    fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_owned(),
            field: field.into(),
            reason: reason.into(),
        });
    }
}

/// Reads and checks `file`.
pub fn load(file: &Path) -> Result<Config, Problems> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Problems(vec![Problem {
            file: file.to_owned(),
            field: String::new(),
            reason: format!("cannot read: {e}"),
        }])
    })?;
    parse(file, &text)
}

/// Checks the text of `file` (relative paths resolve against its directory).
pub fn parse(file: &Path, text: &str) -> Result<Config, Problems> {
    let mut found = Found {
        file,
        problems: Vec::new(),
    };
    let mut unknown = Vec::new();
    let parsed: Result<Option<RawConfig>, _> =
        serde_ignored::deserialize(serde_norway::Deserializer::from_str(text), |path| {
            unknown.push(crate::check::field_path(&path))
        });
    let raw = match parsed {
        Ok(raw) => raw.unwrap_or_default(),
        Err(e) => {
            found.add("", e.to_string());
            return Err(Problems(found.problems));
        }
    };
    for field in unknown {
        found.add(field, "unknown key");
    }
    let base = file.parent().unwrap_or(Path::new(".")).to_owned();
    let path = |p: &str| base.join(p);

    let mut identities = BTreeMap::new();
    for (key, source) in raw.identities.iter().flatten() {
        let field = format!("identities.{key}");
        let Some(role) = Role::from_key(key) else {
            found.add(
                &field,
                "unknown identity (schema, no_scope, expired, ratelimit, load)",
            );
            continue;
        };
        if let Some(source) = token_source(source, &field, &path, &mut found) {
            identities.insert(role, source);
        }
    }
    let mint = raw.mint.as_ref().and_then(|m| mint(m, &path, &mut found));
    let rotation = raw
        .rotation
        .as_ref()
        .and_then(|r| rotation(r, &path, mint.is_some(), &mut found));
    let audit = raw.audit.as_ref().and_then(|a| audit(a, &path, &mut found));
    let load = raw
        .load
        .as_ref()
        .map(|l| load_settings(l, &mut found))
        .unwrap_or_default();
    let max_probe_calls = match raw.rate_limit.as_ref().and_then(|r| r.max_probe_calls) {
        None => 200,
        Some(n) if (1..=10_000).contains(&n) => n as u32,
        Some(n) => {
            found.add(
                "rate_limit.max_probe_calls",
                format!("{n} is outside 1..10000"),
            );
            200
        }
    };
    let on_call = raw.on_call.as_ref().and_then(|o| match &o.command {
        None => {
            found.add("on_call.command", "missing");
            None
        }
        Some(argv) => argv_checked(argv, "on_call.command", &mut found),
    });
    if found.problems.is_empty() {
        Ok(Config {
            file: file.to_owned(),
            identities,
            mint,
            rotation,
            audit,
            load,
            max_probe_calls,
            on_call,
        })
    } else {
        Err(Problems(found.problems))
    }
}

fn argv_checked(argv: &[String], field: &str, found: &mut Found<'_>) -> Option<Vec<String>> {
    if argv.is_empty() || argv[0].trim().is_empty() {
        found.add(field, "must name a program (argv: [program, args...])");
        return None;
    }
    Some(argv.to_vec())
}

fn token_source(
    raw: &RawSource,
    field: &str,
    path: &dyn Fn(&str) -> PathBuf,
    found: &mut Found<'_>,
) -> Option<TokenSource> {
    match (&raw.token_command, &raw.token_file) {
        (Some(_), Some(_)) => {
            found.add(field, "give token_command or token_file, not both");
            None
        }
        (None, None) => {
            found.add(field, "needs token_command or token_file");
            None
        }
        (Some(argv), None) => {
            argv_checked(argv, &format!("{field}.token_command"), found).map(TokenSource::Command)
        }
        (None, Some(file)) => {
            let resolved = path(file);
            if !resolved.is_file() {
                found.add(
                    format!("{field}.token_file"),
                    format!("{file} is not a readable file"),
                );
                return None;
            }
            Some(TokenSource::File(resolved))
        }
    }
}

fn duration_field(
    raw: Option<&String>,
    field: &str,
    default: Duration,
    range: (Duration, Duration),
    found: &mut Found<'_>,
) -> Duration {
    let Some(text) = raw else {
        return default;
    };
    match duration::parse(text) {
        Err(reason) => {
            found.add(field, reason);
            default
        }
        Ok(d) if d < range.0 || d > range.1 => {
            found.add(
                field,
                format!(
                    "{text} is outside {}..{}",
                    duration::envoy(range.0),
                    duration::envoy(range.1)
                ),
            );
            default
        }
        Ok(d) => d,
    }
}

fn required<'a>(value: &'a Option<String>, field: &str, found: &mut Found<'_>) -> Option<&'a str> {
    match value.as_deref() {
        Some(v) if !v.trim().is_empty() => Some(v),
        Some(_) => {
            found.add(field, "must not be empty");
            None
        }
        None => {
            found.add(field, "missing");
            None
        }
    }
}

fn key_file(
    raw: &Option<String>,
    field: &str,
    path: &dyn Fn(&str) -> PathBuf,
    found: &mut Found<'_>,
) -> Option<SigningKey> {
    let file = required(raw, field, found)?;
    match std::fs::read(path(file)) {
        Err(e) => {
            found.add(field, format!("cannot read {file}: {e}"));
            None
        }
        Ok(pem) => match SigningKey::from_pem(&pem) {
            Ok(key) => Some(key),
            Err(reason) => {
                found.add(field, format!("{file}: {reason}"));
                None
            }
        },
    }
}

fn mint(raw: &RawMint, path: &dyn Fn(&str) -> PathBuf, found: &mut Found<'_>) -> Option<Mint> {
    let key = key_file(&raw.key_file, "mint.key_file", path, found);
    let kid = required(&raw.kid, "mint.kid", found);
    let issuer = required(&raw.issuer, "mint.issuer", found);
    let audience = required(&raw.audience, "mint.audience", found);
    let minute = Duration::from_secs(60);
    let ttl = duration_field(
        raw.ttl.as_ref(),
        "mint.ttl",
        Duration::from_secs(300),
        (minute, Duration::from_secs(24 * 3600)),
        found,
    );
    let leeway = duration_field(
        raw.leeway.as_ref(),
        "mint.leeway",
        Duration::from_secs(30),
        (Duration::ZERO, Duration::from_secs(3600)),
        found,
    );
    let mut agents: BTreeMap<Role, String> = Role::ALL
        .into_iter()
        .map(|r| (r, format!("preflight-{}", r.key().replace('_', "-"))))
        .collect();
    for (key, agent) in raw.agents.iter().flatten() {
        let field = format!("mint.agents.{key}");
        match Role::from_key(key) {
            None => found.add(
                field,
                "unknown identity (schema, no_scope, expired, ratelimit, load)",
            ),
            Some(_) if agent.trim().is_empty() => found.add(field, "must not be empty"),
            Some(role) => {
                agents.insert(role, agent.clone());
            }
        }
    }
    Some(Mint {
        key: key?,
        kid: kid?.to_owned(),
        issuer: issuer?.to_owned(),
        audience: audience?.to_owned(),
        ttl,
        agents,
        leeway,
    })
}

fn rotation(
    raw: &RawRotation,
    path: &dyn Fn(&str) -> PathBuf,
    minting: bool,
    found: &mut Found<'_>,
) -> Option<Rotation> {
    let next = match (&raw.next_key_file, &raw.token_command) {
        (Some(_), Some(_)) => {
            found.add(
                "rotation",
                "give next_key_file (mint) or token_command, not both",
            );
            None
        }
        (None, None) => {
            found.add(
                "rotation",
                "needs next_key_file (with mint) or token_command: a token signed by the next key",
            );
            None
        }
        (Some(_), None) => {
            if !minting {
                found.add(
                    "rotation.next_key_file",
                    "needs mint (issuer, audience and agents of the minted token)",
                );
            }
            let key = key_file(&raw.next_key_file, "rotation.next_key_file", path, found);
            let kid = required(&raw.next_kid, "rotation.next_kid", found);
            match (key, kid) {
                (Some(key), Some(kid)) => Some(NextToken::Mint {
                    key,
                    kid: kid.to_owned(),
                }),
                _ => None,
            }
        }
        (None, Some(argv)) => {
            argv_checked(argv, "rotation.token_command", found).map(NextToken::Command)
        }
    };
    let publish = match &raw.publish {
        None => {
            found.add(
                "rotation.publish",
                "missing (jwks_file, or publish_command and restore_command)",
            );
            None
        }
        Some(p) => match (&p.jwks_file, &p.publish_command, &p.restore_command) {
            (Some(file), None, None) => {
                let resolved = path(file);
                if resolved.is_file() {
                    Some(Publish::JwksFile(resolved))
                } else {
                    found.add(
                        "rotation.publish.jwks_file",
                        format!("{file} is not a readable file"),
                    );
                    None
                }
            }
            (None, Some(publish), Some(restore)) => {
                let publish = argv_checked(publish, "rotation.publish.publish_command", found);
                let restore = argv_checked(restore, "rotation.publish.restore_command", found);
                Some(Publish::Commands {
                    publish: publish?,
                    restore: restore?,
                })
            }
            _ => {
                found.add(
                    "rotation.publish",
                    "give jwks_file, or publish_command and restore_command",
                );
                None
            }
        },
    };
    let timeout = duration_field(
        raw.timeout.as_ref(),
        "rotation.timeout",
        Duration::from_secs(30),
        (Duration::from_secs(6), Duration::from_secs(600)),
        found,
    );
    Some(Rotation {
        next: next?,
        publish: publish?,
        timeout,
    })
}

fn audit(
    raw: &RawAudit,
    path: &dyn Fn(&str) -> PathBuf,
    found: &mut Found<'_>,
) -> Option<AuditSink> {
    let wait = duration_field(
        raw.wait.as_ref(),
        "audit.wait",
        Duration::from_secs(15),
        (Duration::from_millis(100), Duration::from_secs(600)),
        found,
    );
    let source = match (&raw.file, &raw.command) {
        (Some(file), None) => Some(AuditSource::File(path(file))),
        (None, Some(argv)) => argv_checked(argv, "audit.command", found).map(AuditSource::Command),
        _ => {
            found.add("audit", "give file or command (exactly one)");
            None
        }
    };
    Some(AuditSink {
        source: source?,
        wait,
    })
}

fn load_settings(raw: &RawLoad, found: &mut Found<'_>) -> LoadSettings {
    let mut settings = LoadSettings::default();
    if let Some(n) = raw.max_in_flight {
        if (1..=10_000).contains(&n) {
            settings.max_in_flight = n as usize;
        } else {
            found.add("load.max_in_flight", format!("{n} is outside 1..10000"));
        }
    }
    settings.request_timeout = duration_field(
        raw.request_timeout.as_ref(),
        "load.request_timeout",
        settings.request_timeout,
        (Duration::from_millis(100), Duration::from_secs(300)),
        found,
    );
    if let Some(rate) = raw.max_error_rate {
        if (0.0..=1.0).contains(&rate) {
            settings.max_error_rate = rate;
        } else {
            found.add("load.max_error_rate", format!("{rate} is outside 0..1"));
        }
    }
    settings.direct_samples = raw.direct_samples.unwrap_or(false);
    if let Some(p99) = raw.max_p99_ms {
        if p99 > 0.0 && p99.is_finite() {
            settings.max_p99_ms = Some(p99);
        } else {
            found.add("load.max_p99_ms", format!("{p99} must be above 0"));
        }
    }
    settings
}

#[cfg(test)]
mod tests;
