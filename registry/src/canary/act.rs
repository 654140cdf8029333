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
