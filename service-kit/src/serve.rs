//! Serving a service: its gRPC service beside `grpc.health.v1`, and its HTTP router,
//! until a shutdown signal; plus the periodic tasks that run meanwhile.

use crate::{Listeners, Readiness};
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// Serves `grpc` (with health answering from `readiness`) and `http` until `shutdown`
/// completes; then both stop taking connections and finish the requests in flight.
pub async fn serve<S>(
    listeners: Listeners,
    readiness: &Readiness,
    grpc: S,
    http: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError>
where
    S: Service<axum::http::Request<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Response: axum::response::IntoResponse,
    S::Future: Send + 'static,
{
    let Listeners {
        grpc: grpc_listener,
        http: http_listener,
    } = listeners;
    tracing::info!(
        service = S::NAME,
        grpc = %grpc_listener.local_addr()?,
        http = %http_listener.local_addr()?,
        "listening"
    );
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_server = tokio::spawn(async move {
        axum::serve(http_listener, http)
            .with_graceful_shutdown(async {
                let _ = http_stopped.await;
            })
            .await
    });
    let result = tonic::transport::Server::builder()
        .add_service(readiness.health_service())
        .add_service(grpc)
        // TCP_NODELAY: tonic sets it only on listeners it binds itself. Without it, a
        // reply's HTTP/2 frames wait for Envoy's delayed ACK (Nagle): several ms added
        // to every check at low rates (BENCHMARKS.md).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    let _ = stop_http.send(());
    let _ = http_server.await;
    tracing::info!("stopped");
    Ok(result?)
}

/// A task that runs `tick` every `period` (the first at once) until dropped: dropping
/// it with the server's scope means no refresh or sweep outlives `serve`.
#[must_use = "the task stops when this is dropped"]
pub struct Periodic(tokio::task::JoinHandle<()>);

impl Drop for Periodic {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn every<F, Fut>(period: Duration, mut tick: F) -> Periodic
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Periodic(tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        loop {
            interval.tick().await;
            tick().await;
        }
    }))
}
