//! The list-filtering response path: a `tools/list` (or other list) answer, JSON or
//! SSE, fed in chunks through [`ListStream`] and [`list_filter::rewrite`].
//!
//! Input: byte 0 picks the framing (even: JSON, odd: SSE); byte 1 the list and the
//! caller (bits 0-1: tools with an allowed set, every entry, no entry, or prompts with
//! every entry; bit 2: unregistered tools shown); bytes 2-3 where the body is split;
//! the rest is the answer (request id 1).
//!
//! Properties:
//! - the client gets the same bytes however the answer is cut into chunks;
//! - no answer the client gets shows an entry the caller may not see, read the way
//!   the most lenient client reads JSON: any key that equals `name` or `tools` under
//!   Unicode case folding (Go's `encoding/json`), duplicates included;
//! - a filtered answer's `cacheScope` is `private`.

use mcp_filter_core::folds_to;
use mcp_filter_core::list_filter::{rewrite, ListKind, Rewrite, Visibility};
use mcp_filter_core::list_stream::{Answer, Framing, ListStream};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

const ALLOWED: [&str; 2] = ["a", "read"];
const REGISTERED: [&str; 4] = ["a", "b", "read", "write"];
const MAX_BYTES: usize = 4096;

pub fn run(data: &[u8]) {
    let [framing, who, a, b, body @ ..] = data else {
        return;
    };
    let framing = if framing % 2 == 0 {
        Framing::Json
    } else {
        Framing::Sse
    };
    let (kind, visibility) = match who & 3 {
        0 => (
            ListKind::Tools,
            Visibility::Tools {
                allowed: ALLOWED.map(String::from).to_vec(),
                registered: REGISTERED.map(String::from).to_vec(),
                show_unregistered: who & 4 != 0,
            },
        ),
        1 => (ListKind::Tools, Visibility::All),
        2 => (ListKind::Tools, Visibility::Nothing),
        _ => (ListKind::Prompts, Visibility::All),
    };
    let split = (usize::from(*a) << 8 | usize::from(*b)) % (body.len() + 1);
    let (left, right) = body.split_at(split);
    let whole = feed(framing, kind, &visibility, &[body]);
    assert_eq!(
        whole,
        feed(framing, kind, &visibility, &[left, right]),
        "split at {split}"
    );
    // Envoy ends a body with an end-of-stream callback, empty for an empty body.
    let mut bytes: Vec<&[u8]> = body.chunks(1).collect();
    if bytes.is_empty() {
        bytes.push(&[]);
    }
    assert_eq!(
        whole,
        feed(framing, kind, &visibility, &bytes),
        "byte by byte"
    );

    let messages: Vec<Vec<u8>> = match framing {
        Framing::Json => vec![whole],
        Framing::Sse => sse_data(&whole),
    };
    for message in messages {
        check_shown(&message, kind, &visibility);
    }
}

struct Filter<'a> {
    kind: ListKind,
    visibility: &'a Visibility,
}

impl Answer for Filter<'_> {
    fn message(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        match rewrite(data, self.kind, self.visibility, true, true) {
            Ok(Rewrite::Filtered(list)) => {
                let check: serde_json::Value =
                    serde_json::from_slice(&list.body).expect("a filtered answer is JSON");
                assert_eq!(check["result"]["cacheScope"], "private");
                Some(list.body)
            }
            Ok(_) => None,
            Err(_) => {
                Some(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-31000,"message":"x"}}"#.to_vec())
            }
        }
    }
    fn too_large(&mut self) -> Vec<u8> {
        br#"{"jsonrpc":"2.0","id":1,"error":{"code":-31000,"message":"large"}}"#.to_vec()
    }
}

fn feed(framing: Framing, kind: ListKind, visibility: &Visibility, chunks: &[&[u8]]) -> Vec<u8> {
    let mut stream = ListStream::new(framing, MAX_BYTES);
    let mut filter = Filter { kind, visibility };
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        out.extend(stream.feed(chunk, i + 1 == chunks.len(), &mut filter));
    }
    out
}

/// The data of each event as a WHATWG client dispatches it (plus a trailing event
/// without its blank line, which lenient clients may dispatch).
fn sse_data(stream: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(stream)
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let mut events = Vec::new();
    let mut data: Option<Vec<u8>> = None;
    for line in text.split('\n') {
        if line.is_empty() {
            events.extend(data.take());
            continue;
        }
        let value = if line == "data" {
            Some("")
        } else {
            line.strip_prefix("data:")
                .map(|v| v.strip_prefix(' ').unwrap_or(v))
        };
        if let Some(value) = value {
            let buf = data.get_or_insert_with(Vec::new);
            if !buf.is_empty() {
                buf.push(b'\n');
            }
            buf.extend_from_slice(value.as_bytes());
        }
    }
    events.extend(data);
    events
}

/// No entry the caller may not see reaches it, whichever copy of a key a client reads.
fn check_shown(message: &[u8], kind: ListKind, visibility: &Visibility) {
    let Ok(top) = serde_json::Deserializer::from_slice(message).deserialize_map(Members) else {
        return;
    };
    // Any response a client may take as the answer (ids match loosely in some
    // clients), so every message with a result is checked.
    for (key, result) in &top {
        if !folds_to(key, "result") {
            continue;
        }
        let Ok(members) = serde_json::Deserializer::from_str(result).deserialize_map(Members)
        else {
            continue;
        };
        for (key, list) in &members {
            if !folds_to(key, kind.key()) {
                continue;
            }
            let Ok(items) = serde_json::from_str::<Vec<&serde_json::value::RawValue>>(list) else {
                continue;
            };
            for item in items {
                let names: Vec<String> = serde_json::Deserializer::from_str(item.get())
                    .deserialize_map(Members)
                    .map(|m| {
                        m.into_iter()
                            .filter(|(k, _)| folds_to(k, "name"))
                            .filter_map(|(_, v)| serde_json::from_str::<String>(&v).ok())
                            .collect()
                    })
                    .unwrap_or_default();
                match visibility {
                    Visibility::Nothing => {
                        panic!("an entry shown to a caller who may see none: {item}")
                    }
                    Visibility::All => {}
                    Visibility::Tools {
                        allowed,
                        registered,
                        show_unregistered,
                    } => {
                        assert!(
                            !names.is_empty(),
                            "a tool without a readable name shown: {item}"
                        );
                        for name in names {
                            let ok = allowed.contains(&name)
                                || (*show_unregistered && !registered.contains(&name));
                            assert!(
                                ok,
                                "tool {name:?} shown to a caller who may not see it: {item}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Every member of an object (duplicates kept), values as JSON text.
struct Members;

impl<'de> Visitor<'de> for Members {
    type Value = Vec<(String, String)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: Box<serde_json::value::RawValue> = map.next_value()?;
            out.push((key, value.get().to_owned()));
        }
        Ok(out)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(serde::de::Error::custom("not an object"))
    }
}
