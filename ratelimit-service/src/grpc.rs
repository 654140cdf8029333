//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`.

use crate::config::{Config, Unit};
use crate::limiter::{decide, Clock, Descriptor, Status};
use crate::metrics::{KeyLabel, Metrics, OverflowLabel};
use crate::store::Backend;
use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit as PbUnit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tonic::{Request, Response, Status as GrpcStatus};

/// Shared state of the service.
pub struct Limiter {
    pub config: RwLock<Arc<Config>>,
    pub store: Backend,
    pub clock: Box<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

impl Limiter {
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }
}

pub struct RateLimitGrpc {
    pub limiter: Arc<Limiter>,
}

#[tonic::async_trait]
impl RateLimitService for RateLimitGrpc {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, GrpcStatus> {
        let started = Instant::now();
        let request = request.into_inner();
        // Envoy: hits_addend 0 means 1; a descriptor's own hits_addend wins.
        let default_hits = request.hits_addend.max(1);
        let descriptors: Vec<Descriptor<'_>> = request
            .descriptors
            .iter()
            .map(|d| Descriptor {
                entries: d
                    .entries
                    .iter()
                    .map(|e| (e.key.as_str(), e.value.as_str()))
                    .collect(),
                hits: d
                    .hits_addend
                    .map(|h| u32::try_from(h.value).unwrap_or(u32::MAX))
                    .unwrap_or(default_hits),
            })
            .collect();
        let config = self.limiter.config();
        let now = self.limiter.clock.now();
        let metrics = &self.limiter.metrics;
        let statuses = decide(
            &config,
            &self.limiter.store,
            now,
            &request.domain,
            &descriptors,
        )
        .await
        .map_err(|error| {
            // Only a store outage gets here (Redis unreachable or slow; the memory
            // store never fails, so no request can cause this). UNAVAILABLE lets
            // Envoy's `failure_mode_deny` decide: allow by default, refuse when the
            // operator asked for it.
            metrics.backend_errors.inc();
            tracing::warn!(%error, "rate limit decision failed");
            GrpcStatus::unavailable(error.to_string())
        })?;
        for (status, descriptor) in statuses.iter().zip(&descriptors) {
            record(metrics, status, descriptor.hits);
        }
        metrics
            .decision_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(Response::new(answer(&statuses)))
    }
}

fn record(metrics: &Metrics, status: &Status<'_>, hits: u32) {
    let Some(limit) = status.limit.filter(|l| l.rate().is_some()) else {
        return;
    };
    let label = KeyLabel {
        key: limit.metric_key.clone(),
    };
    metrics.hits.get_or_create(&label).inc_by(u64::from(hits));
    if status.over_limit {
        metrics
            .over_limit
            .get_or_create(&label)
            .inc_by(u64::from(hits));
    }
    if status.near_limit {
        metrics
            .near_limit
            .get_or_create(&label)
            .inc_by(u64::from(hits));
    }
    if status.shadow_over_limit {
        metrics
            .shadow_mode
            .get_or_create(&label)
            .inc_by(u64::from(hits));
    }
    if let Some(overflow) = status.overflow {
        metrics
            .overflow
            .get_or_create(&OverflowLabel {
                key: label.key,
                reason: overflow.as_str(),
            })
            .inc_by(u64::from(hits));
    }
}

/// The RLS answer: per descriptor its code, limit, remaining and time to reset (so
/// Envoy can send RateLimit headers), and `Retry-After` on the 429 (RFC 9110 section
/// 10.2.3) when anything is over its limit.
pub fn answer(statuses: &[Status<'_>]) -> RateLimitResponse {
    let over = statuses.iter().filter(|s| s.over_limit);
    let retry_after = over.clone().map(|s| s.reset_seconds).max();
    let descriptor_statuses = statuses
        .iter()
        .map(|status| DescriptorStatus {
            code: if status.over_limit {
                Code::OverLimit
            } else {
                Code::Ok
            } as i32,
            current_limit: status.limit.and_then(|l| l.rate()).map(|rate| RateLimit {
                name: String::new(),
                requests_per_unit: rate.requests_per_unit,
                unit: match rate.unit {
                    Unit::Second => PbUnit::Second,
                    Unit::Minute => PbUnit::Minute,
                    Unit::Hour => PbUnit::Hour,
                    Unit::Day => PbUnit::Day,
                } as i32,
            }),
            limit_remaining: status.remaining,
            duration_until_reset: status.limit.and_then(|l| l.rate()).map(|_| {
                envoy_types::pb::google::protobuf::Duration {
                    seconds: i64::try_from(status.reset_seconds).unwrap_or(i64::MAX),
                    nanos: 0,
                }
            }),
            ..DescriptorStatus::default()
        })
        .collect();
    RateLimitResponse {
        overall_code: if retry_after.is_some() {
            Code::OverLimit
        } else {
            Code::Ok
        } as i32,
        statuses: descriptor_statuses,
        response_headers_to_add: retry_after
            .map(|seconds| {
                vec![HeaderValue {
                    key: "retry-after".into(),
                    value: seconds.max(1).to_string(),
                    raw_value: Vec::new(),
                }]
            })
            .unwrap_or_default(),
        ..RateLimitResponse::default()
    }
}
