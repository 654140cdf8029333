//! `mcp-registry canary ...`: the command line of the watcher and of its manual
//! twins, which decide through the same code (state file, then render).

use super::act::{self, Record, Target};
use super::run::{self, Config};
use super::source::Source;
use crate::render::{self, Options};
use crate::rollout::{Decision, RolloutState};
use crate::{Fleet, Rules};
use clap::{Args, Subcommand};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};
use url::Url;

#[derive(Clone, Subcommand)]
pub enum Command {
    /// Compare every canary with its stable version on the gateway's metrics, every
    /// interval, over the window its manifest sets: roll it back to 0 when it is worse
    /// by the margin, promote it (promote: auto) after a clean window. Prints one JSON
    /// line per canary and evaluation.
    Watch {
        #[command(flatten)]
        fleet: FleetArgs,
        /// An Envoy admin address whose /stats/prometheus to scrape (repeat for every
        /// gateway replica); the watcher computes the window itself.
        #[arg(
            long,
            required_unless_present = "prometheus",
            conflicts_with = "prometheus"
        )]
        envoy_admin: Vec<Url>,
        /// A Prometheus server that scrapes every gateway: one instant query per count.
        #[arg(long)]
        prometheus: Option<Url>,
        /// Time between evaluations (<n>ms|s|m|h).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        interval: Duration,
        /// Evaluate once and exit (a cron job or CI step). Never promotes: a promotion
        /// needs a whole window seen by one watcher. With --envoy-admin, the counts
        /// are those of one interval between two scrapes.
        #[arg(long)]
        once: bool,
        /// Serve the watcher's metrics (/metrics) here.
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
    },
    /// Print every canary's split and recorded decision.
    Status {
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Roll a server's canary back to 0 now (recorded as a manual decision).
    Rollback {
        #[command(flatten)]
        fleet: FleetArgs,
        /// The server id.
        server: String,
        /// Why, for the state file.
        #[arg(long, default_value = "rolled back by hand")]
        reason: String,
    },
    /// Promote a server's canary to 100 now (recorded as a manual decision).
    Promote {
        #[command(flatten)]
        fleet: FleetArgs,
        server: String,
        #[arg(long, default_value = "promoted by hand")]
        reason: String,
    },
}

/// The fleet and how `render` renders it: a decision re-renders with exactly these.
#[derive(Clone, Args)]
pub struct FleetArgs {
    /// The directory of manifests.
    pub dir: PathBuf,
    /// The render directory (as given to `mcp-registry render --out`).
    #[arg(long)]
    pub out: PathBuf,
    /// The rollout state file. Default: <out>/rollout/state.json.
    #[arg(long)]
    pub rollout_state: Option<PathBuf>,
    /// As `render --credentials-dir`.
    #[arg(long, default_value = render::KUBERNETES_CREDENTIALS_DIR)]
    pub credentials_dir: PathBuf,
    /// As `render --envoy-dir`.
    #[arg(long)]
    pub envoy_dir: Option<PathBuf>,
    /// As `render --allow-loopback-endpoints`.
    #[arg(long)]
    pub allow_loopback_endpoints: bool,
}

impl FleetArgs {
    fn rules(&self) -> Rules {
        Rules {
            allow_loopback_endpoints: self.allow_loopback_endpoints,
        }
    }

    fn target(&self) -> Target {
        Target {
            options: Options {
                out_dir: self.out.clone(),
                credentials_dir: self.credentials_dir.clone(),
                envoy_dir: self.envoy_dir.clone(),
            },
            state_path: act::state_path(&self.out, self.rollout_state.as_deref()),
        }
    }

    fn load(&self) -> Result<Fleet, ExitCode> {
        Fleet::load_with(&self.dir, &self.rules()).map_err(|problems| {
            eprintln!("{problems}");
            ExitCode::FAILURE
        })
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = crate::duration::parse(text)?;
    if duration.is_zero() {
        return Err("must be above 0".into());
    }
    Ok(duration)
}

pub fn run(command: Command) -> ExitCode {
    match command {
        Command::Watch {
            fleet,
            envoy_admin,
            prometheus,
            interval,
            once,
            metrics_addr,
        } => {
            let source = match prometheus {
                Some(url) => Source::Prometheus(url),
                None => Source::envoys(&envoy_admin),
            };
            let config = Config {
                dir: fleet.dir.clone(),
                rules: fleet.rules(),
                target: fleet.target(),
                interval,
                once,
                metrics_addr,
            };
            run::watch(config, source)
        }
        Command::Status { fleet } => status(&fleet),
        Command::Rollback {
            fleet,
            server,
            reason,
        } => manual(&fleet, &server, Decision::RolledBack, &reason),
        Command::Promote {
            fleet,
            server,
            reason,
        } => manual(&fleet, &server, Decision::Promoted, &reason),
    }
}

fn status(args: &FleetArgs) -> ExitCode {
    let fleet = match args.load() {
        Ok(fleet) => fleet,
        Err(code) => return code,
    };
    let target = args.target();
    let state = match RolloutState::load(&target.state_path) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let watched = super::watch::canaries(&fleet, &state);
    if watched.is_empty() {
        println!("no server of {} has a canary", args.dir.display());
    }
    for w in &watched {
        let (id, canary) = (w.server.id(), w.canary);
        let decided = match state.decision(id, &canary.version, &canary.endpoint.url) {
            Some(entry) => format!("{} at {}: {}", entry.state.as_str(), entry.at, entry.reason),
            None => format!(
                "watched (window {}s, min_calls {}, error_margin {}, negotiation_margin {}, promote {})",
                canary.watch.window.as_secs(),
                canary.watch.min_calls,
                canary.watch.error_margin,
                canary.watch.negotiation_margin,
                canary.watch.promote.as_str()
            ),
        };
        println!(
            "{id}: stable {} {}%, canary {} {}% (manifest {}%): {decided}",
            w.server.version,
            100 - w.weight,
            canary.version,
            w.weight,
            canary.weight
        );
    }
    // Entries the manifests no longer apply: kept until the watcher replaces them.
    for (id, entry) in state.entries() {
        let current = fleet.server(id).and_then(|s| s.canary.as_ref());
        if !current.is_some_and(|c| entry.is_about(&c.version, &c.endpoint.url)) {
            println!(
                "{id}: recorded {} of canary {}{} does not apply (manifest canary: {})",
                entry.state.as_str(),
                entry.canary_version,
                entry
                    .canary_endpoint
                    .as_deref()
                    .map(|e| format!(" at {e}"))
                    .unwrap_or_default(),
                current.map_or_else(
                    || "none".to_owned(),
                    |c| format!("{} at {}", c.version, c.endpoint.url)
                )
            );
        }
    }
    ExitCode::SUCCESS
}

fn manual(args: &FleetArgs, server_id: &str, decision: Decision, reason: &str) -> ExitCode {
    let fleet = match args.load() {
        Ok(fleet) => fleet,
        Err(code) => return code,
    };
    let Some((server, canary)) = fleet
        .server(server_id)
        .and_then(|s| s.canary.as_ref().map(|c| (s, c)))
    else {
        eprintln!(
            "{}: no server {server_id:?} with a canary (gateway.canary)",
            args.dir.display()
        );
        return ExitCode::FAILURE;
    };
    let mut details = serde_json::Map::new();
    details.insert("stable_version".into(), json!(server.version));
    details.insert("decided_by".into(), json!("manual"));
    let record = Record {
        server: server_id.to_owned(),
        canary_version: canary.version.clone(),
        canary_endpoint: canary.endpoint.url.clone(),
        decision,
        reason: reason.to_owned(),
        details,
    };
    match act::apply(&args.target(), &fleet, &record, SystemTime::now()) {
        Ok(_) => {
            let event = match decision {
                Decision::RolledBack => "rollback",
                Decision::Promoted => "promotion",
            };
            run::say(&json!({
                "event": event,
                "server": server_id,
                "canary": canary.version,
                "stable": server.version,
                "signal": "manual",
                "reason": reason,
                "weight": decision.weight(),
            }));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
