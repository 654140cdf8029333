//! The rollout state file: what the canary watcher decided, and what `render` must
//! honour over the manifests.
//!
//! A rollback must not live in the team's manifest (often in Git: the next CI render
//! would restore the canary's weight), so the watcher writes its decisions here and
//! every render reads them. Default place: `<out>/rollout/state.json` (`render
//! --rollout-state <file>` overrides it).
//!
//! # Format
//!
//! One JSON object, keyed by server id; each value is the decision about one canary
//! version of that server:
//!
//! ```json
//! {
//!   "financial-data": {
//!     "canary_version": "1.4.0",
//!     "canary_endpoint": "http://financial-data-v140.mcp.svc.cluster.local:8000/mcp",
//!     "state": "rolled_back",
//!     "weight": 0,
//!     "reason": "tool_call_error_ratio 0.40 > stable 0.00 + margin 0.02 (25 canary calls in 60s)",
//!     "at": "2026-12-02T10:31:07Z",
//!     "signal": "tool_call_error_ratio"
//!   }
//! }
//! ```
//!
//! - `canary_version` (required): the canary version the decision is about. It only
//!   applies while the manifest's `gateway.canary.version` is exactly this string; a
//!   manifest naming another canary version starts fresh from its own `weight` (a new
//!   release is a new canary), and the stale entry is ignored until the watcher
//!   replaces it.
//! - `canary_endpoint` (written by the watcher and by `canary rollback`/`promote`): the
//!   canary endpoint URL, as the manifest wrote it, when the decision was made. The
//!   decision applies only while the manifest's `gateway.canary.endpoint` is exactly
//!   this URL too: a version string reused for a new deployment elsewhere is a new
//!   canary, not the one rolled back (or promoted). An entry without it (written before
//!   it existed, or by hand) matches on the version alone.
//! - `state` (required): `rolled_back` (the canary gets no traffic) or `promoted` (the
//!   canary gets all of it, until the team moves `version`/`endpoint` to the new
//!   release and drops `gateway.canary`).
//! - `weight` (required): the canary's percentage this decision renders; `0` for
//!   `rolled_back`, `100` for `promoted` (anything else is refused, so a hand edit
//!   cannot leave the two disagreeing).
//! - `reason` (required): why, for people (log, `canary status`).
//! - `at` (required): when, RFC 3339 (`2026-12-02T10:31:07Z`).
//! - any other key (`signal`, `stable_version`, measured values, ...) is kept as the
//!   watcher wrote it and ignored by `render`.
//!
//! A missing file given as `render --rollout-state <file>` means no decisions (every
//! canary at its manifest weight). The default file is created (`{}`) by `canary
//! watch` when it starts; when a fleet with a canary is rendered without
//! `--rollout-state` and the default file does not exist, render refuses
//! ([`require_default`]): a render into a fresh directory (a CI job's checkout) would
//! otherwise restore every rolled-back canary. A file that cannot be read or parsed is
//! an error naming the file and the reason: render stops rather than silently falling
//! back to the manifest weight (which could undo a rollback). The file is written atomically ([`crate::write`]), so a render running
//! next to the watcher never reads half of it.

use crate::fleet::Fleet;
use crate::write::{write_if_changed, Written};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the state file lives relative to the render's `--out` directory.
pub const DEFAULT_RELATIVE_PATH: &str = "rollout/state.json";

/// `<out>/rollout/state.json`.
pub fn default_path(out_dir: &Path) -> PathBuf {
    out_dir.join(DEFAULT_RELATIVE_PATH)
}

/// The state file render reads: `given` (`--rollout-state`; a missing file there is
/// no decisions), else `<out>/rollout/state.json`, which must exist when `fleet` has a
/// canary. The error is the message for people.
pub fn require_default(
    fleet: &Fleet,
    out_dir: &Path,
    given: Option<&Path>,
) -> Result<PathBuf, String> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    let path = default_path(out_dir);
    let canaries: Vec<&str> = fleet
        .servers
        .iter()
        .filter(|s| s.canary.is_some())
        .map(|s| s.id())
        .collect();
    // Anything but a clear "not there" (a permission problem) is load's to report.
    if canaries.is_empty() || !matches!(path.try_exists(), Ok(false)) {
        return Ok(path);
    }
    Err(format!(
        "{}: no rollout state file, and {} {} a canary: rendering without the canary \
         watcher's decisions could restore a rolled-back canary. Pass --rollout-state <file> \
         with the watcher's state file (`canary watch` creates {} when it starts; a file \
         given explicitly that does not exist means no decisions), or create {} containing \
         {{}} for a first release",
        path.display(),
        canaries.join(", "),
        if canaries.len() == 1 { "has" } else { "have" },
        path.display(),
        path.display()
    ))
}

/// Creates an empty state file (`{}`) at `path` unless one exists: what `canary watch`
/// does when it starts, so that a later render of the same directory finds it (see
/// [`require_default`]). Returns whether it created the file.
pub fn create_if_missing(path: &Path) -> Result<bool, RolloutError> {
    match path.try_exists() {
        Ok(true) => return Ok(false),
        Ok(false) => {}
        Err(source) => {
            return Err(RolloutError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    RolloutState::default().save(path)?;
    Ok(true)
}

/// What the watcher (or an operator) decided about one canary version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The canary gets no traffic (weight 0).
    RolledBack,
    /// The canary gets all traffic (weight 100).
    Promoted,
}

impl Decision {
    /// The canary weight this decision renders.
    pub fn weight(self) -> u8 {
        match self {
            Decision::RolledBack => 0,
            Decision::Promoted => 100,
        }
    }

    /// The word the file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::RolledBack => "rolled_back",
            Decision::Promoted => "promoted",
        }
    }
}

/// One server's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The canary version this decision is about.
    pub canary_version: String,
    /// The canary endpoint URL the decision is about; `None` in entries written before
    /// it was recorded (they match on the version alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_endpoint: Option<String>,
    /// Rolled back or promoted.
    pub state: Decision,
    /// The canary's rendered weight: always `state.weight()` (checked on load).
    pub weight: u8,
    /// Why, for people.
    pub reason: String,
    /// When, RFC 3339 in UTC.
    pub at: String,
    /// Anything else the writer recorded (signal, measured values, stable version);
    /// kept on save, never read by render.
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Entry {
    /// Whether this decision is about the canary `version` at `endpoint`.
    pub fn is_about(&self, version: &str, endpoint: &str) -> bool {
        self.canary_version == version
            && self
                .canary_endpoint
                .as_deref()
                .is_none_or(|recorded| recorded == endpoint)
    }
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("{}: cannot read the rollout state: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: malformed rollout state: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("{}: cannot write the rollout state: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Every server's decision, by server id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RolloutState {
    entries: BTreeMap<String, Entry>,
}

impl RolloutState {
    /// Reads the state file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<Self, RolloutError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(RolloutError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Self::parse(&text).map_err(|reason| RolloutError::Malformed {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses the file's text; the error is the reason without the file name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let entries: BTreeMap<String, Entry> =
            serde_json::from_str(text).map_err(|e| e.to_string())?;
        for (server_id, entry) in &entries {
            if server_id.is_empty() {
                return Err("an entry has an empty server id".into());
            }
            let at = |what: &str| format!("{server_id:?}: {what}");
            if entry.canary_version.is_empty() {
                return Err(at("canary_version is empty"));
            }
            if entry.weight != entry.state.weight() {
                return Err(at(&format!(
                    "weight {} does not match state {} (which renders {})",
                    entry.weight,
                    entry.state.as_str(),
                    entry.state.weight()
                )));
            }
            if !is_rfc3339(&entry.at) {
                return Err(at(&format!(
                    "at {:?} is not an RFC 3339 time (2026-12-02T10:31:07Z)",
                    entry.at
                )));
            }
        }
        Ok(Self { entries })
    }

    /// The canary weight to render for `server_id` whose manifest names canary
    /// `canary_version` at `canary_endpoint` with `manifest_weight`: the recorded
    /// decision when it is about exactly this canary, else the manifest's weight.
    pub fn effective_weight(
        &self,
        server_id: &str,
        canary_version: &str,
        canary_endpoint: &str,
        manifest_weight: u8,
    ) -> u8 {
        self.decision(server_id, canary_version, canary_endpoint)
            .map_or(manifest_weight, |entry| entry.weight)
    }

    /// The recorded decision about exactly this canary (its version, and its endpoint
    /// when the entry names one), if any.
    pub fn decision(
        &self,
        server_id: &str,
        canary_version: &str,
        canary_endpoint: &str,
    ) -> Option<&Entry> {
        self.entries
            .get(server_id)
            .filter(|entry| entry.is_about(canary_version, canary_endpoint))
    }

    /// The entry of a server, whatever canary version it is about.
    pub fn entry(&self, server_id: &str) -> Option<&Entry> {
        self.entries.get(server_id)
    }

    /// Every entry, by server id.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(id, entry)| (id.as_str(), entry))
    }

    /// Records that `canary_version` of `server_id` was rolled back (weight 0),
    /// replacing any earlier entry of the server. The returned entry's `details` take
    /// whatever else the caller wants kept (signal, values).
    pub fn record_rollback(
        &mut self,
        server_id: &str,
        canary_version: &str,
        reason: &str,
        at: SystemTime,
    ) -> &mut Entry {
        self.record(server_id, canary_version, Decision::RolledBack, reason, at)
    }

    /// Records that `canary_version` of `server_id` was promoted (weight 100),
    /// replacing any earlier entry of the server.
    pub fn record_promotion(
        &mut self,
        server_id: &str,
        canary_version: &str,
        reason: &str,
        at: SystemTime,
    ) -> &mut Entry {
        self.record(server_id, canary_version, Decision::Promoted, reason, at)
    }

    /// The fleet with every canary at its effective weight: what render draws the
    /// split from ([`crate::render::render_with_rollout`]).
    pub fn apply(&self, fleet: &Fleet) -> Fleet {
        let mut fleet = fleet.clone();
        for server in &mut fleet.servers {
            let id = server.id.as_str();
            if let Some(canary) = &mut server.canary {
                canary.weight =
                    self.effective_weight(id, &canary.version, &canary.endpoint.url, canary.weight);
            }
        }
        fleet
    }

    /// What a person running render should know about the decisions: a promoted canary
    /// waits for the team to make it the stable version, a rolled-back one stays at 0 %
    /// until its manifest names another canary version, and an entry about a version
    /// the manifest no longer names is ignored.
    pub fn notes(&self, fleet: &Fleet) -> Vec<String> {
        let mut notes = Vec::new();
        for (id, entry) in &self.entries {
            let canary = fleet
                .servers
                .iter()
                .find(|s| s.id() == id)
                .and_then(|s| s.canary.as_ref().map(|c| (s, c)));
            let decided = format!(
                "{id}: canary {} {} at {} ({})",
                entry.canary_version,
                entry.state.as_str().replace('_', " "),
                entry.at,
                entry.reason
            );
            let note =
                match canary {
                    Some((_, canary)) if entry.is_about(&canary.version, &canary.endpoint.url) => {
                        match entry.state {
                        Decision::Promoted => format!(
                            "{decided}: it gets all requests; move version and endpoint to {} and {} and drop gateway.canary from the manifest",
                            canary.version, canary.endpoint.url
                        ),
                        Decision::RolledBack => format!(
                            "{decided}: it gets no requests until the manifest names another canary version"
                        ),
                    }
                    }
                    Some((_, canary)) if canary.version == entry.canary_version => format!(
                        "{decided}: ignored, it was about endpoint {} and the manifest's canary {} is now at {} (weight {})",
                        entry.canary_endpoint.as_deref().unwrap_or_default(),
                        canary.version,
                        canary.endpoint.url,
                        canary.weight
                    ),
                    Some((_, canary)) => format!(
                        "{decided}: ignored, the manifest's canary is now {} (weight {})",
                        canary.version, canary.weight
                    ),
                    None => format!("{decided}: ignored, the manifest has no canary"),
                };
            notes.push(note);
        }
        notes
    }

    /// Forgets a server's entry (an operator undoing a decision); returns it.
    pub fn remove(&mut self, server_id: &str) -> Option<Entry> {
        self.entries.remove(server_id)
    }

    fn record(
        &mut self,
        server_id: &str,
        canary_version: &str,
        state: Decision,
        reason: &str,
        at: SystemTime,
    ) -> &mut Entry {
        let entry = Entry {
            canary_version: canary_version.to_owned(),
            canary_endpoint: None,
            state,
            weight: state.weight(),
            reason: reason.to_owned(),
            at: rfc3339(at),
            details: serde_json::Map::new(),
        };
        self.entries.insert(server_id.to_owned(), entry);
        self.entries.get_mut(server_id).expect("just inserted")
    }

    /// The file's text: pretty JSON, servers sorted, newline at the end.
    pub fn to_json(&self) -> String {
        let mut text =
            serde_json::to_string_pretty(&self.entries).expect("string keys always serialise");
        text.push('\n');
        text
    }

    /// Writes the file atomically (temporary file and rename), creating its directory;
    /// an unchanged file is left alone.
    pub fn save(&self, path: &Path) -> Result<Written, RolloutError> {
        write_if_changed(path, &self.to_json()).map_err(|source| RolloutError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// `time` as RFC 3339 in UTC with whole seconds (`2026-12-02T10:31:07Z`); times before
/// 1970 are written as the epoch.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`), so no date crate is needed for one format.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` with plausible field ranges: enough to
/// refuse a hand edit that is not a time, without a date crate.
fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
            .then(|| text[range].parse::<u32>().ok())
            .flatten()
    };
    let fixed = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':';
    if !fixed {
        return false;
    }
    let (Some(_), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return false;
    }
    // 60: a leap second, which RFC 3339 allows.
    if second > 60 {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest {
        "Z" | "z" => true,
        offset => {
            let o = offset.as_bytes();
            o.len() == 6
                && matches!(o[0], b'+' | b'-')
                && o[3] == b':'
                && o[1..3].iter().chain(&o[4..6]).all(u8::is_ascii_digit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const E1: &str = "http://fin-v140-a.svc:8000/mcp";
    const E2: &str = "http://fin-v140-b.svc:8000/mcp";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_missing_file_is_an_empty_state_and_the_manifest_weight_applies() {
        let dir = tempfile::tempdir().unwrap();
        let state = RolloutState::load(&default_path(dir.path())).unwrap();
        assert_eq!(state, RolloutState::default());
        assert_eq!(state.effective_weight("fin", "1.4.0", E1, 5), 5);
    }

    #[test]
    fn a_decision_with_an_endpoint_applies_only_to_that_endpoint() {
        let mut state = RolloutState::default();
        state
            .record_rollback("fin", "1.4.0", "errors", at(0))
            .canary_endpoint = Some(E1.into());
        assert_eq!(state.effective_weight("fin", "1.4.0", E1, 5), 0);
        // The same version string deployed elsewhere: a new canary, its own weight.
        assert_eq!(state.effective_weight("fin", "1.4.0", E2, 5), 5);
        assert!(state.decision("fin", "1.4.0", E2).is_none());
        // Saved and loaded, the endpoint is kept.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        state.save(&path).unwrap();
        let loaded = RolloutState::load(&path).unwrap();
        assert_eq!(
            loaded
                .decision("fin", "1.4.0", E1)
                .unwrap()
                .canary_endpoint
                .as_deref(),
            Some(E1)
        );
        assert!(loaded.decision("fin", "1.4.0", E2).is_none());
        // An entry written before endpoints were recorded: the version alone.
        std::fs::write(
            &path,
            r#"{"fin": {"canary_version": "1.4.0", "state": "rolled_back", "weight": 0, "reason": "old", "at": "2026-12-02T10:00:00Z"}}"#,
        )
        .unwrap();
        let old = RolloutState::load(&path).unwrap();
        assert_eq!(old.effective_weight("fin", "1.4.0", E2, 5), 0);
        assert_eq!(old.effective_weight("fin", "1.5.0", E2, 5), 5);
    }

    #[test]
    fn render_requires_the_default_file_of_a_canary_fleet_unless_given_one() {
        let fleet =
            Fleet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/canary"))
                .unwrap();
        let out = tempfile::tempdir().unwrap();
        let default = default_path(out.path());
        let message = require_default(&fleet, out.path(), None).unwrap_err();
        assert!(
            message.starts_with(&format!("{}: no rollout state file", default.display())),
            "{message}"
        );
        assert!(message.contains("financial-data has a canary"), "{message}");
        assert!(message.contains("Pass --rollout-state <file>"), "{message}");
        // Given explicitly, a missing file is no decisions.
        let given = out.path().join("elsewhere.json");
        assert_eq!(require_default(&fleet, out.path(), Some(&given)), Ok(given));
        // A fleet without a canary needs no state.
        let mut plain = fleet.clone();
        for server in &mut plain.servers {
            server.canary = None;
        }
        assert_eq!(
            require_default(&plain, out.path(), None),
            Ok(default.clone())
        );
        // What the watcher does at start: the file exists, `{}`, and render proceeds.
        assert!(create_if_missing(&default).unwrap());
        assert_eq!(std::fs::read_to_string(&default).unwrap(), "{}\n");
        assert!(!create_if_missing(&default).unwrap());
        assert_eq!(
            require_default(&fleet, out.path(), None),
            Ok(default.clone())
        );
        // An existing file is never overwritten.
        std::fs::write(&default, "{not json").unwrap();
        assert!(!create_if_missing(&default).unwrap());
        assert_eq!(std::fs::read_to_string(&default).unwrap(), "{not json");
    }

    #[test]
    fn a_decision_overrides_the_weight_of_exactly_its_canary_version() {
        let mut state = RolloutState::default();
        state.record_rollback("fin", "1.4.0", "errors", at(0));
        assert_eq!(state.effective_weight("fin", "1.4.0", E1, 5), 0);
        // A new release in the manifest is a new canary: it starts from its own weight.
        assert_eq!(state.effective_weight("fin", "1.5.0", E1, 5), 5);
        assert!(state.decision("fin", "1.5.0", E1).is_none());
        // Other servers are untouched.
        assert_eq!(state.effective_weight("other", "1.4.0", E1, 30), 30);
        state.record_promotion("fin", "1.5.0", "clean window", at(0));
        assert_eq!(state.effective_weight("fin", "1.5.0", E1, 5), 100);
        // One entry per server: the newer decision replaced the rollback of 1.4.0.
        assert_eq!(state.effective_weight("fin", "1.4.0", E1, 5), 5);
        assert_eq!(state.entries().count(), 1);
    }

    #[test]
    fn save_then_load_round_trips_with_the_writers_details() {
        let dir = tempfile::tempdir().unwrap();
        let path = default_path(dir.path());
        let mut state = RolloutState::default();
        let entry = state.record_rollback("fin", "1.4.0", "canary errors 40%", at(1_795_000_000));
        entry
            .details
            .insert("signal".into(), "tool_call_error_ratio".into());
        state.record_promotion("alpha", "2.0.0", "clean window", at(0));
        assert_eq!(state.save(&path).unwrap(), Written::Wrote);
        assert_eq!(state.save(&path).unwrap(), Written::Unchanged);
        let loaded = RolloutState::load(&path).unwrap();
        assert_eq!(loaded, state);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            json["fin"],
            serde_json::json!({
                "canary_version": "1.4.0",
                "state": "rolled_back",
                "weight": 0,
                "reason": "canary errors 40%",
                "at": "2026-11-18T11:06:40Z",
                "signal": "tool_call_error_ratio",
            })
        );
        assert_eq!(json["alpha"]["state"], "promoted");
        assert_eq!(json["alpha"]["weight"], 100);
        assert_eq!(json["alpha"]["at"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn a_malformed_file_is_an_error_naming_the_file_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let cases = [
            ("{not json", "key must be a string"),
            (r#"{"fin": {"state": "rolled_back"}}"#, "missing field"),
            (
                r#"{"fin": {"canary_version": "1.4.0", "state": "paused", "weight": 0, "reason": "", "at": "2026-12-02T10:00:00Z"}}"#,
                "unknown variant `paused`",
            ),
            (
                r#"{"fin": {"canary_version": "1.4.0", "state": "rolled_back", "weight": 5, "reason": "", "at": "2026-12-02T10:00:00Z"}}"#,
                "\"fin\": weight 5 does not match state rolled_back (which renders 0)",
            ),
            (
                r#"{"fin": {"canary_version": "1.4.0", "state": "promoted", "weight": 300, "reason": "", "at": "2026-12-02T10:00:00Z"}}"#,
                "invalid value: integer `300`",
            ),
            (
                r#"{"fin": {"canary_version": "", "state": "promoted", "weight": 100, "reason": "", "at": "2026-12-02T10:00:00Z"}}"#,
                "\"fin\": canary_version is empty",
            ),
            (
                r#"{"fin": {"canary_version": "1.4.0", "state": "promoted", "weight": 100, "reason": "", "at": "yesterday"}}"#,
                "\"fin\": at \"yesterday\" is not an RFC 3339 time",
            ),
            ("[]", "invalid type: sequence"),
        ];
        for (text, reason) in cases {
            std::fs::write(&path, text).unwrap();
            let message = RolloutState::load(&path).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("{}: malformed rollout state: ", path.display())),
                "{message}"
            );
            assert!(message.contains(reason), "{text}: {message}");
        }
    }

    #[test]
    fn an_unreadable_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading fails with something other
        // than "not found".
        let path = dir.path().join("state.json");
        std::fs::create_dir(&path).unwrap();
        let error = RolloutState::load(&path).unwrap_err();
        assert!(matches!(error, RolloutError::Read { .. }), "{error}");
        assert!(error.to_string().starts_with(&path.display().to_string()));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day in a century leap year) and 2026-12-31 23:59:59.
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_798_761_599)), "2026-12-31T23:59:59Z");
        assert!(is_rfc3339(&rfc3339(SystemTime::now())));
        for good in [
            "2026-12-02T10:31:07Z",
            "2026-12-02T10:31:07.123Z",
            "2026-12-02T10:31:07+01:00",
        ] {
            assert!(is_rfc3339(good), "{good}");
        }
        for bad in [
            "2026-12-02",
            "2026-13-02T10:31:07Z",
            "2026-12-02T24:00:00Z",
            "2026-12-02T10:31:07",
            "2026-12-02T10:31:07.Z",
            "2026-12-02T10:31:07+0100",
            "2026-12-02 10:31:07Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
