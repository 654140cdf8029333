//! `mcp-registry preflight` (issue 17): the seed's pre-production checklist run
//! against a live server through the gateway. Each step is a set of checks; a step
//! fails if one of its checks fails, is skipped if all are skipped or if the check
//! that defines it could not run ([`defining`]), and passes otherwise (naming what it
//! skipped). With `--strict` any skipped check, in any step, fails the run.
//!
//! Credentials for the test identities come from the platform's `preflight.yaml`
//! ([`config`]), never from the manifest.

pub mod audit;
pub mod auth;
pub mod catalog;
pub mod claims;
pub mod cli;
pub mod client;
pub mod config;
pub mod identity;
pub mod limits;
pub mod load;
pub mod manifest;
pub mod report;
pub mod run;
pub mod schema;
pub mod sdk;
pub mod stats;
pub mod tally;

use serde::Serialize;

/// The outcome of a check or a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One sub-check of a step: its status and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

impl Check {
    pub fn pass(name: &str, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Pass, detail)
    }
    pub fn fail(name: &str, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Fail, detail)
    }
    pub fn skip(name: &str, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Skip, detail)
    }
    fn new(name: &str, status: Status, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_owned(),
            status,
            detail: detail.into(),
        }
    }
}

/// The checklist's steps, numbered as the seed numbers them (0: the manifest itself).
pub const STEPS: [(u8, &str); 9] = [
    (0, "manifest"),
    (1, "schema"),
    (2, "auth"),
    (3, "rate_limit"),
    (4, "audit"),
    (5, "negotiation"),
    (6, "load"),
    (7, "runbook"),
    (8, "owner"),
];

/// The names `--skip` takes (step 0 cannot be skipped: everything stands on it).
pub fn step_number(name: &str) -> Option<u8> {
    STEPS
        .iter()
        .find(|(n, step)| *n > 0 && *step == name)
        .map(|(n, _)| *n)
}

pub fn step_name(number: u8) -> &'static str {
    STEPS
        .iter()
        .find(|(n, _)| *n == number)
        .map(|(_, name)| *name)
        .unwrap_or("unknown")
}

/// The checks that are a step's point: when none of them ran (and nothing failed),
/// the step is skipped even if a lesser check passed, so a PASS never stands for
/// "nothing that matters was verified". Step 2's no-token check alone proves no token
/// handling of the gateway's own (expiry, scope, rotation); step 4's call alone proves
/// nothing about logging.
pub fn defining(number: u8) -> &'static [&'static str] {
    match number {
        2 => &["expired", "missing_scope", "rotation"],
        4 => &["record"],
        _ => &[],
    }
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub number: u8,
    pub name: &'static str,
    pub status: Status,
    pub reason: String,
    pub duration_ms: u64,
    pub checks: Vec<Check>,
    /// Step-specific numbers and findings (load figures, claimed versions, the matched
    /// audit record); never a token.
    pub data: serde_json::Value,
}

impl Step {
    /// The step from its checks: failed checks give the reason, else skipped ones are
    /// named beside the passes (or, when a [`defining`] check did not run, the step is
    /// skipped naming them and what passed).
    pub fn from_checks(number: u8, checks: Vec<Check>) -> Step {
        let failed: Vec<&Check> = checks.iter().filter(|c| c.status == Status::Fail).collect();
        let passed: Vec<&Check> = checks.iter().filter(|c| c.status == Status::Pass).collect();
        let skipped: Vec<&Check> = checks.iter().filter(|c| c.status == Status::Skip).collect();
        let joined = |list: &[&Check]| {
            list.iter()
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let (status, reason) = if !failed.is_empty() {
            (Status::Fail, joined(&failed))
        } else if passed.is_empty() {
            let reason = if skipped.is_empty() {
                "nothing to check".to_owned()
            } else {
                joined(&skipped)
            };
            (Status::Skip, reason)
        } else if !defining(number).is_empty()
            && !passed
                .iter()
                .any(|c| defining(number).contains(&c.name.as_str()))
        {
            let names: Vec<&str> = passed.iter().map(|c| c.name.as_str()).collect();
            (
                Status::Skip,
                format!("{} (passed: {})", joined(&skipped), names.join(", ")),
            )
        } else if skipped.is_empty() {
            (Status::Pass, joined(&passed))
        } else {
            let names: Vec<&str> = skipped.iter().map(|c| c.name.as_str()).collect();
            (
                Status::Pass,
                format!("{} (skipped: {})", joined(&passed), names.join(", ")),
            )
        };
        Step {
            number,
            name: step_name(number),
            status,
            reason,
            duration_ms: 0,
            checks,
            data: serde_json::Value::Null,
        }
    }

    /// A step not run at all, for `reason`.
    pub fn skipped(number: u8, reason: impl Into<String>) -> Step {
        let reason = reason.into();
        let mut step = Step::from_checks(number, vec![Check::skip(step_name(number), &reason)]);
        step.reason = reason;
        step
    }

    pub fn with_data(mut self, data: serde_json::Value) -> Step {
        self.data = data;
        self
    }
}

/// The whole run's result: `pass` only if no step failed (and, with `strict`, no
/// check was skipped: a passing step's skipped check is as unverified as a skipped
/// step).
pub fn passed(steps: &[Step], strict: bool) -> bool {
    let failed = steps.iter().any(|s| s.status == Status::Fail);
    !failed && (!strict || skips(steps).is_empty())
}

/// Every skipped check, as `step.check` (`step` alone for a step not run at all).
pub fn skips(steps: &[Step]) -> Vec<String> {
    let mut found = Vec::new();
    for step in steps {
        for check in step.checks.iter().filter(|c| c.status == Status::Skip) {
            found.push(if check.name == step.name {
                step.name.to_owned()
            } else {
                format!("{}.{}", step.name, check.name)
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_fails_on_any_failed_check_and_names_it() {
        let step = Step::from_checks(
            3,
            vec![
                Check::pass("static", "limits/limits.yaml has server_id \"a\""),
                Check::fail("live", "no 429 within 11 calls"),
                Check::skip("other", "not configured"),
            ],
        );
        assert_eq!(step.status, Status::Fail);
        assert_eq!(step.reason, "live: no 429 within 11 calls");
        assert_eq!(step.name, "rate_limit");
    }

    #[test]
    fn a_step_with_only_skips_is_skipped_and_passes_name_their_skips() {
        let skipped = Step::from_checks(2, vec![Check::skip("rotation", "not configured")]);
        assert_eq!(skipped.status, Status::Skip);
        assert_eq!(skipped.reason, "rotation: not configured");
        let partly = Step::from_checks(
            3,
            vec![
                Check::pass("rendered", "limits/limits.yaml has server_id \"a\""),
                Check::skip("live", "no ratelimit identity"),
            ],
        );
        assert_eq!(partly.status, Status::Pass);
        assert_eq!(
            partly.reason,
            "rendered: limits/limits.yaml has server_id \"a\" (skipped: live)"
        );
    }

    #[test]
    fn strict_turns_skips_into_failure() {
        let steps = vec![
            Step::from_checks(1, vec![Check::pass("a", "ok")]),
            Step::skipped(6, "the manifest declares no gateway.expected_calls"),
        ];
        assert!(passed(&steps, false));
        assert!(!passed(&steps, true));
        assert_eq!(skips(&steps), ["load"]);
        let failed = vec![Step::from_checks(8, vec![Check::fail("owner", "missing")])];
        assert!(!passed(&failed, false));
    }

    #[test]
    fn strict_fails_on_a_skipped_check_inside_a_passing_step() {
        // Failed on the old code: --strict looked only at step statuses.
        let steps = vec![
            Step::from_checks(1, vec![Check::pass("2026-07-28", "ok")]),
            Step::from_checks(
                8,
                vec![
                    Check::pass("owner", "named"),
                    Check::skip("rotation", "no on_call.command"),
                ],
            ),
        ];
        assert_eq!(steps[1].status, Status::Pass);
        assert!(passed(&steps, false));
        assert!(!passed(&steps, true));
        assert_eq!(skips(&steps), ["owner.rotation"]);
    }

    #[test]
    fn a_step_whose_defining_check_did_not_run_is_skipped() {
        // Failed on the old code: both were PASS.
        let audit = Step::from_checks(
            4,
            vec![
                Check::pass("call", "lookup answered"),
                Check::skip("record", "no audit sink"),
            ],
        );
        assert_eq!(audit.status, Status::Skip);
        assert_eq!(audit.reason, "record: no audit sink (passed: call)");
        let auth = Step::from_checks(
            2,
            vec![
                Check::pass("no_token", "401"),
                Check::skip("expired", "no identity"),
                Check::skip("missing_scope", "no identity"),
                Check::skip("rotation", "not configured"),
            ],
        );
        assert_eq!(auth.status, Status::Skip);
        // One of step 2's defining checks is enough for a pass (naming the skips).
        let auth = Step::from_checks(
            2,
            vec![
                Check::pass("no_token", "401"),
                Check::pass("expired", "401 invalid_token"),
                Check::skip("rotation", "not configured"),
            ],
        );
        assert_eq!(auth.status, Status::Pass);
        assert_eq!(
            auth.reason,
            "no_token: 401; expired: 401 invalid_token (skipped: rotation)"
        );
        // A failure still fails.
        let audit = Step::from_checks(
            4,
            vec![
                Check::fail("call", "HTTP 500"),
                Check::skip("record", "no audit sink"),
            ],
        );
        assert_eq!(audit.status, Status::Fail);
        // Step 3 with neither half run is skipped (it has no lesser check).
        let limits = Step::from_checks(
            3,
            vec![
                Check::skip("rendered", "no --rendered"),
                Check::skip("live", "limit too large"),
            ],
        );
        assert_eq!(limits.status, Status::Skip);
    }

    #[test]
    fn skip_names_are_the_step_names_but_not_the_manifest() {
        assert_eq!(step_number("load"), Some(6));
        assert_eq!(step_number("negotiation"), Some(5));
        assert_eq!(step_number("manifest"), None);
        assert_eq!(step_number("loud"), None);
    }
}
