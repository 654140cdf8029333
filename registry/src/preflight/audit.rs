//! Step 4: the audit record of one test call, found in the gateway's audit sink by the
//! ids the client chose (the JSON-RPC id and the trace id: the gateway's own
//! `request_id` is never returned to the client), with the expected fields.

use super::config::{AuditSink, AuditSource};
use super::run::{no_token_step, Ctx};
use super::{Check, Step};
use serde_json::{json, Value};
use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

/// Every key of an audit record (README, "Audit record").
pub const KEYS: [&str; 23] = [
    "timestamp",
    "agent_id",
    "user_id",
    "server_id",
    "server_version",
    "http_method",
    "method",
    "tool_name",
    "prompt_name",
    "resource_uri",
    "input_hash",
    "output_status",
    "latency_ms",
    "session_id",
    "trace_id",
    "request_id",
    "protocol_version",
    "jsonrpc_id",
    "http_status",
    "decision",
    "error_code",
    "hidden_entries",
    "schema_violation",
];

/// What the record of the test call must say.
#[derive(Debug, Clone)]
pub struct Expected {
    pub jsonrpc_id: String,
    pub trace_id: String,
    pub server_id: String,
    /// The releases that may serve the call with their track: the stable version,
    /// and with `gateway.canary` the canary's too (the route picks one by weight, and
    /// the record names the one that served).
    pub server_versions: Vec<(String, &'static str)>,
    pub tool: String,
    /// `None` when the token's agent is not known here.
    pub agent: Option<String>,
    pub input_hash: String,
    pub protocol_version: String,
}

/// Step 4.
pub async fn step(ctx: &Ctx<'_>) -> Step {
    let Some(call) = ctx.preflight_call() else {
        return Step::skipped(
            4,
            "no gateway.preflight_call in the manifest: nothing to call",
        );
    };
    let Some(token) = ctx.token.as_ref() else {
        return no_token_step(ctx, 4);
    };
    let (version, session) = match ctx.open_for_call(&token.value).await {
        Ok(opened) => opened,
        Err(reason) => return Step::from_checks(4, vec![Check::fail("call", reason)]),
    };
    let id = format!("preflight-{}", uuid::Uuid::new_v4());
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let (params, mut headers) = ctx.call_request(call, &version);
    headers.push(("traceparent".into(), format!("00-{trace}-{span}-01")));
    let from = ctx.config.audit.as_ref().map(mark).unwrap_or(0);
    let answer = ctx
        .client
        .call(
            &session,
            "tools/call",
            params,
            json!(id),
            Some(&token.value),
            &headers,
        )
        .await;
    ctx.client.close(session, Some(&token.value)).await;
    let mut checks = vec![match &answer {
        Err(e) => Check::fail("call", e.to_string()),
        Ok(a) if a.status != 200 || a.result().is_none() => {
            Check::fail("call", format!("{} got {}", call.tool, a.summary()))
        }
        Ok(a) if a.result().and_then(|r| r.get("isError")) == Some(&json!(true)) => Check::fail(
            "call",
            format!("{} answered a result with isError: true", call.tool),
        ),
        Ok(_) => Check::pass("call", format!("{} answered (jsonrpc id {id})", call.tool)),
    }];
    let Some(sink) = &ctx.config.audit else {
        checks.push(Check::skip(
            "record",
            "no audit sink in preflight.yaml (audit.file or audit.command)",
        ));
        return Step::from_checks(4, checks);
    };
    let raw = serde_json::value::to_raw_value(&call.arguments).expect("a map serialises");
    let expected = Expected {
        jsonrpc_id: id.clone(),
        trace_id: trace.clone(),
        server_id: ctx.server.id().to_owned(),
        server_versions: versions(ctx.server),
        tool: call.tool.clone(),
        agent: token.agent.clone(),
        input_hash: mcp_filter_core::input_hash::input_hash(&raw).unwrap_or_default(),
        protocol_version: version,
    };
    let mut data = json!(null);
    checks.push(match wait_for(sink, from, &id, &trace).await {
        Err(reason) => Check::fail("record", reason),
        Ok(record) => {
            let problems = problems(&record, &expected);
            data = json!({"record": record});
            if problems.is_empty() {
                Check::pass(
                    "record",
                    format!(
                        "found in {} by jsonrpc_id and trace_id, every field as expected{}",
                        describe(sink),
                        served_by(&record, &expected)
                    ),
                )
            } else {
                Check::fail(
                    "record",
                    format!("audit record found but {}", problems.join("; ")),
                )
            }
        }
    });
    Step::from_checks(4, checks).with_data(data)
}

/// The record of the call among JSON lines (other lines ignored).
pub fn find(lines: &str, jsonrpc_id: &str, trace_id: &str) -> Option<Value> {
    lines
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .find(|r| {
            r.get("jsonrpc_id").and_then(Value::as_str) == Some(jsonrpc_id)
                && r.get("trace_id").and_then(Value::as_str) == Some(trace_id)
        })
}

/// Every field of `record` that is not as expected.
pub fn problems(record: &Value, expected: &Expected) -> Vec<String> {
    let mut found = Vec::new();
    let missing: Vec<&str> = KEYS
        .iter()
        .copied()
        .filter(|k| record.get(k).is_none())
        .collect();
    if !missing.is_empty() {
        found.push(format!("keys missing: {}", missing.join(", ")));
    }
    let mut want = |key: &str, value: Value| {
        let got = record.get(key).cloned().unwrap_or(Value::Null);
        if got != value {
            found.push(format!("{key} is {got} (expected {value})"));
        }
    };
    want("server_id", Value::from(expected.server_id.as_str()));
    want("method", Value::from("tools/call"));
    want("tool_name", Value::from(expected.tool.as_str()));
    if let Some(agent) = &expected.agent {
        want("agent_id", Value::from(agent.as_str()));
    }
    want("input_hash", Value::from(expected.input_hash.as_str()));
    want("decision", Value::from("allowed"));
    want("http_status", Value::from(200));
    want("output_status", Value::from("success"));
    want(
        "protocol_version",
        Value::from(expected.protocol_version.as_str()),
    );
    want("schema_violation", Value::Null);
    let version = record.get("server_version").and_then(Value::as_str);
    if !expected
        .server_versions
        .iter()
        .any(|(v, _)| Some(v.as_str()) == version)
    {
        let named: Vec<String> = expected
            .server_versions
            .iter()
            .map(|(v, track)| format!("{v:?} ({track})"))
            .collect();
        found.push(format!(
            "server_version is {} (expected {})",
            record.get("server_version").unwrap_or(&Value::Null),
            named.join(" or ")
        ));
    }
    if !record.get("latency_ms").is_some_and(Value::is_number) {
        found.push(format!(
            "latency_ms is {} (expected a number)",
            record.get("latency_ms").unwrap_or(&Value::Null)
        ));
    }
    found
}

/// The releases that may serve a call: stable, then the canary if there is one.
pub fn versions(server: &crate::model::Server) -> Vec<(String, &'static str)> {
    let mut versions = vec![(server.version.clone(), "stable")];
    if let Some(canary) = &server.canary {
        versions.push((canary.version.clone(), "canary"));
    }
    versions
}

/// `; served by 1.4.0 (canary)` when a canary is registered (else nothing: one
/// release serves everything).
pub fn served_by(record: &Value, expected: &Expected) -> String {
    if expected.server_versions.len() < 2 {
        return String::new();
    }
    let version = record.get("server_version").and_then(Value::as_str);
    expected
        .server_versions
        .iter()
        .find(|(v, _)| Some(v.as_str()) == version)
        .map(|(v, track)| format!("; served by {v} ({track})"))
        .unwrap_or_default()
}

/// Where the sink stood before the call (a file's size), so only new lines are read.
pub fn mark(sink: &AuditSink) -> u64 {
    match &sink.source {
        AuditSource::File(path) => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        AuditSource::Command(_) => 0,
    }
}

/// Reads the sink until the record appears or `sink.wait` passes.
pub async fn wait_for(sink: &AuditSink, from: u64, id: &str, trace: &str) -> Result<Value, String> {
    let start = Instant::now();
    loop {
        let text = match &sink.source {
            AuditSource::File(path) => read_from(path, from)?,
            AuditSource::Command(argv) => {
                super::identity::run(argv, Duration::from_secs(30)).await?
            }
        };
        if let Some(record) = find(&text, id, trace) {
            return Ok(record);
        }
        if start.elapsed() >= sink.wait {
            return Err(format!(
                "no audit record with jsonrpc_id {id:?} and trace_id {trace} within {}s in {}",
                sink.wait.as_secs_f64(),
                describe(sink)
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn describe(sink: &AuditSink) -> String {
    match &sink.source {
        AuditSource::File(path) => path.display().to_string(),
        AuditSource::Command(argv) => format!("the output of {}", argv[0]),
    }
}

fn read_from(path: &std::path::Path, from: u64) -> Result<String, String> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // A rotated (shorter) file is read from its start.
    let from = if len < from { 0 } else { from };
    file.seek(SeekFrom::Start(from))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expected() -> Expected {
        Expected {
            jsonrpc_id: "preflight-1".into(),
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            server_id: "drift-py".into(),
            server_versions: vec![("1.0.0".into(), "stable")],
            tool: "lookup".into(),
            agent: Some("preflight-schema".into()),
            input_hash: "sha256:ab".into(),
            protocol_version: "2026-07-28".into(),
        }
    }

    fn record() -> Value {
        let mut r: serde_json::Map<String, Value> =
            KEYS.iter().map(|k| (k.to_string(), Value::Null)).collect();
        for (k, v) in [
            ("jsonrpc_id", json!("preflight-1")),
            ("trace_id", json!("0af7651916cd43dd8448eb211c80319c")),
            ("server_id", json!("drift-py")),
            ("server_version", json!("1.0.0")),
            ("method", json!("tools/call")),
            ("tool_name", json!("lookup")),
            ("agent_id", json!("preflight-schema")),
            ("input_hash", json!("sha256:ab")),
            ("decision", json!("allowed")),
            ("http_status", json!(200)),
            ("output_status", json!("success")),
            ("protocol_version", json!("2026-07-28")),
            ("latency_ms", json!(3.2)),
        ] {
            r.insert(k.into(), v);
        }
        Value::Object(r)
    }

    #[test]
    fn the_record_is_matched_by_both_ids() {
        let mut other = record();
        other["trace_id"] = json!("ffff");
        let lines = format!("not json\n{other}\n{}\n", record());
        let found = find(&lines, "preflight-1", "0af7651916cd43dd8448eb211c80319c").unwrap();
        assert_eq!(found, record());
        assert!(find(&lines, "preflight-2", "0af7651916cd43dd8448eb211c80319c").is_none());
    }

    #[test]
    fn a_complete_record_has_no_problem() {
        assert_eq!(problems(&record(), &expected()), Vec::<String>::new());
    }

    #[test]
    fn each_wrong_or_missing_field_is_named() {
        let mut r = record();
        r.as_object_mut().unwrap().remove("hidden_entries");
        r["input_hash"] = json!("sha256:cd");
        r["agent_id"] = json!("someone-else");
        r["output_status"] = json!("error");
        r["latency_ms"] = Value::Null;
        assert_eq!(
            problems(&r, &expected()),
            [
                "keys missing: hidden_entries",
                "agent_id is \"someone-else\" (expected \"preflight-schema\")",
                "input_hash is \"sha256:cd\" (expected \"sha256:ab\")",
                "output_status is \"error\" (expected \"success\")",
                "latency_ms is null (expected a number)",
            ]
        );
    }

    #[test]
    fn with_a_canary_either_release_may_serve_and_the_one_that_did_is_named() {
        // Failed on the old code: a call the canary served was "server_version is
        // \"1.1.0\" (expected \"1.0.0\")".
        let mut canary = expected();
        canary.server_versions.push(("1.1.0".into(), "canary"));
        let mut served = record();
        served["server_version"] = json!("1.1.0");
        assert_eq!(problems(&served, &canary), Vec::<String>::new());
        assert_eq!(served_by(&served, &canary), "; served by 1.1.0 (canary)");
        assert_eq!(served_by(&record(), &canary), "; served by 1.0.0 (stable)");
        // Without a canary nothing is added, and a third version is still wrong.
        assert_eq!(served_by(&record(), &expected()), "");
        served["server_version"] = json!("0.9.0");
        assert_eq!(
            problems(&served, &canary),
            ["server_version is \"0.9.0\" (expected \"1.0.0\" (stable) or \"1.1.0\" (canary))"]
        );
        assert_eq!(
            problems(&served, &expected()),
            ["server_version is \"0.9.0\" (expected \"1.0.0\" (stable))"]
        );
    }
}
