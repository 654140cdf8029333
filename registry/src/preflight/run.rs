//! The run: step 0, then the live steps in an order that keeps them from disturbing
//! each other (the rate-limit probe uses up its agent's window, so it runs after the
//! audit call and the load), printed and reported in the checklist's order.

use super::claims::{self, Discovered};
use super::client::{Client, Session, MODERN};
use super::config::{Config, Role};
use super::identity::{self, Token};
use super::report::Report;
use super::{manifest, Check, Step};
use crate::model::{PreflightCall, Server};
use crate::{Fleet, Rules};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What the command line asks for.
#[derive(Debug, Clone)]
pub struct Options {
    pub fleet_dir: PathBuf,
    pub server: String,
    /// The gateway's base URL (`http://gw:8080`); the server is at its exposure path.
    pub gateway: String,
    pub rendered: Option<PathBuf>,
    /// Envoy's admin URL, for the counters' cross-checks (stats.rs).
    pub admin: Option<String>,
    pub load_duration: Duration,
    pub load_multiplier: f64,
    pub load_rate: Option<f64>,
    pub skip: BTreeSet<u8>,
    pub strict: bool,
    pub rules: Rules,
}

/// What the live steps share.
pub struct Ctx<'a> {
    pub options: &'a Options,
    pub config: &'a Config,
    pub fleet: &'a Fleet,
    pub server: &'a Server,
    pub client: Client,
    /// The schema identity's token (every scope the server needs).
    pub token: Option<Token>,
    /// Why its configured source gave no token.
    pub token_error: Option<String>,
    /// Claimed versions, oldest first, with where each claim comes from.
    pub claims: BTreeMap<String, Vec<&'static str>>,
    /// How discovery went, for reasons.
    pub discovery: String,
}

impl Ctx<'_> {
    pub fn token(&self) -> Option<&str> {
        self.token.as_ref().map(|t| t.value.as_str())
    }

    /// The version single calls speak: 2026-07-28 when claimed, else the newest claim.
    pub fn call_version(&self) -> String {
        if self.claims.contains_key(MODERN) || self.claims.is_empty() {
            MODERN.to_owned()
        } else {
            self.claims
                .keys()
                .next_back()
                .cloned()
                .unwrap_or_else(|| MODERN.to_owned())
        }
    }

    pub fn preflight_call(&self) -> Option<&PreflightCall> {
        self.server.preflight_call.as_ref()
    }

    /// `params` and `Mcp-Param-*` headers of the preflight call in `version`.
    pub fn call_request(
        &self,
        call: &PreflightCall,
        version: &str,
    ) -> (Value, Vec<(String, String)>) {
        let params = json!({"name": call.tool, "arguments": call.arguments});
        let headers = match self.server.tools.iter().find(|t| t.name == call.tool) {
            Some(tool) if super::client::is_modern(version) => {
                super::client::param_headers(&tool.input_schema, &call.arguments)
            }
            _ => Vec::new(),
        };
        (params, headers)
    }

    /// A session in `version` for `token`.
    pub async fn open(&self, version: &str, token: Option<&str>) -> Result<Session, String> {
        self.client
            .open(version, token)
            .await
            .map_err(|e| e.to_string())
    }

    /// A session for the preflight call, in [`Context::call_version`], and that version;
    /// the failure as the steps report it (`cannot connect in <version>: <reason>`).
    pub async fn open_for_call(&self, token: &str) -> Result<(String, Session), String> {
        let version = self.call_version();
        match self.open(&version, Some(token)).await {
            Ok(session) => Ok((version, session)),
            Err(reason) => Err(format!("cannot connect in {version}: {reason}")),
        }
    }
}

fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    chrono::DateTime::from_timestamp(now.as_secs() as i64, now.subsec_nanos())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Runs every step; the report (not yet written anywhere).
pub async fn run(options: &Options, config: &Config) -> Report {
    let started_at = timestamp();
    let began = Instant::now();
    let loaded = manifest::load(&options.fleet_dir, &options.server, &options.rules);
    let mut step0 = loaded.step.clone();
    step0.duration_ms = began.elapsed().as_millis() as u64;
    let server = loaded
        .fleet
        .as_ref()
        .and_then(|f| f.server(&options.server));
    let url = format!(
        "{}{}",
        options.gateway.trim_end_matches('/'),
        server.map_or(String::new(), |s| s.path.clone())
    );
    let mut steps = vec![step0];
    match (loaded.fleet.as_ref(), server) {
        (Some(fleet), Some(server)) => {
            steps.extend(live(options, config, fleet, server, &url, &loaded).await);
        }
        _ => {
            let why = "step 0 failed: the gateway would not route this server";
            for (n, _) in super::STEPS.iter().skip(1) {
                let own = loaded.problems_of(*n);
                steps.push(if own.is_empty() {
                    Step::skipped(*n, why)
                } else {
                    problems_step(*n, &own)
                });
            }
        }
    }
    steps.sort_by_key(|s| s.number);
    let result = if super::passed(&steps, options.strict) {
        "pass"
    } else {
        "fail"
    };
    Report {
        preflight: 1,
        server_id: options.server.clone(),
        server_version: server.map(|s| s.version.clone()),
        manifest: server.map(|s| s.manifest_file.display().to_string()),
        gateway: url,
        started_at,
        finished_at: timestamp(),
        strict: options.strict,
        result,
        steps,
    }
}

fn problems_step(n: u8, problems: &[&crate::Problem]) -> Step {
    let checks = problems
        .iter()
        .map(|p| Check::fail(&p.field, p.reason.clone()))
        .collect();
    Step::from_checks(n, checks)
}

async fn live(
    options: &Options,
    config: &Config,
    fleet: &Fleet,
    server: &Server,
    url: &str,
    loaded: &manifest::Loaded,
) -> Vec<Step> {
    let client = match Client::new(url, config.load.request_timeout) {
        Ok(c) => c,
        Err(reason) => {
            return super::STEPS
                .iter()
                .skip(1)
                .map(|(n, _)| Step::skipped(*n, reason.clone()))
                .collect()
        }
    };
    let (token, token_error) =
        match identity::token(config, Role::Schema, &super::auth::all(server)).await {
            Some(Ok(token)) => (Some(token), None),
            Some(Err(reason)) => (None, Some(reason)),
            None => (None, None),
        };
    let mut ctx = Ctx {
        options,
        config,
        fleet,
        server,
        client,
        token,
        token_error,
        claims: BTreeMap::new(),
        discovery: String::new(),
    };
    discover(&mut ctx).await;
    let mut steps = Vec::new();
    // The run order; step 3 last of the live ones (it exhausts its agent's window).
    for n in [1u8, 2, 5, 4, 6, 3, 7, 8] {
        let began = Instant::now();
        let mut step = if options.skip.contains(&n) {
            Step::skipped(n, "skipped by --skip")
        } else {
            let own = loaded.problems_of(n);
            let watched = matches!(n, 1 | 5)
                .then_some(())
                .and(options.admin.as_deref());
            let before = match watched {
                Some(admin) => Some(super::stats::scrape(admin).await),
                None => None,
            };
            let step = match n {
                1 => super::schema::step(&ctx, &own).await,
                2 => super::auth::step(&ctx).await,
                3 => super::limits::step(&ctx).await,
                4 => super::audit::step(&ctx).await,
                5 => super::sdk::step(&ctx).await,
                6 => super::load::step(&ctx).await,
                7 if !own.is_empty() => problems_step(7, &own),
                7 => super::catalog::runbook_step(server).await,
                8 if !own.is_empty() => problems_step(8, &own),
                _ => super::catalog::owner_step(server, config).await,
            };
            match (before, watched) {
                (Some(before), Some(admin)) if step.status != super::Status::Skip => {
                    cross_check(step, n, before, admin, server.id()).await
                }
                _ => step,
            }
        };
        step.duration_ms = began.elapsed().as_millis() as u64;
        eprintln!("{}", super::report::line(&step));
        steps.push(step);
    }
    steps
}

/// Adds the counters' cross-check to step 1 or 5 (a delta over the step).
async fn cross_check(
    step: Step,
    n: u8,
    before: Result<super::stats::Samples, String>,
    admin: &str,
    id: &str,
) -> Step {
    use super::stats;
    // The filter counts on the answer's way out; give Envoy's stats a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let name = if n == 1 { "drift" } else { "gateway" };
    let check = match (before, stats::scrape(admin).await) {
        (Ok(before), Ok(after)) if n == 1 => stats::drift_check(&before, &after, id),
        (Ok(before), Ok(after)) => stats::negotiation_check(&before, &after, id),
        (Err(reason), _) | (_, Err(reason)) => Check::skip(name, reason),
    };
    let data = step.data.clone();
    let mut checks = step.checks;
    checks.push(check);
    Step::from_checks(n, checks).with_data(data)
}

/// Which versions the server claims: `server/discover` through the gateway; a
/// legacy-only server's `initialize` echo; the manifest's list.
async fn discover(ctx: &mut Ctx<'_>) {
    let answer = ctx
        .client
        .request(
            MODERN,
            "server/discover",
            json!({}),
            json!("preflight-discover"),
            ctx.token(),
            None,
            &[],
        )
        .await;
    let found = match &answer {
        Ok(answer) => claims::discovered(answer.status, answer.message.as_ref()),
        Err(e) => Discovered::Other(e.to_string()),
    };
    let mut echo = None;
    if let Discovered::Other(_) = &found {
        if let Ok(session) = ctx.client.open(super::client::LEGACY, ctx.token()).await {
            echo = Some(session.version.clone());
            ctx.client.close(session, ctx.token()).await;
        }
    }
    ctx.claims = claims::claimed(&found, &ctx.server.protocol_versions, echo.as_deref());
    ctx.discovery = match &found {
        Discovered::Versions(v) => format!("server/discover lists {}", v.join(", ")),
        Discovered::Unsupported(v) => {
            format!("server/discover got -32022 supporting {}", v.join(", "))
        }
        Discovered::Other(why) => format!("server/discover failed ({why})"),
    };
}

/// Step result without the schema identity's token: skipped when none is configured,
/// failed when its source did not give one.
pub fn no_token_step(ctx: &Ctx<'_>, n: u8) -> Step {
    match &ctx.token_error {
        Some(reason) => Step::from_checks(
            n,
            vec![Check::fail(
                "identity",
                format!("the schema identity has no token: {reason}"),
            )],
        ),
        None => Step::skipped(
            n,
            "no token for the schema identity (preflight.yaml: identities.schema or mint)",
        ),
    }
}
