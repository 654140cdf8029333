//! Step 1: the server's live `tools/list`, through the gateway, in each claimed
//! version: well-formed, tool names by MCP's rule, every `inputSchema` a valid JSON
//! Schema whose root type is `object`, and equal (by its RFC 8785 digest, the one the
//! gateway's drift check uses) to the registered `schema_ref`.

use super::client::{Client, Session};
use super::run::{no_token_step, Ctx};
use super::{claims, Check, Step};
use crate::model::Tool;
use mcp_filter_core::input_hash::input_hash;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Pages followed at most (a server whose cursor never ends must not hang preflight).
pub const MAX_PAGES: usize = 100;
/// Bytes of list answers read at most over all pages.
pub const MAX_BYTES: usize = 8 << 20;

/// Every tool of a `tools/list`, following `nextCursor`.
pub async fn list_all(
    client: &Client,
    session: &Session,
    token: Option<&str>,
) -> Result<Vec<Value>, String> {
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    let mut bytes = 0;
    for page in 0..MAX_PAGES {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let id = json!(format!("preflight-list-{page}"));
        let answer = client
            .call(session, "tools/list", params, id, token, &[])
            .await
            .map_err(|e| e.to_string())?;
        bytes += answer.body.len();
        if bytes > MAX_BYTES {
            return Err(format!("the list is over {MAX_BYTES} bytes"));
        }
        let Some(result) = answer.result().filter(|_| answer.status == 200) else {
            return Err(format!("tools/list got {}", answer.summary()));
        };
        let page_tools = result
            .get("tools")
            .and_then(Value::as_array)
            .ok_or_else(|| "the result has no \"tools\" array".to_owned())?;
        tools.extend(page_tools.iter().cloned());
        match result.get("nextCursor") {
            None | Some(Value::Null) => return Ok(tools),
            Some(Value::String(next)) => cursor = Some(next.clone()),
            Some(other) => return Err(format!("nextCursor is {other}, not a string")),
        }
    }
    Err(format!("the list did not end within {MAX_PAGES} pages"))
}

/// Step 1 in every claimed version.
pub async fn step(ctx: &Ctx<'_>, own: &[&crate::Problem]) -> Step {
    let mut checks: Vec<Check> = own
        .iter()
        .map(|p| Check::fail(&p.field, p.reason.clone()))
        .collect();
    let Some(token) = ctx.token() else {
        return no_token_step(ctx, 1);
    };
    if ctx.claims.is_empty() {
        checks.push(Check::fail(
            "claims",
            format!("the server claims no protocol version: {}", ctx.discovery),
        ));
        return Step::from_checks(1, checks);
    }
    let needed = super::auth::all(ctx.server);
    if let Some(has) = super::identity::scopes_of(token) {
        let lacking: Vec<&String> = needed.iter().filter(|s| !has.contains(s)).collect();
        if !lacking.is_empty() {
            checks.push(Check::fail(
                "identity",
                format!(
                    "the schema identity lacks {}: the gateway's per-caller lists would hide tools from it",
                    lacking.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
                ),
            ));
        }
    }
    let mut eras: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let mut listed = serde_json::Map::new();
    for version in ctx.claims.keys() {
        let session = match ctx.open(version, Some(token)).await {
            Ok(session) => session,
            Err(reason) => {
                checks.push(Check::skip(
                    version,
                    format!("cannot connect in {version} ({reason}); see step 5"),
                ));
                continue;
            }
        };
        let tools = list_all(&ctx.client, &session, Some(token)).await;
        ctx.client.close(session, Some(token)).await;
        match tools {
            Err(reason) => checks.push(Check::fail(version, reason)),
            Ok(tools) => {
                let (problems, digests) = judge(&tools, &ctx.server.tools);
                listed.insert(version.clone(), json!(digests.keys().collect::<Vec<_>>()));
                checks.push(if problems.is_empty() {
                    Check::pass(
                        version,
                        format!("{} tools match their schema_ref", digests.len()),
                    )
                } else {
                    Check::fail(version, problems.join("; "))
                });
                eras.push((version.clone(), digests));
            }
        }
    }
    for pair in eras.windows(2) {
        let disagree = eras_disagree((&pair[0].0, &pair[0].1), (&pair[1].0, &pair[1].1));
        if !disagree.is_empty() {
            checks.push(Check::fail("eras", disagree.join("; ")));
        }
    }
    Step::from_checks(1, checks).with_data(json!({
        "claimed": claims::describe(&ctx.claims),
        "discovery": ctx.discovery,
        "tools": listed,
    }))
}

/// Every problem of one version's tool list against the registration, and the digest
/// of each listed tool's schema (for comparing versions).
pub fn judge(tools: &[Value], registered: &[Tool]) -> (Vec<String>, BTreeMap<String, String>) {
    let mut problems = Vec::new();
    let mut digests = BTreeMap::new();
    for (index, tool) in tools.iter().enumerate() {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            problems.push(format!("tools[{index}] has no \"name\" string"));
            continue;
        };
        if !crate::is_tool_name(name) {
            problems.push(format!(
                "{name:?} is not a valid MCP tool name (1-128 of A-Z a-z 0-9 _ - .)"
            ));
        }
        if digests.contains_key(name) {
            problems.push(format!("{name}: listed twice"));
            continue;
        }
        let schema = match tool.get("inputSchema") {
            Some(schema @ Value::Object(_)) => schema,
            Some(_) => {
                problems.push(format!("{name}: inputSchema is not an object"));
                continue;
            }
            None => {
                problems.push(format!("{name}: no inputSchema"));
                continue;
            }
        };
        if schema.get("type") != Some(&json!("object")) {
            problems.push(format!(
                "{name}: inputSchema's root \"type\" is not \"object\" (MCP requires it)"
            ));
        }
        if let Err(error) = jsonschema::meta::validate(schema) {
            problems.push(format!(
                "{name}: inputSchema is not a valid JSON Schema: {error}"
            ));
        }
        let digest = match digest(schema) {
            Ok(d) => d,
            Err(reason) => {
                problems.push(format!(
                    "{name}: inputSchema has no canonical form: {reason}"
                ));
                continue;
            }
        };
        if let Some(registered) = registered.iter().find(|t| t.name == name) {
            if registered.schema_digest != digest {
                let at = match first_difference(schema, &registered.input_schema, "") {
                    Some((at, live, reg)) => format!(
                        " at {} ({live}, registered {reg})",
                        if at.is_empty() { "/" } else { &at }
                    ),
                    None => String::new(),
                };
                problems.push(format!(
                    "{name}: inputSchema differs from {}{at}",
                    registered.schema_ref
                ));
            }
        }
        digests.insert(name.to_owned(), digest);
    }
    for tool in registered {
        if !digests.contains_key(&tool.name) {
            problems.push(format!("{}: registered but not listed", tool.name));
        }
    }
    (problems, digests)
}

/// Tools whose schema differs between two versions' lists.
pub fn eras_disagree(
    a: (&str, &BTreeMap<String, String>),
    b: (&str, &BTreeMap<String, String>),
) -> Vec<String> {
    a.1.iter()
        .filter(|(name, digest)| b.1.get(*name).is_some_and(|other| other != *digest))
        .map(|(name, _)| format!("{name}: inputSchema differs between {} and {}", a.0, b.0))
        .collect()
}

pub fn digest(schema: &Value) -> Result<String, String> {
    let raw = serde_json::value::to_raw_value(schema).map_err(|e| e.to_string())?;
    input_hash(&raw).map_err(|e| format!("{e:?}"))
}

/// The first JSON pointer where two values differ, with both values there (compact,
/// `absent` where one has nothing).
pub fn first_difference(
    live: &Value,
    registered: &Value,
    at: &str,
) -> Option<(String, String, String)> {
    let shown = |v: Option<&Value>| v.map_or("absent".to_owned(), |v| v.to_string());
    match (live, registered) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|key| {
                let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => first_difference(x, y, &here),
                    (x, y) => Some((here, shown(x), shown(y))),
                }
            })
        }
        (Value::Array(a), Value::Array(b)) => {
            (0..a.len().max(b.len())).find_map(|i| match (a.get(i), b.get(i)) {
                (Some(x), Some(y)) => first_difference(x, y, &format!("{at}/{i}")),
                (x, y) => Some((format!("{at}/{i}"), shown(x), shown(y))),
            })
        }
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        (x, y) if x == y => None,
        (x, y) => Some((at.to_owned(), x.to_string(), y.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(name: &str, schema: Value) -> Tool {
        Tool {
            name: name.into(),
            schema_ref: format!("schemas/{name}_v1.json"),
            schema_file: format!("/f/schemas/{name}_v1.json").into(),
            schema_digest: digest(&schema).unwrap(),
            input_schema: schema,
            param_headers: vec![],
        }
    }

    fn lookup_schema(maximum: u32) -> Value {
        json!({"type": "object", "properties": {"limit": {"type": "integer", "maximum": maximum}}})
    }

    #[test]
    fn a_matching_list_has_no_problem_whatever_the_key_order() {
        let tools = [json!({"name": "lookup", "inputSchema":
            {"properties": {"limit": {"maximum": 50, "type": "integer"}}, "type": "object"}})];
        let (problems, digests) = judge(&tools, &[registered("lookup", lookup_schema(50))]);
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(digests.len(), 1);
    }

    #[test]
    fn every_kind_of_broken_list_is_named() {
        let reg = [
            registered("lookup", lookup_schema(50)),
            registered("search", json!({"type": "object"})),
        ];
        let tools = [
            json!({"inputSchema": {"type": "object"}}),
            json!({"name": "bad name", "inputSchema": {"type": "object"}}),
            json!({"name": "lookup", "inputSchema": lookup_schema(500)}),
            json!({"name": "lookup", "inputSchema": lookup_schema(50)}),
            json!({"name": "arr", "inputSchema": []}),
            json!({"name": "str", "inputSchema": {"type": "string"}}),
            json!({"name": "inv", "inputSchema": {"type": "object", "minProperties": -1}}),
        ];
        let (problems, _) = judge(&tools, &reg);
        assert_eq!(
            problems,
            [
                "tools[0] has no \"name\" string",
                "\"bad name\" is not a valid MCP tool name (1-128 of A-Z a-z 0-9 _ - .)",
                "lookup: inputSchema differs from schemas/lookup_v1.json at /properties/limit/maximum (500, registered 50)",
                "lookup: listed twice",
                "arr: inputSchema is not an object",
                "str: inputSchema's root \"type\" is not \"object\" (MCP requires it)",
                "inv: inputSchema is not a valid JSON Schema: -1 is less than the minimum of 0",
                "search: registered but not listed",
            ]
        );
    }

    #[test]
    fn eras_that_list_another_schema_are_named() {
        let (_, modern) = judge(
            &[json!({"name": "lookup", "inputSchema": lookup_schema(50)})],
            &[],
        );
        let (_, legacy) = judge(
            &[json!({"name": "lookup", "inputSchema": lookup_schema(5)})],
            &[],
        );
        assert_eq!(
            eras_disagree(("2026-07-28", &modern), ("2025-11-25", &legacy)),
            ["lookup: inputSchema differs between 2026-07-28 and 2025-11-25"]
        );
        assert!(eras_disagree(("a", &modern), ("b", &modern)).is_empty());
    }

    #[test]
    fn the_first_difference_is_a_json_pointer() {
        let a = json!({"a": {"b/c": [1, 2]}, "z": 1});
        let b = json!({"a": {"b/c": [1, 3]}, "z": 1});
        assert_eq!(
            first_difference(&a, &b, ""),
            Some(("/a/b~1c/1".into(), "2".into(), "3".into()))
        );
        assert_eq!(
            first_difference(&json!({"x": 1}), &json!({}), ""),
            Some(("/x".into(), "1".into(), "absent".into()))
        );
        assert_eq!(first_difference(&json!(1.0), &json!(1), ""), None);
    }
}
