//! One fixture per manifest error: `tests/fixtures/invalid/<case>/` holds the
//! manifests and `expected.txt`, the exact problems `Fleet::load` reports (one per
//! line, as `mcp-registry validate` prints them from the crate directory).

use mcp_registry::Fleet;
use std::path::Path;

#[test]
fn every_invalid_fixture_reports_exactly_its_expected_problems() {
    // Relative to the crate directory (cargo runs tests there), as a user would type it.
    let root = Path::new("tests/fixtures/invalid");
    let mut cases: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 40, "only {} fixtures", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let expected = std::fs::read_to_string(case.join("expected.txt"))
            .unwrap_or_else(|e| panic!("{}: no expected.txt: {e}", case.display()));
        match Fleet::load(case) {
            Ok(fleet) => failures.push(format!(
                "{}: accepted ({} servers)",
                case.display(),
                fleet.servers.len()
            )),
            Err(problems) => {
                let got = format!("{problems}\n");
                if got != expected {
                    failures.push(format!(
                        "{}:\n--- expected\n{expected}--- got\n{got}",
                        case.display()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_example_fleet_is_valid() {
    let fleet = Fleet::load(Path::new("examples")).unwrap_or_else(|p| panic!("{p}"));
    let ids: Vec<&str> = fleet.servers.iter().map(|s| s.id()).collect();
    assert_eq!(ids, ["financial-data", "hr-directory", "weather"]);
}
