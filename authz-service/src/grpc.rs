//! `envoy.service.auth.v3.Authorization/Check`: maps Envoy's request to a decision
//! and the decision to Envoy's answer.

use crate::check::{Authorizer, CheckInput, Outcome};
use crate::identity::Identity;
use crate::metrics::DecisionLabels;
use crate::policy::Call;
use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use envoy_types::pb::google::rpc::Status;
use mcp_filter_core::headers::{
    MCP_SESSION_ID, SESSION_KEY_METADATA, X_AGENT_ID, X_MCP_METHOD, X_MCP_REQUEST_ID,
    X_MCP_SERVER_ID, X_MCP_TOOL_NAME, X_USER_ID,
};
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
        let headers = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .map(|http| &http.headers)
            .unwrap_or(&empty);
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
                dynamic_metadata: session_binding.map(|key| Struct {
                    fields: [(SESSION_KEY_METADATA.to_owned(), text(&hex::encode(key)))]
                        .into_iter()
                        .collect(),
                }),
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
                dynamic_metadata: denial
                    .into_identity()
                    .map(|identity| identity_metadata(&identity)),
            }
        }
    }
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
    Value {
        kind: Some(Kind::StringValue(value.to_owned())),
    }
}

/// Keys of the identity in the ext_authz dynamic metadata of a denied request.
pub const AGENT_METADATA_KEY: &str = "agent_id";
pub const USER_METADATA_KEY: &str = "user_id";
