//! The four counts each signal is made of, per server and version, and which of the
//! gateway's series feed them. The definitions are the shipped rules'
//! (envoy/monitoring/mcp-alerts.yaml, `mcp:tool_call_error_ratio:rate5m`, and
//! mcp-canary.yaml, which compares versions in PromQL the same way).

use super::expo::Sample;
use std::collections::BTreeMap;

/// Tool calls that reached the server (gateway refusals are policy working, and their
/// version label is a random pick: they say nothing about the version).
pub const CALL_OUTCOMES: [&str; 4] = ["success", "error", "timeout", "partial"];
/// The calls among them that did not succeed.
pub const ERROR_OUTCOMES: [&str; 3] = ["error", "timeout", "partial"];
/// Negotiation attempts: requests of these methods the gateway let through to a release.
/// Not `invalid` (nor `denied`, `rate_limited`): the gateway refused those itself, which
/// is policy working and says nothing about either release (as refused tool calls are
/// not in `CALL_OUTCOMES`); the filter labels them with no version at all.
pub const NEGOTIATION_METHODS: [&str; 2] = ["initialize", "server/discover"];
pub const NEGOTIATION_DECISIONS: [&str; 1] = ["allowed"];

/// Which count a series feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bucket {
    /// Tool calls that reached the server.
    Calls,
    /// Those that failed (error, timeout, partial).
    Errors,
    /// `initialize` and `server/discover` requests.
    Negotiations,
    /// Negotiation failures of every kind (`initialize`, `server_discover`,
    /// `unsupported_version`: a `-32022` answer to `initialize` is counted as the latter).
    NegotiationFailures,
}

/// A server id and a version, as the gateway labels them (`mcp_server`,
/// `mcp_server_version`).
pub type Key = (String, String);

/// The four counts of one server version over some span.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub calls: f64,
    pub errors: f64,
    pub negotiations: f64,
    pub negotiation_failures: f64,
}

impl Counts {
    pub fn add(&mut self, bucket: Bucket, value: f64) {
        *self.get_mut(bucket) += value;
    }

    pub fn get(&self, bucket: Bucket) -> f64 {
        match bucket {
            Bucket::Calls => self.calls,
            Bucket::Errors => self.errors,
            Bucket::Negotiations => self.negotiations,
            Bucket::NegotiationFailures => self.negotiation_failures,
        }
    }

    fn get_mut(&mut self, bucket: Bucket) -> &mut f64 {
        match bucket {
            Bucket::Calls => &mut self.calls,
            Bucket::Errors => &mut self.errors,
            Bucket::Negotiations => &mut self.negotiations,
            Bucket::NegotiationFailures => &mut self.negotiation_failures,
        }
    }
}

/// Counts per server version.
pub type Table = BTreeMap<Key, Counts>;

/// The buckets a sample feeds (a failed call feeds both `Calls` and `Errors`) and its
/// server version; nothing for series the signals do not read, or without a version
/// label (a request the gateway refused before any release was picked, or a filter
/// older than the version label: nothing to compare), or with an empty one.
pub fn classify(sample: &Sample) -> Option<(Key, &'static [Bucket])> {
    let buckets: &'static [Bucket] = match sample.name.as_str() {
        "mcp_tool_calls_total" => {
            let outcome = sample.label("mcp_outcome")?;
            if ERROR_OUTCOMES.contains(&outcome) {
                &[Bucket::Calls, Bucket::Errors]
            } else if CALL_OUTCOMES.contains(&outcome) {
                &[Bucket::Calls]
            } else {
                return None;
            }
        }
        "mcp_requests_total" => {
            let method = sample.label("mcp_method")?;
            let decision = sample.label("mcp_decision")?;
            if !NEGOTIATION_METHODS.contains(&method) || !NEGOTIATION_DECISIONS.contains(&decision)
            {
                return None;
            }
            &[Bucket::Negotiations]
        }
        "mcp_negotiation_failures_total" => &[Bucket::NegotiationFailures],
        _ => return None,
    };
    let server = sample.label("mcp_server")?;
    let version = sample
        .label("mcp_server_version")
        .filter(|v| !v.is_empty())?;
    Some(((server.to_owned(), version.to_owned()), buckets))
}

/// One series of a scrape, as the window tells it apart from the others: the server
/// version and bucket it feeds, and its name and labels (sorted).
pub type Series = (Key, Bucket, String);

/// One scrape reduced to the counters the signals read: each series' cumulative value,
/// kept apart so that the window takes increases per series before summing (a restart
/// of one series while its siblings grow must be seen, `increase()` then `sum`).
pub fn totals(samples: &[Sample]) -> BTreeMap<Series, f64> {
    let mut totals = BTreeMap::new();
    for sample in samples {
        if !sample.value.is_finite() {
            continue;
        }
        if let Some((key, buckets)) = classify(sample) {
            let id = series_id(sample);
            for bucket in buckets {
                *totals
                    .entry((key.clone(), *bucket, id.clone()))
                    .or_insert(0.0) += sample.value;
            }
        }
    }
    totals
}

/// `name{a="1",b="2"}` with the labels sorted: the same series in every scrape,
/// whatever order Envoy writes its labels in.
fn series_id(sample: &Sample) -> String {
    let mut labels: Vec<&(String, String)> = sample.labels.iter().collect();
    labels.sort();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{}{{{}}}", sample.name, labels.join(","))
}

/// Sums series values per server version and bucket.
#[cfg(test)]
pub fn summed(totals: &BTreeMap<Series, f64>) -> BTreeMap<(Key, Bucket), f64> {
    let mut sums = BTreeMap::new();
    for ((key, bucket, _), value) in totals {
        *sums.entry((key.clone(), *bucket)).or_insert(0.0) += value;
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::expo::parse;

    #[test]
    fn sums_the_series_each_signal_reads() {
        let samples = parse(
            r#"mcp_tool_calls_total{mcp_server="fin",mcp_tool="a",mcp_outcome="success",mcp_server_version="2"} 10
mcp_tool_calls_total{mcp_server="fin",mcp_tool="b",mcp_outcome="success",mcp_server_version="2"} 5
mcp_tool_calls_total{mcp_server="fin",mcp_tool="a",mcp_outcome="timeout",mcp_server_version="2"} 2
mcp_tool_calls_total{mcp_server="fin",mcp_tool="a",mcp_outcome="error",mcp_server_version="2"} 1
mcp_tool_calls_total{mcp_server="fin",mcp_tool="a",mcp_outcome="denied",mcp_server_version="2"} 50
mcp_tool_calls_total{mcp_server="fin",mcp_tool="a",mcp_outcome="success"} 99
mcp_requests_total{mcp_server="fin",mcp_method="initialize",mcp_decision="allowed",mcp_server_version="2"} 4
mcp_requests_total{mcp_server="fin",mcp_method="server/discover",mcp_decision="allowed",mcp_server_version="2"} 1
mcp_requests_total{mcp_server="fin",mcp_method="server/discover",mcp_decision="invalid",mcp_server_version="2"} 6
mcp_requests_total{mcp_server="fin",mcp_method="initialize",mcp_decision="invalid"} 8
mcp_requests_total{mcp_server="fin",mcp_method="initialize",mcp_decision="allowed",mcp_server_version=""} 9
mcp_negotiation_failures_total{mcp_server="fin",mcp_kind="initialize"} 8
mcp_requests_total{mcp_server="fin",mcp_method="initialize",mcp_decision="denied",mcp_server_version="2"} 7
mcp_requests_total{mcp_server="fin",mcp_method="tools/call",mcp_decision="allowed",mcp_server_version="2"} 18
mcp_negotiation_failures_total{mcp_server="fin",mcp_kind="initialize",mcp_server_version="2"} 2
mcp_negotiation_failures_total{mcp_server="fin",mcp_kind="unsupported_version",mcp_server_version="2"} 1
mcp_tool_calls_total{mcp_server="fin",mcp_tool="a",mcp_outcome="success",mcp_server_version="1"} 3
"#,
        )
        .unwrap();
        let totals = summed(&totals(&samples));
        let v2 = |bucket| totals[&(("fin".to_owned(), "2".to_owned()), bucket)];
        assert_eq!(v2(Bucket::Calls), 18.0);
        assert_eq!(v2(Bucket::Errors), 3.0);
        assert_eq!(v2(Bucket::Negotiations), 5.0);
        assert_eq!(v2(Bucket::NegotiationFailures), 3.0);
        assert_eq!(
            totals[&(("fin".to_owned(), "1".to_owned()), Bucket::Calls)],
            3.0
        );
        // The unversioned series (refused before a release was picked, or an older
        // filter), the empty version and the refusals (`denied`, `invalid`) count nowhere.
        assert_eq!(totals.len(), 5);
        assert!(totals
            .keys()
            .all(|((_, version), _)| version == "1" || version == "2"));
    }
}
