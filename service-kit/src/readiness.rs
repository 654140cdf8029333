//! Readiness: one state behind both gRPC health (Kubernetes' `grpc` probes, Envoy's
//! health checks) and HTTP `/ready`, so the two can never disagree.
//!
//! A service is ready when everything it needs to answer correctly is loaded (its
//! configuration; for the authz-service also the token keys). Until then both report
//! not serving, and load balancers keep traffic on replicas that can answer.

use std::sync::{Arc, Mutex};
use tonic::server::NamedService;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;

#[derive(Clone)]
pub struct Readiness {
    /// The gRPC service name health reports on (`envoy.service.auth.v3.Authorization`).
    service: &'static str,
    reporter: HealthReporter,
    /// Why the service is not ready, or `None` when it is.
    waiting_for: Arc<Mutex<Option<&'static str>>>,
}

impl Readiness {
    /// Not ready, for `waiting_for` (said on `/ready`, e.g. "no verification keys
    /// loaded"), until [`Readiness::set_ready`].
    pub async fn new<S: NamedService>(waiting_for: &'static str) -> Readiness {
        let readiness = Readiness {
            service: S::NAME,
            reporter: HealthReporter::new(),
            waiting_for: Arc::new(Mutex::new(None)),
        };
        readiness.set_not_ready(waiting_for).await;
        readiness
    }

    pub async fn set_ready(&self) {
        *self.lock() = None;
        self.report(ServingStatus::Serving).await;
    }

    pub async fn set_not_ready(&self, waiting_for: &'static str) {
        *self.lock() = Some(waiting_for);
        self.report(ServingStatus::NotServing).await;
    }

    /// `Ok` when ready, otherwise what the service still waits for.
    pub fn check(&self) -> Result<(), &'static str> {
        match *self.lock() {
            None => Ok(()),
            Some(reason) => Err(reason),
        }
    }

    /// The `grpc.health.v1.Health` service answering from this state.
    pub fn health_service(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService::from_health_reporter(self.reporter.clone()))
    }

    // Both the named service and "" (the whole server, gRPC health checking
    // protocol): a probe configured without a service name must not see SERVING
    // while the service itself cannot answer yet.
    async fn report(&self, status: ServingStatus) {
        for name in [self.service, ""] {
            self.reporter.set_service_status(name, status).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<&'static str>> {
        // The guarded value is a plain Option: a panic elsewhere cannot leave it torn.
        self.waiting_for.lock().unwrap_or_else(|e| e.into_inner())
    }
}
