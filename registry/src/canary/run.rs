//! The watcher's loop: every interval, load the fleet and the rollout state, read the
//! counts, evaluate (`watch.rs`), act on each decision (`act.rs`), print one JSON line
//! per canary, and update the watcher's metrics.

use super::act::{self, Target};
use super::metrics::{self, Metrics, RollbackLabels, VersionLabels};
use super::source::{self, Source};
use super::watch::{canaries, Watcher};
use crate::rollout::{self, Decision, RolloutState};
use crate::{Fleet, Rules};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

pub struct Config {
    pub dir: PathBuf,
    pub rules: Rules,
    pub target: Target,
    pub interval: Duration,
    pub once: bool,
    pub metrics_addr: Option<SocketAddr>,
}

/// One JSON line on stdout (line-buffered: each line is out when printed).
pub(crate) fn say(line: &Value) {
    println!("{}", ordered(line));
}

/// The keys people scan for first (`event`, `server`, `canary`, `stable`, `reason`),
/// then the rest in name order: serde_json's map is sorted, and its insertion-order
/// feature would change every crate of the workspace.
pub(crate) fn ordered(line: &Value) -> String {
    const FIRST: [&str; 5] = ["event", "server", "canary", "stable", "reason"];
    let Value::Object(map) = line else {
        return line.to_string();
    };
    let fields = FIRST
        .iter()
        .filter_map(|key| map.get(*key).map(|value| (*key, value)))
        .chain(
            map.iter()
                .filter(|(key, _)| !FIRST.contains(&key.as_str()))
                .map(|(key, value)| (key.as_str(), value)),
        )
        .map(|(key, value)| format!("{}:{value}", Value::from(key)))
        .collect::<Vec<_>>();
    format!("{{{}}}", fields.join(","))
}

fn error(reason: String) {
    say(&json!({"event": "error", "reason": reason}));
}

pub fn watch(config: Config, source: Source) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(watch_async(config, source))
}

async fn watch_async(config: Config, mut source: Source) -> ExitCode {
    let metrics = Metrics::new();
    if let Some(addr) = config.metrics_addr {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("--metrics-addr {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let served = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(listener, served).await {
                error(format!("metrics server stopped: {e}"));
            }
        });
    }
    // The state file exists from now on (`{}` when new): a later `render` of this
    // directory without --rollout-state refuses to run without it, rather than
    // silently restoring a rolled-back canary.
    if let Err(e) = rollout::create_if_missing(&config.target.state_path) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    // A decision recorded by a watcher stopped before it rendered reaches Envoy now:
    // render is idempotent, unchanged files are left alone.
    if let Err(reason) = render_recorded(&config) {
        eprintln!("{reason}");
        return ExitCode::FAILURE;
    }
    let client = source::client();
    let mut watcher = Watcher::default();
    let mut pending_render = false;
    if config.once {
        if let Source::Envoys(_) = source {
            // Two scrapes an interval apart: the only window one run can see.
            source
                .scrape(&client, Instant::now(), config.interval * 2)
                .await;
            tokio::time::sleep(config.interval).await;
        }
        return match tick(
            &config,
            &mut source,
            &client,
            &mut watcher,
            &metrics,
            true,
            &mut pending_render,
        )
        .await
        {
            true => ExitCode::SUCCESS,
            false => ExitCode::FAILURE,
        };
    }
    let mut interval = tokio::time::interval(config.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        tick(
            &config,
            &mut source,
            &client,
            &mut watcher,
            &metrics,
            false,
            &mut pending_render,
        )
        .await;
    }
}

/// One evaluation; false when it could not be made (the fleet, the state or the
/// metrics could not be read: then the last-evaluation time does not move, which is
/// what `MCPCanaryWatcherStale` watches) or a decision could not be acted on (`--once`
/// then exits 1, so a CI step fails). An evaluation on incomplete counts (an Envoy
/// that could not be scraped, a Prometheus answer with warnings) may roll back on what
/// it read, never promote: traffic it did not see could be the canary's failures.
async fn tick(
    config: &Config,
    source: &mut Source,
    client: &reqwest::Client,
    watcher: &mut Watcher,
    metrics: &Metrics,
    once: bool,
    pending_render: &mut bool,
) -> bool {
    // A decision recorded but not rendered (render failed after the state was saved)
    // is not decided again: render it first.
    if *pending_render {
        match render_recorded(config) {
            Ok(()) => *pending_render = false,
            Err(reason) => {
                error(reason);
                return false;
            }
        }
    }
    let fleet = match Fleet::load_with(&config.dir, &config.rules) {
        Ok(fleet) => fleet,
        Err(problems) => {
            error(format!(
                "the manifests do not load, nothing evaluated: {problems}"
            ));
            return false;
        }
    };
    let state = match RolloutState::load(&config.target.state_path) {
        Ok(state) => state,
        Err(e) => {
            error(format!("{e}; nothing evaluated"));
            return false;
        }
    };
    let watched = canaries(&fleet, &state);
    metrics.weight.clear();
    metrics.no_data.clear();
    for w in &watched {
        metrics.set_weight(w.server.id(), &w.canary.version, w.weight);
        metrics.watching(w.server.id(), &w.canary.version);
        metrics.set_no_data(w.server.id(), &w.canary.version, false);
    }
    let windows: Vec<Duration> = watched.iter().map(|w| w.canary.watch.window).collect();
    let keep = windows.iter().copied().max().unwrap_or(Duration::ZERO);
    let now = Instant::now();
    let failures = source.scrape(client, now, keep).await;
    let all_failed = matches!(source, Source::Envoys(envoys) if envoys.len() == failures.len());
    // Why this evaluation's counts may be short (no promotion on them).
    let mut incomplete: Vec<String> = Vec::new();
    for failure in failures {
        incomplete.push(format!("not scraped: {failure}"));
        error(failure.to_string());
    }
    if all_failed {
        return false;
    }
    let mut tables = BTreeMap::new();
    for window in windows {
        if tables.contains_key(&window) {
            continue;
        }
        match source.increase(client, now, window).await {
            Ok(reading) => {
                for warning in &reading.warnings {
                    error(format!("partial answer from Prometheus: {warning}"));
                    incomplete.push(format!("partial answer: {warning}"));
                }
                tables.insert(window, reading.table);
            }
            Err(e) => {
                error(e.to_string());
                return false;
            }
        }
    }
    let outcomes = watcher.evaluate(&fleet, &state, &tables, now);
    let mut all_acted = true;
    for outcome in outcomes {
        let mut line = outcome.line;
        if outcome.no_data {
            metrics.set_no_data(
                line["server"].as_str().unwrap_or_default(),
                line["canary"].as_str().unwrap_or_default(),
                true,
            );
        }
        if let Some(record) = outcome.record {
            if let Some(why) = held(record.decision, once, &incomplete) {
                line["event"] = json!("wait");
                line["reason"] = json!(format!(
                    "{} (not promoted: {why})",
                    line["reason"].as_str().unwrap_or_default()
                ));
                say(&line);
                continue;
            }
            match act::apply(&config.target, &fleet, &record, SystemTime::now()) {
                Ok(_) => {
                    let labels = VersionLabels {
                        mcp_server: record.server.clone(),
                        mcp_server_version: record.canary_version.clone(),
                    };
                    match record.decision {
                        Decision::RolledBack => {
                            let signal = line["signal"].as_str().unwrap_or("unknown").to_owned();
                            metrics
                                .rollbacks
                                .get_or_create(&RollbackLabels {
                                    mcp_server: labels.mcp_server.clone(),
                                    mcp_server_version: labels.mcp_server_version.clone(),
                                    mcp_signal: signal,
                                })
                                .inc();
                        }
                        Decision::Promoted => {
                            metrics.promotions.get_or_create(&labels).inc();
                        }
                    }
                    metrics.set_weight(
                        &record.server,
                        &record.canary_version,
                        record.decision.weight(),
                    );
                    line["weight"] = json!(record.decision.weight());
                }
                Err(e) => {
                    // Either the state is unchanged (the next evaluation decides
                    // again) or it was saved and not rendered (rendered next time).
                    *pending_render = true;
                    all_acted = false;
                    error(format!(
                        "{} of {} canary {} failed: {e}",
                        line["event"].as_str().unwrap_or_default(),
                        record.server,
                        record.canary_version
                    ));
                    continue;
                }
            }
        }
        say(&line);
    }
    metrics.evaluated(SystemTime::now());
    all_acted
}

/// Why a decision must not be acted on in this evaluation, if it must not: only a
/// promotion is ever held (by `--once`, or counts that may miss traffic); a rollback on
/// what was read stands.
fn held(decision: Decision, once: bool, incomplete: &[String]) -> Option<String> {
    if decision != Decision::Promoted {
        return None;
    }
    if once {
        return Some("--once never promotes".to_owned());
    }
    if !incomplete.is_empty() {
        return Some(format!(
            "this evaluation's counts are incomplete: {}",
            incomplete.join("; ")
        ));
    }
    None
}

/// Renders the fleet with the recorded decisions.
fn render_recorded(config: &Config) -> Result<(), String> {
    let fleet = Fleet::load_with(&config.dir, &config.rules).map_err(|p| p.to_string())?;
    let state = RolloutState::load(&config.target.state_path).map_err(|e| e.to_string())?;
    act::render_fleet(&fleet, &config.target.options, &state)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_counts_hold_a_promotion_never_a_rollback() {
        let short =
            vec!["not scraped: http://gw-2:9901/stats/prometheus?usedonly: HTTP 503".to_owned()];
        assert_eq!(held(Decision::Promoted, false, &[]), None);
        assert_eq!(
            held(Decision::Promoted, false, &short).as_deref(),
            Some("this evaluation's counts are incomplete: not scraped: http://gw-2:9901/stats/prometheus?usedonly: HTTP 503")
        );
        assert!(held(Decision::Promoted, true, &[]).is_some());
        assert_eq!(held(Decision::RolledBack, false, &short), None);
        assert_eq!(held(Decision::RolledBack, true, &short), None);
    }

    #[test]
    fn lines_start_with_what_people_scan_for() {
        let line =
            json!({"weight": 0, "reason": "r", "event": "rollback", "server": "fin", "a\"b": 1});
        let text = ordered(&line);
        assert_eq!(
            text,
            r#"{"event":"rollback","server":"fin","reason":"r","a\"b":1,"weight":0}"#
        );
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), line);
    }
}
