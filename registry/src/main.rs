//! `mcp-registry`: validate a directory of MCP server manifests, or render the
//! gateway's configuration from it.

use clap::{Parser, Subcommand};
use mcp_registry::render::{self, Options};
use mcp_registry::rollout::{self, RolloutState};
use mcp_registry::write::{write_if_changed, Written};
use mcp_registry::{Fleet, Rules};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mcp-registry",
    version,
    about = "Register MCP servers with the Envoy MCP gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every manifest (`*.yaml`) of a directory; print every problem.
    Validate {
        /// The directory of manifests.
        dir: PathBuf,
        #[command(flatten)]
        rules: RuleFlags,
    },
    /// Validate, then write the gateway's configuration (nothing is written if a
    /// manifest has a problem). Files are replaced atomically; unchanged files are
    /// left alone.
    Render {
        /// The directory of manifests.
        dir: PathBuf,
        /// Where to write.
        #[arg(long)]
        out: PathBuf,
        /// Where `{secret:}` credentials are mounted for the authz-service, in
        /// policy.yaml: <credentials-dir>/<server_id>/<key>.
        #[arg(long, default_value = render::KUBERNETES_CREDENTIALS_DIR)]
        credentials_dir: PathBuf,
        /// Where Envoy finds the rendered envoy/ directory, written into
        /// envoy/bootstrap.yaml (for a container: /etc/mcp-gateway/envoy). Default:
        /// <out>/envoy, absolute.
        #[arg(long)]
        envoy_dir: Option<PathBuf>,
        /// The canary watcher's decisions, which override the manifests' canary
        /// weights (a rollback stays at 0 % on every later render). Default:
        /// <out>/rollout/state.json, which must exist when a manifest has a canary
        /// (`canary watch` creates it); a missing file given here is no decisions, a
        /// malformed one stops the render.
        #[arg(long)]
        rollout_state: Option<PathBuf>,
        #[command(flatten)]
        rules: RuleFlags,
    },
    /// Run the pre-production checklist against a live server through the gateway:
    /// one line per step, JSON and Markdown reports; exit 0 all passed, 1 a step
    /// failed, 2 could not run.
    #[cfg(feature = "preflight")]
    Preflight(Box<mcp_registry::preflight::cli::Args>),
    /// Canary releases: `watch` compares each canary with its stable version on the
    /// gateway's metrics and rolls it back (or promotes it) by re-rendering; `status`,
    /// and `rollback` / `promote` by hand through the same code.
    #[cfg(feature = "canary")]
    #[command(subcommand)]
    Canary(mcp_registry::canary::cli::Command),
}

#[derive(clap::Args)]
struct RuleFlags {
    /// Accept endpoints on this machine (127.0.0.0/8, ::1, localhost): local
    /// development and tests only. In a shared gateway such an endpoint reaches the
    /// gateway's own ports (Envoy's admin interface).
    #[arg(long)]
    allow_loopback_endpoints: bool,
}

impl RuleFlags {
    fn rules(&self) -> Rules {
        Rules {
            allow_loopback_endpoints: self.allow_loopback_endpoints,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (dir, rules) = match &cli.command {
        Command::Validate { dir, rules } | Command::Render { dir, rules, .. } => {
            (dir, rules.rules())
        }
        // Preflight loads the fleet itself (its manifest problems are steps' results).
        #[cfg(feature = "preflight")]
        Command::Preflight(args) => return mcp_registry::preflight::cli::main(*args.clone()),
        // The watcher reloads the fleet on every evaluation.
        #[cfg(feature = "canary")]
        Command::Canary(command) => return mcp_registry::canary::cli::run(command.clone()),
    };
    let fleet = match Fleet::load_with(dir, &rules) {
        Ok(fleet) => fleet,
        Err(problems) => {
            eprintln!("{problems}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        #[cfg(feature = "preflight")]
        Command::Preflight(_) => unreachable!("dispatched above"),
        #[cfg(feature = "canary")]
        Command::Canary(_) => unreachable!("dispatched above"),
        Command::Validate { dir, .. } => {
            let n = fleet.servers.len();
            println!(
                "{}: {n} server{} OK",
                dir.display(),
                if n == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Command::Render {
            out,
            credentials_dir,
            envoy_dir,
            rollout_state,
            ..
        } => {
            // The default file must exist for a fleet with a canary (the watcher creates
            // it): a render into a fresh directory would restore rolled-back canaries.
            let state_file = match rollout::require_default(&fleet, &out, rollout_state.as_deref())
            {
                Ok(path) => path,
                Err(message) => {
                    eprintln!("{message}");
                    return ExitCode::FAILURE;
                }
            };
            let rollout = match RolloutState::load(&state_file) {
                Ok(rollout) => rollout,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let options = Options {
                out_dir: out.clone(),
                credentials_dir,
                envoy_dir,
            };
            for output in render::render_with_rollout(&fleet, &options, &rollout) {
                let path = out.join(&output.path);
                match write_if_changed(&path, &output.text) {
                    Ok(Written::Wrote) => println!("wrote {}", path.display()),
                    Ok(Written::Unchanged) => {}
                    Err(e) => {
                        eprintln!("{}: cannot write: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                }
            }
            for note in rollout
                .notes(&fleet)
                .into_iter()
                .chain(render::istio::notes(&fleet))
            {
                eprintln!("note: {note}");
            }
            ExitCode::SUCCESS
        }
    }
}
