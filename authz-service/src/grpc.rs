//! `envoy.service.auth.v3.Authorization/Check`: maps Envoy's request to a decision
//! and the decision to Envoy's answer.

use crate::check::{Authorizer, CheckInput, Denial, Listing, Outcome};
use crate::identity::Identity;
use crate::metrics::DecisionLabels;
use crate::policy::Call;
use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use envoy_types::pb::google::rpc::Status;
use mcp_filter_core::headers::{
    MCP_SESSION_ID, SESSION_KEY_METADATA, X_AGENT_ID, X_MCP_METHOD, X_MCP_PROTOCOL_VERSION,
    X_MCP_REQUEST_ID, X_MCP_SERVER_ID, X_MCP_TOOL_NAME, X_USER_ID,
};
use mcp_filter_core::route::NAMESPACE as ROUTE_NAMESPACE;
use mcp_filter_core::sentinel;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response};

// google.rpc.Code OK: the request goes on (a denial's code is the denial's own).
const RPC_OK: i32 = 0;

/// ext_authz per-route `check_settings.context_extensions` key: with the value
/// [`UNLABELLED_ALLOW`], requests the filter did not label (no `x-mcp-server-id`) are
/// let through on a valid token alone, as before the unlabelled rule. For routes that
/// really serve something besides MCP; every other route refuses them with 404.
pub const UNLABELLED_CONTEXT_KEY: &str = "mcp_unlabelled";
pub const UNLABELLED_ALLOW: &str = "allow";

pub struct AuthzGrpc {
    pub authorizer: Arc<Authorizer>,
}

#[tonic::async_trait]
impl Authorization for AuthzGrpc {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, tonic::Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let empty = HashMap::new();
        let attributes = request.attributes.as_ref();
        let http = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        let headers = http.map(|http| &http.headers).unwrap_or(&empty);
        // `with_request_body.pack_as_bytes` puts the body in `raw_body` (bytes are
        // copied unchecked; `body` is a proto3 string and must be UTF-8).
        let body = http.and_then(|http| {
            if !http.raw_body.is_empty() {
                Some(http.raw_body.as_slice())
            } else if !http.body.is_empty() {
                Some(http.body.as_bytes())
            } else {
                None
            }
        });
        let header = |name: &str| headers.get(name).map(String::as_str);
        // The filter sends names that are not plain ASCII in the MCP `=?base64?...?=`
        // form; the policy names tools as they are. A value that does not decode stays
        // as it is and so matches no policy entry.
        let decoded = |name: &str| {
            header(name).map(|value| sentinel::decode(value).unwrap_or_else(|_| value.to_owned()))
        };
        let (method, tool) = (decoded(X_MCP_METHOD), decoded(X_MCP_TOOL_NAME));
        let input = CheckInput {
            authorization: header("authorization"),
            call: Call {
                server: header(X_MCP_SERVER_ID),
                method: method.as_deref(),
                tool: tool.as_deref(),
            },
            request_id: header(X_MCP_REQUEST_ID),
            session: header(MCP_SESSION_ID),
            unlabelled_allowed: attributes
                .and_then(|a| a.context_extensions.get(UNLABELLED_CONTEXT_KEY))
                .is_some_and(|value| value == UNLABELLED_ALLOW),
            protocol_version: header(X_MCP_PROTOCOL_VERSION),
            body,
            headers: Some(headers),
            routed_server: attributes.and_then(routed_server),
        };
        let outcome = self.authorizer.check(&input).await;

        let policy = self.authorizer.policy();
        let server = match input.call.server {
            Some(server) if policy.knows(server) => server.to_owned(),
            _ => "other".to_owned(),
        };
        let result = match &outcome {
            Outcome::Allow { .. } => "allow",
            Outcome::Deny(denial) => denial.reason(),
        };
        let metrics = &self.authorizer.metrics;
        metrics
            .decisions
            .get_or_create(&DecisionLabels {
                result: result.to_owned(),
                server,
            })
            .inc();
        metrics
            .check_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(result, method = ?input.call.method, tool = ?input.call.tool, "check");
        Ok(Response::new(answer(outcome)))
    }
}

/// `mcp_gateway.server_id` of the route Envoy picked, from the CheckRequest's route
/// metadata (ext_authz `route_metadata_context_namespaces: [mcp_gateway]`, as
/// envoy/fleet.yaml configures it).
fn routed_server(attributes: &AttributeContext) -> Option<&str> {
    let namespace = attributes
        .route_metadata_context
        .as_ref()?
        .filter_metadata
        .get(ROUTE_NAMESPACE)?;
    match namespace.fields.get("server_id")?.kind.as_ref()? {
        Kind::StringValue(server) => Some(server.as_str()),
        _ => None,
    }
}

fn set(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..HeaderValueOption::default()
    }
}

/// Envoy's answer for a decision.
///
/// Allow: `x-agent-id` / `x-user-id` overwrite whatever the request carried (Envoy
/// applies ext_authz headers with OVERWRITE_IF_EXISTS_OR_ADD), in the MCP
/// `=?base64?...?=` form when not plain printable ASCII (the one rule for every
/// gateway header, [`sentinel::encode`]; a token's claims can hold any text). The
/// client's token is removed (MCP authorization spec: servers MUST NOT pass the
/// client's token upstream), or replaced by the server's own upstream credential. The
/// client's session reference is replaced by the server's own session id. For
/// `initialize`, the session binding key goes to the filter as dynamic metadata.
pub fn answer(outcome: Outcome) -> CheckResponse {
    match outcome {
        Outcome::Allow {
            identity,
            upstream_credential,
            upstream_session,
            session_binding,
            listing,
            violation,
        } => {
            let mut headers = vec![set(X_AGENT_ID, sentinel::encode(&identity.agent))];
            let mut headers_to_remove = Vec::new();
            match &identity.user {
                Some(user) => headers.push(set(X_USER_ID, sentinel::encode(user))),
                None => headers_to_remove.push(X_USER_ID.to_owned()),
            }
            match upstream_credential {
                Some(credential) => headers.push(set("authorization", credential)),
                None => headers_to_remove.push("authorization".to_owned()),
            }
            if let Some(session) = upstream_session {
                headers.push(set(MCP_SESSION_ID, session));
            }
            CheckResponse {
                status: Some(Status {
                    code: RPC_OK,
                    ..Status::default()
                }),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers,
                    headers_to_remove,
                    ..OkHttpResponse::default()
                })),
                dynamic_metadata: allow_metadata(session_binding, listing, violation),
            }
        }
        Outcome::Deny(denial) => {
            let mut headers = vec![set("content-type", "application/json".to_owned())];
            if let Some(challenge) = denial.challenge() {
                headers.push(set("www-authenticate", challenge));
            }
            CheckResponse {
                status: Some(Status {
                    code: denial.rpc_code(),
                    ..Status::default()
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus {
                        code: i32::from(denial.status()),
                    }),
                    headers,
                    body: denial.body(),
                })),
                dynamic_metadata: deny_metadata(denial),
            }
        }
    }
}

/// The string leaves of an allow, in `CheckResponse.dynamic_metadata` (never
/// `OkHttpResponse.dynamic_metadata`: Envoy lets that one replace the whole namespace).
/// Only string leaves: the filter reads a string leaf in ~1 µs, a list ~60x slower.
fn allow_metadata(
    session_binding: Option<[u8; 32]>,
    listing: Option<Listing>,
    violation: Option<String>,
) -> Option<Struct> {
    let mut fields = std::collections::BTreeMap::new();
    if let Some(key) = session_binding {
        fields.insert(SESSION_KEY_METADATA.to_owned(), text(&hex::encode(key)));
    }
    match listing {
        Some(Listing::Tools(json)) => {
            fields.insert(ALLOWED_TOOLS_METADATA_KEY.to_owned(), string(json));
        }
        Some(Listing::Entries(all)) => {
            let value = if all { "all" } else { "none" };
            fields.insert(LIST_ENTRIES_METADATA_KEY.to_owned(), text(value));
        }
        None => {}
    }
    if let Some(violation) = violation {
        fields.insert(SCHEMA_VIOLATION_METADATA_KEY.to_owned(), string(violation));
    }
    (!fields.is_empty()).then(|| Struct {
        fields: fields.into_iter().collect(),
    })
}

/// A denial's metadata: who was refused (when known) and, for the 400 refusals, the
/// JSON-RPC code (`error_code`).
fn deny_metadata(denial: Denial) -> Option<Struct> {
    let code = denial.error_code_leaf();
    let mut metadata = denial
        .into_identity()
        .map(|identity| identity_metadata(&identity));
    if let Some(code) = code {
        metadata
            .get_or_insert_with(Struct::default)
            .fields
            .insert(ERROR_CODE_METADATA_KEY.to_owned(), text(&code.to_string()));
    }
    metadata
}

/// `{"agent_id": ..., "user_id": ...}` as ext_authz dynamic metadata (namespace
/// `envoy.filters.http.ext_authz`), which Envoy records for denied requests too: the
/// request headers never reach anyone, but the audit record can name who was refused.
fn identity_metadata(identity: &Identity) -> Struct {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert(AGENT_METADATA_KEY.to_owned(), text(&identity.agent));
    if let Some(user) = &identity.user {
        fields.insert(USER_METADATA_KEY.to_owned(), text(user));
    }
    Struct {
        fields: fields.into_iter().collect(),
    }
}

fn text(value: &str) -> Value {
    string(value.to_owned())
}

fn string(value: String) -> Value {
    Value {
        kind: Some(Kind::StringValue(value)),
    }
}

/// Keys of the identity in the ext_authz dynamic metadata of a denied request.
pub const AGENT_METADATA_KEY: &str = "agent_id";
pub const USER_METADATA_KEY: &str = "user_id";
/// `tools/list`: the tools this token may call, a sorted JSON array of names.
pub const ALLOWED_TOOLS_METADATA_KEY: &str = "allowed_tools";
/// `prompts/list`, `resources/list`, `resources/templates/list`: `all` or `none`.
pub const LIST_ENTRIES_METADATA_KEY: &str = "list_entries";
/// `tools/call` in `report` mode: `<pointer>: <error>` of invalid arguments.
pub const SCHEMA_VIOLATION_METADATA_KEY: &str = "schema_violation";
/// 400 denials: the JSON-RPC code of the body (`-32602` or `-32020`).
pub const ERROR_CODE_METADATA_KEY: &str = "error_code";
