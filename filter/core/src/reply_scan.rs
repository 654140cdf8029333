//! Reads one JSON-RPC message from the server incrementally and keeps only what the
//! audit record needs: the `id`, whether it is a request/notification (`method`), and
//! how a response ended (`result` with or without `isError: true`, or `error` and its
//! code).
//!
//! Responses can be large (a tool returning a document) and SSE streams long, so the
//! scanner never holds a message: it tracks nesting depth and the keys of the first two
//! levels, and copies at most a few short tokens into fixed-size buffers. Memory stays
//! constant whatever the input. It does not validate JSON; on malformed input it may
//! report nothing, and the call is then recorded as not having ended with a response.

/// How a JSON-RPC response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A `result`. `is_error` is `result.isError == true`: MCP reports tool execution
    /// failures as results ("Tools: Error Handling"), not as JSON-RPC errors.
    Result { is_error: bool },
    /// A JSON-RPC `error`, with its `code` when that is an integer.
    Error { code: Option<i64> },
}

/// What one message said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The `id` token as sent (string with its quotes, or number), if short enough.
    pub id: Option<String>,
    /// The message has a `method`: a request or notification (progress, logging),
    /// never the response itself.
    pub has_method: bool,
    pub reply: Option<Reply>,
}

impl Summary {
    /// The reply, if this message is the response to the request whose id is
    /// `request_id` (JSON text; `None` for a request without id).
    pub fn reply_to(&self, request_id: Option<&str>) -> Option<Reply> {
        if self.has_method {
            return None;
        }
        let reply = self.reply?;
        match (request_id, self.id.as_deref()) {
            (Some(expected), Some(got)) if same_id(expected, got) => Some(reply),
            // A JSON-RPC error about a request whose id could not be read carries
            // `id: null` (JSON-RPC 2.0 section 5).
            (_, Some("null")) if matches!(reply, Reply::Error { .. }) => Some(reply),
            _ => None,
        }
    }
}

/// Ids compare as JSON values: `"a"` and `"\u0061"` are the same id.
fn same_id(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Keys longer than this are of no interest ("isError" is the longest we look for).
const KEY_CAP: usize = 16;
/// Longest `id`, `isError` or `code` token kept.
const TOKEN_CAP: usize = 128;

/// A byte buffer that stops growing at `cap` and remembers that it overflowed.
#[derive(Debug, Default)]
struct Bounded {
    bytes: Vec<u8>,
    overflow: bool,
}

impl Bounded {
    fn push(&mut self, byte: u8, cap: usize) {
        if self.bytes.len() < cap {
            self.bytes.push(byte);
        } else {
            self.overflow = true;
        }
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.overflow = false;
    }

    fn text(&self) -> Option<&str> {
        if self.overflow {
            return None;
        }
        std::str::from_utf8(&self.bytes).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Key {
    #[default]
    None,
    Id,
    Method,
    Result,
    Error,
    IsError,
    Code,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Between tokens.
    Between,
    /// Inside a string; `escaped` after a backslash.
    Str { key: bool, escaped: bool },
    /// Inside a number or literal.
    Bare,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    Id,
    IsError,
    Code,
}

/// The incremental scanner for one JSON-RPC message.
#[derive(Debug)]
pub struct ReplyScanner {
    depth: u32,
    /// Whether the containers at depth 1 and 2 are objects.
    object: [bool; 2],
    /// The next string in an object is a key (after `{` or `,`).
    expect_key: bool,
    lex: Lex,
    key: Bounded,
    /// The key whose value is being read, at depth 1 and depth 2.
    keys: [Key; 2],
    capture: Option<Capture>,
    token: Bounded,
    summary: Summary,
    /// The top-level value has ended.
    done: bool,
}

impl Default for ReplyScanner {
    fn default() -> Self {
        ReplyScanner {
            depth: 0,
            object: [false; 2],
            expect_key: false,
            lex: Lex::Between,
            key: Bounded::default(),
            keys: [Key::None; 2],
            capture: None,
            token: Bounded::default(),
            summary: Summary::default(),
            done: false,
        }
    }
}

impl ReplyScanner {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while let Some((&byte, rest)) = bytes.split_first() {
            if self.done {
                // Whatever follows the message cannot change its summary.
                return;
            }
            self.byte(byte);
            bytes = rest;
            // Most of a response is string content nobody reads (text, descriptions,
            // schemas): jump to the byte that can end the string (a quote, or a
            // backslash that may escape one) instead of stepping through it.
            if self.skippable_string() {
                let skip = memchr::memchr2(b'"', b'\\', bytes).unwrap_or(bytes.len());
                bytes = bytes.get(skip..).unwrap_or_default();
            }
        }
    }

    /// Inside a string whose text is not kept: a value that is not captured, or a key
    /// below the two levels whose keys matter.
    fn skippable_string(&self) -> bool {
        match self.lex {
            Lex::Str {
                key,
                escaped: false,
            } => {
                if key {
                    self.level_index().is_none()
                } else {
                    self.capture.is_none()
                }
            }
            _ => false,
        }
    }

    /// The message so far (a number at the very end is only complete after `finish`).
    pub fn finish(&mut self) -> Summary {
        if self.lex == Lex::Bare {
            self.end_token();
            self.lex = Lex::Between;
        }
        std::mem::take(&mut self.summary)
    }

    fn byte(&mut self, byte: u8) {
        match self.lex {
            Lex::Str { key, escaped } => {
                if escaped {
                    self.lex = Lex::Str {
                        key,
                        escaped: false,
                    };
                } else if byte == b'\\' {
                    self.lex = Lex::Str { key, escaped: true };
                } else if byte == b'"' {
                    self.lex = Lex::Between;
                    if key {
                        self.end_key();
                    } else {
                        self.token.push(byte, TOKEN_CAP);
                        self.end_token();
                    }
                    return;
                }
                if key {
                    self.key.push(byte, KEY_CAP);
                } else {
                    self.token.push(byte, TOKEN_CAP);
                }
            }
            Lex::Bare => {
                if matches!(byte, b',' | b'}' | b']' | b':') || byte.is_ascii_whitespace() {
                    self.lex = Lex::Between;
                    self.end_token();
                    self.structural(byte);
                } else {
                    self.token.push(byte, TOKEN_CAP);
                }
            }
            Lex::Between => self.structural(byte),
        }
    }

    fn structural(&mut self, byte: u8) {
        if self.done {
            return;
        }
        match byte {
            b'{' | b'[' => {
                self.value_start();
                self.depth = self.depth.saturating_add(1);
                let object = byte == b'{';
                if let Some(slot) = self.level_index() {
                    if let Some(is_object) = self.object.get_mut(slot) {
                        *is_object = object;
                    }
                    if let Some(key) = self.keys.get_mut(slot) {
                        *key = Key::None;
                    }
                }
                self.expect_key = object;
            }
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    self.done = true;
                }
                self.expect_key = false;
            }
            b',' => self.expect_key = self.in_object(),
            b':' => self.expect_key = false,
            b'"' => {
                let key = self.expect_key && self.in_object();
                if key {
                    self.key.clear();
                } else {
                    self.value_start();
                    self.token.clear();
                    self.token.push(byte, TOKEN_CAP);
                }
                self.lex = Lex::Str {
                    key,
                    escaped: false,
                };
            }
            _ if byte.is_ascii_whitespace() => {}
            _ => {
                self.value_start();
                self.token.clear();
                self.token.push(byte, TOKEN_CAP);
                self.lex = Lex::Bare;
            }
        }
    }

    /// Index into `object`/`keys` for the current depth, when it is one we track.
    fn level_index(&self) -> Option<usize> {
        match self.depth {
            1 => Some(0),
            2 => Some(1),
            _ => None,
        }
    }

    fn in_object(&self) -> bool {
        self.level_index()
            .and_then(|slot| self.object.get(slot))
            .is_some_and(|object| *object)
    }

    fn end_key(&mut self) {
        let Some(slot) = self.level_index() else {
            return;
        };
        let key = match (slot, self.key.text()) {
            (0, Some("id")) => Key::Id,
            (0, Some("method")) => Key::Method,
            (0, Some("result")) => Key::Result,
            (0, Some("error")) => Key::Error,
            (1, Some("isError")) => Key::IsError,
            (1, Some("code")) => Key::Code,
            _ => Key::Other,
        };
        if let Some(slot_key) = self.keys.get_mut(slot) {
            *slot_key = key;
        }
    }

    /// A value starts in the container at the current depth.
    fn value_start(&mut self) {
        self.capture = None;
        match self.depth {
            1 if self.object[0] => match self.keys[0] {
                Key::Id => self.capture = Some(Capture::Id),
                Key::Method => self.summary.has_method = true,
                Key::Result => self.summary.reply = Some(Reply::Result { is_error: false }),
                Key::Error => self.summary.reply = Some(Reply::Error { code: None }),
                _ => {}
            },
            2 if self.object[1] => match (self.keys[0], self.keys[1]) {
                (Key::Result, Key::IsError) => self.capture = Some(Capture::IsError),
                (Key::Error, Key::Code) => self.capture = Some(Capture::Code),
                _ => {}
            },
            _ => {}
        }
    }

    fn end_token(&mut self) {
        let Some(capture) = self.capture.take() else {
            return;
        };
        let text = self.token.text();
        match capture {
            Capture::Id => self.summary.id = text.map(str::to_owned),
            Capture::IsError => {
                if let Some(Reply::Result { is_error }) = &mut self.summary.reply {
                    *is_error = text == Some("true");
                }
            }
            Capture::Code => {
                if let Some(Reply::Error { code }) = &mut self.summary.reply {
                    *code = text.and_then(|t| t.parse().ok());
                }
            }
        }
    }
}

/// Scans a whole message at once (tests, small bodies).
pub fn scan(bytes: &[u8]) -> Summary {
    let mut scanner = ReplyScanner::default();
    scanner.feed(bytes);
    scanner.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_error_and_notifications() {
        let ok = scan(
            br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"isError"}]}}"#,
        );
        assert_eq!(ok.id.as_deref(), Some("7"));
        assert_eq!(ok.reply, Some(Reply::Result { is_error: false }));
        assert_eq!(ok.reply_to(Some("7")), ok.reply);

        let tool_error =
            scan(br#"{"result":{"isError":true,"content":[]},"id":"a","jsonrpc":"2.0"}"#);
        assert_eq!(
            tool_error.reply_to(Some(r#""a""#)),
            Some(Reply::Result { is_error: true })
        );

        let not_error = scan(br#"{"id":1,"result":{"isError":false}}"#);
        assert_eq!(not_error.reply, Some(Reply::Result { is_error: false }));

        let error = scan(
            br#"{"jsonrpc":"2.0","id":1,"error":{"message":"x","code":-32602,"data":{"code":5}}}"#,
        );
        assert_eq!(error.reply, Some(Reply::Error { code: Some(-32602) }));

        let progress = scan(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"result":{"isError":true}}}"#);
        assert!(progress.has_method);
        assert_eq!(progress.reply_to(None), None);
    }

    #[test]
    fn nested_lookalikes_do_not_count() {
        let summary = scan(
            br#"{"id":1,"result":{"content":[{"isError":true,"error":{"code":1}}],"structuredContent":{"isError":true,"id":2}}}"#,
        );
        assert_eq!(summary.id.as_deref(), Some("1"));
        assert_eq!(summary.reply, Some(Reply::Result { is_error: false }));
    }

    #[test]
    fn strings_with_quotes_braces_and_escapes() {
        let summary =
            scan(br#"{"result":{"content":"}{\"isError\":true}\\","isError":true},"id":"x\"}"}"#);
        assert_eq!(summary.id.as_deref(), Some(r#""x\"}""#));
        assert_eq!(summary.reply, Some(Reply::Result { is_error: true }));
        assert_eq!(summary.reply_to(Some(r#""x\u0022}""#)), summary.reply);
    }

    #[test]
    fn ids_compare_as_json_values() {
        let summary = scan(br#"{"id":"\u00e9","result":{}}"#);
        assert!(summary.reply_to(Some(r#""é""#)).is_some());
        assert!(summary.reply_to(Some(r#""e""#)).is_none());
        assert!(summary.reply_to(Some("1")).is_none());
        let null_error = scan(br#"{"id":null,"error":{"code":-32700,"message":"parse"}}"#);
        assert!(null_error.reply_to(Some("3")).is_some());
    }

    #[test]
    fn every_split_gives_the_same_summary() {
        let body = br#" {"jsonrpc" : "2.0", "id" : 12345 , "error" : { "code" : -32022 , "message" : "Unsupported protocol version" } } "#;
        let whole = scan(body);
        assert_eq!(whole.reply, Some(Reply::Error { code: Some(-32022) }));
        for split in 0..=body.len() {
            let mut scanner = ReplyScanner::default();
            scanner.feed(&body[..split]);
            scanner.feed(&body[split..]);
            assert_eq!(scanner.finish(), whole, "split at {split}");
        }
    }

    #[test]
    fn memory_stays_bounded_on_long_values_and_deep_nesting() {
        let mut scanner = ReplyScanner::default();
        scanner.feed(b"{\"id\":\"");
        for _ in 0..10_000 {
            scanner.feed(b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        }
        scanner.feed(b"\",\"result\":");
        for _ in 0..100_000 {
            scanner.feed(b"[");
        }
        assert!(scanner.token.bytes.len() <= TOKEN_CAP);
        assert!(scanner.key.bytes.len() <= KEY_CAP);
        let summary = scanner.finish();
        assert_eq!(summary.id, None, "an over-long id is not kept");
        assert_eq!(summary.reply, Some(Reply::Result { is_error: false }));
    }

    #[test]
    fn garbage_never_panics_and_reports_nothing_useful() {
        for input in [
            &b"}}]]::,,"[..],
            b"\"",
            b"{\"id\":",
            b"{\"error\":{\"code\":\"x\"}}",
            b"\xff\xfe{",
        ] {
            let summary = scan(input);
            assert_eq!(summary.reply_to(Some("1")), None, "{input:?}");
        }
        let text_code = scan(br#"{"id":1,"error":{"code":"x"}}"#);
        assert_eq!(text_code.reply, Some(Reply::Error { code: None }));
    }
}
