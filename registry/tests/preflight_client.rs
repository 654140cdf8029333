//! preflight's raw MCP client on a real socket: a small HTTP/1.1 fake server on port
//! 0 records what arrives and answers as MCP servers and the gateway do (JSON, SSE with
//! a notification first, a legacy session, a 401 challenge).
#![cfg(feature = "preflight")]

use mcp_registry::preflight::client::{Client, Opening};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One request as the fake server saw it: lower-case headers and the JSON body.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn reply(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut out = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}

/// What the fake answers to a request.
fn answer(seen: &Seen) -> String {
    let id = seen.body.get("id").cloned().unwrap_or(Value::Null);
    let method = seen
        .body
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("");
    if seen.header("authorization").is_none() {
        let body =
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -31010, "message": "no token"}});
        return reply(
            "401 Unauthorized",
            &[
                ("content-type", "application/json"),
                (
                    "www-authenticate",
                    "Bearer resource_metadata=\"https://g/.well-known/x\"",
                ),
            ],
            &body.to_string(),
        );
    }
    match method {
        "initialize" => {
            let version = seen
                .body
                .pointer("/params/protocolVersion")
                .cloned()
                .unwrap_or(Value::Null);
            let body = json!({"jsonrpc": "2.0", "id": id, "result": {"protocolVersion": version, "capabilities": {},
                              "serverInfo": {"name": "fake", "version": "1"}}});
            reply(
                "200 OK",
                &[
                    ("content-type", "application/json"),
                    ("mcp-session-id", "s-1"),
                ],
                &body.to_string(),
            )
        }
        "notifications/initialized" => reply("202 Accepted", &[], ""),
        "tools/list" => {
            let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}});
            let result = json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [{"name": "lookup", "inputSchema": {"type": "object"}}]}});
            let sse =
                format!("event: message\ndata: {progress}\n\nevent: message\ndata: {result}\n\n");
            reply("200 OK", &[("content-type", "text/event-stream")], &sse)
        }
        _ => {
            let body =
                json!({"jsonrpc": "2.0", "id": id, "result": {"content": [], "isError": false}});
            reply(
                "200 OK",
                &[("content-type", "application/json")],
                &body.to_string(),
            )
        }
    }
}

/// Serves on a free loopback port; the requests it saw.
async fn fake() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut reader = BufReader::new(read);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let method = line.split_whitespace().next().unwrap_or("").to_owned();
                    let mut headers = Vec::new();
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).await.unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (k, v) = header.split_once(':').unwrap();
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                    }
                    let length: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .map_or(0, |(_, v)| v.parse().unwrap());
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).await.unwrap();
                    let seen = Seen {
                        method,
                        headers,
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    };
                    let out = answer(&seen);
                    log.lock().unwrap().push(seen);
                    write.write_all(out.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn a_modern_call_carries_the_mirrored_headers_and_meta() {
    let (url, seen) = fake().await;
    let client = Client::new(&url, Duration::from_secs(5)).unwrap();
    let session = client.open("2026-07-28", Some("t0k")).await.unwrap();
    assert_eq!(session.id, None, "2026-07-28 opens no session");
    let extra = vec![("Mcp-Param-Region".to_owned(), "eu".to_owned())];
    let answer = client
        .call(
            &session,
            "tools/call",
            json!({"name": "lookup", "arguments": {"region": "eu"}}),
            json!("c-1"),
            Some("t0k"),
            &extra,
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.result().unwrap()["isError"], false);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let call = &seen[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.header("mcp-protocol-version"), Some("2026-07-28"));
    assert_eq!(call.header("mcp-method"), Some("tools/call"));
    assert_eq!(call.header("mcp-name"), Some("lookup"));
    assert_eq!(call.header("mcp-param-region"), Some("eu"));
    assert_eq!(call.header("authorization"), Some("Bearer t0k"));
    assert_eq!(call.body["id"], "c-1");
    assert_eq!(
        call.body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
        "2026-07-28"
    );
    assert_eq!(
        call.body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"],
        json!({})
    );
}

#[tokio::test]
async fn a_legacy_session_initializes_then_lists_over_sse_and_ends() {
    let (url, seen) = fake().await;
    let client = Client::new(&url, Duration::from_secs(5)).unwrap();
    let session = client.open("2025-06-18", Some("t0k")).await.unwrap();
    assert_eq!(session.version, "2025-06-18");
    assert_eq!(session.id.as_deref(), Some("s-1"));
    let answer = client
        .call(
            &session,
            "tools/list",
            json!({}),
            json!("l-1"),
            Some("t0k"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        answer.result().unwrap()["tools"][0]["name"],
        "lookup",
        "{answer:?}"
    );
    client.close(session, Some("t0k")).await;
    let seen = seen.lock().unwrap().clone();
    let methods: Vec<String> = seen
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s.method,
                s.body.get("method").and_then(Value::as_str).unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        methods,
        [
            "POST initialize",
            "POST notifications/initialized",
            "POST tools/list",
            "DELETE "
        ]
    );
    // initialize negotiates the version; later requests carry it and the session.
    assert_eq!(seen[0].header("mcp-protocol-version"), None);
    assert_eq!(seen[0].body["params"]["protocolVersion"], "2025-06-18");
    for later in &seen[1..] {
        assert_eq!(later.header("mcp-protocol-version"), Some("2025-06-18"));
        assert_eq!(later.header("mcp-session-id"), Some("s-1"));
        assert_eq!(
            later.header("mcp-method"),
            None,
            "no 2026-07-28 headers in a legacy session"
        );
    }
}

#[tokio::test]
async fn a_refusal_keeps_its_status_challenge_and_code() {
    let (url, _) = fake().await;
    let client = Client::new(&url, Duration::from_secs(5)).unwrap();
    let answer = client
        .request(
            "2026-07-28",
            "tools/list",
            json!({}),
            json!(7),
            None,
            None,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 401);
    assert_eq!(answer.error_code(), Some(-31010));
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Bearer resource_metadata=\"https://g/.well-known/x\"")
    );
    // A legacy session that the gateway refuses says why.
    match client.open("2025-11-25", None).await {
        Err(Opening::Refused(answer)) => {
            assert_eq!(answer.summary(), "HTTP 401, JSON-RPC error -31010 no token")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_gateway_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    drop(listener);
    let client = Client::new(&url, Duration::from_secs(5)).unwrap();
    let error = client
        .request(
            "2026-07-28",
            "tools/list",
            json!({}),
            json!(1),
            None,
            None,
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot reach {url}")),
        "{error}"
    );
}
