use super::*;
use serde_json::json;

const FILE: &str = r#"{"servers": {
  "financial-data": {"validation": "enforce", "tools": {
    "get_forecast": {"type": "object", "additionalProperties": false,
      "required": ["region", "days"],
      "properties": {
        "region": {"type": "string", "pattern": "^[A-Z]{2}$", "x-mcp-header": "Region"},
        "days": {"type": "integer", "minimum": 1, "x-mcp-header": "Days"},
        "urgent": {"type": "boolean", "x-mcp-header": "Urgent"},
        "note": {"type": "string"}}},
    "old_style": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
      "properties": {"n": {"type": "integer"}}, "dependencies": {"n": ["m"]}}}},
  "weather": {"tools": {"free": {}}},
  "quiet": {"validation": "off", "tools": {"t": {"type": "object", "properties": {
      "id": {"type": "string", "x-mcp-header": "Id"}}}}}
}}"#;

fn schemas() -> Schemas {
    Schemas::parse(FILE, Path::new("schemas.json")).unwrap()
}

fn check(
    server: &str,
    tool: &str,
    body: &Value,
    version_applies: bool,
    headers: &[(&str, &str)],
) -> Verdict {
    let schemas = schemas();
    let (mode, schema) = schemas.tool(server, tool).unwrap();
    let body = serde_json::to_vec(body).unwrap();
    schema.check(mode, Some(&body), version_applies, |name| {
        headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    })
}

fn call(arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
           "params": {"name": "get_forecast", "arguments": arguments}})
}

const GOOD_HEADERS: [(&str, &str); 2] = [("mcp-param-region", "FR"), ("mcp-param-days", "3")];

#[test]
fn modes_and_drafts_load() {
    let s = schemas();
    assert_eq!(
        s.tool("financial-data", "get_forecast").unwrap().0,
        Mode::Enforce
    );
    assert_eq!(
        s.tool("weather", "free").unwrap().0,
        Mode::Report,
        "default mode"
    );
    assert_eq!(s.tool("quiet", "t").unwrap().0, Mode::Off);
    assert!(s.tool("weather", "other").is_none());
    assert!(s.tool("other", "free").is_none());
    assert_eq!(s.tool_count(), 4);
    // draft-07 from `$schema`: `dependencies` is a draft-07 keyword (gone in 2020-12).
    let (_, old) = s.tool("financial-data", "old_style").unwrap();
    assert!(!old.validator().is_valid(&json!({"n": 1})));
    assert!(old.validator().is_valid(&json!({"n": 1, "m": 2})));
}

/// One case per file error, each naming the file, the field and the reason.
#[test]
fn schema_file_errors_name_file_field_and_reason() {
    let table: &[(&str, &str)] = &[
        (
            "{\"servers\": {\"fd\": {\"validation\": \"strict\"}}}",
            "schemas.json: servers.fd: unknown variant `strict`, expected one of `enforce`, `report`, `off`",
        ),
        (
            "{\"servers\": {\"fd\": {\"tool\": {}}}}",
            "schemas.json: servers.fd: unknown field `tool`, expected `validation` or `tools`",
        ),
        ("3", "schemas.json: invalid type: integer `3`, expected struct RawSchemas at line 1 column 1"),
        ("{}", "schemas.json: missing field `servers` at line 1 column 2"),
        (
            "{\"servers\": {\"fd\": {\"tools\": {\"t\": 3, \"u\": {\"type\": \"strin\"}, \"v\": {\"$ref\": \"https://example.com/s.json\"}}}}}",
            "schemas.json: servers.fd.tools.t: a JSON Schema is an object or a boolean",
        ),
    ];
    for (text, message) in table {
        let error = Schemas::parse(text, Path::new("schemas.json")).unwrap_err();
        assert!(error.to_string().starts_with(message), "{text}\n{error}");
    }
    // Every problem in one pass.
    let error = Schemas::parse(table[4].0, Path::new("schemas.json")).unwrap_err();
    assert_eq!(error.problems.len(), 3, "{error}");
    assert!(
        error.problems[1].starts_with("servers.fd.tools.u: "),
        "{error}"
    );
    assert!(
        error.problems[2].starts_with("servers.fd.tools.v: "),
        "{error}"
    );
    let missing = Schemas::load(Path::new("/nonexistent/schemas.json")).unwrap_err();
    assert!(missing
        .to_string()
        .starts_with("/nonexistent/schemas.json: cannot read: "));
}

#[test]
fn valid_arguments_pass() {
    let body = call(json!({"region": "FR", "days": 3}));
    assert_eq!(
        check("financial-data", "get_forecast", &body, true, &GOOD_HEADERS),
        Verdict::Valid
    );
    // Older revisions send no Mcp-Param headers.
    assert_eq!(
        check("financial-data", "get_forecast", &body, false, &[]),
        Verdict::Valid
    );
}

fn invalid(verdict: Verdict) -> (String, String) {
    match verdict {
        Verdict::Invalid { detail, masked } => (detail, masked),
        other => panic!("not invalid: {other:?}"),
    }
}

#[test]
fn each_violation_names_its_path() {
    let fd = "financial-data";
    let table = [
        (
            json!({"region": "FR", "days": "3"}),
            "/days: \"3\" is not of type \"integer\"",
        ),
        (
            json!({"region": "FR"}),
            "(root): \"days\" is a required property",
        ),
        (
            json!({"region": "FR", "days": 3, "extra": 1}),
            "(root): Additional properties are not allowed ('extra' was unexpected)",
        ),
        (
            json!({"region": "fr", "days": 3}),
            "/region: \"fr\" does not match \"^[A-Z]{2}$\"",
        ),
    ];
    for (arguments, expected) in table {
        let (detail, masked) = invalid(check(fd, "get_forecast", &call(arguments), false, &[]));
        assert_eq!(detail, expected);
        // The audit copy names the path but not the values the agent sent.
        assert!(
            masked.starts_with(expected.split(':').next().unwrap()),
            "{masked}"
        );
        assert!(
            !masked.contains("\"3\"") && !masked.contains("\"fr\""),
            "{masked}"
        );
    }
    // Absent arguments validate as {} (and so miss the required ones).
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_forecast"}});
    let (detail, _) = invalid(check(fd, "get_forecast", &body, false, &[]));
    assert!(
        detail.starts_with("(root): \"region\" is a required property"),
        "{detail}"
    );
    // Arguments that are not an object.
    let (detail, _) = invalid(check(fd, "get_forecast", &call(json!([1])), false, &[]));
    assert_eq!(detail, "(root): [1] is not of type \"object\"");
}

#[test]
fn unreadable_or_missing_bodies_fail_closed() {
    let schemas = schemas();
    let (mode, schema) = schemas.tool("financial-data", "get_forecast").unwrap();
    let none = |_: &str| None;
    for body in [
        None,
        Some(&b""[..]),
        Some(br#"{"params":{"arguments":{},"ARGUMENTS":{}}}"#),
    ] {
        assert!(
            matches!(
                schema.check(mode, body, false, none),
                Verdict::Invalid { .. }
            ),
            "{body:?}"
        );
        assert!(
            matches!(
                schema.check(mode, body, true, none),
                Verdict::HeaderMismatch(_)
            ),
            "{body:?}"
        );
    }
    // Mode off without headers to compare reads nothing.
    let (off, quiet) = schemas.tool("quiet", "t").unwrap();
    assert_eq!(quiet.check(off, None, false, none), Verdict::Skipped);
}

fn mismatch(verdict: Verdict) -> String {
    match verdict {
        Verdict::HeaderMismatch(message) => message,
        other => panic!("not a mismatch: {other:?}"),
    }
}

#[test]
fn param_headers_follow_the_sdk_rules() {
    let fd = "financial-data";
    let args = json!({"region": "FR", "days": 42, "urgent": true});
    let good = [
        ("mcp-param-region", "FR"),
        ("mcp-param-days", "42"),
        ("mcp-param-urgent", "true"),
    ];
    assert_eq!(
        check(fd, "get_forecast", &call(args.clone()), true, &good),
        Verdict::Valid
    );
    // Integers compare as numbers: 42 matches 42.0 and 042 both ways; 4.2e1 does not.
    for (days, header, ok) in [
        (json!(42), "42.0", true),
        (json!(42), "042", true),
        (json!(42.0), "42", true),
        (json!(42), "42.5", false),
        (json!(42), "4.2e1", false),
        (json!(-0), "-0", true),
        (json!(12345678901234567890u64), "12345678901234567890", true),
        (json!(1e20), "100000000000000000000", true),
    ] {
        let headers = [("mcp-param-region", "FR"), ("mcp-param-days", header)];
        let body = call(json!({"region": "FR", "days": days}));
        let verdict = schemas().tool(fd, "get_forecast").unwrap().1.check(
            Mode::Off,
            Some(&serde_json::to_vec(&body).unwrap()),
            true,
            |name| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v),
        );
        assert_eq!(
            verdict == Verdict::Valid,
            ok,
            "{days} vs {header}: {verdict:?}"
        );
    }
    // Booleans are `true`/`false` exactly.
    let wrong_bool = [
        ("mcp-param-region", "FR"),
        ("mcp-param-days", "42"),
        ("mcp-param-urgent", "True"),
    ];
    assert_eq!(
        mismatch(check(
            fd,
            "get_forecast",
            &call(args.clone()),
            true,
            &wrong_bool
        )),
        "Mcp-Param-Urgent header does not match the request body's \"urgent\" argument"
    );
    // The base64 sentinel is decoded before comparing; a broken one is refused.
    let body = call(json!({"region": "Zürich", "days": 1}));
    let sentinel = [
        ("mcp-param-region", "=?base64?WsO8cmljaA==?="),
        ("mcp-param-days", "1"),
    ];
    // (the pattern fails, but the header check passes and runs first)
    assert!(matches!(
        check(fd, "get_forecast", &body, true, &sentinel),
        Verdict::Invalid { .. }
    ));
    let broken = [
        ("mcp-param-region", "=?base64?***?="),
        ("mcp-param-days", "1"),
    ];
    assert_eq!(
        mismatch(check(fd, "get_forecast", &body, true, &broken)),
        "Mcp-Param-Region header carries a malformed base64 sentinel value"
    );
    let plain = [("mcp-param-region", "Zürich"), ("mcp-param-days", "1")];
    assert!(matches!(
        check(fd, "get_forecast", &body, true, &plain),
        Verdict::Invalid { .. }
    ));
    // Missing header, header without argument, and `null` counting as absent.
    assert_eq!(
        mismatch(check(
            fd,
            "get_forecast",
            &call(args.clone()),
            true,
            &GOOD_HEADERS
        )),
        "Mcp-Param-Urgent header is missing but the request body's \"urgent\" argument is present"
    );
    let extra = [
        ("mcp-param-region", "FR"),
        ("mcp-param-days", "3"),
        ("mcp-param-urgent", "false"),
    ];
    let body = call(json!({"region": "FR", "days": 3, "urgent": null}));
    assert_eq!(
        mismatch(check(fd, "get_forecast", &body, true, &extra)),
        "Mcp-Param-Urgent header is present but the request body's \"urgent\" argument is absent"
    );
    // Headers first: a mismatch wins over an invalid schema, in every mode.
    let wrong = [("mcp-param-region", "DE"), ("mcp-param-days", "3")];
    let body = call(json!({"region": "FR", "days": 3, "extra": 1}));
    assert!(
        mismatch(check(fd, "get_forecast", &body, true, &wrong)).starts_with("Mcp-Param-Region")
    );
    let schemas = schemas();
    let (off, quiet) = schemas.tool("quiet", "t").unwrap();
    let body = br#"{"params":{"arguments":{"id":"a"}}}"#;
    assert!(matches!(
        quiet.check(off, Some(body), true, |_| Some("b")),
        Verdict::HeaderMismatch(_)
    ));
    assert_eq!(
        quiet.check(off, Some(body), true, |_| Some("a")),
        Verdict::Valid
    );
    // Unknown Mcp-Param headers are not looked at.
    let more = [
        ("mcp-param-region", "FR"),
        ("mcp-param-days", "3"),
        ("mcp-param-other", "x"),
    ];
    assert_eq!(
        check(
            fd,
            "get_forecast",
            &call(json!({"region": "FR", "days": 3})),
            true,
            &more
        ),
        Verdict::Valid
    );
}

#[test]
fn invalid_annotations_are_ignored_like_the_sdk_does() {
    let cases = [
        (
            json!({"properties": {"a": {"type": "number", "x-mcp-header": "A"}}}),
            "integer/string/boolean",
        ),
        (
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "A B"}}}),
            "RFC 9110 token",
        ),
        (
            json!({"items": {"type": "string", "x-mcp-header": "A"}}),
            "pure `properties` chain",
        ),
        (
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "A"}, "b": {"type": "string", "x-mcp-header": "a"}}}),
            "duplicates",
        ),
    ];
    for (schema, reason) in cases {
        let headers = ParamHeaders::from_schema(&schema);
        assert!(headers.is_empty(), "{schema}");
        assert!(
            headers.invalid().unwrap().contains(reason),
            "{:?}",
            headers.invalid()
        );
    }
    let nested = ParamHeaders::from_schema(
        &json!({"properties": {"a": {"properties": {"b": {"type": "integer", "x-mcp-header": "B"}}}}}),
    );
    let found: Vec<_> = nested
        .iter()
        .map(|h| (h.path.join("."), h.header.clone(), h.integer))
        .collect();
    assert_eq!(
        found,
        vec![("a.b".to_owned(), "mcp-param-b".to_owned(), true)]
    );
}

#[test]
fn truncation_keeps_whole_characters() {
    assert_eq!(truncate("abc", 5), "abc");
    assert_eq!(truncate("aé", 2), "a");
    assert_eq!(truncate("aé", 3), "aé");
}
