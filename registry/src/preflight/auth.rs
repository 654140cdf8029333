//! Step 2: auth integration with the gateway (README "Errors a client sees"): no
//! token gets the 401 challenge, an expired token 401 `invalid_token`, a token without
//! the tool's scope the 403 `insufficient_scope` challenge naming every scope the call
//! needs, and a token signed by a rotated key works once the JWKS has it.

use super::client::Answer;
use super::config::{NextToken, Publish, Role};
use super::identity;
use super::run::Ctx;
use super::{Check, Step};
use crate::model::Server;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Step 2.
pub async fn step(ctx: &Ctx<'_>) -> Step {
    let version = ctx.call_version();
    // The preflight call when there is one (its tool's scopes), else tools/list.
    let (method, params, headers, tool) = match ctx.preflight_call() {
        Some(call) => {
            let (params, headers) = ctx.call_request(call, &version);
            ("tools/call", params, headers, Some(call.tool.as_str()))
        }
        None => ("tools/list", json!({}), Vec::new(), None),
    };
    let send = |token: Option<String>, id: &'static str| {
        let (params, headers) = (params.clone(), headers.clone());
        let version = version.clone();
        async move {
            ctx.client
                .request(
                    &version,
                    method,
                    params,
                    json!(id),
                    token.as_deref(),
                    None,
                    &headers,
                )
                .await
        }
    };
    let mut checks = Vec::new();
    checks.push(match send(None, "preflight-auth-none").await {
        Ok(answer) => judge_no_token(&answer),
        Err(e) => Check::fail("no_token", e.to_string()),
    });
    let call_scopes = required(ctx.server, method, tool);
    checks.push(
        match identity::token(ctx.config, Role::Expired, &call_scopes).await {
            None => Check::skip(
                "expired",
                "no expired identity (preflight.yaml: identities.expired or mint)",
            ),
            Some(Err(reason)) => Check::fail("expired", format!("no token: {reason}")),
            Some(Ok(token)) => match send(Some(token.value), "preflight-auth-expired").await {
                Ok(answer) => judge_expired(&answer),
                Err(e) => Check::fail("expired", e.to_string()),
            },
        },
    );
    checks.push(match tool {
        None => Check::skip("missing_scope", "no gateway.preflight_call in the manifest"),
        Some(tool) => {
            // Minted: tools.read alone when the tool needs more, else no scope at all,
            // so the token lacks a scope the call needs either way.
            let read = required(ctx.server, "tools/list", None);
            let lesser = if call_scopes.len() > read.len() {
                read
            } else {
                Vec::new()
            };
            match identity::token(ctx.config, Role::NoScope, &lesser).await {
                None => Check::skip(
                    "missing_scope",
                    "no no_scope identity (preflight.yaml: identities.no_scope or mint)",
                ),
                Some(Err(reason)) => Check::fail("missing_scope", format!("no token: {reason}")),
                Some(Ok(token)) => match send(Some(token.value), "preflight-auth-scope").await {
                    Ok(answer) => {
                        judge_no_scope(&answer, &required(ctx.server, "tools/call", Some(tool)))
                    }
                    Err(e) => Check::fail("missing_scope", e.to_string()),
                },
            }
        }
    });
    checks.push(rotation(ctx).await);
    Step::from_checks(2, checks)
}

/// A token from the next key: refused before the JWKS has it, accepted once it has
/// (the authz-service refreshes an unknown kid at most every 5 s); the JWKS is
/// restored afterwards.
async fn rotation(ctx: &Ctx<'_>) -> Check {
    let name = "rotation";
    let Some(rotation) = &ctx.config.rotation else {
        return Check::skip(
            name,
            "rotation not configured: preflight needs a token from the next key and a way to publish it (preflight.yaml rotation)",
        );
    };
    let scopes = required(ctx.server, "tools/list", None);
    let token = match identity::next_token(ctx.config, &rotation.next, &scopes).await {
        Ok(token) => token,
        Err(reason) => return Check::fail(name, format!("no token from the next key: {reason}")),
    };
    let version = ctx.call_version();
    let list = |id: &'static str| {
        let version = version.clone();
        let token = token.value.clone();
        async move {
            let session = ctx.open(&version, Some(&token)).await?;
            let answer = ctx
                .client
                .call(
                    &session,
                    "tools/list",
                    json!({}),
                    json!(id),
                    Some(&token),
                    &[],
                )
                .await
                .map_err(|e| e.to_string());
            ctx.client.close(session, Some(&token)).await;
            answer.map(|a| a.status)
        }
    };
    let before = ctx
        .client
        .request(
            &version,
            "tools/list",
            json!({}),
            json!("preflight-rotation-before"),
            Some(&token.value),
            None,
            &[],
        )
        .await;
    match before {
        Ok(answer) if answer.status == 401 => {}
        // The gateway trusts the next key already (published earlier, or cached from a
        // previous run): the change cannot be observed, which is not a pass.
        Ok(answer) if answer.status == 200 => return Check::skip(
            name,
            "the gateway already accepts the next key's token, so its rotation cannot be observed \
                 (use a next key the JWKS does not have yet)",
        ),
        Ok(answer) => {
            return Check::fail(
                name,
                format!(
                    "the next key's token got {} before the JWKS changed (expected 401)",
                    answer.summary()
                ),
            )
        }
        Err(e) => return Check::fail(name, e.to_string()),
    }
    let jwk = match (&rotation.next, &rotation.publish) {
        (NextToken::Mint { key, kid }, _) => match key.public_jwk(kid) {
            Ok(jwk) => jwk,
            Err(reason) => return Check::fail(name, reason),
        },
        (NextToken::Command(_), Publish::Commands { .. }) => Value::Null,
        (NextToken::Command(_), Publish::JwksFile(_)) => {
            return Check::skip(
                name,
                "rotation.publish.jwks_file needs rotation.next_key_file (preflight adds its public key)",
            )
        }
    };
    // Armed before the file or the IdP changes: every way out of this check (a
    // return, a dropped future on SIGINT/SIGTERM, a panic) removes the key again.
    let guard = match identity::publish(&rotation.publish, &jwk).await {
        Ok(guard) => guard,
        Err(identity::NotPublished { reason, guard }) => {
            let undone = match guard {
                Some(guard) => match guard.restore().await {
                    Ok(()) => " (what it changed was undone)".to_owned(),
                    Err(why) => format!("; and it was not undone: {why}"),
                },
                None => String::new(),
            };
            return Check::fail(
                name,
                format!("cannot publish the next key: {reason}{undone}"),
            );
        }
    };
    let start = Instant::now();
    let mut last = String::from("no answer");
    let accepted = loop {
        match list("preflight-rotation-after").await {
            Ok(200) => break true,
            Ok(status) => last = format!("HTTP {status}"),
            Err(reason) => last = reason,
        }
        if start.elapsed() >= rotation.timeout {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let waited = start.elapsed().as_secs_f64();
    let restored = guard.restore().await;
    let mut check = if accepted {
        Check::pass(
            name,
            format!("the next key's token: 401 before the JWKS changed, 200 {waited:.1} s after"),
        )
    } else {
        Check::fail(
            name,
            format!(
                "the next key's token was still refused {}s after the JWKS changed (last: {last})",
                rotation.timeout.as_secs()
            ),
        )
    };
    if let Err(reason) = restored {
        check = Check::fail(
            name,
            format!("{}; and the JWKS was not restored: {reason}", check.detail),
        );
    }
    check
}

/// The scopes a call of `method` (and `tool`) on `server` needs, as the rendered
/// policy and the authz-service read them: the method's built-in scope (or the
/// manifest's `scopes.methods` entry), plus the tool's extra scopes.
pub fn required(server: &Server, method: &str, tool: Option<&str>) -> Vec<String> {
    let mut scopes = match server.scopes.methods.get(method) {
        Some(scopes) => scopes.clone(),
        None => vec![format!("mcp.server.{}:tools.read", server.id())],
    };
    if let Some(extra) = tool.and_then(|t| server.scopes.tools.get(t)) {
        scopes.extend(extra.iter().cloned());
    }
    scopes.sort();
    scopes.dedup();
    scopes
}

/// Everything the schema identity needs to see every registered tool (per-caller
/// lists hide a tool whose scopes the caller lacks) and call any of them.
pub fn all(server: &Server) -> Vec<String> {
    let mut scopes: Vec<String> = required(server, "tools/list", None);
    for tool in &server.tools {
        scopes.extend(required(server, "tools/call", Some(&tool.name)));
    }
    scopes.sort();
    scopes.dedup();
    scopes
}

/// The parameters of a `WWW-Authenticate: Bearer k="v", ...` challenge.
pub fn challenge(header: &str) -> Option<BTreeMap<String, String>> {
    let rest = header.trim().strip_prefix("Bearer")?;
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',' && !c.is_whitespace()))
                .collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            return None;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value =
                std::iter::from_fn(|| chars.next_if(|c| *c != ',' && !c.is_whitespace())).collect();
        }
        params.insert(key.to_ascii_lowercase(), value);
    }
    Some(params)
}

fn gateway_code(answer: &Answer, code: i64) -> Result<(), String> {
    match answer.error_code() {
        Some(c) if c == code => Ok(()),
        other => Err(format!("JSON-RPC code {other:?}, expected {code}")),
    }
}

/// The call without a token.
pub fn judge_no_token(answer: &Answer) -> Check {
    let name = "no_token";
    if answer.status != 401 {
        return Check::fail(name, format!("expected 401, got {}", answer.summary()));
    }
    let Some(params) = answer.header("www-authenticate").and_then(challenge) else {
        return Check::fail(name, "401 without a Bearer WWW-Authenticate challenge");
    };
    if !params.contains_key("resource_metadata") {
        return Check::fail(name, "401 challenge without resource_metadata (RFC 9728)");
    }
    match gateway_code(answer, -31010) {
        Ok(()) => Check::pass(
            name,
            "401 with the Bearer resource_metadata challenge, -31010",
        ),
        Err(e) => Check::fail(name, e),
    }
}

/// The call with an expired token.
pub fn judge_expired(answer: &Answer) -> Check {
    let name = "expired";
    if answer.status != 401 {
        return Check::fail(
            name,
            format!("an expired token got {}, not 401", answer.summary()),
        );
    }
    let params = answer
        .header("www-authenticate")
        .and_then(challenge)
        .unwrap_or_default();
    if params.get("error").map(String::as_str) != Some("invalid_token") {
        return Check::fail(name, "401 without error=\"invalid_token\" in the challenge");
    }
    match gateway_code(answer, -31010) {
        Ok(()) => Check::pass(name, "401 invalid_token, -31010"),
        Err(e) => Check::fail(name, e),
    }
}

/// The call with a token that lacks a scope the call needs.
pub fn judge_no_scope(answer: &Answer, required: &[String]) -> Check {
    let name = "missing_scope";
    if answer.status != 403 {
        return Check::fail(
            name,
            format!(
                "a token without the tool's scope got {}, not 403",
                answer.summary()
            ),
        );
    }
    let params = answer
        .header("www-authenticate")
        .and_then(challenge)
        .unwrap_or_default();
    if params.get("error").map(String::as_str) != Some("insufficient_scope") {
        return Check::fail(
            name,
            "403 without error=\"insufficient_scope\" in the challenge",
        );
    }
    let named: BTreeSet<&str> = params
        .get("scope")
        .map(|s| s.split_whitespace().collect())
        .unwrap_or_default();
    let wanted: BTreeSet<&str> = required.iter().map(String::as_str).collect();
    if named != wanted {
        return Check::fail(
            name,
            format!(
                "the challenge names scope=\"{}\", the manifest requires \"{}\"",
                named.into_iter().collect::<Vec<_>>().join(" "),
                required.join(" ")
            ),
        );
    }
    match gateway_code(answer, -31011) {
        Ok(()) => Check::pass(
            name,
            format!(
                "403 insufficient_scope naming {}, -31011",
                required.join(" ")
            ),
        ),
        Err(e) => Check::fail(name, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use serde_json::json;

    fn answer(status: u16, challenge: &str, code: i64) -> Answer {
        let mut headers = HeaderMap::new();
        headers.insert(
            "www-authenticate",
            HeaderValue::from_str(challenge).unwrap(),
        );
        Answer {
            status,
            headers,
            body: String::new(),
            message: Some(json!({"id": "x", "error": {"code": code, "message": "m"}})),
        }
    }

    #[test]
    fn challenges_are_parsed_with_quoted_values() {
        let params = challenge(
            r#"Bearer error="insufficient_scope", scope="a:b c.d", resource_metadata="https://g/x""#,
        )
        .unwrap();
        assert_eq!(params["error"], "insufficient_scope");
        assert_eq!(params["scope"], "a:b c.d");
        assert_eq!(params["resource_metadata"], "https://g/x");
        assert_eq!(challenge("Basic realm=x"), None);
    }

    #[test]
    fn each_refusal_is_judged_by_status_challenge_and_code() {
        let meta =
            r#"Bearer resource_metadata="https://g/.well-known/oauth-protected-resource/mcp""#;
        assert_eq!(
            judge_no_token(&answer(401, meta, -31010)).status,
            crate::preflight::Status::Pass
        );
        assert_eq!(
            judge_no_token(&answer(200, meta, -31010)).detail,
            "expected 401, got HTTP 200, JSON-RPC error -31010 m"
        );
        let expired = r#"Bearer error="invalid_token", error_description="token has expired", resource_metadata="x""#;
        assert_eq!(
            judge_expired(&answer(401, expired, -31010)).status,
            crate::preflight::Status::Pass
        );
        assert_eq!(
            judge_expired(&answer(401, meta, -31010)).detail,
            "401 without error=\"invalid_token\" in the challenge"
        );
        let scope = r#"Bearer error="insufficient_scope", scope="s:tools.read s:tools.write", resource_metadata="x""#;
        let required = ["s:tools.write".to_owned(), "s:tools.read".to_owned()];
        assert_eq!(
            judge_no_scope(&answer(403, scope, -31011), &required).status,
            crate::preflight::Status::Pass
        );
        assert_eq!(
            judge_no_scope(&answer(403, scope, -31011), &required[..1]).detail,
            "the challenge names scope=\"s:tools.read s:tools.write\", the manifest requires \"s:tools.write\""
        );
        assert_eq!(
            judge_no_scope(&answer(403, scope, -31000), &required).detail,
            "JSON-RPC code Some(-31000), expected -31011"
        );
    }
}
