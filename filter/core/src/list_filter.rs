//! Per-caller lists: the answer to `tools/list`, `prompts/list`, `resources/list` or
//! `resources/templates/list` keeps only the entries the caller may use.
//!
//! The rule is the one that decides the calls themselves: the authz-service works out
//! from the policy which tools this token may `tools/call` (or whether it may
//! `prompts/get` / `resources/read` at all) and hands the answer to the filter in
//! ext_authz's dynamic metadata (see `list_visibility`). This module rewrites one
//! JSON-RPC message, pure and without host calls.
//!
//! Only the list array and `cacheScope` change; every other member (`nextCursor`,
//! `ttlMs`, `_meta`, unknown fields) is copied as the server wrote it, so pagination
//! works as before: each page is its own request with its own decision. A filtered list
//! differs per caller, so its `cacheScope` becomes `"private"` (MCP 2026-07-28,
//! server/utilities/caching: private results MUST NOT be shared across authorization
//! contexts), whatever the server said.
//!
//! Anything the gateway and a client could read differently is refused, not guessed
//! at: duplicate keys and keys that only match under Unicode case folding (Go's
//! `encoding/json`, see [`crate::folds_to`]) in the envelope, the result or a tool
//! entry. An ambiguous message is replaced by a JSON-RPC error; an entry whose name
//! cannot be read for sure is hidden.

use crate::pick::{folds_to, pick, Shape};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

/// Which list a method returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    pub fn of_method(method: &str) -> Option<ListKind> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "prompts/list" => Some(ListKind::Prompts),
            "resources/list" => Some(ListKind::Resources),
            "resources/templates/list" => Some(ListKind::ResourceTemplates),
            _ => None,
        }
    }

    /// The member of the result that holds the entries (MCP schema:
    /// `ListToolsResult.tools`, `ListResourceTemplatesResult.resourceTemplates`, ...).
    pub fn key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }
}

/// Which entries of one answer the caller sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// `tools/list`: a registered tool is shown when the caller may call it; a tool
    /// the registry does not know is shown only if the server's manifest says so.
    Tools {
        /// Tools the caller may call, sorted.
        allowed: Vec<String>,
        /// The server's registered tools, sorted.
        registered: Vec<String>,
        show_unregistered: bool,
    },
    /// Every entry (the caller may use them all).
    All,
    /// No entry: the caller may use none, or the gateway could not learn what it may
    /// use (fail closed).
    Nothing,
}

impl Visibility {
    fn shows(&self, name: Option<&str>) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Nothing => false,
            Visibility::Tools {
                allowed,
                registered,
                show_unregistered,
            } => {
                let Some(name) = name else {
                    return false;
                };
                let known = |list: &[String]| list.binary_search_by(|n| n.as_str().cmp(name));
                if known(allowed).is_ok() {
                    true
                } else {
                    *show_unregistered && known(registered).is_err()
                }
            }
        }
    }
}

/// A tool as the server advertised it, for the drift check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenTool {
    pub name: String,
    /// The digest of its `inputSchema` ([`crate::drift::schema_digest`]); `None` when
    /// absent or unreadable.
    pub schema_digest: Option<String>,
}

/// What one message turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Not a response (a notification, a server request): passed on as it is.
    NotTheAnswer,
    /// A JSON-RPC error answering the request: passed on as it is.
    Error { code: Option<i64> },
    /// The filtered answer.
    Filtered(FilteredList),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredList {
    /// The message to send instead.
    pub body: Vec<u8>,
    pub shown: usize,
    pub hidden: usize,
    /// The entries have a `nextCursor`: the list goes on in another page.
    pub has_next_page: bool,
    /// Every tool of a `tools/list` answer as the server sent it, in order (only when
    /// asked for; hidden ones included).
    pub tools: Option<Vec<SeenTool>>,
}

/// Why an answer cannot be filtered; the client gets a JSON-RPC error instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("the MCP server's answer is not a JSON object: {0}")]
    Unreadable(String),
    #[error("the MCP server's answer has {0:?} more than once or spelled in another case; clients would read it differently")]
    Ambiguous(&'static str),
    #[error("the MCP server's answer has no list {0:?}")]
    NoList(&'static str),
}

/// Rewrites `message` if it is a response. Every response in the answer to a list
/// call is filtered, whatever its id: the server sends the answer to a POST on that
/// POST's own stream, and clients match ids loosely (JavaScript reads `1.0` as `1`), so
/// an id that differs by spelling must not carry an unfiltered list past the filter.
///
/// `modern`: the request was a 2026-07-28 one, whose results carry caching hints; an
/// older answer gets `cacheScope` only if it already had caching hints.
/// `collect_tools`: return every advertised tool for the drift check.
pub fn rewrite(
    message: &[u8],
    kind: ListKind,
    visibility: &Visibility,
    modern: bool,
    collect_tools: bool,
) -> Result<Rewrite, ListError> {
    // One pass over the answer: the envelope's and the result's members kept raw,
    // except the list, whose entries are kept raw (measured: parsing each level again
    // doubled the cost of a 500-tool list).
    let top = Answer::parse(message, kind.key())?;
    for key in ["jsonrpc", "id", "method", "result", "error"] {
        unique(top.members.iter().map(|(k, _)| k.as_str()), key)?;
    }
    if top.get("method").is_some() {
        // Both request- and response-shaped: parsers that look for `result` first
        // would take its list as the answer (found by fuzzing).
        if top.get("result").is_some() || top.get("error").is_some() {
            return Err(ListError::Ambiguous("method"));
        }
        return Ok(Rewrite::NotTheAnswer);
    }
    if let Some(TopValue::Raw(error)) = top.get("error") {
        let code = Entries::parse(error.get().as_bytes())
            .ok()
            .and_then(|e| e.get("code").and_then(|c| c.get().parse::<i64>().ok()));
        return Ok(Rewrite::Error { code });
    }
    let list_key = kind.key();
    let result_entries = match top.get("result") {
        Some(TopValue::Result(result)) => result,
        _ => return Err(ListError::NoList("result")),
    };
    for key in [list_key, "nextCursor", "cacheScope", "ttlMs"] {
        unique(result_entries.iter().map(|(k, _)| k.as_str()), key)?;
    }
    let member = |key: &str| {
        result_entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    };
    let Some(ResultValue::List(items)) = member(list_key) else {
        return Err(ListError::NoList(list_key));
    };

    let mut kept: Vec<&RawValue> = Vec::with_capacity(items.len());
    let mut tools = collect_tools.then(Vec::new);
    for item in items {
        let name = match kind {
            ListKind::Tools => {
                let (name, schema) = tool_name_and_schema(item);
                if let (Some(tools), Some(name)) = (tools.as_mut(), name.as_ref()) {
                    tools.push(SeenTool {
                        name: name.clone(),
                        schema_digest: schema.and_then(crate::drift::schema_digest),
                    });
                }
                name
            }
            _ => None,
        };
        if visibility.shows(name.as_deref()) {
            kept.push(item);
        }
    }
    let shown = kept.len();
    let hidden = items.len() - shown;
    let caching_hints = member("cacheScope").is_some() || member("ttlMs").is_some();

    let mut out = Vec::with_capacity(message.len());
    out.push(b'{');
    let mut first = true;
    for (key, value) in &top.members {
        comma(&mut out, &mut first);
        push_key(&mut out, key);
        match value {
            TopValue::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
            TopValue::Result(members) => {
                out.push(b'{');
                let mut first_member = true;
                for (name, value) in members {
                    comma(&mut out, &mut first_member);
                    push_key(&mut out, name);
                    match value {
                        // Only one list member exists (checked above).
                        ResultValue::List(_) => push_array(&mut out, &kept),
                        ResultValue::Raw(_) if name == "cacheScope" => {
                            out.extend_from_slice(br#""private""#)
                        }
                        ResultValue::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
                    }
                }
                if member("cacheScope").is_none() && (modern || caching_hints) {
                    comma(&mut out, &mut first_member);
                    out.extend_from_slice(br#""cacheScope":"private""#);
                }
                out.push(b'}');
            }
        }
    }
    out.push(b'}');
    Ok(Rewrite::Filtered(FilteredList {
        body: out,
        shown,
        hidden,
        has_next_page: member("nextCursor").is_some(),
        tools,
    }))
}

/// A tool entry's `name` and raw `inputSchema`, each only when it can be read for
/// sure: an entry with two `name` keys, or a key that folds to `name`, has no name
/// (and is hidden). Read with [`pick`], which skips the rest of the entry.
fn tool_name_and_schema(item: &RawValue) -> (Option<String>, Option<&RawValue>) {
    const KEYS: [&str; 2] = ["name", "inputSchema"];
    let Ok(picked) = pick(item.get().as_bytes(), &KEYS) else {
        return (None, None);
    };
    if picked.shape != Shape::Object {
        return (None, None);
    }
    let sure = |key: &str| picked.duplicate != Some(key) && picked.folded != Some(key);
    let [name, schema] = picked.values;
    let name = name
        .filter(|_| sure("name"))
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
    (name, schema.filter(|_| sure("inputSchema")))
}

fn comma(out: &mut Vec<u8>, first: &mut bool) {
    if !*first {
        out.push(b',');
    }
    *first = false;
}

fn push_key(out: &mut Vec<u8>, key: &str) {
    // Serialising a string cannot fail.
    out.extend_from_slice(serde_json::to_string(key).unwrap_or_default().as_bytes());
    out.push(b':');
}

fn push_array(out: &mut Vec<u8>, items: &[&RawValue]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item.get().as_bytes());
    }
    out.push(b']');
}

/// `key` appears at most once among `keys`, and no other key folds to it.
fn unique<'k>(keys: impl Iterator<Item = &'k str>, key: &'static str) -> Result<(), ListError> {
    let mut exact = 0;
    for k in keys {
        if k == key {
            exact += 1;
        } else if folds_to(k, key) {
            return Err(ListError::Ambiguous(key));
        }
    }
    if exact > 1 {
        return Err(ListError::Ambiguous(key));
    }
    Ok(())
}

/// A JSON-RPC message read in one pass: its members in order (duplicates kept), each
/// `result` read one level further.
struct Answer<'a> {
    members: Vec<(String, TopValue<'a>)>,
}

enum TopValue<'a> {
    Raw(&'a RawValue),
    /// `result`'s members in order, the list's entries raw.
    Result(Vec<(String, ResultValue<'a>)>),
}

enum ResultValue<'a> {
    Raw(&'a RawValue),
    List(Vec<&'a RawValue>),
}

impl<'a> Answer<'a> {
    fn parse(text: &'a [u8], list_key: &'static str) -> Result<Answer<'a>, ListError> {
        let text = std::str::from_utf8(text).map_err(|e| ListError::Unreadable(e.to_string()))?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let members = deserializer
            .deserialize_map(AnswerVisitor { list_key })
            .map_err(|e| ListError::Unreadable(e.to_string()))?;
        deserializer
            .end()
            .map_err(|e| ListError::Unreadable(e.to_string()))?;
        Ok(Answer { members })
    }

    fn get(&self, key: &str) -> Option<&TopValue<'a>> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

struct AnswerVisitor {
    list_key: &'static str,
}

impl<'de> Visitor<'de> for AnswerVisitor {
    type Value = Vec<(String, TopValue<'de>)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = if key == "result" {
                TopValue::Result(map.next_value_seed(ResultSeed {
                    list_key: self.list_key,
                })?)
            } else {
                TopValue::Raw(map.next_value()?)
            };
            members.push((key, value));
        }
        Ok(members)
    }
}

struct ResultSeed {
    list_key: &'static str,
}

impl<'de> DeserializeSeed<'de> for ResultSeed {
    type Value = Vec<(String, ResultValue<'de>)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ResultSeed {
    type Value = Vec<(String, ResultValue<'de>)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a result object with a {:?} array", self.list_key)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = if key == self.list_key {
                ResultValue::List(map.next_value()?)
            } else {
                ResultValue::Raw(map.next_value()?)
            };
            members.push((key, value));
        }
        Ok(members)
    }
}

/// The members of one JSON object, in order, duplicates kept, values as raw text.
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'a> Entries<'a> {
    fn parse(text: &'a [u8]) -> Result<Entries<'a>, ListError> {
        let text = std::str::from_utf8(text).map_err(|e| ListError::Unreadable(e.to_string()))?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let entries = deserializer
            .deserialize_map(EntriesVisitor)
            .map_err(|e| ListError::Unreadable(e.to_string()))?;
        deserializer
            .end()
            .map_err(|e| ListError::Unreadable(e.to_string()))?;
        Ok(entries)
    }

    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: &'de RawValue = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Entries(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools_visibility(allowed: &[&str], registered: &[&str], show: bool) -> Visibility {
        let sorted = |names: &[&str]| {
            let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        Visibility::Tools {
            allowed: sorted(allowed),
            registered: sorted(registered),
            show_unregistered: show,
        }
    }

    fn filtered(r: Rewrite) -> FilteredList {
        match r {
            Rewrite::Filtered(f) => f,
            other => panic!("not filtered: {other:?}"),
        }
    }

    fn value(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    const TOOLS: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[
        {"name":"read","inputSchema":{"type":"object"}},
        {"name":"write","inputSchema":{"type":"object"}},
        {"name":"extra","inputSchema":{}}],
        "nextCursor":"abc","ttlMs":60000,"cacheScope":"public","_meta":{"x":1}}}"#;

    #[test]
    fn keeps_allowed_tools_and_the_rest_of_the_result() {
        let v = tools_visibility(&["read"], &["read", "write"], false);
        let f = filtered(rewrite(TOOLS.as_bytes(), ListKind::Tools, &v, true, true).unwrap());
        assert_eq!((f.shown, f.hidden), (1, 2));
        assert!(f.has_next_page);
        let out = value(&f.body);
        assert_eq!(out["result"]["tools"].as_array().unwrap().len(), 1);
        assert_eq!(out["result"]["tools"][0]["name"], "read");
        assert_eq!(out["result"]["nextCursor"], "abc");
        assert_eq!(out["result"]["ttlMs"], 60000);
        assert_eq!(out["result"]["cacheScope"], "private");
        assert_eq!(out["result"]["_meta"]["x"], 1);
        assert_eq!(out["id"], 7);
        let names: Vec<_> = f.tools.unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["read", "write", "extra"]);
    }

    #[test]
    fn unregistered_tools_follow_the_server_setting() {
        let v = tools_visibility(&["read"], &["read", "write"], true);
        let f = filtered(rewrite(TOOLS.as_bytes(), ListKind::Tools, &v, true, false).unwrap());
        let out = value(&f.body);
        let names: Vec<_> = out["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            ["read", "extra"],
            "write is registered and not allowed"
        );
        assert!(f.tools.is_none());
    }

    #[test]
    fn cache_scope_is_added_to_modern_answers_only() {
        let body = br#"{"jsonrpc":"2.0","id":"a","result":{"prompts":[{"name":"p"}]}}"#;
        let f = filtered(rewrite(body, ListKind::Prompts, &Visibility::All, true, false).unwrap());
        assert_eq!(value(&f.body)["result"]["cacheScope"], "private");
        let f = filtered(rewrite(body, ListKind::Prompts, &Visibility::All, false, false).unwrap());
        assert!(value(&f.body)["result"].get("cacheScope").is_none());
        assert_eq!((f.shown, f.hidden), (1, 0));
    }

    #[test]
    fn nothing_hides_every_entry() {
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[{"uriTemplate":"a"},{"uriTemplate":"b"}]}}"#;
        let f = filtered(
            rewrite(
                body,
                ListKind::ResourceTemplates,
                &Visibility::Nothing,
                false,
                false,
            )
            .unwrap(),
        );
        assert_eq!((f.shown, f.hidden), (0, 2));
        assert_eq!(
            value(&f.body)["result"]["resourceTemplates"],
            serde_json::json!([])
        );
    }

    #[test]
    fn other_messages_and_errors_pass() {
        let v = Visibility::Nothing;
        let note = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#;
        assert_eq!(
            rewrite(note, ListKind::Tools, &v, true, false).unwrap(),
            Rewrite::NotTheAnswer
        );
        let both = br#"{"jsonrpc":"2.0","method":"n","result":{"tools":[{"name":"x"}]}}"#;
        assert_eq!(
            rewrite(both, ListKind::Tools, &v, true, false),
            Err(ListError::Ambiguous("method"))
        );
        // A response with another id (or one spelled differently) is filtered too.
        let other = br#"{"jsonrpc":"2.0","id":1.0,"result":{"tools":[{"name":"x"}]}}"#;
        let list = filtered(rewrite(other, ListKind::Tools, &v, true, false).unwrap());
        assert_eq!(list.hidden, 1);
        let error = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#;
        assert_eq!(
            rewrite(error, ListKind::Tools, &v, true, false).unwrap(),
            Rewrite::Error { code: Some(-32601) }
        );
    }

    #[test]
    fn ambiguous_answers_are_refused() {
        let v = Visibility::All;
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"result":{"tools":[{"name":"x"}]}}"#
                [..],
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"Result":{"tools":[{"name":"x"}]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"TOOLS":[{"name":"x"}]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"cacheſcope":"public"}}"#.as_bytes(),
        ] {
            assert!(
                matches!(
                    rewrite(body, ListKind::Tools, &v, true, false),
                    Err(ListError::Ambiguous(_))
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(matches!(
            rewrite(b"[1]", ListKind::Tools, &v, true, false),
            Err(ListError::Unreadable(_))
        ));
        // A list that is not an array cannot be read; a result without it has none.
        assert!(matches!(
            rewrite(
                br#"{"jsonrpc":"2.0","id":1,"result":{"tools":{}}}"#,
                ListKind::Tools,
                &v,
                true,
                false
            ),
            Err(ListError::Unreadable(_))
        ));
        assert!(matches!(
            rewrite(
                br#"{"jsonrpc":"2.0","id":1,"result":{"prompts":[]}}"#,
                ListKind::Tools,
                &v,
                true,
                false
            ),
            Err(ListError::NoList("tools"))
        ));
    }

    #[test]
    fn tools_whose_name_is_uncertain_are_hidden() {
        let v = tools_visibility(&["read"], &["read"], true);
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[
            {"name":"read","Name":"write"},
            {"name":"read","name":"write"},
            {"nam\u0065":"read"},
            "read",
            {"name":7}]}}"#;
        let f = filtered(rewrite(body, ListKind::Tools, &v, true, false).unwrap());
        // Only the escaped-but-exact key is a sure name.
        assert_eq!((f.shown, f.hidden), (1, 4));
    }
}
