//! Step 3: the rate-limit policy is assigned (the rendered limits hold the server, as
//! the manifests render them now) and confirmed (a test agent over its limit gets 429
//! with `Retry-After` and -31020).

use super::config::Role;
use super::run::Ctx;
use super::{Check, Step};
use crate::model::{Rate, RateLimits, Unit};
use serde_json::json;
use serde_json::Value;
use std::path::Path;

/// Step 3.
pub async fn step(ctx: &Ctx<'_>) -> Step {
    let server = ctx.server;
    let limits = &server.rate_limits;
    let static_check = match &ctx.options.rendered {
        Some(dir) => {
            let expected = crate::render::limits::render(ctx.fleet);
            match static_check(dir, server.id(), &expected, !limits.is_empty()) {
                Ok(detail) => Check::pass("rendered", detail),
                Err(reason) => Check::fail("rendered", reason),
            }
        }
        None if limits.is_empty() => Check::fail(
            "rendered",
            format!(
                "the manifest has no gateway.rate_limits, so the rendered limits have no descriptor for server_id {:?}",
                server.id()
            ),
        ),
        None => Check::skip("rendered", "no --rendered directory: the limits the gateway runs on were not read"),
    };
    let live = live(ctx).await;
    Step::from_checks(3, vec![static_check, live])
}

async fn live(ctx: &Ctx<'_>) -> Check {
    let name = "live";
    let Some(call) = ctx.preflight_call() else {
        return Check::skip(name, "no gateway.preflight_call in the manifest");
    };
    let scopes = super::auth::required(ctx.server, "tools/call", Some(&call.tool));
    let token = match super::identity::token(ctx.config, Role::Ratelimit, &scopes).await {
        None => {
            return Check::skip(
                name,
                "no ratelimit identity (preflight.yaml: identities.ratelimit or mint)",
            )
        }
        Some(Err(reason)) => return Check::fail(name, format!("no token: {reason}")),
        Some(Ok(token)) => token,
    };
    let agent = token.agent.clone().unwrap_or_default();
    let Some((rate, source)) = applicable(&ctx.server.rate_limits, &agent, &call.tool) else {
        return Check::fail(
            name,
            format!(
                "no rate limit applies to agent {agent:?} calling {} (gateway.rate_limits)",
                call.tool
            ),
        );
    };
    let calls = match probe_calls(&rate, ctx.config.max_probe_calls) {
        Ok(n) => n,
        Err(reason) => return Check::skip(name, format!("agent {agent:?} ({source}): {reason}")),
    };
    let (version, session) = match ctx.open_for_call(&token.value).await {
        Ok(opened) => opened,
        Err(reason) => return Check::fail(name, reason),
    };
    let (params, headers) = ctx.call_request(call, &version);
    let mut verdict = None;
    for n in 0..calls {
        let id = json!(format!("preflight-ratelimit-{n}"));
        let answer = match ctx
            .client
            .call(
                &session,
                "tools/call",
                params.clone(),
                id,
                Some(&token.value),
                &headers,
            )
            .await
        {
            Ok(a) => a,
            Err(e) => {
                verdict = Some(Check::fail(name, e.to_string()));
                break;
            }
        };
        if answer.status == 429 {
            let window = unit_seconds(rate.unit);
            verdict = Some(match (retry_after(answer.header("retry-after"), window), answer.error_code()) {
                (Err(reason), _) => Check::fail(name, format!("429 after {} calls, but {reason}", n + 1)),
                (Ok(_), code) if code != Some(-31020) => {
                    Check::fail(name, format!("429 after {} calls with JSON-RPC code {code:?}, expected -31020", n + 1))
                }
                (Ok(seconds), _) => Check::pass(
                    name,
                    format!(
                        "agent {agent} over {} ({source}): 429 after {} calls, Retry-After {seconds}, -31020",
                        describe(&rate),
                        n + 1
                    ),
                ),
            });
            break;
        }
        if answer.status != 200 {
            verdict = Some(Check::fail(
                name,
                format!("call {} got {} before any 429", n + 1, answer.summary()),
            ));
            break;
        }
    }
    ctx.client.close(session, Some(&token.value)).await;
    verdict.unwrap_or_else(|| {
        Check::fail(
            name,
            format!(
                "no 429 within {calls} calls of agent {agent} limited to {} ({source})",
                describe(&rate)
            ),
        )
    })
}

/// The limit that counts `agent`'s calls of `tool`, as the rendered descriptors pick
/// it: the tool's own, else the agent's, else the default.
pub fn applicable(limits: &RateLimits, agent: &str, tool: &str) -> Option<(Rate, String)> {
    if let Some(rate) = limits.tools.get(tool) {
        return Some((*rate, format!("gateway.rate_limits.tools.{tool}")));
    }
    if let Some(rate) = limits.agents.get(agent) {
        return Some((*rate, format!("gateway.rate_limits.agents.{agent}")));
    }
    limits
        .default
        .map(|rate| (rate, "gateway.rate_limits.default".to_owned()))
}

pub fn unit_seconds(unit: Unit) -> u64 {
    match unit {
        Unit::Second => 1,
        Unit::Minute => 60,
        Unit::Hour => 3600,
        Unit::Day => 86_400,
    }
}

pub fn describe(rate: &Rate) -> String {
    format!(
        "{}/{}",
        rate.requests_per_unit,
        rate.unit.as_upper().to_ascii_lowercase()
    )
}

/// Calls per second a rate allows.
pub fn per_second(rate: &Rate) -> f64 {
    rate.requests_per_unit as f64 / unit_seconds(rate.unit) as f64
}

/// How many calls the live probe may send to see a 429: windows are fixed calendar
/// windows, so n + 1 calls can straddle two of them; 2n + 1 cannot. `Err`: the limit
/// cannot be reached within `max_calls` calls or two short windows.
pub fn probe_calls(rate: &Rate, max_calls: u32) -> Result<u32, String> {
    let n = rate.requests_per_unit;
    if !matches!(rate.unit, Unit::Second | Unit::Minute) || n.saturating_add(1) > max_calls {
        return Err(format!(
            "the limit {} cannot be exceeded within {max_calls} calls; give the test agent a small \
             limit (gateway.rate_limits.agents.<agent>)",
            describe(rate)
        ));
    }
    Ok(n.saturating_mul(2).saturating_add(1).min(max_calls))
}

/// `Retry-After` as delay-seconds (RFC 9110 section 10.2.3; the gateway sends no
/// HTTP-date), at most the window.
pub fn retry_after(value: Option<&str>, window_seconds: u64) -> Result<u64, String> {
    let Some(value) = value else {
        return Err("no Retry-After header".into());
    };
    let seconds: u64 = value
        .trim()
        .parse()
        .map_err(|_| format!("Retry-After {value:?} is not a number of seconds"))?;
    if seconds > window_seconds {
        return Err(format!(
            "Retry-After {seconds} is longer than the {window_seconds} s window"
        ));
    }
    Ok(seconds)
}

/// The rendered `limits/limits.yaml` holds a descriptor for the server.
pub fn rendered_has_server(text: &str, server_id: &str) -> Result<bool, String> {
    let config: Value = serde_norway::from_str(text)
        .map_err(|e| format!("limits/limits.yaml does not parse: {e}"))?;
    let descriptors = config
        .get("descriptors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(descriptors.iter().any(|d| {
        d.get("key").and_then(Value::as_str) == Some("server_id")
            && d.get("value").and_then(Value::as_str) == Some(server_id)
    }))
}

/// The static half of step 3, against the rendered directory: the server is in the
/// limits, and the file is what the manifests render to now.
pub fn static_check(
    rendered: &Path,
    server_id: &str,
    expected_text: &str,
    manifest_has_limits: bool,
) -> Result<String, String> {
    let file = rendered.join("limits").join("limits.yaml");
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    if !rendered_has_server(&text, server_id)? {
        let why = if manifest_has_limits {
            "render again: `mcp-registry render`"
        } else {
            "the manifest has no gateway.rate_limits"
        };
        return Err(format!(
            "limits/limits.yaml has no descriptor for server_id {server_id:?} ({why})"
        ));
    }
    if text != expected_text {
        return Err(
            "limits/limits.yaml differs from what the manifests render to: run `mcp-registry render`".into(),
        );
    }
    Ok(format!("limits/limits.yaml has server_id {server_id:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rate(unit: Unit, n: u32) -> Rate {
        Rate {
            unit,
            requests_per_unit: n,
        }
    }

    #[test]
    fn the_tool_limit_wins_over_the_agent_which_wins_over_the_default() {
        let mut limits = RateLimits {
            default: Some(rate(Unit::Minute, 600)),
            agents: BTreeMap::from([("rl".to_owned(), rate(Unit::Second, 5))]),
            tools: BTreeMap::new(),
        };
        assert_eq!(
            applicable(&limits, "rl", "lookup"),
            Some((
                rate(Unit::Second, 5),
                "gateway.rate_limits.agents.rl".into()
            ))
        );
        assert_eq!(
            applicable(&limits, "other", "lookup").unwrap().1,
            "gateway.rate_limits.default"
        );
        limits.tools.insert("lookup".into(), rate(Unit::Minute, 10));
        assert_eq!(
            applicable(&limits, "rl", "lookup").unwrap().1,
            "gateway.rate_limits.tools.lookup"
        );
        assert_eq!(applicable(&RateLimits::default(), "rl", "lookup"), None);
    }

    #[test]
    fn the_probe_is_sized_to_cross_a_window_or_refused() {
        assert_eq!(probe_calls(&rate(Unit::Second, 5), 200), Ok(11));
        assert_eq!(probe_calls(&rate(Unit::Minute, 150), 200), Ok(200));
        assert_eq!(
            probe_calls(&rate(Unit::Hour, 5), 200).unwrap_err(),
            "the limit 5/hour cannot be exceeded within 200 calls; give the test agent a small limit \
             (gateway.rate_limits.agents.<agent>)"
        );
        assert!(probe_calls(&rate(Unit::Minute, 200), 200).is_err());
    }

    #[test]
    fn retry_after_is_whole_seconds_within_the_window() {
        assert_eq!(retry_after(Some("1"), 1), Ok(1));
        assert_eq!(retry_after(Some(" 42 "), 60), Ok(42));
        assert_eq!(retry_after(None, 60).unwrap_err(), "no Retry-After header");
        assert_eq!(
            retry_after(Some("Wed, 21 Oct 2026 07:28:00 GMT"), 60).unwrap_err(),
            "Retry-After \"Wed, 21 Oct 2026 07:28:00 GMT\" is not a number of seconds"
        );
        assert_eq!(
            retry_after(Some("61"), 60).unwrap_err(),
            "Retry-After 61 is longer than the 60 s window"
        );
    }

    #[test]
    fn the_rendered_limits_are_searched_for_the_server() {
        let text = "domain: mcp_gateway\ndescriptors:\n  - key: server_id\n    value: \"a\"\n    descriptors: []\n";
        assert_eq!(rendered_has_server(text, "a"), Ok(true));
        assert_eq!(rendered_has_server(text, "b"), Ok(false));
        assert_eq!(
            rendered_has_server("domain: mcp_gateway\ndescriptors: []\n", "a"),
            Ok(false)
        );
    }
}
