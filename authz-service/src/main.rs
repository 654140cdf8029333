//! `mcp-authz-service`: see the README's authz-service section.

use anyhow::Context as _;
use clap::Parser;
use mcp_authz_service::http::ResourceMetadata;
use mcp_authz_service::jwks::JwksSource;
use mcp_authz_service::policy::Policy;
use mcp_authz_service::token::TokenRules;
use mcp_authz_service::{build, serve, Settings};
use mcp_service_kit as kit;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Envoy ext_authz gRPC service for the MCP gateway: verifies agent tokens (JWT) and
/// the per-tool scopes of the policy file.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Check a policy file and exit (non-zero with file, field and reason if invalid).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["policy"])]
    validate: Option<PathBuf>,
    /// Policy file (YAML), hot-reloaded.
    #[arg(long, required_unless_present = "validate")]
    policy: Option<PathBuf>,
    /// Registered tool input schemas (`schemas.json` from `mcp-registry render`),
    /// hot-reloaded: `tools/call` arguments are checked per server (`enforce`, `report`
    /// or `off`) and `Mcp-Param-*` headers compared with them. Without it, no checks.
    #[arg(long, value_name = "FILE")]
    schemas: Option<PathBuf>,
    /// Session binding master keys: one per line, at least 32 bytes each (e.g.
    /// `openssl rand -hex 32`), blank lines and `#` comments ignored. The first key
    /// binds new sessions; all are tried when checking one (rotation). Hot-reloaded.
    /// Every replica must read the same keys.
    #[arg(long, value_name = "FILE", required_unless_present = "validate")]
    session_key_file: Option<PathBuf>,
    /// gRPC listen address (ext_authz and grpc.health.v1).
    #[arg(long, default_value = "127.0.0.1:9191")]
    grpc_addr: String,
    /// HTTP listen address (/metrics, /ready, /.well-known/oauth-protected-resource).
    #[arg(long, default_value = "127.0.0.1:9192")]
    http_addr: String,
    /// The gateway's MCP resource URI: required token audience (RFC 8707) and the
    /// `resource` of the protected resource metadata.
    #[arg(long, required_unless_present = "validate")]
    resource: Option<String>,
    /// Required token issuer (`iss`); also listed as authorization server.
    #[arg(long, required_unless_present = "validate")]
    issuer: Option<String>,
    /// JWKS file.
    #[arg(long, conflicts_with = "jwks_url")]
    jwks_file: Option<PathBuf>,
    /// JWKS HTTPS URL.
    #[arg(long)]
    jwks_url: Option<String>,
    /// Seconds between JWKS refreshes (a token with an unknown kid also refreshes); at
    /// least 1.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    jwks_refresh_seconds: u64,
    /// Allowed clock skew for exp/nbf, seconds.
    #[arg(long, default_value_t = 30)]
    leeway_seconds: u64,
    /// Extra authorization servers for the metadata document (default: the issuer).
    #[arg(long = "authorization-server")]
    authorization_servers: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    kit::cli::init_tracing();
    let cli = Cli::parse();
    if let Some(file) = &cli.validate {
        return kit::cli::validate(file, Policy::load);
    }
    kit::cli::exit("mcp-authz-service", run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let jwks = match (cli.jwks_file, cli.jwks_url) {
        (Some(file), None) => JwksSource::File(file),
        (None, Some(url)) => JwksSource::Url(url),
        _ => anyhow::bail!("give exactly one of --jwks-file or --jwks-url"),
    };
    let issuer = cli.issuer.context("--issuer is required")?;
    let resource = cli.resource.context("--resource is required")?;
    let mut authorization_servers = cli.authorization_servers;
    if authorization_servers.is_empty() {
        authorization_servers.push(issuer.clone());
    }
    let settings = Settings {
        policy: cli.policy.context("--policy is required")?,
        schemas: cli.schemas,
        session_keys: cli
            .session_key_file
            .context("--session-key-file is required")?,
        rules: TokenRules {
            issuer,
            audience: resource.clone(),
            leeway_seconds: cli.leeway_seconds,
        },
        jwks,
        jwks_refresh: Duration::from_secs(cli.jwks_refresh_seconds),
        metadata: ResourceMetadata {
            resource,
            authorization_servers,
        },
    };
    let authorizer = build(&settings)?;
    let kit::Listeners { grpc, http } =
        kit::Listeners::bind(&cli.grpc_addr, &cli.http_addr).await?;
    serve(
        authorizer,
        &settings,
        grpc,
        http,
        kit::cli::shutdown_signal(),
    )
    .await?;
    Ok(())
}
