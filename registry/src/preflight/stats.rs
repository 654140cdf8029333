//! Cross-checks from the gateway's own counters (`--admin`: Envoy's admin interface,
//! `/stats/prometheus`), as deltas over a step:
//! - step 1: `mcp_schema_drift_total{mcp_server}`: the gateway hides tools a manifest
//!   does not register (`unregistered_tools: hide`), so preflight's own list cannot see
//!   an extra tool; the drift counter the gateway bumps on that answer can;
//! - step 5: `mcp_negotiation_failures_total{mcp_server}` did not grow while the SDK
//!   connected.
//!
//! Deltas, because the counters live as long as Envoy: a shared gateway's other traffic
//! to the same server would count too (preflight runs before a server gets traffic).

use super::Check;
use std::collections::BTreeMap;
use std::time::Duration;

/// Samples by name, each with its labels.
pub type Samples = Vec<(String, BTreeMap<String, String>, f64)>;

/// Parses Prometheus text exposition (the lines Envoy writes; comments skipped).
pub fn parse(text: &str) -> Samples {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.trim().rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => (name.to_owned(), labels(rest.strip_suffix('}')?)?),
            };
            Some((name, labels, value))
        })
        .collect()
}

fn labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() {
            return Some(out);
        }
        if chars.next() != Some('=') || chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim().to_owned(), value);
    }
}

/// The sum of `name`'s samples for `server`, by the value of `by` (all under "").
pub fn by_label(samples: &Samples, name: &str, server: &str, by: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (sample, labels, value) in samples {
        if sample == name && labels.get("mcp_server").map(String::as_str) == Some(server) {
            let key = labels.get(by).cloned().unwrap_or_default();
            *out.entry(key).or_insert(0.0) += value;
        }
    }
    out
}

/// What grew between two readings (positive deltas only).
pub fn grew(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

fn listed(grown: &BTreeMap<String, f64>) -> String {
    grown
        .iter()
        .map(|(k, d)| format!("{k} +{d}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads the admin interface's Prometheus stats.
pub async fn scrape(admin: &str) -> Result<Samples, String> {
    super::client::tls_provider();
    let url = format!("{}/stats/prometheus", admin.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("cannot read {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    let text = response.text().await.map_err(|e| e.to_string())?;
    Ok(parse(&text))
}

pub const DRIFT: &str = "mcp_schema_drift_total";
pub const NEGOTIATION: &str = "mcp_negotiation_failures_total";

/// Step 1's cross-check from two readings.
pub fn drift_check(before: &Samples, after: &Samples, server: &str) -> Check {
    let grown = grew(
        &by_label(before, DRIFT, server, "mcp_kind"),
        &by_label(after, DRIFT, server, "mcp_kind"),
    );
    if grown.is_empty() {
        Check::pass(
            "drift",
            format!("the gateway counted no schema drift during the lists ({DRIFT})"),
        )
    } else {
        Check::fail(
            "drift",
            format!(
                "the gateway counted schema drift while listing ({DRIFT}: {}): extra is a tool the \
                 server advertises but the manifest does not register (hidden from agents)",
                listed(&grown)
            ),
        )
    }
}

/// Step 5's cross-check from two readings.
pub fn negotiation_check(before: &Samples, after: &Samples, server: &str) -> Check {
    let grown = grew(
        &by_label(before, NEGOTIATION, server, "mcp_kind"),
        &by_label(after, NEGOTIATION, server, "mcp_kind"),
    );
    if grown.is_empty() {
        Check::pass("gateway", format!("{NEGOTIATION} did not grow"))
    } else {
        Check::fail(
            "gateway",
            format!(
                "{NEGOTIATION} grew while the SDK connected: {}",
                listed(&grown)
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Status;

    const BEFORE: &str = "# TYPE mcp_schema_drift_total counter\n\
        mcp_schema_drift_total{mcp_server=\"a\",mcp_kind=\"extra\"} 1\n\
        mcp_schema_drift_total{mcp_server=\"b\",mcp_kind=\"changed\"} 4\n\
        envoy_cluster_upstream_rq{envoy_cluster_name=\"x\"} 12\n\
        mcp_negotiation_failures_total{mcp_server=\"a\",mcp_kind=\"initialize\"} 0\n";

    #[test]
    fn samples_are_parsed_with_their_labels() {
        let samples = parse(BEFORE);
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].0, "mcp_schema_drift_total");
        assert_eq!(samples[0].1["mcp_kind"], "extra");
        assert_eq!(samples[0].2, 1.0);
        let quoted = parse("m{k=\"a,b\\\"c\"} 2\n");
        assert_eq!(quoted[0].1["k"], "a,b\"c");
        assert!(parse("m{k=unquoted} 1\n").is_empty());
    }

    #[test]
    fn only_growth_of_this_server_counts() {
        let before = parse(BEFORE);
        assert_eq!(drift_check(&before, &before, "a").status, Status::Pass);
        let after = parse(
            &BEFORE
                .replace(
                    "\"b\",mcp_kind=\"changed\"} 4",
                    "\"b\",mcp_kind=\"changed\"} 5",
                )
                .replace("mcp_kind=\"extra\"} 1", "mcp_kind=\"extra\"} 2"),
        );
        let check = drift_check(&before, &after, "a");
        assert_eq!(check.status, Status::Fail);
        assert!(
            check.detail.contains("(mcp_schema_drift_total: extra +1)"),
            "{}",
            check.detail
        );
        assert_eq!(drift_check(&before, &after, "c").status, Status::Pass);
        let failed = parse(&BEFORE.replace("\"initialize\"} 0", "\"initialize\"} 2"));
        assert_eq!(
            negotiation_check(&before, &failed, "a").detail,
            "mcp_negotiation_failures_total grew while the SDK connected: initialize +2"
        );
    }
}
