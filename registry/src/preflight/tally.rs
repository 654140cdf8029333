//! What the load test counts: outcomes by kind, latency from each call's scheduled
//! time (coordinated omission), and the gateway's added latency with its method:
//! paired direct samples when there are any (p50/p99 of gateway calls minus those of
//! direct calls to the server), else client time minus `x-envoy-upstream-service-time`
//! (Envoy's upstream time to response headers: an upper bound at millisecond
//! resolution, including the network hop to the gateway). Both from the actual send,
//! so the generator's own delays are not counted as the gateway's.

use super::client::{Answer, ClientError};
use super::config::LoadSettings;
use super::load::Plan;
use super::Check;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Counts and latencies of a run.
#[derive(Debug)]
pub struct Tally {
    pub sent: u64,
    pub ok: u64,
    pub rate_limited: u64,
    pub http_errors: u64,
    pub jsonrpc_errors: u64,
    pub tool_errors: u64,
    pub timeouts: u64,
    pub transport_errors: u64,
    /// Due while `max_in_flight` calls were outstanding: not sent.
    pub saturated: u64,
    /// Due, but the run's duration was over before the generator got to them (it fell
    /// behind): not sent, so the run never outlasts its duration.
    pub late: u64,
    /// Still outstanding when the run's time was up.
    pub abandoned: u64,
    /// Microseconds from the scheduled time to the full answer.
    pub latency: Histogram<u64>,
    /// Microseconds: latency minus the upstream service time.
    pub added: Histogram<u64>,
    /// Microseconds from the actual send to the answer, gateway calls.
    pub service: Histogram<u64>,
    /// The same for the paired direct calls to the server's endpoint.
    pub direct: Histogram<u64>,
    pub direct_failed: u64,
    /// The first direct call's failure, for the report.
    pub direct_error: Option<String>,
}

impl Default for Tally {
    fn default() -> Self {
        let histogram = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        Tally {
            sent: 0,
            ok: 0,
            rate_limited: 0,
            http_errors: 0,
            jsonrpc_errors: 0,
            tool_errors: 0,
            timeouts: 0,
            transport_errors: 0,
            saturated: 0,
            late: 0,
            abandoned: 0,
            latency: histogram(),
            added: histogram(),
            service: histogram(),
            direct: histogram(),
            direct_failed: 0,
            direct_error: None,
        }
    }
}

impl Tally {
    pub fn errors(&self) -> u64 {
        self.rate_limited
            + self.http_errors
            + self.jsonrpc_errors
            + self.tool_errors
            + self.timeouts
            + self.transport_errors
            + self.abandoned
    }

    /// Records one finished call: `scheduled` microseconds from its scheduled time
    /// (the latency reported), `service` from when it was actually sent (what the
    /// gateway's added latency is taken from, so the generator's own delays are not
    /// blamed on the gateway).
    pub fn record(&mut self, outcome: &Result<Answer, ClientError>, scheduled: u64, service: u64) {
        match outcome {
            Err(ClientError::Timeout(_)) => self.timeouts += 1,
            Err(ClientError::Transport { .. }) => self.transport_errors += 1,
            Ok(answer) if answer.status == 429 => self.rate_limited += 1,
            Ok(answer) if !(200..300).contains(&answer.status) => self.http_errors += 1,
            Ok(answer) if answer.error_code().is_some() || answer.result().is_none() => {
                self.jsonrpc_errors += 1
            }
            Ok(answer) if answer.result().and_then(|r| r.get("isError")) == Some(&json!(true)) => {
                self.tool_errors += 1
            }
            Ok(answer) => {
                self.ok += 1;
                let _ = self.latency.record(scheduled.max(1));
                let _ = self.service.record(service.max(1));
                let upstream = answer
                    .header("x-envoy-upstream-service-time")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if let Some(ms) = upstream {
                    let _ = self.added.record(service.saturating_sub(ms * 1000).max(1));
                }
            }
        }
    }

    /// Records one direct call (not part of the load's counts).
    pub fn record_direct(&mut self, outcome: &Result<Answer, ClientError>, service: u64) {
        let failure = match outcome {
            Err(e) => Some(e.to_string()),
            Ok(a) if a.status != 200 || a.result().is_none() => Some(a.summary()),
            Ok(a) if a.result().and_then(|r| r.get("isError")) == Some(&json!(true)) => {
                Some("a result with isError: true".to_owned())
            }
            Ok(_) => None,
        };
        match failure {
            None => {
                let _ = self.direct.record(service.max(1));
            }
            Some(reason) => {
                self.direct_failed += 1;
                self.direct_error.get_or_insert(reason);
            }
        }
    }

    /// The gateway's added latency by paired direct samples: p50 and p99 of the
    /// gateway calls minus those of the direct calls (a difference of quantiles, not a
    /// quantile of differences), milliseconds.
    pub fn paired(&self) -> Option<(f64, f64)> {
        if self.direct.is_empty() || self.service.is_empty() {
            return None;
        }
        // Microseconds in, milliseconds out: rounding keeps binary float noise out of reports.
        let added = |q: f64| {
            let micros =
                self.service.value_at_quantile(q) as i64 - self.direct.value_at_quantile(q) as i64;
            micros as f64 / 1000.0
        };
        Some((added(0.5), added(0.99)))
    }

    /// The step's checks: the error rate, whether the generator kept up, the latency
    /// bound if one is set.
    pub fn judge(&self, plan: &Plan, settings: &LoadSettings) -> Vec<Check> {
        let mut checks = Vec::new();
        let error_rate = if self.sent == 0 {
            1.0
        } else {
            self.errors() as f64 / self.sent as f64
        };
        let detail = format!(
            "{} of {} calls failed ({:.2}%; at most {:.2}%)",
            self.errors(),
            self.sent,
            error_rate * 100.0,
            settings.max_error_rate * 100.0
        );
        checks.push(if error_rate <= settings.max_error_rate && self.sent > 0 {
            Check::pass("error_rate", detail)
        } else {
            Check::fail("error_rate", format!("{detail}; {}", self.kinds()))
        });
        // A generator that cannot keep up must not report good latencies.
        let achieved = self.sent as f64 / plan.count as f64;
        let detail = format!("{} of {} scheduled calls sent", self.sent, plan.count);
        checks.push(if achieved >= 0.95 {
            Check::pass("schedule", detail)
        } else {
            Check::fail(
                "schedule",
                if self.late == 0 {
                    format!(
                        "{detail}: {} due while max_in_flight calls were outstanding",
                        self.saturated
                    )
                } else {
                    format!(
                        "{detail}: {} due while max_in_flight calls were outstanding, {} still unsent when the duration ended",
                        self.saturated, self.late
                    )
                },
            )
        });
        let p99 = self.latency.value_at_quantile(0.99) as f64 / 1000.0;
        match settings.max_p99_ms {
            _ if self.ok == 0 => checks.push(Check::skip(
                "latency",
                "no call succeeded, so none was timed",
            )),
            Some(bound) if p99 > bound => checks.push(Check::fail(
                "latency",
                format!("p99 {p99:.1} ms is above {bound} ms"),
            )),
            _ => checks.push(Check::pass("latency", self.latency_line())),
        }
        checks
    }

    fn kinds(&self) -> String {
        format!(
            "429: {}, other HTTP errors: {}, JSON-RPC errors: {}, isError results: {}, timeouts: {}, \
             transport errors: {}, abandoned: {}",
            self.rate_limited,
            self.http_errors,
            self.jsonrpc_errors,
            self.tool_errors,
            self.timeouts,
            self.transport_errors,
            self.abandoned
        )
    }

    pub fn latency_line(&self) -> String {
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let mut line = format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(&self.latency, 0.5),
            ms(&self.latency, 0.99),
            self.latency.max() as f64 / 1000.0
        );
        if let Some((p50, p99)) = self.paired() {
            line.push_str(&format!(
                "; gateway added p50 {p50:.1} ms, p99 {p99:.1} ms ({PAIRED}, {} direct samples)",
                self.direct.len()
            ));
        } else if !self.added.is_empty() {
            line.push_str(&format!(
                "; gateway added p50 {:.1} ms, p99 {:.1} ms (client latency minus x-envoy-upstream-service-time: \
                 an upper bound, ms resolution)",
                ms(&self.added, 0.5),
                ms(&self.added, 0.99)
            ));
        }
        line
    }

    /// The report's numbers.
    pub fn data(&self, plan: &Plan) -> Value {
        let ms = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                Value::Null
            } else {
                json!(h.value_at_quantile(q) as f64 / 1000.0)
            }
        };
        json!({
            "rate_per_second": plan.rate,
            "duration_s": plan.duration.as_secs_f64(),
            "scheduled": plan.count,
            "sent": self.sent,
            "succeeded": self.ok,
            "errors": self.errors(),
            "error_rate": if self.sent == 0 { Value::Null } else { json!(self.errors() as f64 / self.sent as f64) },
            "errors_by_kind": {
                "rate_limited": self.rate_limited, "http": self.http_errors,
                "jsonrpc": self.jsonrpc_errors, "is_error": self.tool_errors,
                "timeout": self.timeouts, "transport": self.transport_errors,
                "abandoned": self.abandoned,
            },
            "not_sent_saturated": self.saturated,
            "not_sent_late": self.late,
            "latency_ms": {"p50": ms(&self.latency, 0.5), "p90": ms(&self.latency, 0.9),
                           "p99": ms(&self.latency, 0.99), "max": ms(&self.latency, 1.0)},
            "gateway_added_ms": match self.paired() {
                Some((p50, p99)) => json!({
                    "method": PAIRED, "p50": p50, "p99": p99, "direct_samples": self.direct.len(),
                    "upper_bound": {"method": UPPER_BOUND, "p50": ms(&self.added, 0.5), "p99": ms(&self.added, 0.99)},
                }),
                None => json!({
                    "method": UPPER_BOUND, "p50": ms(&self.added, 0.5), "p99": ms(&self.added, 0.99),
                    "direct_samples": self.direct.len(), "direct_failed": self.direct_failed,
                    "direct_error": self.direct_error,
                }),
            },
        })
    }
}

pub const UPPER_BOUND: &str =
    "client latency minus x-envoy-upstream-service-time (upper bound, ms resolution)";
pub const PAIRED: &str = "paired direct samples: p50/p99 of gateway calls minus p50/p99 of direct \
                      calls to the endpoint, 1 in 10, interleaved (a difference of quantiles)";

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn answer(status: u16, upstream_ms: Option<&str>, message: Value) -> Answer {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(ms) = upstream_ms {
            headers.insert("x-envoy-upstream-service-time", ms.parse().unwrap());
        }
        Answer {
            status,
            headers,
            body: String::new(),
            message: Some(message),
        }
    }

    #[test]
    fn outcomes_are_counted_by_kind_and_only_successes_timed() {
        let mut tally = Tally::default();
        let ok = json!({"id": 1, "result": {"content": []}});
        tally.record(&Ok(answer(200, Some("3"), ok.clone())), 9_000, 5_000);
        tally.record(&Ok(answer(200, None, ok)), 4_000, 4_000);
        tally.record(
            &Ok(answer(
                429,
                None,
                json!({"id": 1, "error": {"code": -31020}}),
            )),
            1,
            1,
        );
        tally.record(
            &Ok(answer(
                503,
                None,
                json!({"id": 1, "error": {"code": -31030}}),
            )),
            1,
            1,
        );
        tally.record(
            &Ok(answer(
                200,
                None,
                json!({"id": 1, "error": {"code": -32602}}),
            )),
            1,
            1,
        );
        tally.record(
            &Ok(answer(
                200,
                None,
                json!({"id": 1, "result": {"isError": true}}),
            )),
            1,
            1,
        );
        tally.record(&Err(ClientError::Timeout(Duration::from_secs(1))), 1, 1);
        let kinds = (
            tally.ok,
            tally.rate_limited,
            tally.http_errors,
            tally.jsonrpc_errors,
            tally.tool_errors,
            tally.timeouts,
        );
        assert_eq!(kinds, (2, 1, 1, 1, 1, 1));
        assert_eq!(tally.errors(), 5);
        assert_eq!(tally.latency.len(), 2);
        assert_eq!(tally.latency.max(), tally.latency.highest_equivalent(9_000));
        // Added latency: sent-to-answer 5 ms minus the upstream's 3 ms; the answer
        // without the header has none.
        assert_eq!(tally.added.len(), 1);
        assert_eq!(tally.added.max(), tally.added.highest_equivalent(2_000));
    }

    #[test]
    fn paired_direct_samples_give_the_added_latency_as_a_difference_of_quantiles() {
        let mut tally = Tally::default();
        assert_eq!(tally.paired(), None);
        let ok = json!({"id": 1, "result": {"content": []}});
        for ms in [4_000, 5_000, 6_000] {
            tally.record(&Ok(answer(200, Some("1"), ok.clone())), ms, ms);
        }
        tally.record_direct(&Ok(answer(200, None, ok.clone())), 1_000);
        tally.record_direct(
            &Ok(answer(
                401,
                None,
                json!({"id": 1, "error": {"code": -1, "message": "no"}}),
            )),
            1,
        );
        let (p50, p99) = tally.paired().unwrap();
        assert!(
            (p50 - 4.0).abs() < 0.01 && (p99 - 5.0).abs() < 0.01,
            "{p50} {p99}"
        );
        assert_eq!(tally.direct_failed, 1);
        assert_eq!(
            tally.direct_error.as_deref(),
            Some("HTTP 401, JSON-RPC error -1 no")
        );
        let data = tally.data(&Plan::new(1.0, Duration::from_secs(3)));
        assert!(data["gateway_added_ms"]["method"]
            .as_str()
            .unwrap()
            .starts_with("paired direct samples"));
        assert_eq!(data["gateway_added_ms"]["direct_samples"], 1);
        assert!(data["gateway_added_ms"]["upper_bound"]["method"]
            .as_str()
            .unwrap()
            .contains("upstream-service-time"));
        // The load's own counts are untouched by direct calls.
        assert_eq!((tally.ok, tally.errors()), (3, 0));
    }

    #[test]
    fn saturation_and_errors_fail_the_step() {
        let plan = Plan::new(10.0, Duration::from_secs(1));
        let settings = LoadSettings::default();
        let mut tally = Tally {
            sent: 8,
            saturated: 2,
            ok: 8,
            ..Tally::default()
        };
        tally.latency.record(2_000).unwrap();
        let checks = tally.judge(&plan, &settings);
        assert_eq!(checks[0].status, super::super::Status::Pass);
        assert_eq!(checks[1].status, super::super::Status::Fail);
        assert_eq!(
            checks[1].detail,
            "8 of 10 scheduled calls sent: 2 due while max_in_flight calls were outstanding"
        );
        let failing = Tally {
            sent: 10,
            ok: 9,
            tool_errors: 1,
            ..Tally::default()
        };
        let checks = failing.judge(&plan, &settings);
        assert_eq!(checks[0].status, super::super::Status::Fail);
        let none = Tally {
            sent: 10,
            tool_errors: 10,
            ..Tally::default()
        };
        assert_eq!(
            none.judge(&plan, &settings)[2].detail,
            "no call succeeded, so none was timed"
        );
        assert!(
            checks[0]
                .detail
                .starts_with("1 of 10 calls failed (10.00%; at most 1.00%)"),
            "{}",
            checks[0].detail
        );
        assert_eq!(checks[1].status, super::super::Status::Pass);
    }
}
