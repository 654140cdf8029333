//! Table-driven cases for the filter's decisions, both protocol eras.

use mcp_filter_core::{
    check_body_size, label_request, on_request_head, FilterConfig, HeadAction, RequestHead,
};
use serde_json::Value;

const MODERN_META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}"#;

fn config() -> FilterConfig {
    FilterConfig::from_json(br#"{"server_id":"financial-data","max_body_bytes":1000}"#).unwrap()
}

fn head(headers: &[(&str, &str)]) -> RequestHead {
    let mut all: Vec<(&str, &[u8])> = vec![(":method", b"POST"), (":path", b"/mcp")];
    all.extend(headers.iter().map(|(n, v)| (*n, v.as_bytes())));
    RequestHead::from_headers(all)
}

fn modern(method: &str, name: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("mcp-protocol-version", "2026-07-28".to_string()),
        ("mcp-method", method.to_string()),
    ];
    if let Some(name) = name {
        headers.push(("mcp-name", name.to_string()));
    }
    headers
}

fn borrow<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

/// (case, headers, body, expected labels as (header, value) pairs)
type Accepted<'a> = (
    &'a str,
    Vec<(&'static str, String)>,
    String,
    &'a [(&'a str, &'a str)],
);

#[test]
fn accepted_requests_get_the_contract_labels() {
    let cases: Vec<Accepted> = vec![
        (
            "modern tools/call",
            modern("tools/call", Some("query_transactions")),
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"query_transactions","arguments":{{"a":1}},{MODERN_META}}}}}"#),
            &[
                ("x-mcp-method", "tools/call"),
                ("x-mcp-tool-name", "query_transactions"),
                ("x-mcp-protocol-version", "2026-07-28"),
                ("x-mcp-server-id", "financial-data"),
                ("x-mcp-request-id", "1"),
            ],
        ),
        (
            "modern tools/list: no name",
            modern("tools/list", None),
            format!(r#"{{"jsonrpc":"2.0","id":"abc","method":"tools/list","params":{{{MODERN_META}}}}}"#),
            &[
                ("x-mcp-method", "tools/list"),
                ("x-mcp-protocol-version", "2026-07-28"),
                ("x-mcp-server-id", "financial-data"),
                ("x-mcp-request-id", "\"abc\""),
            ],
        ),
        (
            "modern resources/read mirrors the uri",
            modern("resources/read", Some("file:///ledger.csv")),
            format!(r#"{{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{{"uri":"file:///ledger.csv",{MODERN_META}}}}}"#),
            &[("x-mcp-method", "resources/read"), ("x-mcp-resource-uri", "file:///ledger.csv")],
        ),
        (
            "modern prompts/get",
            modern("prompts/get", Some("summarise")),
            format!(r#"{{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{{"name":"summarise",{MODERN_META}}}}}"#),
            &[("x-mcp-prompt-name", "summarise")],
        ),
        (
            "non-ASCII tool name through the base64 sentinel, labelled the same way",
            modern("tools/call", Some("=?base64?ZG9ubsOpZXM=?=")),
            format!(r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"donn\u00e9es",{MODERN_META}}}}}"#),
            &[("x-mcp-tool-name", "=?base64?ZG9ubsOpZXM=?=")],
        ),
        (
            "sentinel may carry a plain ASCII name too",
            modern("tools/call", Some("=?base64?YWRk?=")),
            format!(r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"add",{MODERN_META}}}}}"#),
            &[("x-mcp-tool-name", "add")],
        ),
        (
            "escaped method and name decode before comparing",
            modern("tools/call", Some("add")),
            format!(r#"{{"jsonrpc":"2.0","id":6,"method":"tools\/c\u0061ll","params":{{"name":"\u0061dd",{MODERN_META}}}}}"#),
            &[("x-mcp-method", "tools/call"), ("x-mcp-tool-name", "add")],
        ),
        (
            "non-ASCII string id becomes ASCII JSON",
            modern("ping", None),
            format!(r#"{{"jsonrpc":"2.0","id":"é\"1","method":"ping","params":{{{MODERN_META}}}}}"#),
            &[("x-mcp-request-id", r#""\u00e9\"1""#)],
        ),
        (
            "huge integer id kept verbatim",
            modern("ping", None),
            format!(r#"{{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping","params":{{{MODERN_META}}}}}"#),
            &[("x-mcp-request-id", "123456789012345678901234567890")],
        ),
        (
            "handshake initialize: version from params, no headers needed",
            vec![],
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#.into(),
            &[
                ("x-mcp-method", "initialize"),
                ("x-mcp-protocol-version", "2025-11-25"),
                ("x-mcp-server-id", "financial-data"),
                ("x-mcp-request-id", "0"),
            ],
        ),
        (
            "handshake tools/call: labels from the body, version from the header",
            vec![("mcp-protocol-version", "2025-11-25".into()), ("mcp-session-id", "s1".into())],
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_account_balance","arguments":{}}}"#.into(),
            &[
                ("x-mcp-tool-name", "get_account_balance"),
                ("x-mcp-protocol-version", "2025-11-25"),
            ],
        ),
        (
            "2025-03-26 client without version header",
            vec![],
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into(),
            &[
                ("x-mcp-method", "notifications/initialized"),
                ("x-mcp-protocol-version", "2025-03-26"),
            ],
        ),
        (
            "handshake client response to a server request (elicitation)",
            vec![("mcp-protocol-version", "2025-06-18".into())],
            r#"{"jsonrpc":"2.0","id":9,"result":{"action":"accept"}}"#.into(),
            &[("x-mcp-protocol-version", "2025-06-18"), ("x-mcp-request-id", "9")],
        ),
    ];
    for (case, headers, body, expected) in cases {
        let labels = label_request(&config(), &head(&borrow(&headers)), body.as_bytes())
            .unwrap_or_else(|r| panic!("{case}: refused: {}", r.body()));
        for (name, value) in expected {
            assert_eq!(labels.get(name), Some(*value), "{case}: {name}");
        }
    }
}

#[test]
fn notifications_get_no_request_id_and_responses_no_method() {
    let headers = modern("notifications/cancelled", None);
    let body = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":1,{MODERN_META}}}}}"#
    );
    let labels = label_request(&config(), &head(&borrow(&headers)), body.as_bytes()).unwrap();
    assert_eq!(labels.get("x-mcp-request-id"), None);

    let labels = label_request(
        &config(),
        &head(&[]),
        br#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"no"}}"#,
    )
    .unwrap();
    assert_eq!(labels.get("x-mcp-method"), None);
    assert_eq!(labels.get("x-mcp-request-id"), Some("1"));
}

/// (case, headers, body, status, code, echoed id as JSON text, message fragment)
type Refused<'a> = (
    &'a str,
    Vec<(&'static str, String)>,
    String,
    u16,
    i64,
    &'a str,
    &'a str,
);

#[test]
fn refused_requests_get_status_code_and_id() {
    let call = |name: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{{"name":"{name}",{MODERN_META}}}}}"#
        )
    };
    let handshake = || vec![("mcp-protocol-version", "2025-11-25".to_string())];
    let cases: Vec<Refused> = vec![
        ("empty body", vec![], "".into(), 400, -32700, "null", "Parse error"),
        ("truncated JSON", vec![], r#"{"jsonrpc":"2.0","id":1"#.into(), 400, -32700, "null", "Parse error"),
        ("byte order mark", vec![], "\u{feff}{}".into(), 400, -32700, "null", "Parse error"),
        ("trailing garbage", vec![], r#"{"jsonrpc":"2.0","id":1,"method":"ping"} x"#.into(), 400, -32700, "null", "Parse error"),
        ("batch", vec![], r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.into(), 400, -32600, "null", "batches are not supported"),
        ("scalar", vec![], "42".into(), 400, -32600, "null", "expected a JSON-RPC request object"),
        ("jsonrpc 1.0", vec![], r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#.into(), 400, -32600, "1", "\"jsonrpc\" must be exactly \"2.0\""),
        ("no jsonrpc", vec![], r#"{"id":"x","method":"ping"}"#.into(), 400, -32600, "\"x\"", "\"jsonrpc\" must be"),
        ("no method", vec![], r#"{"jsonrpc":"2.0","id":1}"#.into(), 400, -32600, "1", "missing \"method\""),
        ("method not a string", vec![], r#"{"jsonrpc":"2.0","id":1,"method":5}"#.into(), 400, -32600, "1", "\"method\" must be a string"),
        ("lone surrogate in method", vec![], r#"{"jsonrpc":"2.0","id":1,"method":"\ud800"}"#.into(), 400, -32600, "1", "\"method\" must be a string"),
        ("duplicate method", vec![], r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}"#.into(), 400, -32600, "1", "duplicate key \"method\""),
        ("duplicate id echoes no id", vec![], r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#.into(), 400, -32600, "null", "duplicate key \"id\""),
        ("duplicate params", vec![], r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{},"params":{}}"#.into(), 400, -32600, "1", "duplicate key \"params\""),
        ("duplicate params.name", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#.into(), 400, -32600, "1", "duplicate key \"params.name\""),
        ("duplicate params.uri", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a","uri":"b"}}"#.into(), 400, -32600, "1", "duplicate key \"params.uri\""),
        ("null id", vec![], r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#.into(), 400, -32600, "null", "\"id\" must be a string or an integer"),
        ("object id", vec![], r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#.into(), 400, -32600, "null", "\"id\" must be"),
        ("fractional id", vec![], r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#.into(), 400, -32600, "null", "\"id\" must be"),
        ("params array", vec![], r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#.into(), 400, -32600, "1", "\"params\" must be an object"),
        ("tools/call without params", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#.into(), 400, -32602, "1", "tools/call needs a string \"params.name\""),
        ("tool name is a number", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#.into(), 400, -32602, "1", "needs a string \"params.name\""),
        ("tool name is an object", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":{"a":1}}}"#.into(), 400, -32602, "1", "needs a string"),
        ("resources/read without uri", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"x"}}"#.into(), 400, -32602, "1", "needs a string \"params.uri\""),
        ("_meta not an object", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":3}}"#.into(), 400, -32602, "1", "\"params._meta\" must be an object"),
        ("modern: missing Mcp-Method", vec![("mcp-protocol-version", "2026-07-28".into()), ("mcp-name", "a".into())], call("a"), 400, -32020, "11", "missing Mcp-Method header"),
        ("modern: Mcp-Method disagrees", modern("tools/list", Some("a")), call("a"), 400, -32020, "11", "Mcp-Method header \"tools/list\" does not match the body (\"tools/call\")"),
        ("modern: missing Mcp-Name", modern("tools/call", None), call("a"), 400, -32020, "11", "missing Mcp-Name header"),
        ("modern: Mcp-Name disagrees", modern("tools/call", Some("get_account_balance")), call("delete_account"), 400, -32020, "11", "Mcp-Name header \"get_account_balance\" does not match the body (\"delete_account\")"),
        ("modern: Mcp-Name differs in case", modern("tools/call", Some("ADD")), call("add"), 400, -32020, "11", "does not match"),
        ("modern: broken sentinel", modern("tools/call", Some("=?base64?%%?=")), call("a"), 400, -32020, "11", "invalid =?base64?...?= value"),
        ("modern: Mcp-Name on a method without one", modern("tools/list", Some("a")), format!(r#"{{"jsonrpc":"2.0","id":11,"method":"tools/list","params":{{{MODERN_META}}}}}"#), 400, -32020, "11", "the body has no such value"),
        ("modern: repeated Mcp-Name", { let mut h = modern("tools/call", Some("a")); h.push(("mcp-name", "a".into())); h }, call("a"), 400, -32020, "11", "Mcp-Name header sent more than once"),
        ("modern: _meta but no version header", vec![("mcp-method", "tools/call".into()), ("mcp-name", "a".into())], call("a"), 400, -32020, "11", "missing MCP-Protocol-Version header"),
        ("modern: version header but no _meta", modern("tools/call", Some("a")), r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"a"}}"#.into(), 400, -32602, "11", "requires params._meta"),
        ("modern: header and _meta disagree", { let mut h = modern("tools/call", Some("a")); h[0].1 = "2025-11-25".into(); h }, call("a"), 400, -32020, "11", "MCP-Protocol-Version header is 2025-11-25 but params._meta names 2026-07-28"),
        ("modern header, body claims older revision", modern("tools/call", Some("a")), r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#.into(), 400, -32020, "11", "header is 2026-07-28 but params._meta names 2025-11-25"),
        ("malformed version header", vec![("mcp-protocol-version", "latest".into())], r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.into(), 400, -32020, "1", "MCP-Protocol-Version header \"latest\" is not a revision"),
        ("handshake: Mcp-Name present must still agree", { let mut h = handshake(); h.push(("mcp-name", "safe_tool".into())); h }, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_account"}}"#.into(), 400, -32020, "1", "does not match"),
        ("modern: client response is not a request", modern("x", None), r#"{"jsonrpc":"2.0","id":1,"result":{}}"#.into(), 400, -32600, "1", "missing \"method\""),
        // Keys that Go's encoding/json reads as the key the gateway reads (Unicode
        // simple case folding): refused at every level the gateway acts on.
        ("folded params.name", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}"#.into(), 400, -32600, "1", "spelled like \"params.name\""),
        ("folded params.name alone", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"b"}}"#.into(), 400, -32600, "1", "params.name"),
        ("folded params (long s)", handshake(), "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\"},\"param\u{17f}\":{\"name\":\"b\"}}".into(), 400, -32600, "1", "spelled like \"params\""),
        ("folded params (escaped long s)", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"param\u017f":{"name":"b"}}"#.into(), 400, -32600, "1", "spelled like \"params\""),
        ("folded method", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","METHOD":"tools/call"}"#.into(), 400, -32600, "1", "spelled like \"method\""),
        ("folded id echoes no id", handshake(), r#"{"jsonrpc":"2.0","id":1,"Id":2,"method":"ping"}"#.into(), 400, -32600, "null", "spelled like \"id\""),
        ("folded jsonrpc", handshake(), r#"{"jsonrpc":"2.0","JSONRPC":"2.0","id":1,"method":"ping"}"#.into(), 400, -32600, "1", "spelled like \"jsonrpc\""),
        ("folded arguments", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{},"Arguments":{"x":1}}}"#.into(), 400, -32600, "1", "params.arguments"),
        ("folded _meta (Kelvin sign not involved)", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_META":{}}}"#.into(), 400, -32600, "1", "params._meta"),
        ("folded _meta key", modern("tools/list", None), r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/protocolversion":"2025-03-26"}}}"#.into(), 400, -32600, "1", "params._meta.io.modelcontextprotocol/protocolVersion"),
        ("response and request at once", handshake(), r#"{"jsonrpc":"2.0","id":1,"result":{},"method":"tools/call","params":{"name":"a"}}"#.into(), 400, -32600, "1", "not both"),
        ("response with params", handshake(), r#"{"jsonrpc":"2.0","id":1,"result":{},"params":{"name":"a"}}"#.into(), 400, -32600, "1", "not both"),
        ("error response with method", handshake(), r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"},"method":"ping"}"#.into(), 400, -32600, "1", "not both"),
        // Labels are bounded before any side call sees them.
        ("tool name past 128 characters", handshake(), format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{}"}}}}"#, "é".repeat(129)), 400, -32602, "1", "tool name is 129 characters long"),
        ("empty tool name", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":""}}"#.into(), 400, -32602, "1", "tool name is 0 characters long"),
        ("prompt name past 128 characters", handshake(), format!(r#"{{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{{"name":"{}"}}}}"#, "p".repeat(129)), 400, -32602, "1", "prompt name is 129 characters"),
        ("method past the bound", handshake(), format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{}"}}"#, "m".repeat(129)), 400, -32600, "1", "\"method\" is 129 bytes long; this gateway accepts at most 128"),
        ("id past 256 bytes echoes no id", handshake(), format!(r#"{{"jsonrpc":"2.0","id":"{}","method":"ping"}}"#, "i".repeat(300)), 400, -32600, "null", "\"id\" is longer than 256 bytes"),
        // Arguments the audit hash cannot represent faithfully.
        ("integer past 2^53 in arguments", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"n":9007199254740993}}}"#.into(), 400, -32602, "1", "integer 9007199254740993 is beyond"),
        ("number out of double range in arguments", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"n":1e400}}}"#.into(), 400, -32602, "1", "params.arguments"),
        ("lone surrogate in arguments", handshake(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"s":"\ud800"}}}"#.into(), 400, -32602, "1", "params.arguments"),
    ];
    for (case, headers, body, status, code, id, message) in cases {
        let rejection = match label_request(&config(), &head(&borrow(&headers)), body.as_bytes()) {
            Ok(labels) => panic!("{case}: accepted with {labels:?}"),
            Err(rejection) => rejection,
        };
        assert_eq!(rejection.status(), status, "{case}");
        let wire: Value = serde_json::from_str(&rejection.body()).unwrap();
        assert_eq!(wire["jsonrpc"], "2.0", "{case}");
        assert_eq!(wire["error"]["code"], code, "{case}");
        assert_eq!(wire["id"].to_string(), id, "{case}");
        let text = wire["error"]["message"].as_str().unwrap();
        assert!(
            text.contains(message),
            "{case}: message {text:?} lacks {message:?}"
        );
    }
}

#[test]
fn invalid_utf8_body_is_a_parse_error() {
    let rejection = label_request(
        &config(),
        &head(&[]),
        b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\"}",
    )
    .unwrap_err();
    assert_eq!((rejection.status(), rejection.error.code()), (400, -32700));
}

/// Deep nesting is read without a stack overflow or crash. In a value the gateway does
/// not read it is skipped iteratively and does not change the labels; in `arguments`,
/// which the audit hash must represent, past 128 levels it is refused (no call goes
/// on without its input_hash); where an object is required it is refused.
#[test]
fn deep_nesting_neither_crashes_nor_confuses() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"other":{deep},"name":"add"}}}}"#
    );
    let labels = label_request(&config(), &head(&[]), body.as_bytes()).unwrap();
    assert_eq!(labels.get("x-mcp-tool-name"), Some("add"));

    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"arguments":{deep},"name":"add"}}}}"#
    );
    let rejection = label_request(&config(), &head(&[]), body.as_bytes()).unwrap_err();
    assert_eq!((rejection.status(), rejection.error.code()), (400, -32602));
    assert!(
        rejection.body().contains("params.arguments"),
        "{}",
        rejection.body()
    );

    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{deep}}}"#);
    let rejection = label_request(&config(), &head(&[]), body.as_bytes()).unwrap_err();
    assert_eq!((rejection.status(), rejection.error.code()), (400, -32600));
}

#[test]
fn head_actions() {
    let cfg = config();
    let make = |method: &str, path: &str, extra: &[(&str, &str)]| {
        let mut all: Vec<(&str, &[u8])> =
            vec![(":method", method.as_bytes()), (":path", path.as_bytes())];
        all.extend(extra.iter().map(|(n, v)| (*n, v.as_bytes())));
        on_request_head(&cfg, &RequestHead::from_headers(all))
    };
    assert!(matches!(
        make("POST", "/other", &[]),
        HeadAction::PassThrough
    ));
    assert!(matches!(
        make("PUT", "/other", &[]),
        HeadAction::PassThrough
    ));
    // On the MCP path, requests without a body still carry the server label: the
    // authz-service refuses requests that never went through the filter.
    for method in ["GET", "DELETE", "OPTIONS", "HEAD"] {
        match make(method, "/mcp", &[]) {
            HeadAction::Forward(labels) => assert_eq!(
                labels.headers,
                vec![("x-mcp-server-id", "financial-data".to_owned())],
                "{method}"
            ),
            other => panic!("{method}: {other:?}"),
        }
    }
    assert!(matches!(make("POST", "/mcp", &[]), HeadAction::ReadBody));
    assert!(matches!(
        make("POST", "/mcp?a=b", &[("content-length", "1000")]),
        HeadAction::ReadBody
    ));
    assert!(matches!(
        make("POST", "/mcp", &[("content-encoding", "identity")]),
        HeadAction::ReadBody
    ));

    let refused = |action: HeadAction| match action {
        HeadAction::Reject(r) => (r.status(), r.error.code(), r.extra_headers().len()),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(refused(make("PUT", "/mcp", &[])), (405, -31003, 1));
    assert_eq!(
        refused(make("POST", "/mcp", &[("content-encoding", "gzip")])),
        (415, -31002, 0)
    );
    assert_eq!(
        refused(make("POST", "/mcp", &[("content-length", "1001")])),
        (413, -31001, 0)
    );
}

#[test]
fn body_limit_is_inclusive() {
    let cfg = config();
    assert!(check_body_size(&cfg, 1000).is_none());
    let rejection = check_body_size(&cfg, 1001).unwrap();
    assert_eq!(rejection.status(), 413);
    assert!(rejection.body().contains("1000 bytes"));
}

/// The bounds are inclusive, and configured where the configuration says so.
#[test]
fn label_bounds_accept_their_limits() {
    let handshake = [("mcp-protocol-version", "2025-11-25")];
    let call = |name: &str, arguments: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{arguments}}}}}"#
        )
    };
    let name = "é".repeat(128);
    let labels = label_request(&config(), &head(&handshake), call(&name, "{}").as_bytes()).unwrap();
    assert!(labels.get("x-mcp-tool-name").is_some());
    let safe = call(
        "a",
        r#"{"n":9007199254740991,"m":-9007199254740991,"f":1e300}"#,
    );
    assert!(label_request(&config(), &head(&handshake), safe.as_bytes()).is_ok());

    let tight =
        FilterConfig::from_json(br#"{"server_id":"s","max_method_bytes":14,"max_uri_bytes":10}"#)
            .unwrap();
    let read = |uri: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{{"uri":"{uri}"}}}}"#
        )
    };
    assert!(label_request(&tight, &head(&handshake), read("file:///a").as_bytes()).is_ok());
    let refused =
        label_request(&tight, &head(&handshake), read("file:///abc").as_bytes()).unwrap_err();
    assert_eq!((refused.status(), refused.error.code()), (400, -32602));
    assert!(
        refused.body().contains("params.uri\\\" is 11 bytes long"),
        "{}",
        refused.body()
    );
    let method = r#"{"jsonrpc":"2.0","id":1,"method":"ping/pong/xyzab"}"#;
    let refused = label_request(&tight, &head(&handshake), method.as_bytes()).unwrap_err();
    assert_eq!((refused.status(), refused.error.code()), (400, -32600));
}
