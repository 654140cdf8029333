//! The comparison itself: a canary's signals against its stable version's over one
//! window, and what to do about it. Pure: counts and times in, a verdict out.
//!
//! The seed's rule: "if the capability negotiation failure rate on the new version
//! exceeds your baseline by a defined threshold, or if the tool call error rate
//! exceeds the old version's rate, roll back", after "at least 30 minutes before full
//! cutover". So:
//! - roll back as soon as a signal fires (a failing canary is not kept for the rest of
//!   the window): its canary count is at least `min_calls` and its canary ratio exceeds
//!   the stable ratio plus the margin (a stable version with no traffic counts as 0);
//! - promote only when the canary has been watched for a whole window, had at least
//!   `min_calls` tool calls in it, and never fired; silence is never a clean window.
//!   Negotiation counts too: a canary that failed negotiations in the window is only
//!   promoted once it had `min_calls` negotiations to judge them by (and they did not
//!   fire); a handful of failed `initialize`s below `min_calls` is not "clean".

use super::counts::Counts;
use crate::model::CanaryWatch;
use serde::Serialize;
use std::time::Duration;

/// What the watcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Failed tool calls (error, timeout, partial) / tool calls that reached the server.
    ToolCallErrorRatio,
    /// Failed negotiations / `initialize` and `server/discover` requests (at most 1:
    /// an `unsupported_version` failure can come from another method).
    NegotiationFailureRatio,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::ToolCallErrorRatio => "tool_call_error_ratio",
            Signal::NegotiationFailureRatio => "negotiation_failure_ratio",
        }
    }
}

/// One signal compared: what a rollback records.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    pub signal: Signal,
    pub canary_value: f64,
    pub stable_value: f64,
    pub margin: f64,
    /// The canary's denominator (calls or negotiations) in the window.
    pub canary_count: f64,
    pub stable_count: f64,
}

impl Comparison {
    fn of(signal: Signal, canary: Counts, stable: Counts, margin: f64) -> Comparison {
        let (canary_count, canary_failed, stable_count, stable_failed) = match signal {
            Signal::ToolCallErrorRatio => {
                (canary.calls, canary.errors, stable.calls, stable.errors)
            }
            Signal::NegotiationFailureRatio => (
                canary.negotiations,
                canary.negotiation_failures,
                stable.negotiations,
                stable.negotiation_failures,
            ),
        };
        Comparison {
            signal,
            canary_value: ratio(canary_failed, canary_count),
            stable_value: ratio(stable_failed, stable_count),
            margin,
            canary_count,
            stable_count,
        }
    }

    fn breached(&self) -> bool {
        self.canary_value > self.stable_value + self.margin
    }

    /// For people: `tool_call_error_ratio 0.400 > stable 0.000 + margin 0.020 (25
    /// canary calls in 10s)`.
    pub fn describe(&self, window: Duration) -> String {
        let unit = match self.signal {
            Signal::ToolCallErrorRatio => "calls",
            Signal::NegotiationFailureRatio => "negotiations",
        };
        format!(
            "{} {:.3} > stable {:.3} + margin {:.3} ({} canary {unit} in {}s)",
            self.signal.as_str(),
            self.canary_value,
            self.stable_value,
            self.margin,
            shown(self.canary_count),
            window.as_secs()
        )
    }
}

/// A count for people: whole (Envoy's counters) or with one decimal (Prometheus'
/// `increase()` extrapolates).
pub fn shown(count: f64) -> String {
    if count.fract() == 0.0 {
        format!("{count}")
    } else {
        format!("{count:.1}")
    }
}

/// A failed share, 0 without a denominator, at most 1.
fn ratio(failed: f64, count: f64) -> f64 {
    if count > 0.0 {
        (failed / count).min(1.0)
    } else {
        0.0
    }
}

/// What to do with a canary after one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A signal fired.
    RollBack(Comparison),
    /// A whole clean window with enough traffic, and `promote: auto`.
    Promote { calls: f64 },
    /// Keep the split; why (not enough traffic, window not over, manual promotion).
    Wait(String),
}

/// Judges one canary: `canary` and `stable` are the two versions' counts over the last
/// `watch.window`, `watched_for` how long this watcher has seen the canary live.
pub fn decide(
    watch: &CanaryWatch,
    canary: Counts,
    stable: Counts,
    watched_for: Duration,
) -> Verdict {
    let min = f64::from(watch.min_calls);
    let errors = Comparison::of(
        Signal::ToolCallErrorRatio,
        canary,
        stable,
        watch.error_margin,
    );
    let negotiation = Comparison::of(
        Signal::NegotiationFailureRatio,
        canary,
        stable,
        watch.negotiation_margin,
    );
    for comparison in [errors, negotiation] {
        if comparison.canary_count >= min && comparison.breached() {
            return Verdict::RollBack(comparison);
        }
    }
    if canary.calls < min {
        return Verdict::Wait(format!(
            "insufficient canary traffic: {} of {} tool calls in the last {}s",
            shown(canary.calls),
            watch.min_calls,
            watch.window.as_secs()
        ));
    }
    // Negotiation failures the ratio could not judge (too few negotiations): not a
    // rollback, and not a clean window either.
    if canary.negotiation_failures > 0.0 && canary.negotiations < min {
        return Verdict::Wait(format!(
            "insufficient canary negotiations to judge its {} negotiation failures: {} of {} in the last {}s",
            shown(canary.negotiation_failures),
            shown(canary.negotiations),
            watch.min_calls,
            watch.window.as_secs()
        ));
    }
    if watched_for < watch.window {
        return Verdict::Wait(format!(
            "clean so far: watched {}s of a {}s window",
            watched_for.as_secs(),
            watch.window.as_secs()
        ));
    }
    match watch.promote {
        crate::model::Promote::Auto => Verdict::Promote {
            calls: canary.calls,
        },
        crate::model::Promote::Manual => Verdict::Wait(format!(
            "clean for a whole {}s window ({} canary calls): ready for `mcp-registry canary promote` (promote: manual)",
            watch.window.as_secs(),
            shown(canary.calls)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Promote;

    const WINDOW: Duration = Duration::from_secs(60);

    fn watch(promote: Promote) -> CanaryWatch {
        CanaryWatch {
            window: WINDOW,
            min_calls: 20,
            error_margin: 0.02,
            negotiation_margin: 0.01,
            promote,
        }
    }

    fn calls(calls: f64, errors: f64) -> Counts {
        Counts {
            calls,
            errors,
            ..Counts::default()
        }
    }

    fn negotiations(negotiations: f64, failures: f64) -> Counts {
        Counts {
            negotiations,
            negotiation_failures: failures,
            ..Counts::default()
        }
    }

    #[test]
    fn rolls_back_when_the_error_ratio_passes_stable_plus_the_margin() {
        let verdict = decide(
            &watch(Promote::Auto),
            calls(25.0, 10.0),
            calls(100.0, 1.0),
            Duration::ZERO,
        );
        let Verdict::RollBack(comparison) = verdict else {
            panic!("{verdict:?}");
        };
        assert_eq!(comparison.signal, Signal::ToolCallErrorRatio);
        assert_eq!(comparison.canary_value, 0.4);
        assert_eq!(comparison.stable_value, 0.01);
        assert_eq!(comparison.canary_count, 25.0);
        assert_eq!(
            comparison.describe(WINDOW),
            "tool_call_error_ratio 0.400 > stable 0.010 + margin 0.020 (25 canary calls in 60s)"
        );
        // Prometheus' extrapolated counts.
        let fractional = Comparison {
            canary_count: 32.318999999999996,
            ..comparison
        };
        assert!(fractional
            .describe(WINDOW)
            .ends_with("(32.3 canary calls in 60s)"));
        // Within the margin: 2.9% against 1% + 2%.
        assert!(matches!(
            decide(
                &watch(Promote::Auto),
                calls(1000.0, 29.0),
                calls(100.0, 1.0),
                Duration::ZERO
            ),
            Verdict::Wait(_)
        ));
        // A stable version without traffic counts as 0 errors.
        assert!(matches!(
            decide(
                &watch(Promote::Auto),
                calls(20.0, 1.0),
                Counts::default(),
                Duration::ZERO
            ),
            Verdict::RollBack(_)
        ));
    }

    #[test]
    fn rolls_back_on_the_negotiation_ratio_with_its_own_count() {
        // Refused initializes and no tool call reaching the canary at all.
        let canary = negotiations(20.0, 20.0);
        let stable = Counts {
            calls: 300.0,
            ..negotiations(30.0, 0.0)
        };
        let Verdict::RollBack(comparison) =
            decide(&watch(Promote::Auto), canary, stable, Duration::ZERO)
        else {
            panic!();
        };
        assert_eq!(comparison.signal, Signal::NegotiationFailureRatio);
        assert_eq!(
            (comparison.canary_value, comparison.stable_value),
            (1.0, 0.0)
        );
        assert_eq!(comparison.margin, 0.01);
        // unsupported_version failures of other methods do not push the ratio over 1.
        let Verdict::RollBack(comparison) = decide(
            &watch(Promote::Auto),
            negotiations(20.0, 45.0),
            stable,
            Duration::ZERO,
        ) else {
            panic!();
        };
        assert_eq!(comparison.canary_value, 1.0);
        // Stable failing as often: no breach.
        assert!(matches!(
            decide(
                &watch(Promote::Auto),
                negotiations(20.0, 2.0),
                negotiations(50.0, 5.0),
                WINDOW
            ),
            Verdict::Wait(_)
        ));
    }

    #[test]
    fn below_min_calls_nothing_fires_and_the_watcher_says_it_waits() {
        // 19 calls, all failing; 19 refused negotiations.
        let canary = Counts {
            calls: 19.0,
            errors: 19.0,
            negotiations: 19.0,
            negotiation_failures: 19.0,
        };
        assert_eq!(
            decide(
                &watch(Promote::Auto),
                canary,
                calls(500.0, 0.0),
                WINDOW * 10
            ),
            Verdict::Wait(
                "insufficient canary traffic: 19 of 20 tool calls in the last 60s".into()
            )
        );
    }

    #[test]
    fn negotiation_failures_below_min_calls_block_a_promotion() {
        // Plenty of clean tool calls, but 3 of 5 negotiations failed: too few to fire,
        // too many to call the window clean.
        let canary = Counts {
            calls: 40.0,
            negotiations: 5.0,
            negotiation_failures: 3.0,
            ..Counts::default()
        };
        let stable = calls(40.0, 0.0);
        assert_eq!(
            decide(&watch(Promote::Auto), canary, stable, WINDOW * 2),
            Verdict::Wait(
                "insufficient canary negotiations to judge its 3 negotiation failures: 5 of 20 in the last 60s"
                    .into()
            )
        );
        // Failures without any negotiation counted (unsupported_version of another
        // method): the same.
        let other = Counts {
            negotiations: 0.0,
            negotiation_failures: 1.0,
            ..canary
        };
        assert!(matches!(
            decide(&watch(Promote::Auto), other, stable, WINDOW * 2),
            Verdict::Wait(_)
        ));
        // No negotiation failures, whatever the number of negotiations: promoted.
        let clean = Counts {
            negotiation_failures: 0.0,
            ..canary
        };
        assert_eq!(
            decide(&watch(Promote::Auto), clean, stable, WINDOW),
            Verdict::Promote { calls: 40.0 }
        );
        // Enough negotiations, failures within the margin of stable's: promoted.
        let judged = Counts {
            negotiations: 200.0,
            negotiation_failures: 2.0,
            ..canary
        };
        let stable = Counts {
            negotiations: 200.0,
            negotiation_failures: 2.0,
            ..stable
        };
        assert_eq!(
            decide(&watch(Promote::Auto), judged, stable, WINDOW),
            Verdict::Promote { calls: 40.0 }
        );
    }

    #[test]
    fn silence_is_never_promoted() {
        assert!(matches!(
            decide(&watch(Promote::Auto), Counts::default(), calls(500.0, 0.0), WINDOW * 100),
            Verdict::Wait(reason) if reason.starts_with("insufficient canary traffic: 0 of 20")
        ));
    }

    #[test]
    fn promotes_only_after_a_whole_clean_window() {
        let (canary, stable) = (calls(40.0, 0.0), calls(40.0, 0.0));
        assert_eq!(
            decide(
                &watch(Promote::Auto),
                canary,
                stable,
                WINDOW - Duration::from_secs(1)
            ),
            Verdict::Wait("clean so far: watched 59s of a 60s window".into())
        );
        assert_eq!(
            decide(&watch(Promote::Auto), canary, stable, WINDOW),
            Verdict::Promote { calls: 40.0 }
        );
        let Verdict::Wait(reason) = decide(&watch(Promote::Manual), canary, stable, WINDOW) else {
            panic!();
        };
        assert!(
            reason.contains("ready for `mcp-registry canary promote`"),
            "{reason}"
        );
    }
}
