//! Step 5's agent client: the official Rust MCP SDK (rmcp, pinned exactly in
//! Cargo.toml). This is the only file that names rmcp, so an SDK upgrade touches
//! nothing else. 2026-07-28 connects with `server/discover`; older versions with the
//! `initialize` handshake, offering exactly that version.

use super::run::{no_token_step, Ctx};
use super::{Check, Step};
use rmcp::model::{ClientConfig, ProtocolVersion};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientLifecycleMode, ClientServiceExt};
use std::time::Duration;

/// Step 5: the SDK connects in every claimed version.
pub async fn step(ctx: &Ctx<'_>) -> Step {
    let Some(token) = ctx.token() else {
        return no_token_step(ctx, 5);
    };
    if ctx.claims.is_empty() {
        return Step::from_checks(
            5,
            vec![Check::fail(
                "claims",
                format!("the server claims no protocol version: {}", ctx.discovery),
            )],
        );
    }
    let mut checks = Vec::new();
    for (version, sources) in &ctx.claims {
        checks.push(
            match connect(&ctx.client.url, token, version, Duration::from_secs(30)).await {
                Ok(connected) => Check::pass(
                    version,
                    format!(
                        "rmcp {RMCP_VERSION} connected in {version} and listed {} tools",
                        connected.tools
                    ),
                ),
                Err(reason) => Check::fail(
                    version,
                    format!(
                        "claims {version} ({}) but rmcp {RMCP_VERSION} could not connect: {reason}",
                        sources.join(", ")
                    ),
                ),
            },
        );
    }
    Step::from_checks(5, checks)
}

/// The SDK version (Cargo.toml pins it exactly).
pub const RMCP_VERSION: &str = "3.11.0";

/// What a successful connection saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    pub negotiated: String,
    pub tools: usize,
}

/// Connects to `url` in `version` with `token`, lists the tools and ends the session.
/// `Err`: the SDK's own words for what went wrong.
pub async fn connect(
    url: &str,
    token: &str,
    version: &str,
    limit: Duration,
) -> Result<Connected, String> {
    super::client::tls_provider();
    match tokio::time::timeout(limit, attempt(url, token, version)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no connection within {}s", limit.as_secs())),
    }
}

async fn attempt(url: &str, token: &str, version: &str) -> Result<Connected, String> {
    let wanted: ProtocolVersion = serde_json::from_value(serde_json::json!(version))
        .map_err(|e| format!("{version:?} is not a protocol version: {e}"))?;
    // reqwest's bearer_auth adds "Bearer ": the bare token goes here.
    let config =
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token.to_owned());
    let transport = StreamableHttpClientTransport::from_config(config);
    let lifecycle = if version >= super::client::MODERN {
        ClientLifecycleMode::Discover {
            preferred_versions: vec![wanted.clone()],
        }
    } else {
        ClientLifecycleMode::Initialize
    };
    let client_config = ClientConfig::default().with_protocol_version(wanted.clone());
    let client = client_config
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .map_err(|e| format!("the SDK could not connect: {e}"))?;
    let negotiated = client
        .peer_info()
        .map(|info| info.protocol_version.to_string())
        .unwrap_or_default();
    let listed = client.list_all_tools().await;
    let ended = client.cancel().await;
    if negotiated != version {
        return Err(format!(
            "the server agreed on {negotiated:?}, not {version}"
        ));
    }
    let tools = listed.map_err(|e| format!("connected, but tools/list failed: {e}"))?;
    ended.map_err(|e| format!("connected and listed, but the session did not end cleanly: {e}"))?;
    Ok(Connected {
        negotiated,
        tools: tools.len(),
    })
}
