//! A small raw MCP client over HTTP for the checks that must see the wire as it is:
//! exact statuses, `WWW-Authenticate`, `Retry-After`, JSON-RPC codes and the raw
//! `inputSchema` JSON (an SDK normalises or rejects these, and "well-formed" is what
//! step 1 judges). Both eras: 2026-07-28 requests stand alone (`_meta` and the
//! `Mcp-*` headers); older versions run an `initialize` session first.

use mcp_filter_core::headers::{MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use serde_json::{json, Value};
use std::time::Duration;

pub const MODERN: &str = "2026-07-28";
/// The version a legacy session is opened with when nothing else is claimed.
pub const LEGACY: &str = "2025-11-25";

/// Whether `version` is stateless (no `initialize`): 2026-07-28 and later.
pub fn is_modern(version: &str) -> bool {
    version >= MODERN
}

/// One HTTP answer and the JSON-RPC response in it (JSON body, or the SSE event
/// answering our id).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub message: Option<Value>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn result(&self) -> Option<&Value> {
        self.message.as_ref().and_then(|m| m.get("result"))
    }
    pub fn error_code(&self) -> Option<i64> {
        self.message.as_ref()?.get("error")?.get("code")?.as_i64()
    }
    pub fn error_message(&self) -> Option<&str> {
        self.message
            .as_ref()?
            .get("error")?
            .get("message")?
            .as_str()
    }

    /// How it went, in a line a report can carry.
    pub fn summary(&self) -> String {
        match (&self.message, self.error_code()) {
            (_, Some(code)) => format!(
                "HTTP {}, JSON-RPC error {code} {}",
                self.status,
                self.error_message().unwrap_or("")
            ),
            (Some(_), None) => format!("HTTP {}", self.status),
            (None, None) => {
                let body: String = self.body.chars().take(200).collect();
                format!("HTTP {} ({body})", self.status)
            }
        }
    }
}

/// A refusal before any answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// The gateway's URL of one server, and the HTTP client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub url: String,
    pub timeout: Duration,
    /// A whole `Authorization` value sent when a request has no token (a server's
    /// upstream credential, for the load test's direct samples).
    authorization: Option<String>,
}

/// Installs the process's TLS provider once (reqwest is built without its own).
pub fn tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Client {
    pub fn new(url: &str, timeout: Duration) -> Result<Client, String> {
        tls_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            http,
            url: url.to_owned(),
            timeout,
            authorization: None,
        })
    }

    /// The same client sending `value` as `Authorization` when no token is given.
    pub fn with_authorization(mut self, value: Option<String>) -> Client {
        self.authorization = value;
        self
    }

    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        match (token, &self.authorization) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Some(value)) => request.header("authorization", value),
            (None, None) => request,
        }
    }

    /// POSTs one request of `version`, with the headers a compliant client sends.
    /// `session`: a legacy session's id. `extra`: more headers (traceparent, Mcp-Param-*).
    #[allow(clippy::too_many_arguments)]
    pub async fn request(
        &self,
        version: &str,
        method: &str,
        params: Value,
        id: Value,
        token: Option<&str>,
        session: Option<&str>,
        extra: &[(String, String)],
    ) -> Result<Answer, ClientError> {
        let mut params = match params {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        // `initialize` negotiates the version: the header comes with later requests.
        if method != "initialize" {
            request = request.header(MCP_PROTOCOL_VERSION, version);
        }
        if is_modern(version) {
            let meta = params
                .entry("_meta")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|m| {
                    m.insert(
                        "io.modelcontextprotocol/protocolVersion".into(),
                        json!(version),
                    );
                    m.insert(
                        "io.modelcontextprotocol/clientCapabilities".into(),
                        json!({}),
                    );
                });
            let _ = meta;
            request = request.header(MCP_METHOD, method);
            let named = match method {
                "tools/call" | "prompts/get" => params.get("name"),
                "resources/read" => params.get("uri"),
                _ => None,
            };
            if let Some(name) = named.and_then(Value::as_str) {
                request = request.header(MCP_NAME, header_value(name));
            }
        }
        if let Some(session) = session {
            request = request.header(MCP_SESSION_ID, session);
        }
        request = self.authorize(request, token);
        for (name, value) in extra {
            request = request.header(name.as_str(), value.as_str());
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = request
            .json(&body)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| self.error(e))?;
        let message = response_message(&headers, &text, &id);
        Ok(Answer {
            status,
            headers,
            body: text,
            message,
        })
    }

    /// Sends a notification (no answer expected beyond the status).
    pub async fn notify(
        &self,
        version: &str,
        method: &str,
        token: Option<&str>,
        session: Option<&str>,
    ) -> Result<u16, ClientError> {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header(MCP_PROTOCOL_VERSION, version);
        if let Some(session) = session {
            request = request.header(MCP_SESSION_ID, session);
        }
        request = self.authorize(request, token);
        let body = json!({"jsonrpc": "2.0", "method": method});
        let response = request
            .json(&body)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(response.status().as_u16())
    }

    /// Ends a legacy session (DELETE); a stateless server's 405 is fine.
    pub async fn end(&self, version: &str, token: Option<&str>, session: &str) {
        let mut request = self
            .http
            .delete(&self.url)
            .header(MCP_PROTOCOL_VERSION, version)
            .header(MCP_SESSION_ID, session);
        request = self.authorize(request, token);
        let _ = request.send().await;
    }

    fn error(&self, e: reqwest::Error) -> ClientError {
        if e.is_timeout() {
            ClientError::Timeout(self.timeout)
        } else {
            ClientError::Transport {
                url: self.url.clone(),
                reason: e.to_string(),
            }
        }
    }

    /// Opens a session in `version`: for 2026-07-28 nothing to do; otherwise
    /// `initialize` (and `notifications/initialized`). The answer says how it went.
    pub async fn open(&self, version: &str, token: Option<&str>) -> Result<Session, Opening> {
        if is_modern(version) {
            return Ok(Session {
                version: version.to_owned(),
                id: None,
            });
        }
        let params = json!({
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "mcp-registry-preflight", "version": env!("CARGO_PKG_VERSION")},
        });
        let answer = self
            .request(
                version,
                "initialize",
                params,
                json!("preflight-initialize"),
                token,
                None,
                &[],
            )
            .await
            .map_err(Opening::Client)?;
        let agreed = answer
            .result()
            .and_then(|r| r.get("protocolVersion"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        match agreed {
            Some(agreed) if agreed == version => {
                let id = answer.header(MCP_SESSION_ID).map(str::to_owned);
                let _ = self
                    .notify(version, "notifications/initialized", token, id.as_deref())
                    .await;
                Ok(Session {
                    version: agreed,
                    id,
                })
            }
            Some(other) => Err(Opening::CounterOffer(other)),
            None => Err(Opening::Refused(answer)),
        }
    }

    /// A request within `session`.
    pub async fn call(
        &self,
        session: &Session,
        method: &str,
        params: Value,
        id: Value,
        token: Option<&str>,
        extra: &[(String, String)],
    ) -> Result<Answer, ClientError> {
        self.request(
            &session.version,
            method,
            params,
            id,
            token,
            session.id.as_deref(),
            extra,
        )
        .await
    }

    pub async fn close(&self, session: Session, token: Option<&str>) {
        if let Some(id) = &session.id {
            self.end(&session.version, token, id).await;
        }
    }
}

/// An open conversation in one version (a legacy session, or stateless 2026-07-28).
#[derive(Debug, Clone)]
pub struct Session {
    pub version: String,
    pub id: Option<String>,
}

/// Why a session did not open.
#[derive(Debug)]
pub enum Opening {
    Client(ClientError),
    /// `initialize` answered with another version.
    CounterOffer(String),
    /// `initialize` did not succeed.
    Refused(Answer),
}

impl std::fmt::Display for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Opening::Client(e) => write!(f, "{e}"),
            Opening::CounterOffer(v) => write!(f, "initialize answered with version {v}"),
            Opening::Refused(answer) => write!(f, "initialize got {}", answer.summary()),
        }
    }
}

/// A header value for a name: as it is if plain ASCII, else MCP's base64 sentinel.
pub fn header_value(value: &str) -> String {
    let plain =
        value.is_ascii() && value.chars().all(|c| !c.is_ascii_control()) && value.trim() == value;
    if plain {
        value.to_owned()
    } else {
        mcp_filter_core::sentinel::encode(value)
    }
}

/// The `Mcp-Param-*` headers a 2026-07-28 client sends for `arguments` of a tool with
/// `schema` (top-level properties annotated `x-mcp-header`).
pub fn param_headers(
    schema: &Value,
    arguments: &serde_json::Map<String, Value>,
) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return headers;
    };
    for (name, property) in properties {
        let Some(header) = property.get("x-mcp-header").and_then(Value::as_str) else {
            continue;
        };
        let text = match arguments.get(name) {
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            _ => continue,
        };
        headers.push((format!("Mcp-Param-{header}"), header_value(&text)));
    }
    headers
}

/// The JSON-RPC response to `id` in a JSON or SSE body.
pub fn response_message(
    headers: &reqwest::header::HeaderMap,
    body: &str,
    id: &Value,
) -> Option<Value> {
    let kind = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_answer = |m: &Value| {
        (m.get("result").is_some() || m.get("error").is_some())
            && (m.get("id") == Some(id) || m.get("id") == Some(&Value::Null))
    };
    if kind == "text/event-stream" {
        sse_messages(body).into_iter().find(is_answer)
    } else {
        serde_json::from_str::<Value>(body).ok().filter(is_answer)
    }
}

/// The JSON messages of an SSE body, one per event's data lines.
pub fn sse_messages(body: &str) -> Vec<Value> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if data.is_empty() {
                None
            } else {
                serde_json::from_str(&data.join("\n")).ok()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn headers(kind: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_str(kind).unwrap());
        h
    }

    #[test]
    fn the_answer_is_found_in_json_and_in_sse_after_notifications() {
        let id = json!("p-1");
        let json_body = r#"{"jsonrpc":"2.0","id":"p-1","result":{"tools":[]}}"#;
        let found = response_message(&headers("application/json"), json_body, &id).unwrap();
        assert_eq!(found["result"]["tools"], json!([]));
        let sse = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n\
                   data: {\"jsonrpc\":\"2.0\",\"id\":\"p-1\",\"error\":{\"code\":-32022,\"message\":\"x\"}}\n\n";
        let found =
            response_message(&headers("text/event-stream; charset=utf-8"), sse, &id).unwrap();
        assert_eq!(found["error"]["code"], -32022);
        let other = r#"{"jsonrpc":"2.0","id":"p-2","result":{}}"#;
        assert!(response_message(&headers("application/json"), other, &id).is_none());
    }

    #[test]
    fn mirrored_params_follow_the_schema_annotations() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "limit": {"type": "integer"},
            "city": {"type": "string", "x-mcp-header": "City"}}});
        let args = json!({"region": "eu", "limit": 3, "city": "Zürich"});
        let headers: std::collections::BTreeMap<String, String> =
            param_headers(&schema, args.as_object().unwrap())
                .into_iter()
                .collect();
        assert_eq!(headers.len(), 2, "{headers:?}");
        assert_eq!(headers["Mcp-Param-Region"], "eu");
        assert_eq!(
            headers["Mcp-Param-City"],
            mcp_filter_core::sentinel::encode("Zürich")
        );
    }
}
