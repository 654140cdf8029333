//! Steps 7 and 8: the catalog facts on-call engineers rely on. The runbook is present
//! and answers where it is reachable from here; the manifest names an owner, and the
//! platform's on-call lookup (optional) includes the server.

use super::config::Config;
use super::{Check, Step};
use crate::model::Server;
use std::time::Duration;

/// Step 7.
pub async fn runbook_step(server: &Server) -> Step {
    let present = Check::pass(
        "present",
        format!("on_call_runbook: {}", server.on_call_runbook),
    );
    Step::from_checks(7, vec![present, runbook(&server.on_call_runbook).await])
}

/// Step 8.
pub async fn owner_step(server: &Server, config: &Config) -> Step {
    Step::from_checks(
        8,
        owner(&server.owner, server.id(), config.on_call.as_deref()).await,
    )
}

/// How a runbook URL's answer reads.
pub fn runbook_answer(status: u16) -> Check {
    match status {
        200..=399 => Check::pass("reachable", format!("answers {status}")),
        401 | 403 => Check::pass("reachable", format!("answers {status} (behind sign-in)")),
        _ => Check::fail("reachable", format!("runbook URL answered {status}")),
    }
}

/// GETs the runbook (5 s, up to 5 redirects). Unreachable from here is no failure:
/// the issue asks for an answer "where the URL is reachable".
pub async fn runbook(url: &str) -> Check {
    super::client::tls_provider();
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => return Check::skip("reachable", format!("no HTTP client: {e}")),
    };
    match client.get(url).send().await {
        Ok(response) => runbook_answer(response.status().as_u16()),
        Err(e) if e.is_redirect() => {
            Check::fail("reachable", format!("runbook URL redirects too often: {e}"))
        }
        Err(e) => Check::pass(
            "reachable",
            format!("present; not reachable from here ({})", root_cause(&e)),
        ),
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The on-call lookup's argv with `{owner}` and `{server_id}` filled in.
pub fn on_call_argv(template: &[String], owner: &str, server_id: &str) -> Vec<String> {
    template
        .iter()
        .map(|a| {
            a.replace("{owner}", owner)
                .replace("{server_id}", server_id)
        })
        .collect()
}

/// Step 8's checks.
pub async fn owner(owner: &str, server_id: &str, command: Option<&[String]>) -> Vec<Check> {
    let mut checks = vec![Check::pass("owner", format!("owner named: {owner}"))];
    match command {
        None => checks.push(Check::skip(
            "rotation",
            "rotation not checked (no on_call.command in preflight.yaml)",
        )),
        Some(template) => {
            let argv = on_call_argv(template, owner, server_id);
            checks.push(
                match super::identity::run(&argv, Duration::from_secs(30)).await {
                    Ok(_) => Check::pass("rotation", format!("{} confirms the rotation", argv[0])),
                    Err(reason) => Check::fail("rotation", reason),
                },
            );
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Status;

    #[test]
    fn runbook_answers_are_read_as_the_issue_asks() {
        assert_eq!(runbook_answer(200).status, Status::Pass);
        assert_eq!(runbook_answer(302).status, Status::Pass);
        assert_eq!(runbook_answer(401).detail, "answers 401 (behind sign-in)");
        let gone = runbook_answer(404);
        assert_eq!(gone.status, Status::Fail);
        assert_eq!(gone.detail, "runbook URL answered 404");
        assert_eq!(runbook_answer(503).status, Status::Fail);
    }

    #[test]
    fn the_on_call_command_gets_owner_and_server() {
        let argv = on_call_argv(
            &[
                "oncall-check".into(),
                "{owner}".into(),
                "--svc={server_id}".into(),
            ],
            "team@x",
            "drift-py",
        );
        assert_eq!(argv, ["oncall-check", "team@x", "--svc=drift-py"]);
    }
}
