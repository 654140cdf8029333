//! What preflight prints and writes: one line per step on stdout, a JSON report (stable
//! keys, `"preflight": 1`) and a Markdown page for a service catalog. No token ever
//! appears in any of them.

use super::{Status, Step};
use serde::Serialize;

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The report format's version.
    pub preflight: u32,
    pub server_id: String,
    pub server_version: Option<String>,
    pub manifest: Option<String>,
    pub gateway: String,
    pub started_at: String,
    pub finished_at: String,
    pub strict: bool,
    /// `pass` or `fail`.
    pub result: &'static str,
    pub steps: Vec<Step>,
}

/// `PASS 1 schema  <reason>`.
pub fn line(step: &Step) -> String {
    format!(
        "{} {} {:<11} {}",
        step.status.word(),
        step.number,
        step.name,
        step.reason
    )
}

pub fn summary(report: &Report) -> String {
    let count = |s: Status| report.steps.iter().filter(|step| step.status == s).count();
    format!(
        "preflight {} {}: {} ({} passed, {} failed, {} skipped{})",
        report.server_id,
        report.server_version.as_deref().unwrap_or("?"),
        report.result,
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Skip),
        strict_note(report)
    )
}

/// With `--strict`, what it failed on: every skipped check by name.
fn strict_note(report: &Report) -> String {
    if !report.strict {
        return String::new();
    }
    match super::skips(&report.steps) {
        skips if skips.is_empty() => "; --strict: skips fail, none skipped".to_owned(),
        skips => format!("; --strict: skips fail: {}", skips.join(", ")),
    }
}

pub fn text(report: &Report) -> String {
    let mut out: String = report.steps.iter().map(|s| line(s) + "\n").collect();
    out.push_str(&summary(report));
    out.push('\n');
    out
}

pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("a report always serialises") + "\n"
}

/// Table cells hold any text: pipes and line breaks would break the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

pub fn markdown(report: &Report) -> String {
    let mut out = format!(
        "# Preflight: {} {}\n\n**Result: {}** (gateway {}, {} to {}{})\n\n",
        report.server_id,
        report.server_version.as_deref().unwrap_or(""),
        report.result.to_uppercase(),
        report.gateway,
        report.started_at,
        report.finished_at,
        if report.strict { ", strict" } else { "" }
    );
    out.push_str("| step | name | status | reason |\n|---|---|---|---|\n");
    for step in &report.steps {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            step.number,
            step.name,
            step.status.word(),
            cell(&step.reason)
        ));
    }
    for step in &report.steps {
        out.push_str(&format!(
            "\n## {} {}: {}\n\n",
            step.number,
            step.name,
            step.status.word()
        ));
        for check in &step.checks {
            out.push_str(&format!(
                "- {} `{}`: {}\n",
                check.status.word(),
                check.name,
                cell(&check.detail)
            ));
        }
        if let Some(load) = step.data.get("load") {
            out.push_str("\n| figure | value |\n|---|---|\n");
            let figures = [
                ("rate (calls/s)", "/rate_per_second"),
                ("duration (s)", "/duration_s"),
                ("scheduled", "/scheduled"),
                ("sent", "/sent"),
                ("errors", "/errors"),
                ("error rate", "/error_rate"),
                ("p50 (ms)", "/latency_ms/p50"),
                ("p90 (ms)", "/latency_ms/p90"),
                ("p99 (ms)", "/latency_ms/p99"),
                ("max (ms)", "/latency_ms/max"),
                ("gateway added p50 (ms)", "/gateway_added_ms/p50"),
                ("gateway added p99 (ms)", "/gateway_added_ms/p99"),
            ];
            for (label, pointer) in figures {
                let value = load
                    .pointer(pointer)
                    .map_or("".to_owned(), |v| v.to_string());
                out.push_str(&format!("| {label} | {value} |\n"));
            }
            if let Some(method) = load
                .pointer("/gateway_added_ms/method")
                .and_then(|m| m.as_str())
            {
                out.push_str(&format!("\nGateway added latency: {method}.\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::{Check, Step};
    use serde_json::json;

    fn report() -> Report {
        let mut schema = Step::from_checks(
            1,
            vec![Check::pass("2026-07-28", "2 tools match their schema_ref")],
        );
        schema.duration_ms = 12;
        let owner = Step::from_checks(8, vec![Check::fail("owner", "owner: missing")]);
        let load = Step::from_checks(
            6,
            vec![Check::pass("error_rate", "0 of 30 calls failed | ok")],
        )
        .with_data(
            json!({"load": {"rate_per_second": 10.0, "sent": 30, "latency_ms": {"p50": 2.5},
                                       "gateway_added_ms": {"method": "upper bound", "p50": 1.0}}}),
        );
        Report {
            preflight: 1,
            server_id: "drift-py".into(),
            server_version: Some("1.0.0".into()),
            manifest: Some("fleet/drift-py.yaml".into()),
            gateway: "http://127.0.0.1:8080".into(),
            started_at: "2026-12-02T10:00:00Z".into(),
            finished_at: "2026-12-02T10:00:05Z".into(),
            strict: false,
            result: "fail",
            steps: vec![schema, load, owner],
        }
    }

    #[test]
    fn text_has_one_line_per_step_and_a_summary() {
        assert_eq!(
            text(&report()),
            "PASS 1 schema      2026-07-28: 2 tools match their schema_ref\n\
             PASS 6 load        error_rate: 0 of 30 calls failed | ok\n\
             FAIL 8 owner       owner: owner: missing\n\
             preflight drift-py 1.0.0: fail (2 passed, 1 failed, 0 skipped)\n"
        );
    }

    #[test]
    fn json_report_golden() {
        let value: serde_json::Value = serde_json::from_str(&json(&report())).unwrap();
        assert_eq!(value["preflight"], 1);
        assert_eq!(value["result"], "fail");
        assert_eq!(
            value["steps"][0],
            json!({"number": 1, "name": "schema", "status": "pass",
                   "reason": "2026-07-28: 2 tools match their schema_ref", "duration_ms": 12,
                   "checks": [{"name": "2026-07-28", "status": "pass", "detail": "2 tools match their schema_ref"}],
                   "data": null})
        );
        assert_eq!(value["steps"][2]["status"], "fail");
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "finished_at",
                "gateway",
                "manifest",
                "preflight",
                "result",
                "server_id",
                "server_version",
                "started_at",
                "steps",
                "strict"
            ]
        );
    }

    #[test]
    fn markdown_report_golden() {
        let md = markdown(&report());
        let expected_head = "# Preflight: drift-py 1.0.0\n\n\
            **Result: FAIL** (gateway http://127.0.0.1:8080, 2026-12-02T10:00:00Z to 2026-12-02T10:00:05Z)\n\n\
            | step | name | status | reason |\n|---|---|---|---|\n\
            | 1 | schema | PASS | 2026-07-28: 2 tools match their schema_ref |\n\
            | 6 | load | PASS | error_rate: 0 of 30 calls failed \\| ok |\n\
            | 8 | owner | FAIL | owner: owner: missing |\n";
        assert!(md.starts_with(expected_head), "{md}");
        assert!(md.contains("| p50 (ms) | 2.5 |\n"), "{md}");
        assert!(
            md.contains("\nGateway added latency: upper bound.\n"),
            "{md}"
        );
        assert!(md.contains("- FAIL `owner`: owner: missing\n"), "{md}");
    }
}
