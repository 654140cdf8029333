//! Sliding-window increases of the gateway's counters, from timestamped scrapes of one
//! Envoy (what Prometheus' `increase()` does, for a watcher running without one).
//!
//! Envoy's counters only go up while it runs, and all of them start again from 0 when
//! it restarts (stats are not kept across a restart). So between two scrapes a counter
//! that went down means a restart, and its increase is its new value; a series missing
//! from the earlier scrape did not exist yet (the filter creates a stat on its first
//! count: a canary's first errors arrive as a new `outcome="error"` series), so it
//! counts from 0. All of this is judged per series, and only then are the increases
//! summed per server version: the sum of a version's series can grow while one of them
//! restarted (a reset hidden in a sum is an undercount, as `increase(sum(...))` would
//! be in PromQL).

use super::counts::{Series, Table};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// One scrape reduced to the counters the signals read, per series.
pub type Totals = BTreeMap<Series, f64>;

/// The scrapes of one Envoy, oldest first.
#[derive(Debug, Default)]
pub struct History {
    scrapes: VecDeque<(Instant, Totals)>,
}

impl History {
    /// Records a scrape taken at `at`, and forgets what no window of up to `keep` can
    /// reach any more (the last scrape at or before `at - keep` stays as the baseline).
    pub fn push(&mut self, at: Instant, totals: Totals, keep: Duration) {
        self.scrapes.push_back((at, totals));
        if let Some(start) = at.checked_sub(keep) {
            while self.scrapes.len() > 1 && self.scrapes[1].0 <= start {
                self.scrapes.pop_front();
            }
        }
    }

    /// When the oldest scrape still held was taken.
    pub fn since(&self) -> Option<Instant> {
        self.scrapes.front().map(|(at, _)| *at)
    }

    /// The increase of every counter over the `window` before `now`: from the last
    /// scrape at or before the window's start (or the first scrape, when the watcher
    /// has not run that long) to the latest. Every server version with a series in any
    /// of those scrapes has an entry, with zero counts if nothing grew: present but
    /// idle is not the same as absent (no series at all, see `watch.rs`).
    pub fn increase(&self, now: Instant, window: Duration) -> Table {
        let mut table = Table::new();
        let start = now.checked_sub(window);
        let baseline = self
            .scrapes
            .iter()
            .rposition(|(at, _)| start.is_some_and(|start| *at <= start))
            .unwrap_or(0);
        let scrapes: Vec<&Totals> = self.scrapes.iter().skip(baseline).map(|(_, t)| t).collect();
        for totals in &scrapes {
            for (key, _, _) in totals.keys() {
                table.entry(key.clone()).or_default();
            }
        }
        for pair in scrapes.windows(2) {
            let (before, after) = (pair[0], pair[1]);
            for (series, value) in after {
                let previous = before.get(series).copied().unwrap_or(0.0);
                let increase = if *value < previous {
                    *value
                } else {
                    value - previous
                };
                if increase > 0.0 {
                    let (key, bucket, _) = series;
                    table.entry(key.clone()).or_default().add(*bucket, increase);
                }
            }
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::counts::{self, Bucket, Counts, Key};
    use crate::canary::expo;

    fn key(version: &str) -> Key {
        ("fin".to_owned(), version.to_owned())
    }

    /// One series per version and bucket.
    fn totals(entries: &[(&str, Bucket, f64)]) -> Totals {
        entries
            .iter()
            .map(|(version, bucket, value)| ((key(version), *bucket, String::new()), *value))
            .collect()
    }

    #[test]
    fn a_reset_of_one_series_is_seen_while_its_siblings_grow() {
        // Two tools' call counters of one version; between the scrapes tool a's series
        // went from 100 to 5 (restarted: 5 new calls) while b's grew by 200, so the
        // version's sum grew 300 -> 405 (an increase of the sum would say 105).
        let scrape = |a: u32, b: u32| {
            let text = format!(
                "mcp_tool_calls_total{{mcp_server=\"fin\",mcp_tool=\"a\",mcp_outcome=\"success\",mcp_server_version=\"2\"}} {a}\n\
                 mcp_tool_calls_total{{mcp_outcome=\"success\",mcp_server_version=\"2\",mcp_server=\"fin\",mcp_tool=\"b\"}} {b}\n"
            );
            counts::totals(&expo::parse(&text).unwrap())
        };
        let t0 = Instant::now();
        let mut history = History::default();
        history.push(t0, scrape(100, 200), KEEP);
        history.push(t0 + Duration::from_secs(1), scrape(5, 400), KEEP);
        let table = history.increase(t0 + Duration::from_secs(1), KEEP);
        assert_eq!(table[&key("2")].calls, 5.0 + 200.0);
    }

    #[test]
    fn a_version_with_series_but_no_increase_is_present_with_zero_counts() {
        let t0 = Instant::now();
        let mut history = History::default();
        history.push(t0, totals(&[("2", Bucket::Calls, 7.0)]), KEEP);
        history.push(
            t0 + Duration::from_secs(1),
            totals(&[("2", Bucket::Calls, 7.0)]),
            KEEP,
        );
        let table = history.increase(t0 + Duration::from_secs(1), KEEP);
        assert_eq!(table.get(&key("2")), Some(&Counts::default()));
        assert_eq!(table.get(&key("1")), None);
    }

    const KEEP: Duration = Duration::from_secs(60);

    #[test]
    fn counts_only_what_happened_inside_the_window() {
        let t0 = Instant::now();
        let mut history = History::default();
        // 1000 calls before the watcher started: history, not the window's.
        history.push(t0, totals(&[("1", Bucket::Calls, 1000.0)]), KEEP);
        history.push(
            t0 + Duration::from_secs(10),
            totals(&[("1", Bucket::Calls, 1010.0)]),
            KEEP,
        );
        history.push(
            t0 + Duration::from_secs(20),
            totals(&[("1", Bucket::Calls, 1030.0)]),
            KEEP,
        );
        let now = t0 + Duration::from_secs(20);
        assert_eq!(
            history.increase(now, Duration::from_secs(60))[&key("1")].calls,
            30.0
        );
        // A 10 s window starts at the scrape of t0+10.
        assert_eq!(
            history.increase(now, Duration::from_secs(10))[&key("1")].calls,
            20.0
        );
        // A 5 s window: from the last scrape before its start (t0+10) as well.
        assert_eq!(
            history.increase(now, Duration::from_secs(5))[&key("1")].calls,
            20.0
        );
    }

    #[test]
    fn a_new_series_counts_from_zero_and_a_restart_from_its_new_value() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut history = History::default();
        history.push(t0, totals(&[("2", Bucket::Calls, 50.0)]), KEEP);
        // The canary's first errors create their series.
        history.push(
            t0 + s(1),
            totals(&[("2", Bucket::Calls, 60.0), ("2", Bucket::Errors, 4.0)]),
            KEEP,
        );
        // Envoy restarted: everything from 0, then 3 calls (1 failed).
        history.push(
            t0 + s(2),
            totals(&[("2", Bucket::Calls, 3.0), ("2", Bucket::Errors, 1.0)]),
            KEEP,
        );
        // A restart that has not counted an error yet: the series is missing.
        history.push(t0 + s(3), totals(&[("2", Bucket::Calls, 2.0)]), KEEP);
        history.push(
            t0 + s(4),
            totals(&[("2", Bucket::Calls, 4.0), ("2", Bucket::Errors, 2.0)]),
            KEEP,
        );
        let table = history.increase(t0 + s(4), s(60));
        assert_eq!(
            table[&key("2")],
            Counts {
                calls: 10.0 + 3.0 + 2.0 + 2.0,
                errors: 4.0 + 1.0 + 2.0,
                negotiations: 0.0,
                negotiation_failures: 0.0,
            }
        );
    }

    #[test]
    fn forgets_scrapes_no_window_reaches() {
        let t0 = Instant::now();
        let mut history = History::default();
        for i in 0..100u64 {
            history.push(
                t0 + Duration::from_secs(i),
                totals(&[("1", Bucket::Calls, i as f64)]),
                Duration::from_secs(10),
            );
        }
        assert_eq!(history.scrapes.len(), 11);
        assert_eq!(history.since(), Some(t0 + Duration::from_secs(89)));
        let now = t0 + Duration::from_secs(99);
        assert_eq!(
            history.increase(now, Duration::from_secs(10))[&key("1")].calls,
            10.0
        );
    }
}
