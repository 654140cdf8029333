//! Step 6: an open-loop load test at a multiple of the expected call volume. Calls are
//! sent on a fixed schedule whatever the answers do, latency is measured from each
//! call's *scheduled* time (so a slow gateway cannot hide queueing: coordinated
//! omission), and the run is bounded in count (rate x duration, never more) and time
//! (duration plus one request timeout, then in-flight calls are abandoned and counted).
//! What is counted and how the gateway's added latency is taken: tally.rs.

use super::client::{Client, Session};
use super::config::{LoadSettings, Role};
use super::limits;
use super::run::Ctx;
use super::tally::Tally;
use super::{Check, Step};
use crate::model::Credential;
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
    let Some((rate, capped)) =
        load_rate(ctx.options.load_rate, expected, ctx.options.load_multiplier)
    else {
        return Step::skipped(
            6,
            "the manifest declares no gateway.expected_calls (or give --load-rate)",
        );
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
    let (version, session) = match ctx.open_for_call(&token.value).await {
        Ok(opened) => opened,
        Err(reason) => return Step::from_checks(6, vec![Check::fail("connect", reason)]),
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
        let cap = if capped {
            format!(
                " (capped at {MAX_RATE} calls/s: {}x would be {:.2})",
                ctx.options.load_multiplier,
                expected * ctx.options.load_multiplier
            )
        } else {
            String::new()
        };
        checks.push(Check::pass(
            "volume",
            format!(
                "{:.2} calls/s = {}x the expected {:.3} calls/s{cap}",
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

/// The most calls per second preflight sends, however the rate is derived (the bound
/// `--load-rate` has): a manifest's `expected_calls` is team-owned, and a large one
/// times the multiplier must not turn preflight into a flood.
pub const MAX_RATE: f64 = 10_000.0;

/// The load's rate: `--load-rate`, else expected x multiplier capped at [`MAX_RATE`]
/// (`true`: it was capped). `None`: nothing to derive it from.
pub fn load_rate(
    given: Option<f64>,
    expected: Option<f64>,
    multiplier: f64,
) -> Option<(f64, bool)> {
    let rate = given.or_else(|| expected.map(|e| e * multiplier))?;
    Some(if rate > MAX_RATE {
        (MAX_RATE, true)
    } else {
        (rate, false)
    })
}

/// What the send loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send call `n` now (it is due, maybe overdue: an open loop catches up).
    Send(u64),
    /// Sleep until this offset from the start.
    Wait(Duration),
    /// The schedule is done, or the duration is over: `unsent` calls were still due.
    Stop { unsent: u64 },
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

    /// The send loop's decision for call `n` at `elapsed`, from the clock alone (so
    /// a test can inject one that falls behind): never more than `count` calls, and
    /// none at or after `duration`, however far behind the generator is.
    pub fn next(&self, n: u64, elapsed: Duration) -> Next {
        if n >= self.count {
            return Next::Stop { unsent: 0 };
        }
        if elapsed >= self.duration {
            return Next::Stop {
                unsent: self.count - n,
            };
        }
        let at = self.scheduled_at(n);
        if elapsed < at {
            Next::Wait(at)
        } else {
            Next::Send(n)
        }
    }

    /// How many calls are due by `elapsed` (never more than `count`).
    pub fn due(&self, elapsed: Duration) -> u64 {
        let due = (elapsed.as_secs_f64() * self.rate).floor() as u64 + 1;
        due.min(self.count)
    }
}

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
    let mut next = 0;
    loop {
        let n = match plan.next(next, start.elapsed()) {
            Next::Send(n) => n,
            Next::Wait(at) => {
                tokio::time::sleep_until(start + at).await;
                continue;
            }
            Next::Stop { unsent } => {
                tally.lock().expect("tally lock").late += unsent;
                break;
            }
        };
        next = n + 1;
        let due = start + plan.scheduled_at(n);
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

    /// Walks the plan as the send loop does, with a clock that advances `cost` per
    /// send (a generator that cannot keep up) and jumps to each wait's end: the sends.
    fn walk(plan: &Plan, cost: Duration) -> (Vec<Duration>, u64) {
        let (mut clock, mut n, mut sent) = (Duration::ZERO, 0, Vec::new());
        loop {
            match plan.next(n, clock) {
                Next::Send(k) => {
                    sent.push(clock);
                    n = k + 1;
                    clock += cost;
                }
                Next::Wait(at) => {
                    assert!(at > clock);
                    clock = at;
                }
                Next::Stop { unsent } => return (sent, unsent),
            }
        }
    }

    #[test]
    fn a_generator_that_falls_behind_stops_at_the_duration() {
        // Failed on the old loop: it sent all 100 calls, the last ~2.5 s after start.
        let plan = Plan::new(100.0, Duration::from_secs(1));
        let (sent, unsent) = walk(&plan, Duration::from_millis(25));
        assert_eq!(sent.len(), 40);
        assert_eq!(unsent, 60);
        assert!(sent.iter().all(|at| *at < plan.duration), "{sent:?}");
        // One that keeps up sends every call, each at its time.
        let (sent, unsent) = walk(&plan, Duration::ZERO);
        assert_eq!((sent.len() as u64, unsent), (plan.count, 0));
        assert_eq!(sent[37], plan.scheduled_at(37));
        // Never more than rate x duration, whatever the clock says.
        assert_eq!(
            plan.next(plan.count, Duration::ZERO),
            Next::Stop { unsent: 0 }
        );
        assert_eq!(
            plan.next(3, Duration::from_secs(3600)),
            Next::Stop { unsent: 97 }
        );
    }

    #[test]
    fn a_derived_rate_is_capped_like_load_rate() {
        // Failed on the old code: 2000/s expected x 10 ran at 20000/s.
        assert_eq!(load_rate(None, Some(2000.0), 10.0), Some((10_000.0, true)));
        assert_eq!(load_rate(None, Some(2.0), 10.0), Some((20.0, false)));
        assert_eq!(load_rate(Some(5.0), Some(2000.0), 10.0), Some((5.0, false)));
        assert_eq!(load_rate(None, None, 10.0), None);
        let plan = Plan::new(
            load_rate(None, Some(1e9), 1000.0).unwrap().0,
            Duration::from_secs(3600),
        );
        assert_eq!(plan.count, 36_000_000);
    }

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
}
