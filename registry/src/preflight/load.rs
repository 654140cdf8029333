//! Step 6: an open-loop load test at a multiple of the expected call volume. Calls are
//! sent on a fixed schedule whatever the answers do, latency is measured from each
//! call's *scheduled* time (so a slow gateway cannot hide queueing: coordinated
//! omission), and the run is bounded in count (rate x duration, never more) and time
//! (duration plus one request timeout, then in-flight calls are abandoned and counted).
//!
//! The gateway's own added latency is reported per call as the client's latency minus
//! `x-envoy-upstream-service-time` (Envoy's router: upstream time to response
//! headers). It is whole milliseconds and includes the network hop from here to the
//! gateway, so it is an upper bound at millisecond resolution.

use super::client::{Answer, Client, ClientError, Session};
use super::config::LoadSettings;
use super::config::Role;
use super::limits;
use super::run::Ctx;
use super::{Check, Step};
use crate::model::Credential;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Step 6.
pub async fn step(ctx: &Ctx<'_>) -> Step {
    let Some(call) = ctx.preflight_call() else {
        return Step::skipped(
            6,
            "no gateway.preflight_call in the manifest: nothing to call",
        );
    };
    let expected = ctx.server.expected_calls.as_ref().map(limits::per_second);
    let rate = match (ctx.options.load_rate, expected) {
        (Some(rate), _) => rate,
        (None, Some(expected)) => expected * ctx.options.load_multiplier,
        (None, None) => {
            return Step::skipped(
                6,
                "the manifest declares no gateway.expected_calls (or give --load-rate)",
            )
        }
    };
    let scopes = super::auth::required(ctx.server, "tools/call", Some(&call.tool));
    let token = match super::identity::token(ctx.config, Role::Load, &scopes).await {
        None => {
            return Step::skipped(
                6,
                "no load identity (preflight.yaml: identities.load or mint)",
            )
        }
        Some(Err(reason)) => {
            return Step::from_checks(
                6,
                vec![Check::fail("identity", format!("no token: {reason}"))],
            )
        }
        Some(Ok(token)) => token,
    };
    let agent = token.agent.clone().unwrap_or_default();
    // Otherwise the run would measure the rate limiter.
    if let Some((limit, source)) = limits::applicable(&ctx.server.rate_limits, &agent, &call.tool) {
        if limits::per_second(&limit) < rate {
            return Step::from_checks(6, vec![Check::fail(
                "limit",
                format!(
                    "the load identity {agent} is limited to {} on {} ({source}); the load is {:.1} calls/s: \
                     give it an agent limit (gateway.rate_limits.agents) or lower --load-multiplier",
                    limits::describe(&limit),
                    call.tool,
                    rate
                ),
            )]);
        }
    }
    let version = ctx.call_version();
    let session = match ctx.open(&version, Some(&token.value)).await {
        Ok(s) => s,
        Err(reason) => {
            return Step::from_checks(
                6,
                vec![Check::fail(
                    "connect",
                    format!("cannot connect in {version}: {reason}"),
                )],
            )
        }
    };
    let (params, headers) = ctx.call_request(call, &version);
    let plan = Plan::new(rate, ctx.options.load_duration);
    eprintln!(
        "preflight: load {} calls of {} at {:.2}/s for {:.0}s as {agent}",
        plan.count,
        call.tool,
        plan.rate,
        plan.duration.as_secs_f64()
    );
    let (direct, direct_problem) = if ctx.config.load.direct_samples {
        match direct(ctx, &version).await {
            Ok(direct) => (Some(direct), None),
            Err(reason) => (None, Some(reason)),
        }
    } else {
        (None, None)
    };
    let call_spec = Call {
        session: session.clone(),
        params,
        token: token.value.clone(),
        headers,
        direct: direct.clone(),
    };
    let tally = run(&ctx.client, call_spec, plan, &ctx.config.load).await;
    ctx.client.close(session, Some(&token.value)).await;
    if let Some(direct) = direct {
        direct.client.close(direct.session, None).await;
    }
    let mut checks = tally.judge(&plan, &ctx.config.load);
    if ctx.config.load.direct_samples {
        let reason = direct_problem.or_else(|| match (&tally.direct_error, tally.paired()) {
            (_, Some(_)) => None,
            (Some(error), None) => Some(format!("every direct call failed ({error})")),
            (None, None) => Some("no direct sample was taken".to_owned()),
        });
        checks.push(match reason {
            None => Check::pass(
                "direct_samples",
                format!("{} direct calls to {} paired with the load", tally.direct.len(), ctx.server.endpoint.url),
            ),
            Some(reason) => Check::skip(
                "direct_samples",
                format!("{reason}; the added latency is the upper bound from x-envoy-upstream-service-time"),
            ),
        });
    }
    if let Some(expected) = expected {
        checks.push(Check::pass(
            "volume",
            format!(
                "{:.2} calls/s = {}x the expected {:.3} calls/s",
                rate,
                rate / expected,
                expected
            ),
        ));
    }
    Step::from_checks(6, checks)
        .with_data(json!({"load": tally.data(&plan), "identity": agent, "tool": call.tool}))
}

/// The server's endpoint, with its `{file:}` upstream credential, for direct samples.
async fn direct(ctx: &Ctx<'_>, version: &str) -> Result<Direct, String> {
    let server = ctx.server;
    let authorization = match &server.upstream_credential {
        None => None,
        Some(Credential::File { resolved, .. }) => Some(
            std::fs::read_to_string(resolved)
                .map_err(|e| format!("cannot read the upstream credential {}: {e}", resolved.display()))?
                .trim()
                .to_owned(),
        ),
        Some(Credential::Secret { name, .. }) => {
            return Err(format!("the upstream credential is the Kubernetes Secret {name}, which preflight does not read"))
        }
    };
    let client = Client::new(&server.endpoint.url, ctx.config.load.request_timeout)?
        .with_authorization(authorization);
    let session = client
        .open(version, None)
        .await
        .map_err(|e| format!("cannot connect to {} directly: {e}", server.endpoint.url))?;
    Ok(Direct { client, session })
}

/// The schedule: `count` calls, call `n` at `n / rate` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Calls per second.
    pub rate: f64,
    pub duration: Duration,
    pub count: u64,
}

impl Plan {
    pub fn new(rate: f64, duration: Duration) -> Plan {
        let count = (rate * duration.as_secs_f64()).floor().max(1.0) as u64;
        Plan {
            rate,
            duration,
            count,
        }
    }

    /// When call `n` is due, from the start.
    pub fn scheduled_at(&self, n: u64) -> Duration {
        Duration::from_secs_f64(n as f64 / self.rate)
    }

    /// How many calls are due by `elapsed` (never more than `count`).
    pub fn due(&self, elapsed: Duration) -> u64 {
        let due = (elapsed.as_secs_f64() * self.rate).floor() as u64 + 1;
        due.min(self.count)
    }
}

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
                format!(
                    "{detail}: {} due while max_in_flight calls were outstanding",
                    self.saturated
                ),
            )
        });
        let p99 = self.latency.value_at_quantile(0.99) as f64 / 1000.0;
        match settings.max_p99_ms {
            Some(bound) if self.ok > 0 && p99 > bound => checks.push(Check::fail(
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

const UPPER_BOUND: &str =
    "client latency minus x-envoy-upstream-service-time (upper bound, ms resolution)";
const PAIRED: &str = "paired direct samples: p50/p99 of gateway calls minus p50/p99 of direct \
                      calls to the endpoint, 1 in 10, interleaved (a difference of quantiles)";

/// What one call sends.
#[derive(Clone)]
pub struct Call {
    pub session: Session,
    pub params: Value,
    pub token: String,
    pub headers: Vec<(String, String)>,
    /// Every tenth call is also sent here, straight to the server.
    pub direct: Option<Direct>,
}

/// The server's own endpoint, for paired direct samples (its upstream credential, if
/// any, is the client's `Authorization`).
#[derive(Clone)]
pub struct Direct {
    pub client: Client,
    pub session: Session,
}

/// Runs the plan against the gateway. Progress goes to stderr every 10 s.
pub async fn run(client: &Client, call: Call, plan: Plan, settings: &LoadSettings) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight));
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    // Apart, so they never count as abandoned load calls.
    let mut direct_tasks = tokio::task::JoinSet::new();
    let mut last_progress = start;
    for n in 0..plan.count {
        let due = start + plan.scheduled_at(n);
        tokio::time::sleep_until(due).await;
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tally.lock().expect("tally lock").saturated += 1;
            continue;
        };
        tally.lock().expect("tally lock").sent += 1;
        if let Some(direct) = call.direct.clone().filter(|_| n % 10 == 0) {
            if let Ok(permit) = slots.clone().try_acquire_owned() {
                let (call, tally) = (call.clone(), tally.clone());
                direct_tasks.spawn(async move {
                    let id = json!(format!("preflight-direct-{n}"));
                    let sent = tokio::time::Instant::now();
                    let outcome = direct
                        .client
                        .call(
                            &direct.session,
                            "tools/call",
                            call.params,
                            id,
                            None,
                            &call.headers,
                        )
                        .await;
                    let service = sent.elapsed().as_micros() as u64;
                    tally
                        .lock()
                        .expect("tally lock")
                        .record_direct(&outcome, service);
                    drop(permit);
                });
            }
        }
        let (client, call, tally) = (client.clone(), call.clone(), tally.clone());
        tasks.spawn(async move {
            let id = json!(format!("preflight-load-{n}"));
            let sent = tokio::time::Instant::now();
            let outcome = client
                .call(
                    &call.session,
                    "tools/call",
                    call.params,
                    id,
                    Some(&call.token),
                    &call.headers,
                )
                .await;
            let (scheduled, service) = (due.elapsed(), sent.elapsed());
            tally.lock().expect("tally lock").record(
                &outcome,
                scheduled.as_micros() as u64,
                service.as_micros() as u64,
            );
            drop(permit);
        });
        if last_progress.elapsed() >= Duration::from_secs(10) {
            last_progress = tokio::time::Instant::now();
            eprintln!("preflight: load {} of {} calls sent", n + 1, plan.count);
        }
    }
    let drain = tokio::time::sleep_until(start + plan.duration + settings.request_timeout);
    tokio::pin!(drain);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { break },
            _ = &mut drain => {
                let left = tasks.len() as u64;
                tasks.abort_all();
                tally.lock().expect("tally lock").abandoned += left;
                break;
            }
        }
    }
    direct_tasks.abort_all();
    while direct_tasks.join_next().await.is_some() {}
    let mut tally = tally.lock().expect("tally lock");
    std::mem::take(&mut *tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_bounded_in_count_and_time() {
        let plan = Plan::new(10.0, Duration::from_secs(3));
        assert_eq!(plan.count, 30);
        // The last call is due before the duration ends.
        assert!(plan.scheduled_at(plan.count - 1) < plan.duration);
        // However late the clock reads, no more than `count` are due.
        assert_eq!(plan.due(Duration::from_secs(3600)), 30);
        assert_eq!(plan.due(Duration::ZERO), 1);
        assert_eq!(plan.due(Duration::from_millis(999)), 10);
        // A rate below one call per run still sends one.
        assert_eq!(Plan::new(0.01, Duration::from_secs(3)).count, 1);
    }

    #[test]
    fn an_injected_clock_walks_the_schedule_evenly() {
        let plan = Plan::new(4.0, Duration::from_secs(2));
        let mut sent = 0;
        let mut per_tick = Vec::new();
        for tick in 0..20 {
            let now = Duration::from_millis(tick * 125);
            let due = plan.due(now);
            per_tick.push(due - sent);
            sent = due;
        }
        assert_eq!(sent, 8);
        assert_eq!(per_tick.iter().sum::<u64>(), 8);
        assert!(per_tick.iter().all(|&n| n <= 1), "{per_tick:?}");
    }

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
