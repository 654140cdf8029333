//! The service over real sockets with a tonic client: decisions and their response
//! fields, hot reload, health, metrics, a flood of unknown tool names against a small
//! memory store; and the Redis store against a real redis-server: two replicas share
//! one limit and one bound on distinct values, Redis down gives UNAVAILABLE, Redis
//! back brings decisions back.

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use mcp_ratelimit_service::{build, serve, Settings};
use mcp_service_kit::testing::{RedisServer, RunningService};
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMITS: &str = "domain: mcp_gateway\ndescriptors:\n  - key: tool_call\n    descriptors:\n      - key: agent_id\n        value: agent-prod-001\n        rate_limit: {unit: hour, requests_per_unit: 3}\n";

/// The service on loopback (ready once its configuration is loaded and watched).
struct Service(RunningService);

impl Service {
    async fn start(config: &Path, redis_url: Option<String>) -> Service {
        Service::start_with(Settings {
            redis_url,
            ..Settings::new(config)
        })
        .await
    }

    async fn start_with(settings: Settings) -> Service {
        let limiter = build(&settings).unwrap();
        Service(
            RunningService::start(|grpc, http, shutdown| async move {
                serve(limiter, &settings, grpc, http, shutdown).await
            })
            .await,
        )
    }

    async fn ask(
        &self,
        tool: &str,
        agent: &str,
        hits: u32,
    ) -> Result<RateLimitResponse, tonic::Status> {
        let mut client = loop {
            match RateLimitServiceClient::connect(self.0.grpc.clone()).await {
                Ok(client) => break client,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        client
            .should_rate_limit(RateLimitRequest {
                domain: "mcp_gateway".into(),
                descriptors: vec![RateLimitDescriptor {
                    entries: vec![
                        Entry {
                            key: "tool_call".into(),
                            value: tool.into(),
                        },
                        Entry {
                            key: "agent_id".into(),
                            value: agent.into(),
                        },
                    ],
                    ..RateLimitDescriptor::default()
                }],
                hits_addend: hits,
            })
            .await
            .map(|r| r.into_inner())
    }

    async fn metrics(&self) -> String {
        self.0.metrics().await
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}

fn config_dir(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("limits.yaml"), text).unwrap();
    let path = dir.path().to_owned();
    (dir, path)
}

#[tokio::test]
async fn decisions_over_grpc() {
    let (_dir, path) = config_dir(LIMITS);
    let service = Service::start(&path, None).await;
    for remaining in [2, 1, 0] {
        let answer = service
            .ask("query_transactions", "agent-prod-001", 1)
            .await
            .unwrap();
        assert_eq!(answer.overall_code, Code::Ok as i32);
        let status = &answer.statuses[0];
        assert_eq!(status.limit_remaining, remaining);
        let limit = status.current_limit.as_ref().unwrap();
        assert_eq!(limit.requests_per_unit, 3);
        let reset = status.duration_until_reset.as_ref().unwrap().seconds;
        assert!((1..=3600).contains(&reset), "{reset}");
        assert!(answer.response_headers_to_add.is_empty());
    }
    let answer = service
        .ask("query_transactions", "agent-prod-001", 1)
        .await
        .unwrap();
    assert_eq!(answer.overall_code, Code::OverLimit as i32);
    assert_eq!(answer.statuses[0].code, Code::OverLimit as i32);
    let retry = &answer.response_headers_to_add[0];
    assert_eq!(retry.key, "retry-after");
    assert!(retry.value.parse::<u64>().unwrap() >= 1);
    // Unconfigured agent: OK, no limit reported.
    let answer = service
        .ask("query_transactions", "someone-else", 5)
        .await
        .unwrap();
    assert_eq!(answer.overall_code, Code::Ok as i32);
    assert!(answer.statuses[0].current_limit.is_none());
    let metrics = service.metrics().await;
    assert!(
        metrics.contains(r#"mcp_ratelimit_hits_total{key="tool_call.agent_id"} 4"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"mcp_ratelimit_over_limit_total{key="tool_call.agent_id"} 1"#),
        "{metrics}"
    );
    service.stop().await;
}

#[tokio::test]
async fn hot_reload_keeps_the_last_good_configuration() {
    let (_dir, path) = config_dir(LIMITS);
    let service = Service::start(&path, None).await;
    let file = path.join("limits.yaml");
    let replace = |text: &str| {
        std::fs::write(path.join("limits.tmp"), text).unwrap();
        std::fs::rename(path.join("limits.tmp"), &file).unwrap();
    };
    replace(&LIMITS.replace("requests_per_unit: 3", "requests_per_unit: 1"));
    let mut limited = false;
    for _ in 0..100 {
        let answer = service.ask("t", "agent-prod-001", 1).await.unwrap();
        if answer.statuses[0]
            .current_limit
            .as_ref()
            .unwrap()
            .requests_per_unit
            == 1
        {
            limited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(limited, "the new limit never took effect");
    replace("domain: mcp_gateway\ndescriptors:\n  - key: tool_call\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n");
    let mut reported = false;
    for _ in 0..100 {
        if service
            .metrics()
            .await
            .contains("mcp_ratelimit_config_reload_failures_total 1")
        {
            reported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reported, "the broken file was not reported");
    let answer = service.ask("t2", "agent-prod-001", 1).await.unwrap();
    assert_eq!(
        answer.statuses[0]
            .current_limit
            .as_ref()
            .unwrap()
            .requests_per_unit,
        1,
        "last good config"
    );
    service.stop().await;
}

#[tokio::test]
async fn redis_replicas_share_a_limit_and_survive_redis_restarts() {
    let redis = RedisServer::start();
    let port = redis.port();
    let (_dir, path) = config_dir(LIMITS);
    let first = Service::start(&path, Some(redis.url())).await;
    let second = Service::start(&path, Some(redis.url())).await;
    let tool = format!("tool-{port}");
    assert_eq!(
        first
            .ask(&tool, "agent-prod-001", 2)
            .await
            .unwrap()
            .overall_code,
        Code::Ok as i32
    );
    let answer = second.ask(&tool, "agent-prod-001", 1).await.unwrap();
    assert_eq!(
        (answer.overall_code, answer.statuses[0].limit_remaining),
        (Code::Ok as i32, 0)
    );
    assert_eq!(
        first
            .ask(&tool, "agent-prod-001", 1)
            .await
            .unwrap()
            .overall_code,
        Code::OverLimit as i32
    );

    // Redis stops mid-run: UNAVAILABLE (Envoy's failure_mode_deny decides), counted.
    drop(redis);
    let error = second.ask(&tool, "agent-prod-001", 1).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unavailable);
    assert!(second
        .metrics()
        .await
        .contains("mcp_ratelimit_backend_errors_total 1"));

    // Redis comes back (empty): decisions come back without a restart.
    let _redis = RedisServer::start_on(port);
    let mut recovered = false;
    for _ in 0..100 {
        if let Ok(answer) = second.ask(&tool, "agent-prod-001", 1).await {
            assert_eq!(answer.overall_code, Code::Ok as i32);
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "decisions did not come back after Redis returned"
    );
    first.stop().await;
    second.stop().await;
}

/// Every tool and every agent through key-only descriptors: both values are the
/// client's as far as the service can tell.
const ANY_TOOL_ANY_AGENT: &str = "domain: mcp_gateway\ndescriptors:\n  - key: tool_call\n    descriptors:\n      - key: agent_id\n        rate_limit: {unit: hour, requests_per_unit: 3}\n";

fn over_limit(answer: &RateLimitResponse) -> bool {
    answer.overall_code == Code::OverLimit as i32
}

/// The finding: unique tool names used to fill the memory store, after which every
/// decision failed with UNAVAILABLE and Envoy (failure_mode_deny: false) let every
/// client through. Now no answer is an error, the flood is limited, and an agent's
/// existing counter keeps its limit.
#[tokio::test]
async fn a_flood_of_unknown_tools_never_makes_the_service_unavailable() {
    let (_dir, path) = config_dir(ANY_TOOL_ANY_AGENT);
    let service = Service::start_with(Settings {
        memory_capacity: 16,
        ..Settings::new(&path)
    })
    .await;
    assert!(!over_limit(
        &service
            .ask("query_transactions", "victim", 1)
            .await
            .unwrap()
    ));
    let mut refused = 0;
    for i in 0..300 {
        let answer = service
            .ask(&format!("made-up-{i}"), "attacker", 1)
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e:?}"));
        refused += usize::from(over_limit(&answer));
    }
    assert!(refused >= 290, "only {refused} of 300 refused");
    for expected in [false, false, true] {
        let answer = service
            .ask("query_transactions", "victim", 1)
            .await
            .unwrap();
        assert_eq!(over_limit(&answer), expected);
    }
    let metrics = service.metrics().await;
    assert!(
        metrics.contains(
            r#"mcp_ratelimit_overflow_total{key="tool_call.agent_id",reason="store_full"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("mcp_ratelimit_backend_errors_total 0"),
        "{metrics}"
    );
    service.stop().await;
}

struct RedisKeys(redis::Connection);

impl RedisKeys {
    fn open(url: &str) -> RedisKeys {
        RedisKeys(redis::Client::open(url).unwrap().get_connection().unwrap())
    }

    fn count(&mut self) -> usize {
        redis::cmd("DBSIZE").query(&mut self.0).unwrap()
    }

    fn ttl(&mut self, key: &str) -> i64 {
        redis::cmd("TTL").arg(key).query(&mut self.0).unwrap()
    }
}

/// Two replicas on one Redis share the bound: the values one replica admitted count
/// for the other; past the bound every tool of an agent shares one counter, so the
/// flood is limited and Redis holds a bounded number of keys, each expiring.
#[tokio::test]
async fn redis_replicas_share_the_bound_on_distinct_values() {
    let redis = RedisServer::start();
    let (_dir, path) = config_dir(&ANY_TOOL_ANY_AGENT.replace(
        "descriptors:\n  - key: tool_call",
        "max_distinct_values: 4\ndescriptors:\n  - key: tool_call",
    ));
    let first = Service::start(&path, Some(redis.url())).await;
    let second = Service::start(&path, Some(redis.url())).await;
    for i in 0..2 {
        first.ask(&format!("tool-{i}"), "a", 1).await.unwrap();
        second
            .ask(&format!("tool-{}", i + 2), "a", 1)
            .await
            .unwrap();
    }
    // Four tools with their own counter: 2 more calls each of tool-0 pass.
    for replica in [&first, &second] {
        assert!(!over_limit(&replica.ask("tool-0", "a", 1).await.unwrap()));
    }
    assert!(over_limit(&first.ask("tool-0", "a", 1).await.unwrap()));
    let mut keys = RedisKeys::open(&redis.url());
    // 4 counters, the tool scope, 4 agent scopes.
    assert_eq!(keys.count(), 9);
    // The flood, across both replicas: 3 calls pass on the overflow counter.
    let mut refused = 0;
    for i in 0..200 {
        let replica = if i % 2 == 0 { &first } else { &second };
        let answer = replica.ask(&format!("made-up-{i}"), "a", 1).await.unwrap();
        refused += usize::from(over_limit(&answer));
    }
    assert_eq!(refused, 197);
    // The overflow counter and its agent scope: two keys more, whatever the flood.
    assert_eq!(keys.count(), 11);
    let window = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600
        * 3600;
    let ttl = keys.ttl(&format!(
        "mcp_rl:{{mcp_gateway|tool_call=%overflow|agent_id=a}}:{window}"
    ));
    assert!((1..=3601).contains(&ttl), "{ttl}");
    let ttl = keys.ttl(&format!(
        "mcp_rl:{{mcp_gateway|tool_call|agent_id}}:{window}/3600"
    ));
    assert!((1..=3601).contains(&ttl), "{ttl}");
    let metrics = first.metrics().await + &second.metrics().await;
    assert!(
        metrics.contains(r#"mcp_ratelimit_overflow_total{key="tool_call.agent_id",reason="max_distinct_values"} 100"#),
        "{metrics}"
    );
    first.stop().await;
    second.stop().await;
}
