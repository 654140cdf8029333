//! Acting on a decision: the rollout state file records it (render honours it over
//! the manifest's weight, so a later CI render does not undo a rollback), then the
//! fleet is rendered again in-process with the same code as `mcp-registry render`;
//! Envoy picks the new weights up from its watched directory (~10 ms).

use crate::render::{self, Options};
use crate::rollout::{Decision, RolloutError, RolloutState};
use crate::write::{write_if_changed, Written};
use crate::Fleet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ActError {
    #[error(transparent)]
    Rollout(#[from] RolloutError),
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What render needs besides the fleet, and where the state file is.
#[derive(Debug, Clone)]
pub struct Target {
    pub options: Options,
    pub state_path: PathBuf,
}

/// One decision about one canary version.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub server: String,
    pub canary_version: String,
    /// The canary's endpoint URL, recorded so that the decision does not carry over to
    /// a new deployment that reuses the version string.
    pub canary_endpoint: String,
    pub decision: Decision,
    /// For people: the state file's `reason`.
    pub reason: String,
    /// Kept in the state file beside the reason (signal, values, counts, window).
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// Records `record` in the state file, then renders `fleet` with it. Returns the
/// files render wrote (those whose content changed).
pub fn apply(
    target: &Target,
    fleet: &Fleet,
    record: &Record,
    at: SystemTime,
) -> Result<Vec<PathBuf>, ActError> {
    let mut state = RolloutState::load(&target.state_path)?;
    let entry = match record.decision {
        Decision::RolledBack => {
            state.record_rollback(&record.server, &record.canary_version, &record.reason, at)
        }
        Decision::Promoted => {
            state.record_promotion(&record.server, &record.canary_version, &record.reason, at)
        }
    };
    entry.details = record.details.clone();
    entry.canary_endpoint = Some(record.canary_endpoint.clone());
    state.save(&target.state_path)?;
    render_fleet(fleet, &target.options, &state)
}

/// `mcp-registry render`'s writing, the decisions of `state` applied: every output,
/// atomically, unchanged files left alone, in render's order (services before Envoy,
/// clusters before routes).
pub fn render_fleet(
    fleet: &Fleet,
    options: &Options,
    state: &RolloutState,
) -> Result<Vec<PathBuf>, ActError> {
    let mut wrote = Vec::new();
    for output in render::render_with_rollout(fleet, options, state) {
        let path = options.out_dir.join(&output.path);
        match write_if_changed(&path, &output.text) {
            Ok(Written::Wrote) => wrote.push(path),
            Ok(Written::Unchanged) => {}
            Err(source) => return Err(ActError::Write { path, source }),
        }
    }
    Ok(wrote)
}

/// The state file of a render directory unless given.
pub fn state_path(out: &Path, given: Option<&Path>) -> PathBuf {
    given.map_or_else(|| crate::rollout::default_path(out), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::default_path;

    /// The registry's canary fixture: financial-data 1.3.2 with canary 1.4.0 at 5 %.
    fn fixture() -> Fleet {
        Fleet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/canary")).unwrap()
    }

    /// The canary cluster's weight on every rendered route (the path map and the
    /// fallback list).
    fn canary_weights(out: &Path) -> Vec<String> {
        let routes = std::fs::read_to_string(out.join("envoy/routes.yaml")).unwrap();
        let lines: Vec<&str> = routes.lines().collect();
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.trim() == "name: mcp-server/financial-data/canary")
            .map(|(i, _)| {
                lines[i..]
                    .iter()
                    .find_map(|l| l.trim().strip_prefix("weight: "))
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    fn record(decision: Decision) -> Record {
        let mut details = serde_json::Map::new();
        details.insert("signal".into(), "tool_call_error_ratio".into());
        Record {
            server: "financial-data".into(),
            canary_version: "1.4.0".into(),
            canary_endpoint: fixture()
                .server("financial-data")
                .unwrap()
                .canary
                .as_ref()
                .unwrap()
                .endpoint
                .url
                .clone(),
            decision,
            reason: "test".into(),
            details,
        }
    }

    #[test]
    fn a_decision_is_recorded_then_rendered() {
        let out = tempfile::tempdir().unwrap();
        let fleet = fixture();
        let target = Target {
            options: Options::new(out.path()),
            state_path: default_path(out.path()),
        };
        render_fleet(&fleet, &target.options, &RolloutState::default()).unwrap();
        assert_eq!(canary_weights(out.path()), ["5", "5"]);

        let wrote = apply(
            &target,
            &fleet,
            &record(Decision::RolledBack),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(canary_weights(out.path()), ["0", "0"]);
        // Only what the weight changes: Envoy's routes (and the standalone config).
        assert!(
            wrote.contains(&out.path().join("envoy/routes.yaml")),
            "{wrote:?}"
        );
        assert!(
            !wrote.contains(&out.path().join("policy.yaml")),
            "{wrote:?}"
        );
        let state = RolloutState::load(&target.state_path).unwrap();
        let endpoint = &record(Decision::RolledBack).canary_endpoint;
        let entry = state.decision("financial-data", "1.4.0", endpoint).unwrap();
        assert_eq!((entry.weight, entry.reason.as_str()), (0, "test"));
        assert_eq!(entry.canary_endpoint.as_ref(), Some(endpoint));
        assert!(state
            .decision("financial-data", "1.4.0", "http://elsewhere:8000/mcp")
            .is_none());
        assert_eq!(entry.details["signal"], "tool_call_error_ratio");

        apply(
            &target,
            &fleet,
            &record(Decision::Promoted),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(canary_weights(out.path()), ["100", "100"]);
        // A render that starts from the state (the watcher at start) changes nothing.
        let state = RolloutState::load(&target.state_path).unwrap();
        assert!(render_fleet(&fleet, &target.options, &state)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_malformed_state_file_stops_the_decision_before_render() {
        let out = tempfile::tempdir().unwrap();
        let target = Target {
            options: Options::new(out.path()),
            state_path: out.path().join("state.json"),
        };
        std::fs::write(&target.state_path, "{not json").unwrap();
        let error = apply(
            &target,
            &fixture(),
            &record(Decision::RolledBack),
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(matches!(error, ActError::Rollout(_)), "{error}");
        assert!(!out.path().join("envoy/routes.yaml").exists());
    }
}
