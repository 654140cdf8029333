//! The `preflight` subcommand's flags and exit status: 0 every step passed (skips
//! allowed unless `--strict`), 1 a step failed, 2 preflight could not run (bad flags,
//! an invalid preflight.yaml: every problem listed, or a report it cannot write), 128 +
//! the signal's number when SIGINT, SIGTERM or SIGHUP stopped it (the rotation check's
//! key removed first).

use super::run::{self, Options};
use super::{config, report};
use crate::Rules;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status when preflight could not run.
pub const CANNOT_RUN: u8 = 2;

/// The run, or how a signal stopped it: its name and the exit status (128 + its
/// number, as a shell reports a process the signal killed). A signal drops the run at
/// once (the rotation guard removes the next key as it drops), then undoes anything
/// still pending.
async fn run_until_interrupted(
    options: &Options,
    config: &config::Config,
) -> Result<report::Report, (String, u8)> {
    use tokio::signal::unix::{signal, SignalKind};
    // Registered before the run starts (biased: polled first).
    let listen = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| (format!("preflight: cannot handle {name}: {e}"), CANNOT_RUN))
    };
    let mut interrupt = listen(SignalKind::interrupt(), "SIGINT")?;
    let mut terminate = listen(SignalKind::terminate(), "SIGTERM")?;
    let mut hangup = listen(SignalKind::hangup(), "SIGHUP")?;
    let (name, status) = tokio::select! {
        biased;
        _ = interrupt.recv() => ("SIGINT", 130),
        _ = terminate.recv() => ("SIGTERM", 143),
        _ = hangup.recv() => ("SIGHUP", 129),
        report = run::run(options, config) => return Ok(report),
    };
    let undone = match super::identity::restore_pending() {
        Some(Err(reason)) => format!("; the rotation check's key was NOT removed: {reason}"),
        _ => String::new(),
    };
    Err((
        format!("preflight: stopped by {name}, no report written{undone}"),
        status,
    ))
}

/// The release profile aborts on panic (nothing unwinds, no guard drops): the hook
/// removes a published key before the process goes.
fn restore_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        if let Some(Err(reason)) = super::identity::restore_pending() {
            eprintln!("preflight: the rotation check's key was NOT removed: {reason}");
        }
    }));
}

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The directory of manifests.
    pub dir: PathBuf,
    /// The server to check (its server_id).
    #[arg(long)]
    pub server: String,
    /// The gateway's base URL; the server is checked at its exposure path there.
    #[arg(long)]
    pub gateway: String,
    /// The platform's preflight.yaml: test identities, rotation, audit sink, load settings.
    #[arg(long)]
    pub config: PathBuf,
    /// The directory the gateway runs on (`render --out`), for the rendered limits.
    #[arg(long)]
    pub rendered: Option<PathBuf>,
    /// Envoy's admin URL (`/stats/prometheus`): the gateway's drift and negotiation
    /// counters cross-check steps 1 and 5.
    #[arg(long)]
    pub admin: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
    /// Write the Markdown report here.
    #[arg(long)]
    pub report_md: Option<PathBuf>,
    /// How long the load test runs (1s..1h).
    #[arg(long, default_value = "10m")]
    pub load_duration: String,
    /// The load as a multiple of the manifest's gateway.expected_calls.
    #[arg(long, default_value_t = 10.0)]
    pub load_multiplier: f64,
    /// The load in calls per second (instead of expected_calls x multiplier).
    #[arg(long)]
    pub load_rate: Option<f64>,
    /// Steps not to run, comma-separated (schema, auth, rate_limit, audit,
    /// negotiation, load, runbook, owner).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// A skipped step fails the run (for production gates).
    #[arg(long)]
    pub strict: bool,
    /// Accept manifests with endpoints on this machine (local development, tests).
    #[arg(long)]
    pub allow_loopback_endpoints: bool,
}

/// The options, or every problem with the flags.
pub fn options(args: &Args) -> Result<Options, Vec<String>> {
    let mut problems = Vec::new();
    let load_duration = match crate::duration::parse(&args.load_duration) {
        Ok(d)
            if d >= std::time::Duration::from_secs(1)
                && d <= std::time::Duration::from_secs(3600) =>
        {
            d
        }
        Ok(_) => {
            problems.push(format!(
                "--load-duration {}: must be within 1s..1h",
                args.load_duration
            ));
            Default::default()
        }
        Err(reason) => {
            problems.push(format!("--load-duration: {reason}"));
            Default::default()
        }
    };
    if !(args.load_multiplier > 0.0 && args.load_multiplier <= 1000.0) {
        problems.push(format!(
            "--load-multiplier {}: must be above 0 and at most 1000",
            args.load_multiplier
        ));
    }
    if let Some(rate) = args.load_rate {
        if !(rate > 0.0 && rate <= super::load::MAX_RATE) {
            problems.push(format!(
                "--load-rate {rate}: must be above 0 and at most 10000 calls/s"
            ));
        }
    }
    let mut skip = BTreeSet::new();
    for name in &args.skip {
        match super::step_number(name.trim()) {
            Some(n) => {
                skip.insert(n);
            }
            None => problems.push(format!(
                "--skip {name}: not a step (schema, auth, rate_limit, audit, negotiation, load, runbook, owner)"
            )),
        }
    }
    if url::Url::parse(&args.gateway).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
        problems.push(format!("--gateway {}: not an http(s) URL", args.gateway));
    }
    if let Some(admin) = &args.admin {
        if url::Url::parse(admin).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
            problems.push(format!("--admin {admin}: not an http(s) URL"));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Options {
        fleet_dir: args.dir.clone(),
        server: args.server.clone(),
        gateway: args.gateway.clone(),
        rendered: args.rendered.clone(),
        admin: args.admin.clone(),
        load_duration,
        load_multiplier: args.load_multiplier,
        load_rate: args.load_rate,
        skip,
        strict: args.strict,
        rules: Rules {
            allow_loopback_endpoints: args.allow_loopback_endpoints,
        },
    })
}

/// Runs preflight as the command line asks; the process's exit status.
pub fn main(args: Args) -> ExitCode {
    let options = options(&args);
    let config = config::load(&args.config);
    let (options, config) = match (options, config) {
        (Ok(options), Ok(config)) => (options, config),
        (options, config) => {
            for line in options.err().unwrap_or_default() {
                eprintln!("preflight: {line}");
            }
            for line in config.err().map(|p| p.lines()).unwrap_or_default() {
                eprintln!("{line}");
            }
            return ExitCode::from(CANNOT_RUN);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("preflight: cannot start the async runtime: {e}");
            return ExitCode::from(CANNOT_RUN);
        }
    };
    restore_on_panic();
    let report = match runtime.block_on(run_until_interrupted(&options, &config)) {
        Ok(report) => report,
        Err((message, status)) => {
            eprintln!("{message}");
            return ExitCode::from(status);
        }
    };
    print!("{}", report::text(&report));
    for (path, text) in [
        (&args.report_json, report::json(&report)),
        (&args.report_md, report::markdown(&report)),
    ] {
        if let Some(path) = path {
            if let Err(e) = crate::write::write_if_changed(path, &text) {
                eprintln!("{}: cannot write the report: {e}", path.display());
                return ExitCode::from(CANNOT_RUN);
            }
        }
    }
    if report.result == "pass" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(extra: &[&str]) -> Args {
        let mut argv = vec![
            "x",
            "fleet",
            "--server",
            "a",
            "--gateway",
            "http://gw:8080",
            "--config",
            "p.yaml",
        ];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).args
    }

    #[test]
    fn defaults_are_the_seed_s_load_test() {
        let options = options(&parse(&[])).unwrap();
        assert_eq!(options.load_duration, std::time::Duration::from_secs(600));
        assert_eq!(options.load_multiplier, 10.0);
        assert!(options.skip.is_empty() && !options.strict);
    }

    #[test]
    fn every_bad_flag_is_listed() {
        let problems = options(&parse(&[
            "--load-duration",
            "2h",
            "--load-multiplier",
            "0",
            "--skip",
            "load,loud",
            "--load-rate",
            "0",
        ]))
        .unwrap_err();
        assert_eq!(
            problems,
            [
                "--load-duration 2h: must be within 1s..1h",
                "--load-multiplier 0: must be above 0 and at most 1000",
                "--load-rate 0: must be above 0 and at most 10000 calls/s",
                "--skip loud: not a step (schema, auth, rate_limit, audit, negotiation, load, runbook, owner)",
            ]
        );
        let skip = options(&parse(&[
            "--skip",
            "load,rate_limit",
            "--load-duration",
            "3s",
        ]))
        .unwrap();
        assert_eq!(skip.skip, BTreeSet::from([3, 6]));
    }
}
