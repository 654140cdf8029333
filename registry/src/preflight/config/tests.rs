//! One case per preflight.yaml problem, with the exact message (file, field, reason),
//! and every problem of a file reported together.

use super::*;

/// tests/fixtures/issue17/preflight/keys: throwaway test keys, a JWKS and a token file.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/issue17/preflight/keys/preflight.yaml")
}

fn problems(text: &str) -> Vec<String> {
    match parse(&fixtures(), text) {
        Ok(_) => Vec::new(),
        Err(problems) => problems
            .0
            .iter()
            .map(|p| format!("{}: {}", p.field, p.reason))
            .collect(),
    }
}

const MINT: &str = "mint: {key_file: rsa.pem, kid: k1, issuer: https://i, audience: https://a}\n";

#[test]
fn a_minting_config_loads_with_defaults() {
    let config = parse(&fixtures(), MINT).unwrap();
    let mint = config.mint.as_ref().unwrap();
    assert_eq!(mint.key.algorithm, jsonwebtoken::Algorithm::RS256);
    assert_eq!(mint.ttl, Duration::from_secs(300));
    assert_eq!(mint.agents[&Role::Load], "preflight-load");
    assert_eq!(mint.agents[&Role::NoScope], "preflight-no-scope");
    assert_eq!(config.load, LoadSettings::default());
    assert_eq!(config.max_probe_calls, 200);
    assert!(config.has(Role::Expired));
    assert!(config.audit.is_none() && config.rotation.is_none());
}

#[test]
fn key_types_pick_their_algorithm() {
    for (file, algorithm) in [
        ("ed25519.pem", jsonwebtoken::Algorithm::EdDSA),
        ("p256.pem", jsonwebtoken::Algorithm::ES256),
    ] {
        let text = MINT.replace("rsa.pem", file);
        let config = parse(&fixtures(), &text).unwrap();
        assert_eq!(config.mint.unwrap().key.algorithm, algorithm, "{file}");
    }
}

#[test]
fn a_full_config_loads() {
    let text = format!(
        "{MINT}identities:\n  expired: {{token_file: token.txt}}\n  load: {{token_command: [echo, t]}}\n\
         rotation: {{next_key_file: ed25519.pem, next_kid: k2, publish: {{jwks_file: jwks.json}}, timeout: 20s}}\n\
         audit: {{file: /var/log/audit.jsonl, wait: 2s}}\n\
         load: {{max_in_flight: 8, request_timeout: 2s, max_error_rate: 0.05, max_p99_ms: 250, direct_samples: true}}\n\
         rate_limit: {{max_probe_calls: 50}}\n\
         on_call: {{command: [oncall, \"{{owner}}\"]}}\n"
    );
    let config = parse(&fixtures(), &text).unwrap();
    assert_eq!(
        config.identities[&Role::Load],
        TokenSource::Command(vec!["echo".into(), "t".into()])
    );
    assert!(
        matches!(&config.identities[&Role::Expired], TokenSource::File(p) if p.ends_with("token.txt"))
    );
    let rotation = config.rotation.unwrap();
    assert_eq!(rotation.timeout, Duration::from_secs(20));
    assert!(matches!(rotation.publish, Publish::JwksFile(p) if p.ends_with("jwks.json")));
    assert_eq!(config.audit.unwrap().wait, Duration::from_secs(2));
    assert_eq!(config.load.max_in_flight, 8);
    assert_eq!(config.load.max_p99_ms, Some(250.0));
    assert!(config.load.direct_samples);
    assert_eq!(config.max_probe_calls, 50);
    assert_eq!(config.on_call.unwrap(), ["oncall", "{owner}"]);
}

#[test]
fn unknown_keys_are_refused_everywhere() {
    assert_eq!(
        problems(&format!("{MINT}tokens: {{}}\nload: {{rate: 5}}\n")),
        ["tokens: unknown key", "load.rate: unknown key"]
    );
}

#[test]
fn identities_need_exactly_one_source() {
    assert_eq!(
        problems("identities:\n  schema: {token_command: [a], token_file: x}\n  load: {}\n  admin: {token_file: x}\n  expired: {token_command: []}\n  no_scope: {token_file: missing.jwt}\n"),
        [
            "identities.admin: unknown identity (schema, no_scope, expired, ratelimit, load)",
            "identities.expired.token_command: must name a program (argv: [program, args...])",
            "identities.load: needs token_command or token_file",
            "identities.no_scope.token_file: missing.jwt is not a readable file",
            "identities.schema: give token_command or token_file, not both",
        ]
    );
}

#[test]
fn mint_problems_are_all_named() {
    assert_eq!(
        problems("mint: {key_file: token.txt, issuer: '', ttl: 5s, agents: {root: x, load: ''}}\n"),
        [
            "mint.key_file: token.txt: not an RSA, P-256 or Ed25519 private key in PEM",
            "mint.kid: missing",
            "mint.issuer: must not be empty",
            "mint.audience: missing",
            "mint.ttl: 5s is outside 60s..86400s",
            "mint.agents.load: must not be empty",
            "mint.agents.root: unknown identity (schema, no_scope, expired, ratelimit, load)",
        ]
    );
    assert_eq!(
        problems("mint: {key_file: nowhere.pem, kid: k, issuer: i, audience: a, leeway: soon}\n"),
        [
            "mint.key_file: cannot read nowhere.pem: No such file or directory (os error 2)",
            "mint.leeway: \"soon\" is not a duration (a whole number and ms, s, m or h: 500ms, 15s, 5m, 0s)",
        ]
    );
}

#[test]
fn rotation_needs_a_next_token_and_a_way_to_publish() {
    assert_eq!(
        problems("rotation: {timeout: 1s}\n"),
        [
            "rotation: needs next_key_file (with mint) or token_command: a token signed by the next key",
            "rotation.publish: missing (jwks_file, or publish_command and restore_command)",
            "rotation.timeout: 1s is outside 6s..600s",
        ]
    );
    assert_eq!(
        problems("rotation: {next_key_file: rsa.pem, publish: {jwks_file: gone.json, publish_command: [p]}}\n"),
        [
            "rotation.next_key_file: needs mint (issuer, audience and agents of the minted token)",
            "rotation.next_kid: missing",
            "rotation.publish: give jwks_file, or publish_command and restore_command",
        ]
    );
    let commands = "rotation: {token_command: [next-token], publish: {publish_command: [pub], restore_command: [undo]}}\n";
    assert_eq!(problems(commands), Vec::<String>::new());
}

#[test]
fn audit_load_and_probe_bounds() {
    assert_eq!(
        problems("audit: {file: a, command: [b], wait: 0s}\nload: {max_in_flight: 0, request_timeout: 10m, max_error_rate: 2, max_p99_ms: -1}\nrate_limit: {max_probe_calls: 0}\non_call: {}\n"),
        [
            "audit.wait: 0s is outside 0.100s..600s",
            "audit: give file or command (exactly one)",
            "load.max_in_flight: 0 is outside 1..10000",
            "load.request_timeout: 10m is outside 0.100s..300s",
            "load.max_error_rate: 2 is outside 0..1",
            "load.max_p99_ms: -1 must be above 0",
            "rate_limit.max_probe_calls: 0 is outside 1..10000",
            "on_call.command: missing",
        ]
    );
}

#[test]
fn a_wrong_type_stops_at_that_value_with_its_place() {
    let found = problems("load: {max_in_flight: many}\n");
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with(": load.max_in_flight: invalid type"),
        "{found:?}"
    );
}

#[test]
fn problems_name_the_file() {
    let err = parse(Path::new("/etc/mcp/preflight.yaml"), "mint: {}\n").unwrap_err();
    assert_eq!(
        err.lines()[0],
        "/etc/mcp/preflight.yaml: mint.key_file: missing"
    );
}

#[test]
fn an_empty_file_is_a_config_without_identities() {
    let config = parse(&fixtures(), "").unwrap();
    assert!(!config.has(Role::Schema));
}
