//! The configuration parsers: the filter's plugin JSON, the authz-service policy and
//! JWKS, the ratelimit-service limits. The first byte picks the parser.
//!
//! Bad configuration must be an error that names where (file and field) and why,
//! never a panic: these run at start-up and on every hot reload.

use mcp_authz_service::jwks::KeySet;
use mcp_authz_service::policy::Policy;
use mcp_filter_core::FilterConfig;
use mcp_ratelimit_service::config::Config;
use std::path::Path;

pub fn run(data: &[u8]) {
    let [kind, rest @ ..] = data else {
        return;
    };
    match kind % 4 {
        0 => {
            if let Err(e) = FilterConfig::from_json(rest) {
                assert!(e
                    .to_string()
                    .starts_with("invalid MCP filter plugin configuration: "));
            }
        }
        1 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let file = Path::new("/etc/mcp/policy.yaml");
            if let Err(e) = Policy::parse(text, file) {
                assert_eq!(e.file, file);
                assert!(!e.problems.is_empty() && e.problems.iter().all(|p| !p.is_empty()));
            }
        }
        2 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let file = Path::new("/etc/mcp/limits.yaml");
            if let Err(e) = Config::parse([(file, text)]) {
                assert!(!e.problems.is_empty());
                for problem in &e.problems {
                    assert!(problem.contains("/etc/mcp/limits.yaml"), "{problem}");
                }
            }
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(keys) = KeySet::from_json(text) {
                assert!(!keys.is_empty());
            }
        }
    }
}
