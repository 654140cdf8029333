//! Step 0: the fleet directory validates and registers the server. Problems in the
//! catalog fields alone (`owner`, `on_call_runbook`) belong to steps 8 and 7: the
//! live steps still run, on a private copy of the fleet with placeholders in those
//! fields (nothing in the fleet directory changes).

use super::{Check, Step};
use crate::problems::Problem;
use crate::{Fleet, Rules};
use std::path::{Path, PathBuf};

/// Fields whose problems another step reports.
pub const CATALOG_FIELDS: [&str; 2] = ["owner", "on_call_runbook"];

/// Which step a manifest problem belongs to.
pub fn step_of(problem: &Problem) -> u8 {
    match problem.field.as_str() {
        "owner" => 8,
        "on_call_runbook" => 7,
        f if f.starts_with("tools[") && f.ends_with("schema_ref") => 1,
        _ => 0,
    }
}

/// The fleet as preflight runs on it, and the problems of the steps.
pub struct Loaded {
    pub step: Step,
    /// `None`: the fleet does not validate, so the gateway would not route the server.
    pub fleet: Option<Fleet>,
    /// Every problem, for the step it belongs to.
    pub problems: Vec<Problem>,
}

impl Loaded {
    pub fn problems_of(&self, step: u8) -> Vec<&Problem> {
        self.problems
            .iter()
            .filter(|p| step_of(p) == step)
            .collect()
    }
}

pub fn load(dir: &Path, server_id: &str, rules: &Rules) -> Loaded {
    let problems = match Fleet::load_with(dir, rules) {
        Ok(fleet) => return registered(fleet, server_id, Vec::new(), ""),
        Err(problems) => problems.0,
    };
    let only_catalog = problems
        .iter()
        .all(|p| CATALOG_FIELDS.contains(&p.field.as_str()));
    if only_catalog {
        if let Ok(fleet) = with_placeholders(dir, &problems, rules) {
            return registered(
                fleet,
                server_id,
                problems,
                "; checked with placeholders for the catalog fields (steps 7 and 8 report them)",
            );
        }
    }
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    Loaded {
        step: Step::from_checks(
            0,
            vec![Check::fail(
                "validate",
                format!(
                    "the manifests do not validate, so `render` would not route this server: {}",
                    lines.join("; ")
                ),
            )],
        ),
        fleet: None,
        problems,
    }
}

fn registered(fleet: Fleet, server_id: &str, problems: Vec<Problem>, note: &str) -> Loaded {
    let check = match fleet.server(server_id) {
        Some(server) => Check::pass(
            "validate",
            format!(
                "{} registers {server_id} {} with {} tool{}{note}",
                file_name(&server.manifest_file),
                server.version,
                server.tools.len(),
                if server.tools.len() == 1 { "" } else { "s" }
            ),
        ),
        None => Check::fail(
            "validate",
            format!(
                "no manifest in {} registers server_id {server_id:?}",
                fleet.dir.display()
            ),
        ),
    };
    let found = check.status == super::Status::Pass;
    Loaded {
        step: Step::from_checks(0, vec![check]),
        fleet: found.then_some(fleet),
        problems,
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Loads a private copy of the fleet whose catalog fields with problems hold
/// placeholders; the copy is removed once loaded (schemas are read at load).
fn with_placeholders(dir: &Path, problems: &[Problem], rules: &Rules) -> Result<Fleet, String> {
    let copy = std::env::temp_dir().join(format!("mcp-preflight-{}", uuid::Uuid::new_v4()));
    let result = (|| {
        copy_dir(dir, &copy).map_err(|e| format!("cannot copy {}: {e}", dir.display()))?;
        for problem in problems {
            let Some(name) = problem.file.file_name() else {
                continue;
            };
            let file = copy.join(name);
            let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
            let mut manifest: serde_norway::Value =
                serde_norway::from_str(&text).map_err(|e| e.to_string())?;
            let placeholder = match problem.field.as_str() {
                "owner" => "preflight-placeholder@invalid",
                _ => "https://preflight.invalid/runbook",
            };
            if let Some(map) = manifest.as_mapping_mut() {
                map.insert(problem.field.clone().into(), placeholder.into());
            }
            let text = serde_norway::to_string(&manifest).map_err(|e| e.to_string())?;
            std::fs::write(&file, text).map_err(|e| e.to_string())?;
        }
        Fleet::load_with(&copy, rules).map_err(|p| p.to_string())
    })();
    let _ = std::fs::remove_dir_all(&copy);
    let mut fleet = result?;
    fleet.dir = dir.to_owned();
    for server in &mut fleet.servers {
        server.manifest_file = dir.join(file_name(&server.manifest_file));
    }
    Ok(fleet)
}

fn copy_dir(from: &Path, to: &PathBuf) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(field: &str) -> Problem {
        Problem {
            file: "f/a.yaml".into(),
            field: field.into(),
            reason: "x".into(),
        }
    }

    #[test]
    fn problems_are_reported_by_the_step_they_concern() {
        assert_eq!(step_of(&problem("owner")), 8);
        assert_eq!(step_of(&problem("on_call_runbook")), 7);
        assert_eq!(step_of(&problem("tools[1].schema_ref")), 1);
        assert_eq!(step_of(&problem("tools[1].name")), 0);
        assert_eq!(step_of(&problem("gateway.rate_limits")), 0);
    }
}
