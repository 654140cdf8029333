//! List calls end to end: what the route and the authz decision say
//! ([`ListCall`]), the answer rewritten on its way to the client ([`ListReader`]), and
//! the drift check when the request ends ([`record_drift`]).
//!
//! The caller's allowed set comes from the authz-service's decision on this very
//! request, in ext_authz's dynamic metadata: no side call of its own. The filter runs
//! before ext_authz but reads the metadata from the stream's info in its response
//! callbacks (checked on Envoy 1.40). The leaves (strings only; an empty string reads
//! as missing, so the service never sends one):
//! - `allowed_tools` on `tools/list`: a JSON array of the tools this token may call;
//! - `list_entries` on the other lists: `all` or `none`.
//!
//! A missing or unreadable leaf hides every entry: a gateway that cannot tell what a
//! caller may see shows nothing.

use crate::config::{FilterConfig, ListFiltering};
use crate::drift::{self, Drift, DriftKind};
use crate::error::GATEWAY_INTERNAL;
use crate::headers::EXT_AUTHZ_NAMESPACE;
use crate::host::{Host, Level, CAS_MISMATCH};
use crate::list_filter::{rewrite, ListKind, Rewrite, SeenTool, Visibility};
use crate::list_stream::{Answer, Framing, ListStream};
use crate::metric_ids::{MetricIds, ServerKey};
use crate::reply_scan::Reply;
use crate::route::{route_tools, RouteError, RouteTools};
use crate::stats::{ServerLabel, Stat};
use serde_json::value::RawValue;

/// The authz-service's leaf for `tools/list`.
pub const ALLOWED_TOOLS: &str = "allowed_tools";
/// The authz-service's leaf for the other lists.
pub const LIST_ENTRIES: &str = "list_entries";

/// A list call, from labelling on.
#[derive(Debug, Clone)]
pub struct ListCall {
    pub kind: ListKind,
    route: RouteTools,
    /// The request asked for a later page (`params.cursor`).
    has_cursor: bool,
}

impl ListCall {
    /// Reads what the route says about the server's tools (`tools/list` only; the
    /// route metadata is read in the request callbacks, where Envoy has picked it).
    pub fn start(
        host: &mut impl Host,
        config: &FilterConfig,
        kind: ListKind,
        has_cursor: bool,
    ) -> Result<ListCall, RouteError> {
        let route = if kind == ListKind::Tools && config.servers_from_routes {
            route_tools(host, true)?
        } else {
            RouteTools::default()
        };
        Ok(ListCall {
            kind,
            route,
            has_cursor,
        })
    }

    /// What the caller may see, from the authz decision.
    fn visibility(&self, host: &mut impl Host, config: &FilterConfig) -> Option<Visibility> {
        if config.list_filtering == ListFiltering::Off {
            return None;
        }
        let leaf = match self.kind {
            ListKind::Tools => ALLOWED_TOOLS,
            _ => LIST_ENTRIES,
        };
        let path = ["metadata", "filter_metadata", EXT_AUTHZ_NAMESPACE, leaf];
        let value = host
            .property(&path)
            .ok()
            .flatten()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let visibility =
            match (self.kind, value.as_deref()) {
                (ListKind::Tools, Some(json)) => serde_json::from_str::<Vec<String>>(json)
                    .ok()
                    .map(|mut allowed| {
                        allowed.sort_unstable();
                        Visibility::Tools {
                            allowed,
                            registered: self.route.registered.clone(),
                            show_unregistered: self.route.show_unregistered,
                        }
                    }),
                (_, Some("all")) => Some(Visibility::All),
                (_, Some("none")) => Some(Visibility::Nothing),
                _ => None,
            };
        Some(visibility.unwrap_or_else(|| {
            host.log(
                Level::Warning,
                &format!(
                    "no usable {leaf:?} in the authz decision: every entry of the list is hidden \
                     (is ext_authz on this route, and the authz-service current?)"
                ),
            );
            Visibility::Nothing
        }))
    }

    /// Whether the answer needs this call's reader: to be filtered, or read whole for
    /// the drift check. Otherwise the plain reply scanner reads it, which holds nothing
    /// (measured: holding and parsing a 500-tool answer costs Envoy about 1 ms).
    pub fn needs_reader(&self, config: &FilterConfig) -> bool {
        config.list_filtering == ListFiltering::Authz || self.route.schema_digests.is_some()
    }

    /// The reader that rewrites the answer, for a JSON or SSE answer to this request.
    pub fn reader(
        self,
        host: &mut impl Host,
        config: &FilterConfig,
        framing: Framing,
        request_id: &str,
        modern: bool,
    ) -> ListReader {
        let visibility = self.visibility(host, config);
        let collect_tools = self.route.schema_digests.is_some();
        ListReader {
            stream: ListStream::new(framing, config.max_list_bytes.bytes()),
            framing,
            refused: None,
            answer: ListAnswer {
                kind: self.kind,
                rewrite: visibility.is_some(),
                visibility: visibility.unwrap_or(Visibility::All),
                request_id: request_id.to_owned(),
                modern,
                collect_tools,
                result: ListResult::default(),
            },
            call: self,
        }
    }
}

/// What the answer held, for the audit record and the drift check.
#[derive(Debug, Clone, Default)]
pub struct ListResult {
    /// How the answer ended, once seen.
    pub reply: Option<Reply>,
    /// Entries hidden from the caller (`None`: no list was filtered).
    pub hidden: Option<usize>,
    /// The tools the server advertised and whether that was the whole list.
    tools: Option<(Vec<SeenTool>, bool)>,
}

#[derive(Debug)]
struct ListAnswer {
    kind: ListKind,
    /// Filter (else the answer is only read, for the drift check).
    rewrite: bool,
    visibility: Visibility,
    request_id: String,
    modern: bool,
    collect_tools: bool,
    result: ListResult,
}

impl ListAnswer {
    fn error(&mut self, message: &str) -> Vec<u8> {
        self.result.reply = Some(Reply::Error {
            code: Some(GATEWAY_INTERNAL),
        });
        let id = RawValue::from_string(self.request_id.clone()).ok();
        crate::error_body(id.as_deref(), GATEWAY_INTERNAL, message).into_bytes()
    }
}

impl Answer for ListAnswer {
    fn message(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        // One answer per request; anything after it that claims to answer again is
        // filtered all the same (a client may take the later one).
        if self.result.reply.is_some() && !self.rewrite {
            return None;
        }
        let outcome = rewrite(
            data,
            self.kind,
            &self.visibility,
            self.modern,
            self.collect_tools,
        );
        match outcome {
            Ok(Rewrite::NotTheAnswer) => None,
            Ok(Rewrite::Error { code }) => {
                self.result.reply.get_or_insert(Reply::Error { code });
                None
            }
            Ok(Rewrite::Filtered(list)) => {
                self.result
                    .reply
                    .get_or_insert(Reply::Result { is_error: false });
                if self.rewrite {
                    *self.result.hidden.get_or_insert(0) += list.hidden;
                }
                if let Some(tools) = list.tools {
                    let complete = !list.has_next_page;
                    self.result.tools.get_or_insert((tools, complete));
                }
                self.rewrite.then_some(list.body)
            }
            Err(error) if self.rewrite => {
                let message = format!("the gateway cannot filter this list: {error}");
                Some(self.error(&message))
            }
            Err(_) => None,
        }
    }

    fn too_large(&mut self) -> Vec<u8> {
        self.error(
            "the gateway cannot filter this list: the answer is larger than its max_list_bytes",
        )
    }
}

/// Rewrites a list answer chunk by chunk.
#[derive(Debug)]
pub struct ListReader {
    stream: ListStream,
    framing: Framing,
    /// The answer cannot be read (compressed): `Some(false)` until the client got the
    /// error that replaces it, then `Some(true)`.
    refused: Option<bool>,
    answer: ListAnswer,
    call: ListCall,
}

impl ListReader {
    /// The bytes the client gets instead of `chunk`, or `None` to pass it unchanged
    /// (list filtering off and nothing held).
    pub fn feed(&mut self, chunk: &[u8], end: bool) -> Vec<u8> {
        match self.refused {
            None => self.stream.feed(chunk, end, &mut self.answer),
            Some(true) => Vec::new(),
            Some(false) => {
                self.refused = Some(true);
                let error = self.answer.error(
                    "the gateway cannot filter this list: the MCP server compressed its answer",
                );
                match self.framing {
                    Framing::Json => error,
                    Framing::Sse => [b"data: ".as_slice(), &error, b"\n\n"].concat(),
                }
            }
        }
    }

    /// The answer is compressed (`Content-Encoding`), so it cannot be filtered: the
    /// client gets an error instead. (The filter asks for an uncompressed answer by
    /// removing the list request's `Accept-Encoding`; this covers a server that
    /// compresses anyway.)
    pub fn refuse_encoded(&mut self) {
        if self.answer.rewrite {
            self.refused = Some(false);
        }
    }

    /// Whether the reader changes the bytes (else it only reads them).
    pub fn rewrites(&self) -> bool {
        self.answer.rewrite
    }

    pub fn result(&self) -> &ListResult {
        &self.answer.result
    }

    /// The drift check of a `tools/list` answer the server completed.
    pub fn record_drift(
        &self,
        host: &mut impl Host,
        config: &FilterConfig,
        metrics: &MetricIds,
        (server, key): (ServerLabel<'_>, ServerKey),
    ) {
        let Some((tools, last_page)) = &self.answer.result.tools else {
            return;
        };
        let Some(leaf) = self.call.route.schema_digests.as_deref() else {
            return;
        };
        let Some(registered) = drift::registered_digests(leaf) else {
            host.log(
                Level::Error,
                "the route's schema_digests is not a JSON object of tool digests: no drift check",
            );
            return;
        };
        let whole_list = *last_page && !self.call.has_cursor;
        let found = drift::compare(&registered, tools, whole_list);
        record_drift(host, config, metrics, (server, key), &found, whole_list);
    }
}

/// Counts and logs each kind of drift once per change: what was seen sits in Envoy's
/// shared data (all workers, see [`drift::update`]), and only the worker whose
/// compare-and-swap records a tool no answer showed before counts it.
pub fn record_drift(
    host: &mut impl Host,
    config: &FilterConfig,
    metrics: &MetricIds,
    (server, key): (ServerLabel<'_>, ServerKey),
    found: &Drift,
    whole_list: bool,
) {
    for kind in DriftKind::ALL {
        // A page of a longer list cannot say what is missing (see `drift::compare`).
        if kind == DriftKind::Missing && !whole_list {
            continue;
        }
        // Per release: a canary that advertises other tools than its stable version
        // drifts on its own, and answers of the two do not undo each other's state.
        // Server ids hold no `@`; a server without a version keeps the older key.
        let slot = match server.version {
            Some(version) => format!("mcp_drift;{}@{version};{}", server.id, kind.as_str()),
            None => format!("mcp_drift;{};{}", server.id, kind.as_str()),
        };
        let (stored, cas) = match host.shared_data(&slot) {
            Ok((stored, cas)) => (stored.unwrap_or_default(), cas),
            Err(_) => continue,
        };
        let (new, next) = drift::update(&stored, &found.entries(kind), whole_list);
        if next == stored {
            continue;
        }
        match host.set_shared_data(&slot, &next, cas) {
            Ok(()) => {}
            // Another worker recorded it first, and counts it.
            Err(status) if status == CAS_MISMATCH => continue,
            Err(status) => {
                host.log(
                    Level::Error,
                    &format!("cannot keep the schema drift state: {status}"),
                );
                continue;
            }
        }
        if new.is_empty() {
            continue;
        }
        metrics.add(host, config, key, Stat::SchemaDrift(kind), 1);
        // Names come from the server: at most ten, each cut short, printed escaped.
        let names = found.names_of(kind, &new);
        let shown: Vec<&str> = names
            .iter()
            .take(10)
            .map(|n| n.get(..128).unwrap_or(n))
            .collect();
        let more = names.len().saturating_sub(shown.len());
        let what = match kind {
            DriftKind::Extra => "advertises tools the registry does not have",
            DriftKind::Missing => "no longer advertises registered tools",
            DriftKind::Changed => {
                "advertises an inputSchema that differs from the registered one for"
            }
        };
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        host.log(
            Level::Warning,
            &format!(
                "schema drift: MCP server {:?}{} {what}: {shown:?}{tail}",
                server.id,
                server
                    .version
                    .map(|v| format!(" version {v}"))
                    .unwrap_or_default()
            ),
        );
    }
}
