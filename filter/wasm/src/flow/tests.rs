//! The request flow against a fake host that can refuse any call.

use super::*;
use serde_json::Value;
use std::collections::HashMap;

const BODY: &str = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_account_balance","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

/// A local reply: status, headers, body.
type Reply = (u16, Vec<(String, String)>, String);

#[derive(Default)]
struct FakeHost {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    properties: HashMap<Vec<String>, Vec<u8>>,
    /// Names of the calls that fail with BadArgument.
    refuse: Vec<&'static str>,
    responses: Vec<Reply>,
    route_cleared: bool,
    logs: Vec<(Level, String)>,
    response_headers: Vec<(String, String)>,
    response_body: Vec<u8>,
}

impl FakeHost {
    fn mcp_post(extra: &[(&str, &str)]) -> FakeHost {
        let mut headers = vec![
            (":method", "POST"),
            (":path", "/mcp"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "get_account_balance"),
        ];
        headers.extend_from_slice(extra);
        FakeHost {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: BODY.as_bytes().to_vec(),
            ..FakeHost::default()
        }
    }

    fn check(&self, call: &'static str) -> Result<(), HostStatus> {
        if self.refuse.contains(&call) {
            Err(HostStatus(2))
        } else {
            Ok(())
        }
    }

    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single local reply, as (status, JSON-RPC error code).
    fn reply(&self) -> (u16, i64) {
        assert_eq!(self.responses.len(), 1, "{:?}", self.responses);
        let (status, headers, body) = &self.responses[0];
        assert!(headers.contains(&("content-type".into(), "application/json".into())));
        let body: Value = serde_json::from_str(body).unwrap();
        (*status, body["error"]["code"].as_i64().unwrap())
    }
}

impl Host for FakeHost {
    fn request_headers(&mut self) -> Result<Vec<u8>, HostStatus> {
        self.check("request_headers")?;
        let pairs: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Ok(wire::serialize_pairs(&pairs))
    }
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostStatus> {
        self.check("remove_request_header")?;
        self.headers.retain(|(k, _)| k != name);
        Ok(())
    }
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostStatus> {
        self.check("set_request_header")?;
        self.headers.retain(|(k, _)| k != name);
        self.headers.push((name.into(), value.into()));
        Ok(())
    }
    fn request_body(&mut self, len: usize) -> Result<Vec<u8>, HostStatus> {
        self.check("request_body")?;
        Ok(self.body[..len.min(self.body.len())].to_vec())
    }
    fn property(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, HostStatus> {
        self.check("property")?;
        let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        Ok(self.properties.get(&key).cloned())
    }
    fn send_response(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostStatus> {
        self.check("send_response")?;
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.responses
            .push((status, headers, String::from_utf8_lossy(body).into_owned()));
        Ok(())
    }
    fn clear_route_cache(&mut self) -> Result<(), HostStatus> {
        self.check("clear_route_cache")?;
        self.route_cleared = true;
        Ok(())
    }
    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.into()));
    }
    fn response_header(&mut self, name: &str) -> Result<Option<String>, HostStatus> {
        self.check("response_header")?;
        Ok(self
            .response_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone()))
    }
    fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), HostStatus> {
        self.check("set_response_header")?;
        self.response_headers.retain(|(k, _)| k != name);
        self.response_headers.push((name.into(), value.into()));
        Ok(())
    }
    fn remove_response_header(&mut self, name: &str) -> Result<(), HostStatus> {
        self.check("remove_response_header")?;
        self.response_headers.retain(|(k, _)| k != name);
        Ok(())
    }
    fn replace_response_body(&mut self, current_len: usize, body: &[u8]) -> Result<(), HostStatus> {
        self.check("replace_response_body")?;
        self.response_body.splice(
            ..current_len.min(self.response_body.len()),
            body.iter().copied(),
        );
        Ok(())
    }
}

fn flow(extra_config: &str) -> RequestFlow {
    let json = format!(r#"{{"server_id":"financial-data","max_body_bytes":1000{extra_config}}}"#);
    RequestFlow::new(Rc::new(FilterConfig::from_json(json.as_bytes()).unwrap()))
}

/// Headers, then the body in two pieces, as Envoy delivers a paused request.
fn run(flow: &mut RequestFlow, host: &mut FakeHost) -> Verdict {
    assert_eq!(flow.on_headers(host, false), Verdict::Pause);
    assert_eq!(flow.on_body(host, 10, false), Verdict::Pause);
    let size = host.body.len();
    flow.on_body(host, size, true)
}

#[test]
fn labels_an_mcp_post_and_strips_forgeries() {
    let mut host = FakeHost::mcp_post(&[
        ("x-agent-id", "admin"),
        ("x-mcp-tool-name", "x"),
        ("x-mcp-tool-name", "y"),
    ]);
    assert_eq!(run(&mut flow(""), &mut host), Verdict::Continue);
    assert!(host.responses.is_empty());
    assert_eq!(host.header("x-mcp-tool-name"), ["get_account_balance"]);
    assert_eq!(host.header("x-mcp-method"), ["tools/call"]);
    assert_eq!(host.header("x-mcp-request-id"), ["3"]);
    assert!(host.header("x-agent-id").is_empty());
    assert!(host.route_cleared);
}

#[test]
fn other_paths_are_stripped_and_passed() {
    let mut host = FakeHost::mcp_post(&[("x-user-id", "ceo")]);
    host.headers[1].1 = "/health".into();
    assert_eq!(flow("").on_headers(&mut host, true), Verdict::Continue);
    assert!(host.header("x-user-id").is_empty());
    assert!(host.header("x-mcp-method").is_empty());
}

#[test]
fn body_over_the_limit_is_refused_while_streaming() {
    let mut host = FakeHost::mcp_post(&[]);
    let mut flow = flow("");
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    assert_eq!(flow.on_body(&mut host, 1001, false), Verdict::Pause);
    assert_eq!(host.reply(), (413, -31001));
    // Later pieces of the same request stay stopped.
    assert_eq!(flow.on_body(&mut host, 2000, true), Verdict::Pause);
    assert_eq!(flow.on_trailers(&mut host), Verdict::Pause);
    assert_eq!(host.responses.len(), 1);
}

#[test]
fn request_without_body_is_a_parse_error() {
    let mut host = FakeHost::mcp_post(&[]);
    assert_eq!(flow("").on_headers(&mut host, true), Verdict::Pause);
    assert_eq!(host.reply(), (400, -32700));
}

#[test]
fn request_with_trailers_is_labelled_at_the_trailers() {
    let mut host = FakeHost::mcp_post(&[]);
    let mut flow = flow("");
    assert_eq!(flow.on_headers(&mut host, false), Verdict::Pause);
    let size = host.body.len();
    assert_eq!(flow.on_body(&mut host, size, false), Verdict::Pause);
    assert_eq!(flow.on_trailers(&mut host), Verdict::Continue);
    assert_eq!(host.header("x-mcp-tool-name"), ["get_account_balance"]);
}

/// Every host refusal on the way to forwarding ends in a 500 with a JSON-RPC body,
/// never in an unlabelled request going upstream.
#[test]
fn host_refusals_fail_closed() {
    for call in [
        "request_headers",
        "remove_request_header",
        "request_body",
        "set_request_header",
        "property",
    ] {
        let mut host = FakeHost::mcp_post(&[("x-agent-id", "forged")]);
        host.refuse.push(call);
        host.properties.insert(
            vec!["connection".into(), "uri_san_peer_certificate".into()],
            b"spiffe://a".to_vec(),
        );
        let mut flow = flow(r#","agent_identity":{"source":"peer_certificate_uri_san"}"#);
        let verdict = match flow.on_headers(&mut host, false) {
            Verdict::Pause if host.responses.is_empty() => {
                let size = host.body.len();
                flow.on_body(&mut host, size, true)
            }
            verdict => verdict,
        };
        assert_eq!(verdict, Verdict::Pause, "{call}");
        assert_eq!(host.reply(), (500, -31000), "{call}");
        assert!(
            host.logs.iter().any(|(level, _)| *level == Level::Error),
            "{call}"
        );
    }
}

#[test]
fn failed_error_response_still_stops_the_request() {
    let mut host = FakeHost::mcp_post(&[]);
    host.body = b"not json".to_vec();
    host.refuse.push("send_response");
    assert_eq!(run(&mut flow(""), &mut host), Verdict::Pause);
    assert!(host
        .logs
        .iter()
        .any(|(_, m)| m.contains("cannot send the error response")));
}

#[test]
fn route_cache_failure_is_logged_not_fatal() {
    let mut host = FakeHost::mcp_post(&[]);
    host.refuse.push("clear_route_cache");
    assert_eq!(run(&mut flow(""), &mut host), Verdict::Continue);
    assert!(host.logs.iter().any(|(_, m)| m.contains("route cache")));
}

#[test]
fn agent_identity_from_a_verified_jwt_claim() {
    let config = r#","agent_identity":{"source":"jwt_authn","payload_in_metadata":"jwt_payload","claim":"azp"}"#;
    let path: Vec<String> = [
        "metadata",
        "filter_metadata",
        "envoy.filters.http.jwt_authn",
        "jwt_payload",
        "azp",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let mut host = FakeHost::mcp_post(&[("x-agent-id", "forged")]);
    host.properties
        .insert(path.clone(), "agent-prod-001".into());
    assert_eq!(run(&mut flow(config), &mut host), Verdict::Continue);
    assert_eq!(host.header("x-agent-id"), ["agent-prod-001"]);

    // No verified token: no agent header, and the forged one is gone.
    let mut host = FakeHost::mcp_post(&[("x-agent-id", "forged")]);
    assert_eq!(run(&mut flow(config), &mut host), Verdict::Continue);
    assert!(host.header("x-agent-id").is_empty());

    // A claim with a line break cannot inject a header.
    let mut host = FakeHost::mcp_post(&[]);
    host.properties.insert(path, "a\r\nx-user-id: ceo".into());
    assert_eq!(run(&mut flow(config), &mut host), Verdict::Continue);
    assert_eq!(
        host.header("x-agent-id"),
        ["=?base64?YQ0KeC11c2VyLWlkOiBjZW8=?="]
    );
}

/// A local reply from a later filter (`code_details`) after a labelled request.
fn local_reply(details: &str, headers: &[(&str, &str)]) -> (RequestFlow, FakeHost) {
    let mut flow = flow("");
    let mut host = FakeHost::mcp_post(&[]);
    assert_eq!(run(&mut flow, &mut host), Verdict::Continue);
    host.properties.insert(
        vec!["response".into(), "code_details".into()],
        details.into(),
    );
    host.response_headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    host.response_body =
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-31020,"message":"rate limited"}}"#.to_vec();
    (flow, host)
}

#[test]
fn rate_limit_reply_gets_the_request_id() {
    let (mut flow, mut host) = local_reply(
        "request_rate_limited",
        &[
            (":status", "429"),
            ("retry-after", "17"),
            ("content-length", "76"),
        ],
    );
    assert_eq!(
        flow.on_response_headers(&mut host, false),
        Verdict::Continue
    );
    assert!(host
        .response_headers
        .iter()
        .all(|(k, _)| k != "content-length"));
    let size = host.response_body.len();
    assert_eq!(flow.on_response_body(&mut host, 10, false), Verdict::Pause);
    assert_eq!(
        flow.on_response_body(&mut host, size, true),
        Verdict::Continue
    );
    let body: Value = serde_json::from_slice(&host.response_body).unwrap();
    assert_eq!(body["id"], 3);
    assert_eq!(body["error"]["code"], -31020);
    assert_eq!(
        body["error"]["message"],
        "rate limited: too many calls of this tool by this agent; retry after 17 seconds"
    );
}

#[test]
fn authz_error_reply_gets_the_request_id() {
    let (mut flow, mut host) = local_reply("ext_authz_error", &[(":status", "503")]);
    flow.on_response_headers(&mut host, false);
    let size = host.response_body.len();
    flow.on_response_body(&mut host, size, true);
    let body: Value = serde_json::from_slice(&host.response_body).unwrap();
    assert_eq!(
        (body["id"].clone(), body["error"]["code"].clone()),
        (Value::from(3), Value::from(-31012))
    );
}

#[test]
fn upstream_responses_are_untouched() {
    for details in ["via_upstream", "ext_authz_denied"] {
        let (mut flow, mut host) =
            local_reply(details, &[(":status", "200"), ("content-length", "76")]);
        let before = host.response_body.clone();
        assert_eq!(
            flow.on_response_headers(&mut host, false),
            Verdict::Continue
        );
        assert_eq!(
            flow.on_response_body(&mut host, before.len(), true),
            Verdict::Continue
        );
        assert_eq!(host.response_body, before, "{details}");
        assert!(host
            .response_headers
            .iter()
            .any(|(k, _)| k == "content-length"));
    }
}
