use super::*;
use crate::store::{Increment, Memory};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const LIMITS: &str = r#"
domain: mcp_gateway
descriptors:
  - key: tool_call
    descriptors:
      - key: agent_id
        value: agent-prod-001
        rate_limit: {unit: minute, requests_per_unit: 3}
      - key: agent_id
        value: canary
        shadow_mode: true
        rate_limit: {unit: second, requests_per_unit: 1}
      - key: agent_id
        value: trusted
        rate_limit: {unlimited: true}
      - key: agent_id
        rate_limit: {unit: hour, requests_per_unit: 10}
"#;

struct Fixture {
    config: Config,
    store: Backend,
    clock: Arc<AtomicU64>,
}

impl Fixture {
    fn new() -> Fixture {
        let clock = Arc::new(AtomicU64::new(1_800_000_000)); // a minute boundary
        let store_clock = clock.clone();
        Fixture {
            config: Config::parse([(Path::new("limits.yaml"), LIMITS)]).unwrap(),
            store: Backend::Memory(Memory::new(1000, move || {
                store_clock.load(Ordering::Relaxed)
            })),
            clock,
        }
    }

    fn call(&self, tool: &str, agent: &str, hits: u32) -> Status {
        self.decide(vec![("tool_call", tool), ("agent_id", agent)], hits)
    }

    fn decide(&self, entries: Vec<(&str, &str)>, hits: u32) -> Status {
        let now = self.clock.load(Ordering::Relaxed);
        let descriptors = [Descriptor { entries, hits }];
        let future = decide(&self.config, &self.store, now, "mcp_gateway", &descriptors);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(future).unwrap().remove(0)
    }

    fn counters(&self) -> usize {
        match &self.store {
            Backend::Memory(memory) => memory.len(),
            Backend::Redis(_) => unreachable!("memory fixture"),
        }
    }

    fn advance(&self, seconds: u64) {
        self.clock.fetch_add(seconds, Ordering::Relaxed);
    }
}

#[test]
fn window_boundaries() {
    let f = Fixture::new();
    for expected_remaining in [2, 1, 0] {
        let status = f.call("query_transactions", "agent-prod-001", 1);
        assert!(!status.over_limit);
        assert_eq!(status.remaining, expected_remaining);
        assert_eq!(status.reset_seconds, 60);
    }
    f.advance(59);
    let status = f.call("query_transactions", "agent-prod-001", 1);
    assert!(status.over_limit, "4th call in the same minute");
    assert_eq!(status.reset_seconds, 1);
    f.advance(1);
    let status = f.call("query_transactions", "agent-prod-001", 1);
    assert!(
        !status.over_limit,
        "a new window starts exactly at the boundary"
    );
    assert_eq!((status.remaining, status.reset_seconds), (2, 60));
}

#[test]
fn limits_are_per_tool_and_per_agent() {
    let f = Fixture::new();
    for _ in 0..3 {
        f.call("query_transactions", "agent-prod-001", 1);
    }
    assert!(f.call("query_transactions", "agent-prod-001", 1).over_limit);
    assert!(
        !f.call("get_account_balance", "agent-prod-001", 1)
            .over_limit,
        "other tool"
    );
    let other = f.call("query_transactions", "agent-7", 1);
    assert!(!other.over_limit, "other agent");
    assert_eq!(
        other.limit.unwrap().requests_per_unit,
        10,
        "key-only default"
    );
}

#[test]
fn hits_addend_counts_several_hits() {
    let f = Fixture::new();
    let status = f.call("t", "agent-prod-001", 3);
    assert!(!status.over_limit);
    assert_eq!(status.remaining, 0);
    assert!(f.call("t", "agent-prod-001", 1).over_limit);
    let f = Fixture::new();
    assert!(f.call("t", "agent-prod-001", 4).over_limit);
}

#[test]
fn unlimited_and_unmatched_are_never_refused() {
    let f = Fixture::new();
    for _ in 0..100 {
        assert!(!f.call("t", "trusted", 1).over_limit);
    }
    assert_eq!(f.counters(), 0, "unlimited descriptors are not counted");
    assert_eq!(f.decide(vec![("tool_call", "t")], 1).limit, None);
}

#[test]
fn shadow_mode_reports_but_allows() {
    let f = Fixture::new();
    assert!(!f.call("t", "canary", 1).shadow_over_limit);
    let status = f.call("t", "canary", 1);
    assert!(!status.over_limit);
    assert!(status.shadow_over_limit);
}

#[test]
fn near_limit_is_flagged() {
    let f = Fixture::new();
    let flags: Vec<bool> = (0..10)
        .map(|_| f.call("t", "agent-9", 1).near_limit)
        .collect();
    // 10 per hour: calls 9 and 10 are past 80%.
    assert_eq!(
        flags,
        [false, false, false, false, false, false, false, false, true, true]
    );
}

#[test]
fn expired_windows_are_reclaimed_and_memory_is_bounded() {
    let clock = Arc::new(AtomicU64::new(100));
    let c = clock.clone();
    let store = Memory::new(2, move || c.load(Ordering::Relaxed));
    let inc = |key: &str, expires_at: u64| Increment {
        key: key.into(),
        hits: 1,
        expires_at,
    };
    store.increment(&inc("a", 160)).unwrap();
    store.increment(&inc("b", 160)).unwrap();
    assert_eq!(store.increment(&inc("c", 160)), Err(StoreError::Full(2)));
    assert_eq!(
        store.increment(&inc("a", 160)),
        Ok(2),
        "existing counters still count"
    );
    clock.store(160, Ordering::Relaxed);
    assert_eq!(
        store.increment(&inc("c", 220)),
        Ok(1),
        "full: expired windows make room"
    );
    assert_eq!(store.len(), 1);
}

#[test]
fn counter_keys_share_a_cluster_slot_per_descriptor() {
    assert_eq!(
        counter_key(
            "mcp_gateway",
            &[("tool_call", "q"), ("agent_id", "a1")],
            1_800_000_000
        ),
        "mcp_rl:{mcp_gateway|tool_call=q|agent_id=a1}:1800000000"
    );
}
