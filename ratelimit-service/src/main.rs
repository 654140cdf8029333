//! `mcp-ratelimit-service`: see the README's ratelimit-service section.

use anyhow::Context as _;
use clap::Parser;
use mcp_ratelimit_service::config::Config;
use mcp_ratelimit_service::{build, serve, Settings};
use mcp_service_kit as kit;
use std::path::PathBuf;
use std::process::ExitCode;

/// Envoy rate limit (RLS v3) gRPC service for the MCP gateway: global per-agent,
/// per-tool limits in envoyproxy/ratelimit's configuration format.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Check a configuration file or directory and exit (non-zero with file, key and
    /// reason if invalid).
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    validate: Option<PathBuf>,
    /// Configuration file or directory (YAML), hot-reloaded.
    #[arg(long, required_unless_present = "validate")]
    config: Option<PathBuf>,
    /// gRPC listen address (RLS and grpc.health.v1).
    #[arg(long, default_value = "127.0.0.1:8081")]
    grpc_addr: String,
    /// HTTP listen address (/metrics, /ready).
    #[arg(long, default_value = "127.0.0.1:8082")]
    http_addr: String,
    /// Share counters through Redis (redis://host:port/db); in memory otherwise.
    #[arg(long)]
    redis_url: Option<String>,
    /// Memory store: entries (counters plus distinct values seen, about 100 bytes
    /// each) made for requests at most. Past it, requests that need a new counter
    /// share their limit's overflow counter (limited together, never let through).
    #[arg(long, default_value_t = mcp_ratelimit_service::MEMORY_CAPACITY)]
    memory_capacity: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    kit::cli::init_tracing();
    let cli = Cli::parse();
    if let Some(path) = &cli.validate {
        return kit::cli::validate(path, Config::load);
    }
    kit::cli::exit("mcp-ratelimit-service", run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings {
        config: cli.config.context("--config is required")?,
        redis_url: cli.redis_url,
        memory_capacity: cli.memory_capacity,
    };
    let limiter = build(&settings)?;
    let kit::Listeners { grpc, http } =
        kit::Listeners::bind(&cli.grpc_addr, &cli.http_addr).await?;
    serve(limiter, &settings, grpc, http, kit::cli::shutdown_signal()).await?;
    Ok(())
}
