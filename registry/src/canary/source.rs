//! Where the watcher reads the gateway's metrics: each Envoy's own
//! `/stats/prometheus` (one gateway, tests, a laptop: the watcher keeps the scrapes and
//! computes the window itself), or a Prometheus server that scrapes every gateway
//! (production: one instant query per signal, summed over every Envoy by Prometheus,
//! restarts handled by `increase()`).

use super::counts::{self, Bucket, Table};
use super::expo;
use super::window::History;
use std::time::{Duration, Instant};
use thiserror::Error;
use url::Url;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {reason}")]
    Answer { url: String, reason: String },
}

/// Every request is bounded: a hung Envoy or Prometheus must not stop the loop (the
/// stale-watcher alert would be the only sign).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider (the registry uses ring, already
    // built for the services): install it once per process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("a client with a timeout and a crypto provider always builds")
}

/// One Envoy's admin interface and its scrapes.
#[derive(Debug)]
pub struct Envoy {
    pub stats_url: Url,
    pub history: History,
}

#[derive(Debug)]
pub enum Source {
    Envoys(Vec<Envoy>),
    Prometheus(Url),
}

impl Source {
    /// `--envoy-admin` URLs: the admin address (`http://127.0.0.1:9901`), or the full
    /// `/stats/prometheus` URL.
    pub fn envoys(admins: &[Url]) -> Source {
        Source::Envoys(
            admins
                .iter()
                .map(|admin| Envoy {
                    stats_url: stats_url(admin),
                    history: History::default(),
                })
                .collect(),
        )
    }

    /// Before each evaluation: scrapes every Envoy, keeping what windows of up to
    /// `keep` need. Returns the failures (one per Envoy that could not be read); the
    /// others' scrapes are recorded. Prometheus needs nothing here.
    pub async fn scrape(
        &mut self,
        client: &reqwest::Client,
        now: Instant,
        keep: Duration,
    ) -> Vec<SourceError> {
        let Source::Envoys(envoys) = self else {
            return Vec::new();
        };
        let mut failures = Vec::new();
        for envoy in envoys {
            match get(client, &envoy.stats_url).await.and_then(|text| {
                expo::parse(&text).map_err(|e| SourceError::Answer {
                    url: envoy.stats_url.to_string(),
                    reason: e.to_string(),
                })
            }) {
                Ok(samples) => envoy.history.push(now, counts::totals(&samples), keep),
                Err(e) => failures.push(e),
            }
        }
        failures
    }

    /// Every server version's counts over the `window` before `now`, summed over the
    /// gateways.
    pub async fn increase(
        &self,
        client: &reqwest::Client,
        now: Instant,
        window: Duration,
    ) -> Result<Reading, SourceError> {
        match self {
            Source::Envoys(envoys) => {
                let mut table = Table::new();
                for envoy in envoys {
                    for (key, counts) in envoy.history.increase(now, window) {
                        let sum = table.entry(key).or_default();
                        for bucket in [
                            Bucket::Calls,
                            Bucket::Errors,
                            Bucket::Negotiations,
                            Bucket::NegotiationFailures,
                        ] {
                            sum.add(bucket, counts.get(bucket));
                        }
                    }
                }
                Ok(Reading {
                    table,
                    warnings: Vec::new(),
                })
            }
            Source::Prometheus(base) => {
                let mut reading = Reading::default();
                for (query, buckets) in queries(window) {
                    let answer = get(client, &query_url(base, &query)).await?;
                    let answer = vector(&answer).map_err(|reason| SourceError::Answer {
                        url: base.to_string(),
                        reason,
                    })?;
                    add_rows(&mut reading.table, &answer.rows, buckets);
                    reading.warnings.extend(answer.warnings);
                }
                Ok(reading)
            }
        }
    }
}

/// Counts read for one window, and what makes them incomplete.
#[derive(Debug, Default)]
pub struct Reading {
    pub table: Table,
    /// Prometheus' `warnings` (a partial answer: a store or shard that did not
    /// answer, as Thanos and Cortex report it): the counts may miss traffic, enough for
    /// a rollback on what they show, never for a promotion.
    pub warnings: Vec<String>,
}

/// Adds one query's rows to `table`. A row without `mcp_server_version` (or with an
/// empty one: a request the gateway refused before picking a release) says nothing
/// about a version and is left out, as `counts::classify` leaves the series out.
fn add_rows(table: &mut Table, rows: &[Row], buckets: &[Bucket]) {
    for (labels, value) in rows {
        let outcome = labels.get("mcp_outcome").map(String::as_str);
        let (Some(server), Some(version)) =
            (labels.get("mcp_server"), labels.get("mcp_server_version"))
        else {
            continue;
        };
        if version.is_empty() {
            continue;
        }
        let counts = table.entry((server.clone(), version.clone())).or_default();
        for bucket in buckets {
            // The calls query is split by outcome: errors are its failed rows.
            let failed = outcome.is_some_and(|o| counts::ERROR_OUTCOMES.contains(&o));
            if *bucket != Bucket::Errors || failed {
                counts.add(*bucket, *value);
            }
        }
    }
}

/// `<admin>/stats/prometheus?usedonly`: only stats that were ever updated (every
/// counter the signals read was, by its first count), which leaves out most of a large
/// fleet's idle cluster stats. A URL already naming `/stats/prometheus` is kept as given.
fn stats_url(admin: &Url) -> Url {
    if admin.path().ends_with("/stats/prometheus") {
        return admin.clone();
    }
    let mut url = admin.clone();
    let path = format!("{}/stats/prometheus", admin.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(Some("usedonly"));
    url
}

/// The PromQL of each count over `window`, with the buckets its rows feed; the same
/// selectors as `counts::classify` and the shipped rules (only series with a version:
/// `mcp_server_version!=""` also matches no series that lacks the label).
pub fn queries(window: Duration) -> Vec<(String, &'static [Bucket])> {
    let w = format!("{}s", window.as_secs().max(1));
    let by = "sum by (mcp_server, mcp_server_version";
    let v = r#"mcp_server_version!="""#;
    vec![
        (
            format!(
                "{by}, mcp_outcome) (increase(mcp_tool_calls_total{{{v},mcp_outcome=~\"{}\"}}[{w}]))",
                counts::CALL_OUTCOMES.join("|")
            ),
            &[Bucket::Calls, Bucket::Errors],
        ),
        (
            format!(
                "{by}) (increase(mcp_requests_total{{{v},mcp_method=~\"{}\",mcp_decision=~\"{}\"}}[{w}]))",
                counts::NEGOTIATION_METHODS.join("|"),
                counts::NEGOTIATION_DECISIONS.join("|")
            ),
            &[Bucket::Negotiations],
        ),
        (
            format!("{by}) (increase(mcp_negotiation_failures_total{{{v}}}[{w}]))"),
            &[Bucket::NegotiationFailures],
        ),
    ]
}

fn query_url(base: &Url, query: &str) -> Url {
    let mut url = base.clone();
    let path = format!("{}/api/v1/query", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url.query_pairs_mut().clear().append_pair("query", query);
    url
}

/// One row of an instant vector: its labels and value.
pub type Row = (std::collections::BTreeMap<String, String>, f64);

/// An instant-vector answer: its rows, and its warnings (a partial answer).
#[derive(Debug, PartialEq)]
pub struct Vector {
    pub rows: Vec<Row>,
    pub warnings: Vec<String>,
}

/// The rows of a Prometheus instant-vector answer, and its `warnings`.
pub fn vector(answer: &str) -> Result<Vector, String> {
    let json: serde_json::Value =
        serde_json::from_str(answer).map_err(|e| format!("not JSON: {e}"))?;
    if json["status"] != "success" {
        return Err(format!(
            "query failed: {}",
            json["error"].as_str().unwrap_or("no error given")
        ));
    }
    if json["data"]["resultType"] != "vector" {
        return Err("not an instant vector".into());
    }
    let rows = json["data"]["result"].as_array().ok_or("no result")?;
    let mut out = Vec::new();
    for row in rows {
        let labels = row["metric"]
            .as_object()
            .ok_or("a row without metric")?
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect();
        let value = row["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or("a row without a numeric value")?;
        // NaN or infinite (nothing Prometheus' increase() returns for counters): no count.
        if value.is_finite() {
            out.push((labels, value));
        }
    }
    // Prometheus answers `success` with `warnings` when part of the data could not be
    // read (Thanos and Cortex: a store that did not answer); any warning makes the
    // answer incomplete for the watcher.
    let warnings = match &json["warnings"] {
        serde_json::Value::Array(items) => items
            .iter()
            .map(|w| w.as_str().map_or_else(|| w.to_string(), str::to_owned))
            .collect(),
        serde_json::Value::Null => Vec::new(),
        other => vec![other.to_string()],
    };
    Ok(Vector {
        rows: out,
        warnings,
    })
}

async fn get(client: &reqwest::Client, url: &Url) -> Result<String, SourceError> {
    let http = |source| SourceError::Http {
        url: url.to_string(),
        source,
    };
    let response = client.get(url.clone()).send().await.map_err(http)?;
    let status = response.status();
    if !status.is_success() {
        return Err(SourceError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    response.text().await.map_err(http)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls_lead_to_the_prometheus_stats() {
        for (given, expected) in [
            (
                "http://127.0.0.1:9901",
                "http://127.0.0.1:9901/stats/prometheus?usedonly",
            ),
            (
                "http://127.0.0.1:9901/",
                "http://127.0.0.1:9901/stats/prometheus?usedonly",
            ),
            (
                "http://gw:9901/admin/",
                "http://gw:9901/admin/stats/prometheus?usedonly",
            ),
            (
                "http://127.0.0.1:9901/stats/prometheus",
                "http://127.0.0.1:9901/stats/prometheus",
            ),
        ] {
            assert_eq!(stats_url(&Url::parse(given).unwrap()).as_str(), expected);
        }
    }

    #[test]
    fn prometheus_queries_match_the_shipped_rules() {
        let queries = queries(Duration::from_secs(600));
        assert_eq!(
            queries[0].0,
            r#"sum by (mcp_server, mcp_server_version, mcp_outcome) (increase(mcp_tool_calls_total{mcp_server_version!="",mcp_outcome=~"success|error|timeout|partial"}[600s]))"#
        );
        assert_eq!(
            queries[1].0,
            r#"sum by (mcp_server, mcp_server_version) (increase(mcp_requests_total{mcp_server_version!="",mcp_method=~"initialize|server/discover",mcp_decision=~"allowed"}[600s]))"#
        );
        assert_eq!(
            queries[2].0,
            r#"sum by (mcp_server, mcp_server_version) (increase(mcp_negotiation_failures_total{mcp_server_version!=""}[600s]))"#
        );
        let url = query_url(&Url::parse("http://prom:9090/").unwrap(), &queries[2].0);
        assert!(
            url.as_str()
                .starts_with("http://prom:9090/api/v1/query?query=sum+by+%28"),
            "{url}"
        );
    }

    #[test]
    fn rows_without_a_version_count_nowhere() {
        let rows = vector(
            r#"{"status":"success","data":{"resultType":"vector","result":[
              {"metric":{"mcp_server":"fin","mcp_server_version":"2","mcp_outcome":"error"},"value":[1,"4"]},
              {"metric":{"mcp_server":"fin","mcp_server_version":"2","mcp_outcome":"success"},"value":[1,"6"]},
              {"metric":{"mcp_server":"fin","mcp_outcome":"error"},"value":[1,"50"]},
              {"metric":{"mcp_server":"fin","mcp_server_version":"","mcp_outcome":"error"},"value":[1,"70"]}]}}"#,
        )
        .unwrap()
        .rows;
        let mut table = Table::new();
        add_rows(&mut table, &rows, &[Bucket::Calls, Bucket::Errors]);
        assert_eq!(table.len(), 1, "{table:?}");
        let counts = table[&("fin".to_owned(), "2".to_owned())];
        assert_eq!((counts.calls, counts.errors), (10.0, 4.0));
    }

    #[test]
    fn reads_instant_vectors_and_refuses_errors() {
        let rows = vector(
            r#"{"status":"success","data":{"resultType":"vector","result":[
              {"metric":{"mcp_server":"fin","mcp_server_version":"1.4.0","mcp_outcome":"error"},"value":[1700000000.1,"12.5"]},
              {"metric":{},"value":[1700000000.1,"3"]}]}}"#,
        )
        .unwrap();
        assert_eq!(rows.warnings, Vec::<String>::new());
        let rows = rows.rows;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0["mcp_outcome"], "error");
        assert_eq!(rows[0].1, 12.5);
        assert_eq!(
            vector(r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#),
            Err("query failed: parse error".into())
        );
        assert!(
            vector(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#).is_err()
        );
        assert_eq!(
            vector(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#
            ),
            Ok(Vector {
                rows: vec![],
                warnings: vec![]
            })
        );
        // A partial answer: its rows, and why they may be short.
        let partial = vector(
            r#"{"status":"success","warnings":["store 10.0.0.7:10901 did not answer"],"data":{"resultType":"vector","result":[]}}"#,
        )
        .unwrap();
        assert_eq!(partial.warnings, ["store 10.0.0.7:10901 did not answer"]);
        assert!(vector(r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}"#).is_err());
    }
}
