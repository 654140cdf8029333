//! The request parser and validator: what the filter decides for a head and body.

use crate::input::FuzzRequest;
use mcp_filter_core::headers::{X_MCP_METHOD, X_MCP_PROMPT_NAME, X_MCP_TOOL_NAME};
use mcp_filter_core::message::Target;
use mcp_filter_core::{
    label_request_with_facts, on_request_head, sentinel, FilterConfig, HeadAction, RequestFacts,
    RequestHead,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::OnceLock;

/// The configuration every request target runs with.
pub fn config() -> &'static FilterConfig {
    static CONFIG: OnceLock<FilterConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        FilterConfig::from_json(
            br#"{"server_id":"fuzz","max_body_bytes":65536,"metrics":{"tool_names":["get_account_balance"]}}"#,
        )
        .unwrap_or_else(|e| panic!("the fuzz configuration is valid: {e}"))
    })
}

pub fn run(data: &[u8]) {
    let request = FuzzRequest::parse(data);
    let head = RequestHead::from_headers(request.pairs());
    let config = config();
    match on_request_head(config, &head) {
        HeadAction::PassThrough | HeadAction::Reject(_) => return,
        HeadAction::Forward(labels) => {
            // Only the server label, and only on an MCP path.
            assert!(config.is_mcp_path(&head.path));
            assert_eq!(labels.headers.len(), 1);
            return;
        }
        HeadAction::ReadBody => {}
    }
    let mut facts = RequestFacts::default();
    let outcome = label_request_with_facts(config, "fuzz", &head, request.body, &mut facts);
    // Deterministic: the same input gets the same decision.
    let again = label_request_with_facts(
        config,
        "fuzz",
        &head,
        request.body,
        &mut RequestFacts::default(),
    );
    assert_eq!(outcome.is_ok(), again.is_ok());
    let Ok(labels) = outcome else {
        return;
    };
    assert_eq!(Some(&labels), again.as_ref().ok());

    // Every label is a header value Envoy accepts unchanged: visible ASCII and spaces,
    // non-ASCII only in the base64 sentinel.
    for (name, value) in &labels.headers {
        assert!(
            value.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "{name}: {value:?} is not printable ASCII"
        );
    }

    check_case_and_bounds(request.body, &labels, &facts);

    // A strict JSON parser (serde_json, RFC 8259; typed, so a repeated or mistyped
    // member is an error) reads the same method and target from an accepted body:
    // what a server acts on is what the labels say. Other members are skipped without
    // converting numbers, which the filter does not either (an id of 400 digits is
    // valid JSON).
    let parsed: Message = serde_json::from_slice(request.body)
        .unwrap_or_else(|e| panic!("accepted a body serde_json refuses: {e}"));
    let Some(method) = facts.method.as_deref() else {
        // A client's response message: no method, no target.
        assert!(parsed.method.is_none());
        return;
    };
    assert_eq!(parsed.method.as_deref(), Some(method));
    let params = parsed.params.unwrap_or_default();
    let decoded = |name: &str| labels.get(name).map(sentinel::decode);
    assert_eq!(decoded(X_MCP_METHOD), Some(Ok(method.to_owned())));
    match &facts.target {
        Some(Target::Tool(name)) => {
            assert_eq!(text(&params.name).as_deref(), Some(name.as_str()));
            assert_eq!(decoded(X_MCP_TOOL_NAME), Some(Ok(name.clone())));
        }
        Some(Target::Prompt(name)) => {
            assert_eq!(text(&params.name).as_deref(), Some(name.as_str()));
            assert_eq!(decoded(X_MCP_PROMPT_NAME), Some(Ok(name.clone())));
        }
        Some(Target::Resource(uri)) => {
            assert_eq!(text(&params.uri).as_deref(), Some(uri.as_str()));
        }
        None => {
            // The methods that name a target never pass without one.
            assert!(
                !matches!(method, "tools/call" | "prompts/get" | "resources/read"),
                "{method} labelled without a target"
            );
            assert!(labels.get(X_MCP_TOOL_NAME).is_none());
        }
    }
}

/// Members the gateway reads at each level it acts on (MCP's request shape).
const TOP: [&str; 6] = ["jsonrpc", "method", "id", "params", "result", "error"];
const PARAMS: [&str; 5] = ["name", "uri", "_meta", "protocolVersion", "arguments"];
const META: [&str; 2] = ["io.modelcontextprotocol/protocolVersion", "traceparent"];

/// What a case-insensitive server (Go's encoding/json) and the label bounds require of
/// an accepted body, checked on a full parse independent of the picker:
/// - no member at a level the gateway acts on is a case-fold variant of one it reads
///   (such a server would read it instead);
/// - not both request- and response-shaped;
/// - labels within their bounds (method 128 bytes, names 1-128 characters, URIs 2048
///   bytes, the id 256 bytes), and an input_hash for every call with arguments.
fn check_case_and_bounds(body: &[u8], labels: &mcp_filter_core::Labels, facts: &RequestFacts) {
    let Ok(serde_json::Value::Object(top)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return; // a number past f64 range or similar: serde_json's Value refuses it
    };
    let no_fold_variants = |object: &serde_json::Map<String, serde_json::Value>,
                            wanted: &[&str]| {
        for key in object.keys() {
            for w in wanted {
                assert!(
                    key == w || !mcp_filter_core::folds_to(key, w),
                    "accepted {key:?}, a case-fold variant of {w:?}"
                );
            }
        }
    };
    no_fold_variants(&top, &TOP);
    let request_shaped = top.contains_key("method") || top.contains_key("params");
    let response_shaped = top.contains_key("result") || top.contains_key("error");
    assert!(
        !(request_shaped && response_shaped),
        "accepted a request-and-response"
    );
    if let Some(serde_json::Value::Object(params)) = top.get("params") {
        no_fold_variants(params, &PARAMS);
        if let Some(serde_json::Value::Object(meta)) = params.get("_meta") {
            no_fold_variants(meta, &META);
        }
        if params.contains_key("arguments")
            && matches!(facts.method.as_deref(), Some("tools/call" | "prompts/get"))
        {
            assert!(
                facts.input_hash.is_some(),
                "a call with arguments has no input_hash"
            );
        }
    }
    if let Some(method) = &facts.method {
        assert!(method.len() <= 128, "method of {} bytes", method.len());
    }
    match &facts.target {
        Some(Target::Tool(name) | Target::Prompt(name)) => {
            assert!((1..=128).contains(&name.chars().count()), "name {name:?}");
        }
        Some(Target::Resource(uri)) => assert!(uri.len() <= 2048, "uri of {} bytes", uri.len()),
        None => {}
    }
    if let Some(id) = labels.get(mcp_filter_core::headers::X_MCP_REQUEST_ID) {
        assert!(id.len() <= 256, "id of {} bytes", id.len());
    }
}

/// The members a server dispatches on.
#[derive(Deserialize)]
struct Message {
    method: Option<String>,
    params: Option<Params>,
}

/// Raw, because only the methods that name a target need these to be strings.
#[derive(Deserialize, Default)]
struct Params {
    name: Option<Box<RawValue>>,
    uri: Option<Box<RawValue>>,
}

/// A raw member as a string, the way the server's parser reads it.
fn text(raw: &Option<Box<RawValue>>) -> Option<String> {
    raw.as_deref()
        .map(|raw| serde_json::from_str(raw.get()).expect("a target member is a JSON string"))
}
