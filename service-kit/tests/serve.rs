//! `serve` over real sockets: gRPC health and `/ready` follow one readiness state, and
//! shutdown ends both servers.

use mcp_service_kit::{http, serve, Listeners, Readiness};
use std::convert::Infallible;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A gRPC service that is only a name: health is what is under test.
#[derive(Clone)]
struct Named;

impl NamedService for Named {
    const NAME: &'static str = "test.v1.Named";
}

impl Service<axum::http::Request<Body>> for Named {
    type Response = axum::http::Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: axum::http::Request<Body>) -> Self::Future {
        std::future::ready(Ok(axum::http::Response::new(Body::empty())))
    }
}

async fn health(grpc: &str, service: &str) -> i32 {
    let channel = tonic::transport::Endpoint::from_shared(grpc.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest {
        service: service.into(),
    };
    client.check(request).await.unwrap().into_inner().status
}

async fn ready(http: &str) -> (u16, String) {
    let response = reqwest::get(format!("{http}/ready")).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn health_and_ready_report_one_state() {
    let listeners = Listeners::bind("127.0.0.1:0", "127.0.0.1:0").await.unwrap();
    let grpc = format!("http://{}", listeners.grpc.local_addr().unwrap());
    let http_url = format!("http://{}", listeners.http.local_addr().unwrap());
    let readiness = Readiness::new::<Named>("keys not loaded").await;
    let router = http::router(|| "metric_total 1\n".to_owned(), readiness.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let readiness = readiness.clone();
        tokio::spawn(async move {
            serve(listeners, &readiness, Named, router, async {
                let _ = stopped.await;
            })
            .await
        })
    };

    let not_serving = ServingStatus::NotServing as i32;
    assert_eq!(health(&grpc, Named::NAME).await, not_serving);
    assert_eq!(health(&grpc, "").await, not_serving);
    assert_eq!(ready(&http_url).await, (503, "keys not loaded\n".into()));

    readiness.set_ready().await;
    let serving = ServingStatus::Serving as i32;
    assert_eq!(health(&grpc, Named::NAME).await, serving);
    assert_eq!(health(&grpc, "").await, serving);
    assert_eq!(ready(&http_url).await, (200, "ready\n".into()));

    let metrics = reqwest::get(format!("{http_url}/metrics")).await.unwrap();
    assert_eq!(
        metrics.headers()["content-type"],
        http::PROMETHEUS_TEXT,
        "Prometheus picks the parser by content type"
    );
    assert_eq!(metrics.text().await.unwrap(), "metric_total 1\n");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(grpc.trim_start_matches("http://"))
            .await
            .is_err(),
        "the gRPC listener is closed after shutdown"
    );
}
