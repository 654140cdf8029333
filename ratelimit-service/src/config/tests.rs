use super::*;

/// The seed documents' service config (as written there, with the unit in upper case).
pub(crate) const SEED: &str = r#"
domain: mcp_gateway
descriptors:
  - key: tool_call
    descriptors:
      - key: agent_id
        value: "agent-prod-001"
        rate_limit:
          unit: MINUTE
          requests_per_unit: 120  # 2 tool calls/sec sustained
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse([(Path::new("limits.yaml"), text)])
}

#[test]
fn seed_example_parses_and_matches() {
    let config = parse(SEED).unwrap();
    let limit = config
        .find(
            "mcp_gateway",
            &[
                ("tool_call", "query_transactions"),
                ("agent_id", "agent-prod-001"),
            ],
        )
        .expect("the seed's 120/min limit");
    let rate = limit.rate().unwrap();
    assert_eq!((rate.unit, rate.requests_per_unit), (Unit::Minute, 120));
    assert_eq!(limit.metric_key, "tool_call.agent_id");
    // Another agent has no limit under the seed config; nor does a partial descriptor.
    assert!(config
        .find(
            "mcp_gateway",
            &[("tool_call", "x"), ("agent_id", "agent-2")]
        )
        .is_none());
    assert!(config.find("mcp_gateway", &[("tool_call", "x")]).is_none());
    assert!(config
        .find(
            "other_domain",
            &[("tool_call", "x"), ("agent_id", "agent-prod-001")]
        )
        .is_none());
}

#[test]
fn exact_value_wins_over_key_only() {
    let config = parse(
        r#"
domain: d
descriptors:
  - key: agent_id
    rate_limit: {unit: minute, requests_per_unit: 10}
  - key: agent_id
    value: vip
    rate_limit: {unit: minute, requests_per_unit: 1000}
  - key: agent_id
    value: free
    rate_limit: {unlimited: true}
"#,
    )
    .unwrap();
    assert_eq!(
        config
            .find("d", &[("agent_id", "vip")])
            .unwrap()
            .rate()
            .unwrap()
            .requests_per_unit,
        1000
    );
    assert_eq!(
        config
            .find("d", &[("agent_id", "anyone")])
            .unwrap()
            .rate()
            .unwrap()
            .requests_per_unit,
        10
    );
    assert_eq!(
        config.find("d", &[("agent_id", "free")]).unwrap().quota,
        Quota::Unlimited
    );
}

fn wildcard_fixture() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wildcard.yaml");
    Config::load(&path).unwrap()
}

fn requests(config: &Config, entries: &[(&str, &str)]) -> Option<u32> {
    Some(
        config
            .find("mcp_gateway", entries)?
            .rate()?
            .requests_per_unit,
    )
}

/// envoyproxy/ratelimit's `value: foo*`: a prefix match; exact wins over wildcard (the
/// first matching in file order), wildcard over key-only; only a trailing `*` counts.
#[test]
fn wildcard_values_match_by_prefix_with_upstream_precedence() {
    let config = wildcard_fixture();
    let tool = |name| requests(&config, &[("tool_call", name)]);
    assert_eq!(tool("query_accounts"), Some(5), "exact wins");
    assert_eq!(
        tool("query_transactions"),
        Some(20),
        "first wildcard in file order"
    );
    assert_eq!(tool("query_"), Some(20), "the prefix itself matches");
    assert_eq!(tool("qx"), Some(30));
    assert_eq!(tool("bar*b"), Some(1), "a `*` inside is literal");
    assert_eq!(tool("barxb"), Some(100), "... so it matches nothing else");
    assert_eq!(tool("other"), Some(100), "key-only last");
    assert_eq!(tool("query*"), Some(30), "a value with `*` is just a value");
    let agent = |name| requests(&config, &[("agent_id", name), ("tool_call", "t")]);
    assert_eq!(agent("agent-1"), Some(7));
    assert_eq!(agent("robot"), Some(8));
    // A wildcard level is bounded like a key-only one, under its own name.
    let limit = config
        .find(
            "mcp_gateway",
            &[("agent_id", "agent-1"), ("tool_call", "t")],
        )
        .unwrap();
    let levels: Vec<(Option<u32>, &str, &str)> = limit
        .levels
        .iter()
        .map(|l| (l.max_distinct_values, &*l.segment, &*l.scope_rest))
        .collect();
    assert_eq!(
        levels,
        [
            (Some(2), "|agent_id%*agent-", "|tool_call"),
            (Some(DEFAULT_MAX_DISTINCT_VALUES), "|tool_call", ""),
        ]
    );
}

#[test]
fn max_distinct_values_per_file_and_per_key_only_descriptor() {
    let levels = |text: &str, entries: &[(&str, &str)]| {
        let config = parse(text).unwrap();
        let limit = config.find("d", entries).unwrap();
        limit
            .levels
            .iter()
            .map(|l| l.max_distinct_values)
            .collect::<Vec<_>>()
    };
    let tree = "descriptors:\n  - key: tool_call\n    descriptors:\n      - key: agent_id\n        value: vip\n        rate_limit: {unit: minute, requests_per_unit: 5}\n      - key: agent_id\n        max_distinct_values: 1000\n        rate_limit: {unit: minute, requests_per_unit: 5}\n";
    let vip = [("tool_call", "t"), ("agent_id", "vip")];
    let other = [("tool_call", "t"), ("agent_id", "a")];
    // Default 100; a listed value is never bounded.
    let unset = format!("domain: d\n{tree}");
    assert_eq!(
        levels(&unset, &vip),
        [Some(DEFAULT_MAX_DISTINCT_VALUES), None]
    );
    assert_eq!(levels(&unset, &other), [Some(100), Some(1000)]);
    // The file's default; a descriptor's own setting wins.
    let file = format!("domain: d\nmax_distinct_values: 7\n{tree}");
    assert_eq!(levels(&file, &vip), [Some(7), None]);
    assert_eq!(levels(&file, &other), [Some(7), Some(1000)]);
    // Key parts written once at load, escaped.
    let limit = parse("domain: 'a|b'\ndescriptors:\n  - key: k\n    value: 'v=1'\n    descriptors:\n      - key: x\n        rate_limit: {unit: second, requests_per_unit: 1}\n").unwrap();
    let limit = limit.find("a|b", &[("k", "v=1"), ("x", "y")]).unwrap();
    assert_eq!(&*limit.key_head, "mcp_rl:{a%7Cb");
    let parts: Vec<(&str, &str)> = limit
        .levels
        .iter()
        .map(|l| (&*l.segment, &*l.scope_rest))
        .collect();
    assert_eq!(parts, [("|k=v%3D1", ""), ("|x", "")]);
}

/// One case per error, with the exact message (file, key path, reason).
#[test]
fn config_errors_name_file_key_and_reason() {
    let table: &[(&str, &str)] = &[
        ("descriptors: []\n", "limits.yaml: domain: missing or empty"),
        (
            "domain: d\ndescriptors:\n  - value: x\n",
            "limits.yaml: descriptors[0].key: missing or empty",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
            "limits.yaml: descriptors[0].rate_limit.unit: \"fortnight\" is not one of second, minute, hour, day",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second}\n",
            "limits.yaml: descriptors[0].rate_limit.requests_per_unit: missing",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - key: b\n        rate_limit: {requests_per_unit: 5}\n",
            "limits.yaml: descriptors[0].descriptors[0].rate_limit.unit: missing",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unlimited: true, unit: second}\n",
            "limits.yaml: descriptors[0].rate_limit: unlimited cannot be combined with unit or requests_per_unit",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    value: v\n  - key: a\n    value: v\n",
            "limits.yaml: descriptors[1]: duplicate descriptor: key \"a\" with value \"v\" appears twice at this level",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: -1}\n",
            "limits.yaml: descriptors[0].rate_limit.requests_per_unit: invalid type: integer `-1`, expected u32 at line 4 column 51",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limits: {}\n",
            "limits.yaml: descriptors[0]: unknown field `rate_limits`, expected one of `key`, `value`, `rate_limit`, `descriptors`, `shadow_mode`, `max_distinct_values`, `detailed_metric`, `value_to_metric` at line 4 column 5",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    value: v\n    max_distinct_values: 5\n",
            "limits.yaml: descriptors[0].max_distinct_values: only for a descriptor without value (a listed value always has its own counter)",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    value: 'v*'\n  - key: a\n    value: 'v*'\n",
            "limits.yaml: descriptors[1]: duplicate descriptor: key \"a\" with value \"v*\" appears twice at this level",
        ),
        (
            "domain: d\nmax_distinct_values: many\n",
            "limits.yaml: max_distinct_values: invalid type: string \"many\", expected u32 at line 2 column 22",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    max_distinct_values: -3\n",
            "limits.yaml: descriptors[0].max_distinct_values: invalid type: integer `-3`, expected u32 at line 4 column 26",
        ),
        (
            "domain: d\nmax_distinct: 5\n",
            "limits.yaml: unknown field `max_distinct`, expected one of `domain`, `max_distinct_values`, `descriptors` at line 2 column 1",
        ),
    ];
    for (text, message) in table {
        assert_eq!(parse(text).unwrap_err().to_string(), *message, "{text}");
    }
}

#[test]
fn all_problems_of_all_files_are_reported_together() {
    let error = Config::parse([
        (Path::new("a.yaml"), "domain: d\ndescriptors:\n  - key: ''\n  - key: b\n    rate_limit: {unit: x, requests_per_unit: 1}\n"),
        (Path::new("b.yaml"), "domain: d\n"),
    ])
    .unwrap_err();
    assert_eq!(
        error.problems,
        vec![
            "a.yaml: descriptors[0].key: missing or empty".to_string(),
            "a.yaml: descriptors[1].rate_limit.unit: \"x\" is not one of second, minute, hour, day"
                .to_string(),
            "b.yaml: domain: \"d\" is already defined in a.yaml".to_string(),
        ]
    );
}
