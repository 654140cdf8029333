//! The edges of both binaries: logging, `--validate`, the exit status, the listeners
//! and the shutdown signal. Kept here so the services' `main.rs` only declare flags.

use std::fmt::Display;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use tokio::net::TcpListener;

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// `--validate`: loads `path` as the service would and reports `<path>: OK` on stdout,
/// or the loader's error (which names file, field and reason) on stderr with a
/// failing exit status, so CI and editors can check a file before it is deployed.
pub fn validate<T, E: Display>(path: &Path, load: impl FnOnce(&Path) -> Result<T, E>) -> ExitCode {
    validate_to(path, load, &mut std::io::stdout(), &mut std::io::stderr())
}

fn validate_to<T, E: Display>(
    path: &Path,
    load: impl FnOnce(&Path) -> Result<T, E>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> ExitCode {
    // A closed stdout/stderr must not turn a verdict into a panic; the exit status
    // still carries it.
    match load(path) {
        Ok(_) => {
            let _ = writeln!(out, "{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            let _ = writeln!(err, "{error}");
            ExitCode::FAILURE
        }
    }
}

/// The exit status of a run; a failure is printed as `<program>: <error>` with its
/// causes (`{:#}` prints an `anyhow` chain on one line).
pub fn exit<E: Display>(program: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// An address that cannot be listened on (in use, not local, malformed).
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}")]
pub struct BindError {
    pub address: String,
    #[source]
    pub source: std::io::Error,
}

/// The two listeners of a service: gRPC for Envoy, HTTP for metrics and probes.
#[derive(Debug)]
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
}

impl Listeners {
    /// Binds both before anything is served, so a port in use stops startup with the
    /// address named rather than leaving a half-started service.
    pub async fn bind(grpc: &str, http: &str) -> Result<Listeners, BindError> {
        async fn one(address: &str) -> Result<TcpListener, BindError> {
            TcpListener::bind(address)
                .await
                .map_err(|source| BindError {
                    address: address.to_owned(),
                    source,
                })
        }
        Ok(Listeners {
            grpc: one(grpc).await?,
            http: one(http).await?,
        })
    }
}

/// Completes on Ctrl-C, or on SIGTERM where there are Unix signals (Kubernetes and
/// Docker stop containers with SIGTERM, then wait for a graceful shutdown).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // Without a SIGTERM handler, Ctrl-C still stops the service gracefully.
        let mut term = match signal(SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return ctrl_c.await.unwrap_or_default(),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(result: Result<(), String>) -> (ExitCode, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = validate_to(Path::new("conf/x.yaml"), |_| result, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn validate_prints_ok_or_the_loaders_error() {
        let (code, out, err) = run(Ok(()));
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (ExitCode::SUCCESS, "conf/x.yaml: OK\n", "")
        );
        let (code, out, err) = run(Err("conf/x.yaml: a.b: bad".into()));
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (ExitCode::FAILURE, "", "conf/x.yaml: a.b: bad\n")
        );
    }

    #[tokio::test]
    async fn a_port_in_use_names_the_address() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = taken.local_addr().unwrap().to_string();
        let error = Listeners::bind("127.0.0.1:0", &address).await.unwrap_err();
        assert_eq!(error.to_string(), format!("cannot listen on {address}"));
        assert_eq!(error.source.kind(), std::io::ErrorKind::AddrInUse);
    }
}
