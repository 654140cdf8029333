//! One evaluation of every canary of the fleet, as a pure step: the fleet, the rollout
//! state, each window's counts and the time in; what to record and say out. The loop
//! around it (`run.rs`) reads the metrics and acts.

use super::act::Record;
use super::counts::{Counts, Table};
use super::decision::{decide, Comparison, Verdict};
use crate::model::{Canary, Server};
use crate::rollout::{Decision, RolloutState};
use crate::Fleet;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A server with a canary, and the weight render gives it with the state applied.
pub struct Watched<'a> {
    pub server: &'a Server,
    pub canary: &'a Canary,
    pub weight: u8,
}

/// Every canary of the fleet with its effective weight.
pub fn canaries<'a>(fleet: &'a Fleet, state: &RolloutState) -> Vec<Watched<'a>> {
    fleet
        .servers
        .iter()
        .filter_map(|server| {
            let canary = server.canary.as_ref()?;
            Some(Watched {
                server,
                canary,
                weight: state.effective_weight(
                    server.id(),
                    &canary.version,
                    &canary.endpoint.url,
                    canary.weight,
                ),
            })
        })
        .collect()
}

/// What one evaluation of one canary produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The JSON log line (one per canary and evaluation).
    pub line: Value,
    /// A decision to record and render, for a rollback or a promotion.
    pub record: Option<Record>,
    /// Neither release of this live canary had a single series in the gateway's
    /// metrics for a whole window: the watcher is blind to it (the line's event is
    /// `error`, and `mcp_canary_no_data` is 1 for it).
    pub no_data: bool,
}

/// What the watcher remembers between evaluations: since when it has seen each canary
/// version live (weight above 0, no decision recorded), and which ones breached. A
/// restart of the watcher starts that clock again: a promotion needs a whole window
/// this process saw.
#[derive(Debug, Default)]
pub struct Watcher {
    live_since: BTreeMap<(String, String), Instant>,
    /// The first breach of each canary whose rollback is not recorded yet (acting
    /// failed): it is rolled back on every evaluation until the state file says so,
    /// even once the failures have left the window. A breach is never forgotten for a
    /// promotion.
    breaches: BTreeMap<(String, String), Comparison>,
    /// Since when neither release of each live canary has had any series in the
    /// counts (no traffic ever counted, no version label, the wrong Envoy scraped).
    blind_since: BTreeMap<(String, String), Instant>,
}

impl Watcher {
    /// Evaluates every live canary; `tables` holds the counts over each canary's window
    /// (keyed by window).
    pub fn evaluate(
        &mut self,
        fleet: &Fleet,
        state: &RolloutState,
        tables: &BTreeMap<Duration, Table>,
        now: Instant,
    ) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        let mut live = BTreeMap::new();
        let mut breaches = BTreeMap::new();
        let mut blind = BTreeMap::new();
        for watched in canaries(fleet, state) {
            let (server, canary) = (watched.server, watched.canary);
            let key = (server.id().to_owned(), canary.version.clone());
            if state
                .decision(server.id(), &canary.version, &canary.endpoint.url)
                .is_some()
                || watched.weight == 0
            {
                continue;
            }
            let since = *self.live_since.get(&key).unwrap_or(&now);
            live.insert(key.clone(), since);
            let window = canary.watch.window;
            let empty = Table::new();
            let table = tables.get(&window).unwrap_or(&empty);
            let counts = |version: &str| {
                table
                    .get(&(server.id().to_owned(), version.to_owned()))
                    .copied()
            };
            let (canary_seen, stable_seen) = (counts(&canary.version), counts(&server.version));
            let (canary_counts, stable_counts) = (
                canary_seen.unwrap_or_default(),
                stable_seen.unwrap_or_default(),
            );
            let verdict = match self.breaches.get(&key) {
                Some(first) => Verdict::RollBack(*first),
                None => decide(
                    &canary.watch,
                    canary_counts,
                    stable_counts,
                    now.saturating_duration_since(since),
                ),
            };
            let mut no_data = false;
            if canary_seen.is_none() && stable_seen.is_none() {
                let since = *self.blind_since.get(&key).unwrap_or(&now);
                blind.insert(key.clone(), since);
                no_data = now.saturating_duration_since(since) >= window
                    && matches!(verdict, Verdict::Wait(_));
            }
            if let Verdict::RollBack(comparison) = verdict {
                breaches.insert(key, comparison);
            }
            let mut outcome = outcome(server, canary, canary_counts, stable_counts, &verdict);
            if no_data {
                // Not a quiet wait: with no series at all for either release, a bad
                // canary could not be seen either. An `error` line and a metric the
                // alerts page on (MCPCanaryNoData).
                outcome.line["event"] = json!("error");
                outcome.line["reason"] = json!(format!(
                    "no series of canary {} or stable {} of {} in the gateway's metrics for a whole {}s window, while the canary gets {}% of the requests: nothing can be judged (is every gateway scraped, and do its mcp_* series carry mcp_server_version?)",
                    canary.version,
                    server.version,
                    server.id(),
                    window.as_secs(),
                    watched.weight
                ));
                outcome.no_data = true;
            }
            outcomes.push(outcome);
        }
        // Forget canaries that are gone, decided or at 0: one coming back starts over.
        self.live_since = live;
        self.breaches = breaches;
        self.blind_since = blind;
        outcomes
    }
}

/// A count as JSON: a whole number as an integer (Envoy's counters), a fraction as it
/// is (Prometheus' `increase()` extrapolates).
fn count(value: f64) -> Value {
    if value.fract() == 0.0 && (0.0..9.0e15).contains(&value) {
        json!(value as u64)
    } else {
        json!((value * 1000.0).round() / 1000.0)
    }
}

fn outcome(
    server: &Server,
    canary: &Canary,
    canary_counts: Counts,
    stable_counts: Counts,
    verdict: &Verdict,
) -> Outcome {
    let window = canary.watch.window;
    let mut line = Map::new();
    let mut put = |key: &str, value: Value| {
        line.insert(key.to_owned(), value);
    };
    let (event, reason, decision) = match verdict {
        Verdict::RollBack(comparison) => {
            put("signal", json!(comparison.signal.as_str()));
            put("canary_value", json!(comparison.canary_value));
            put("stable_value", json!(comparison.stable_value));
            put("margin", json!(comparison.margin));
            put("canary_count", count(comparison.canary_count));
            put("stable_count", count(comparison.stable_count));
            ("rollback", comparison.describe(window), Some(Decision::RolledBack))
        }
        Verdict::Promote { calls } => (
            "promotion",
            format!(
                "clean for a whole {}s window: {} canary calls, no signal past its margin (error {}, negotiation {})",
                window.as_secs(),
                super::decision::shown(*calls),
                canary.watch.error_margin,
                canary.watch.negotiation_margin
            ),
            Some(Decision::Promoted),
        ),
        Verdict::Wait(reason) => ("wait", reason.clone(), None),
    };
    put("canary_calls", count(canary_counts.calls));
    put("canary_errors", count(canary_counts.errors));
    put("canary_negotiations", count(canary_counts.negotiations));
    put(
        "canary_negotiation_failures",
        count(canary_counts.negotiation_failures),
    );
    put("stable_calls", count(stable_counts.calls));
    put("stable_errors", count(stable_counts.errors));
    put("window_s", json!(window.as_secs()));
    // What the state file keeps beside the reason: the measurements, not the event.
    let details = line.clone();
    let mut head = Map::new();
    head.insert("event".into(), json!(event));
    head.insert("server".into(), json!(server.id()));
    head.insert("canary".into(), json!(canary.version));
    head.insert("stable".into(), json!(server.version));
    head.insert("reason".into(), json!(reason));
    head.extend(line);
    let record = decision.map(|decision| {
        let mut details = details;
        details.insert("stable_version".into(), json!(server.version));
        details.insert("decided_by".into(), json!("watcher"));
        Record {
            server: server.id().to_owned(),
            canary_version: canary.version.clone(),
            canary_endpoint: canary.endpoint.url.clone(),
            decision,
            reason: reason.clone(),
            details,
        }
    });
    Outcome {
        line: Value::Object(head),
        record,
        no_data: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::decision::Signal;
    use std::path::Path;

    const WINDOW: Duration = Duration::from_secs(10);

    /// A fleet of one server, `fin` 1.0.0, with canary 2.0.0 at `weight`.
    fn fleet(dir: &Path, canary_version: &str, weight: u8, promote: &str) -> Fleet {
        std::fs::create_dir_all(dir.join("schemas")).unwrap();
        std::fs::write(dir.join("schemas/t.json"), r#"{"type": "object"}"#).unwrap();
        std::fs::write(
            dir.join("fin.yaml"),
            format!(
                r#"server_id: fin
version: "1.0.0"
transport: streamable_http
endpoint: http://fin-v1.svc.cluster.local:8000/mcp
tools:
  - name: t
    schema_ref: schemas/t.json
owner: team@example.com
on_call_runbook: https://wiki.example/fin
gateway:
  canary:
    version: "{canary_version}"
    endpoint: http://fin-v2.svc.cluster.local:8000/mcp
    weight: {weight}
    watch: {{window: 10s, min_calls: 10, error_margin: 0.05, negotiation_margin: 0.05, promote: {promote}}}
"#
            ),
        )
        .unwrap();
        Fleet::load(dir).unwrap()
    }

    fn tables(entries: &[(&str, Counts)]) -> BTreeMap<Duration, Table> {
        let table = entries
            .iter()
            .map(|(version, counts)| (("fin".to_owned(), (*version).to_owned()), *counts))
            .collect();
        BTreeMap::from([(WINDOW, table)])
    }

    fn calls(calls: f64, errors: f64) -> Counts {
        Counts {
            calls,
            errors,
            ..Counts::default()
        }
    }

    #[test]
    fn a_failing_canary_is_rolled_back_with_its_measurements() {
        let dir = tempfile::tempdir().unwrap();
        let fleet = fleet(dir.path(), "2.0.0", 50, "auto");
        let mut watcher = Watcher::default();
        let now = Instant::now();
        let outcomes = watcher.evaluate(
            &fleet,
            &RolloutState::default(),
            &tables(&[("2.0.0", calls(12.0, 12.0)), ("1.0.0", calls(12.0, 0.0))]),
            now,
        );
        let [outcome] = &outcomes[..] else {
            panic!("{outcomes:?}");
        };
        let line = &outcome.line;
        assert_eq!(line["event"], "rollback");
        assert_eq!(line["server"], "fin");
        assert_eq!(line["canary"], "2.0.0");
        assert_eq!(line["stable"], "1.0.0");
        assert_eq!(line["signal"], Signal::ToolCallErrorRatio.as_str());
        assert_eq!(line["canary_value"], 1.0);
        assert_eq!(line["stable_value"], 0.0);
        assert_eq!(line["margin"], 0.05);
        assert_eq!(line["canary_count"], 12);
        assert!(line["canary_count"].is_u64());
        assert_eq!(line["window_s"], 10);
        let record = outcome.record.as_ref().unwrap();
        assert_eq!(record.decision, Decision::RolledBack);
        assert_eq!(record.canary_version, "2.0.0");
        assert_eq!(
            record.reason,
            "tool_call_error_ratio 1.000 > stable 0.000 + margin 0.050 (12 canary calls in 10s)"
        );
        assert_eq!(record.details["signal"], "tool_call_error_ratio");
        assert_eq!(record.details["stable_version"], "1.0.0");
    }

    #[test]
    fn a_healthy_canary_is_promoted_after_a_whole_window_of_this_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let fleet = fleet(dir.path(), "2.0.0", 50, "auto");
        let state = RolloutState::default();
        let healthy = tables(&[("2.0.0", calls(30.0, 0.0)), ("1.0.0", calls(30.0, 0.0))]);
        let mut watcher = Watcher::default();
        let t0 = Instant::now();
        // Enough calls at once, but the watcher has not seen a whole window yet.
        for after in [0, 5, 9] {
            let outcomes =
                watcher.evaluate(&fleet, &state, &healthy, t0 + Duration::from_secs(after));
            assert_eq!(outcomes[0].line["event"], "wait", "{after}");
            assert_eq!(outcomes[0].record, None);
        }
        let outcomes = watcher.evaluate(&fleet, &state, &healthy, t0 + WINDOW);
        assert_eq!(outcomes[0].line["event"], "promotion");
        assert_eq!(
            outcomes[0].record.as_ref().unwrap().decision,
            Decision::Promoted
        );
    }

    #[test]
    fn a_breach_whose_rollback_was_not_recorded_is_rolled_back_again_never_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let fleet = fleet(dir.path(), "2.0.0", 50, "auto");
        let state = RolloutState::default();
        let mut watcher = Watcher::default();
        let t0 = Instant::now();
        let bad = tables(&[("2.0.0", calls(12.0, 12.0)), ("1.0.0", calls(12.0, 0.0))]);
        let first = watcher.evaluate(&fleet, &state, &bad, t0);
        assert_eq!(first[0].line["event"], "rollback");
        // Acting failed (the state file is unchanged); the failures have left the
        // window and the canary now looks clean for a whole window.
        let clean = tables(&[("2.0.0", calls(40.0, 0.0)), ("1.0.0", calls(40.0, 0.0))]);
        let again = watcher.evaluate(&fleet, &state, &clean, t0 + WINDOW * 3);
        assert_eq!(again[0].line["event"], "rollback");
        // The first breach's comparison, again (the counts beside it are today's).
        let (again, first) = (
            again[0].record.as_ref().unwrap(),
            first[0].record.as_ref().unwrap(),
        );
        assert_eq!(again.reason, first.reason);
        assert_eq!(again.details["canary_count"], 12);
    }

    #[test]
    fn silence_keeps_waiting_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let fleet = fleet(dir.path(), "2.0.0", 50, "auto");
        let mut watcher = Watcher::default();
        let t0 = Instant::now();
        let quiet = tables(&[("1.0.0", calls(500.0, 0.0))]);
        for after in [0, 10, 100, 1000] {
            let outcomes = watcher.evaluate(
                &fleet,
                &RolloutState::default(),
                &quiet,
                t0 + Duration::from_secs(after),
            );
            assert_eq!(outcomes[0].line["event"], "wait");
            assert_eq!(
                outcomes[0].line["reason"],
                "insufficient canary traffic: 0 of 10 tool calls in the last 10s"
            );
        }
    }

    #[test]
    fn no_series_of_either_release_for_a_whole_window_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let fleet = fleet(dir.path(), "2.0.0", 50, "auto");
        let state = RolloutState::default();
        let mut watcher = Watcher::default();
        let t0 = Instant::now();
        // Other servers' series only: fin's releases have none.
        let nothing = BTreeMap::from([(
            WINDOW,
            Table::from([(("other".to_owned(), "1".to_owned()), calls(5.0, 0.0))]),
        )]);
        let first = watcher.evaluate(&fleet, &state, &nothing, t0);
        assert_eq!(first[0].line["event"], "wait");
        assert!(!first[0].no_data);
        let later = watcher.evaluate(&fleet, &state, &nothing, t0 + WINDOW);
        assert_eq!(later[0].line["event"], "error");
        assert!(later[0].no_data);
        assert_eq!(later[0].record, None);
        let reason = later[0].line["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("no series of canary 2.0.0 or stable 1.0.0 of fin in the gateway's metrics for a whole 10s window"),
            "{reason}"
        );
        // A series of either release, even one that did not grow: not blind, and the
        // clock starts again.
        let idle = tables(&[("1.0.0", Counts::default())]);
        let seen = watcher.evaluate(&fleet, &state, &idle, t0 + WINDOW * 2);
        assert_eq!(seen[0].line["event"], "wait");
        assert!(!seen[0].no_data);
        let again = watcher.evaluate(&fleet, &state, &nothing, t0 + WINDOW * 2);
        assert!(!again[0].no_data);
    }

    #[test]
    fn a_decision_about_the_same_version_at_another_endpoint_does_not_apply() {
        let dir = tempfile::tempdir().unwrap();
        let fleet = fleet(dir.path(), "2.0.0", 50, "auto");
        let healthy = tables(&[("2.0.0", calls(30.0, 0.0)), ("1.0.0", calls(30.0, 0.0))]);
        let mut state = RolloutState::default();
        state
            .record_rollback(
                "fin",
                "2.0.0",
                "old deployment",
                std::time::SystemTime::now(),
            )
            .canary_endpoint = Some("http://fin-old.svc.cluster.local:8000/mcp".into());
        let watched = canaries(&fleet, &state);
        assert_eq!(watched[0].weight, 50);
        let outcomes = Watcher::default().evaluate(&fleet, &state, &healthy, Instant::now());
        assert_eq!(outcomes[0].line["event"], "wait");
        // The watcher's own records name the endpoint.
        let bad = tables(&[("2.0.0", calls(12.0, 12.0)), ("1.0.0", calls(12.0, 0.0))]);
        let rollback = Watcher::default().evaluate(&fleet, &state, &bad, Instant::now());
        assert_eq!(
            rollback[0].record.as_ref().unwrap().canary_endpoint,
            "http://fin-v2.svc.cluster.local:8000/mcp"
        );
        // The same endpoint: the decision applies.
        state
            .record_rollback("fin", "2.0.0", "this one", std::time::SystemTime::now())
            .canary_endpoint = Some("http://fin-v2.svc.cluster.local:8000/mcp".into());
        assert_eq!(canaries(&fleet, &state)[0].weight, 0);
    }

    #[test]
    fn decided_canaries_and_weight_0_are_not_watched_and_a_new_version_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let healthy = tables(&[
            ("2.0.0", calls(30.0, 0.0)),
            ("3.0.0", calls(30.0, 0.0)),
            ("1.0.0", calls(30.0, 0.0)),
        ]);
        let t0 = Instant::now();
        let mut watcher = Watcher::default();
        let mut state = RolloutState::default();
        let v2 = fleet(dir.path(), "2.0.0", 50, "auto");
        assert_eq!(watcher.evaluate(&v2, &state, &healthy, t0).len(), 1);
        state.record_rollback("fin", "2.0.0", "by hand", std::time::SystemTime::now());
        assert!(watcher
            .evaluate(&v2, &state, &healthy, t0 + WINDOW)
            .is_empty());
        // The next release: watched from now on, not from t0.
        let v3 = fleet(dir.path(), "3.0.0", 50, "auto");
        let first = watcher.evaluate(&v3, &state, &healthy, t0 + WINDOW * 2);
        assert_eq!(first[0].line["event"], "wait");
        assert_eq!(first[0].line["canary"], "3.0.0");
        let later = watcher.evaluate(&v3, &state, &healthy, t0 + WINDOW * 3);
        assert_eq!(later[0].line["event"], "promotion");
        // Weight 0 in the manifest: nothing to watch.
        let off = fleet(dir.path(), "3.0.0", 0, "auto");
        assert!(watcher
            .evaluate(&off, &RolloutState::default(), &healthy, t0)
            .is_empty());
    }
}
