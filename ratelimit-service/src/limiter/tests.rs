use super::*;
use crate::store::{Memory, Overflow};
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
        Fixture::with(LIMITS, 1000)
    }

    fn with(limits: &str, capacity: usize) -> Fixture {
        let clock = Arc::new(AtomicU64::new(1_800_000_000)); // a minute boundary
        let store_clock = clock.clone();
        Fixture {
            config: Config::parse([(Path::new("limits.yaml"), limits)]).unwrap(),
            store: Backend::Memory(Memory::new(capacity, move || {
                store_clock.load(Ordering::Relaxed)
            })),
            clock,
        }
    }

    fn call(&self, tool: &str, agent: &str, hits: u32) -> Status<'_> {
        self.decide(vec![("tool_call", tool), ("agent_id", agent)], hits)
    }

    fn decide(&self, entries: Vec<(&str, &str)>, hits: u32) -> Status<'_> {
        let now = self.clock.load(Ordering::Relaxed);
        let descriptors = [Descriptor { entries, hits }];
        let future = decide(&self.config, &self.store, now, "mcp_gateway", &descriptors);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(future).unwrap().remove(0)
    }

    fn memory(&self) -> &Memory {
        match &self.store {
            Backend::Memory(memory) => memory,
            Backend::Redis(_) => unreachable!("memory fixture"),
        }
    }

    fn counters(&self) -> usize {
        self.memory().len()
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
        other.limit.unwrap().rate().unwrap().requests_per_unit,
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

/// Every tool and agent matched by key-only nodes: the values are the client's.
const ANY_TOOL_ANY_AGENT: &str = r#"
domain: mcp_gateway
descriptors:
  - key: tool_call
    descriptors:
      - key: agent_id
        rate_limit: {unit: minute, requests_per_unit: 3}
"#;

/// The attack of the finding: one agent sends unique tool names until the memory
/// store is full. No decision may fail (the service would answer UNAVAILABLE and
/// Envoy would fail open for everyone), the flooding agent stays limited, and an
/// agent whose counter exists keeps its own limit.
#[test]
fn a_full_store_never_fails_a_decision_and_limits_still_hold() {
    let f = Fixture::with(ANY_TOOL_ANY_AGENT, 8);
    assert!(!f.call("query_transactions", "victim", 1).over_limit);
    let refused = (0..200)
        .filter(|i| f.call(&format!("made-up-{i}"), "attacker", 1).over_limit)
        .count();
    assert!(
        refused >= 190,
        "the flood was not limited: {refused} of 200 refused"
    );
    assert!(!f.call("query_transactions", "victim", 1).over_limit);
    assert!(!f.call("query_transactions", "victim", 1).over_limit);
    assert!(
        f.call("query_transactions", "victim", 1).over_limit,
        "the victim's 4th call in the minute"
    );
    // The flood went to the limit's overflow counter, made past the capacity (one per
    // limit and window), and said so.
    let status = f.call("made-up-again", "attacker", 1);
    assert_eq!(status.overflow, Some(Overflow::StoreFull));
    assert!(f.memory().used() <= 8 + 1, "{}", f.memory().used());
}

/// `max_distinct_values: 3` for the whole file, limit 5 per minute.
const BOUNDED: &str = r#"
domain: mcp_gateway
max_distinct_values: 3
descriptors:
  - key: tool_call
    descriptors:
      - key: agent_id
        rate_limit: {unit: minute, requests_per_unit: 5}
"#;

#[test]
fn values_past_the_bound_share_one_counter_and_stay_limited() {
    let f = Fixture::with(BOUNDED, 1000);
    for i in 0..3 {
        let status = f.call(&format!("made-up-{i}"), "attacker", 1);
        assert_eq!((status.remaining, status.overflow), (4, None), "{i}");
    }
    // Tools 4, 5, ... share the attacker's overflow counter: 5 pass, then refused.
    let over: Vec<(bool, Option<Overflow>)> = (3..10)
        .map(|i| f.call(&format!("made-up-{i}"), "attacker", 1))
        .map(|s| (s.over_limit, s.overflow))
        .collect();
    let shared = Some(Overflow::MaxDistinctValues);
    assert_eq!(
        over,
        [
            (false, shared),
            (false, shared),
            (false, shared),
            (false, shared),
            (false, shared),
            (true, shared),
            (true, shared)
        ]
    );
    // Another agent's new tool overflows the tool scope too, but its agent value still
    // has its own counter under it: its own 5, none of the attacker's hits.
    for _ in 0..5 {
        let status = f.call("query_transactions", "victim", 1);
        assert!(!status.over_limit);
        assert_eq!(status.overflow, shared);
    }
    assert!(f.call("get_account_balance", "victim", 1).over_limit);
    // A tool that got its own counter keeps it.
    assert_eq!(f.call("made-up-1", "attacker", 1).overflow, None);
    // Counters: 3 own tools x 1 agent, the overflow tool x 2 agents.
    assert_eq!(f.counters(), 5);
}

#[test]
fn the_bound_starts_again_with_each_window() {
    let f = Fixture::with(BOUNDED, 1000);
    for i in 0..4 {
        f.call(&format!("t{i}"), "a", 1);
    }
    assert!(f.call("t3", "a", 1).overflow.is_some());
    f.advance(60);
    let status = f.call("t3", "a", 1);
    assert_eq!((status.overflow, status.remaining), (None, 4));
    // The old window's counters and values go with the next sweep.
    f.memory().sweep();
    assert_eq!(f.counters(), 1);
    assert_eq!(f.memory().used(), 3, "one counter and its two values");
}

#[test]
fn listed_values_always_have_their_own_counter() {
    let f = Fixture::with(
        r#"
domain: mcp_gateway
descriptors:
  - key: tool_call
    value: query_transactions
    descriptors:
      - key: agent_id
        rate_limit: {unit: minute, requests_per_unit: 5}
  - key: tool_call
    max_distinct_values: 1
    descriptors:
      - key: agent_id
        value: vip
        rate_limit: {unit: minute, requests_per_unit: 5}
      - key: agent_id
        max_distinct_values: 0
        rate_limit: {unit: minute, requests_per_unit: 5}
"#,
        1000,
    );
    assert_eq!(f.call("made-up", "vip", 1).overflow, None);
    // The key-only tool scope of vip's limit is full (1): the next tool overflows.
    assert!(f.call("made-up-2", "vip", 1).overflow.is_some());
    // query_transactions is listed: its own counter, whatever else was sent.
    for i in 0..5 {
        assert_eq!(
            f.call("query_transactions", &format!("agent-{i}"), 1)
                .overflow,
            None
        );
    }
    // max_distinct_values: 0: every value of that key shares one counter.
    assert!(f.call("made-up", "a1", 3).overflow.is_some());
    assert!(
        f.call("made-up", "a2", 3).over_limit,
        "a1 and a2 share a counter"
    );
}

/// The scope of a key-only value is its limit plus the values before it: another
/// limit's flood does not fill it, and a later level has one scope per earlier value.
#[test]
fn scopes_are_per_limit_and_per_earlier_value() {
    let f = Fixture::with(
        r#"
domain: mcp_gateway
max_distinct_values: 2
descriptors:
  - key: tool_call
    descriptors:
      - key: agent_id
        value: vip
        rate_limit: {unit: minute, requests_per_unit: 5}
      - key: agent_id
        rate_limit: {unit: minute, requests_per_unit: 5}
"#,
        1000,
    );
    for i in 0..10 {
        f.call(&format!("made-up-{i}"), "attacker", 1);
    }
    assert_eq!(
        f.call("query_transactions", "vip", 1).overflow,
        None,
        "vip's limit has its own tool scope"
    );
    // Agents per tool: two each, per tool.
    assert_eq!(f.call("made-up-0", "b", 1).overflow, None);
    assert!(f.call("made-up-0", "c", 1).overflow.is_some());
    assert_eq!(f.call("made-up-1", "c", 1).overflow, None);
}

/// Whatever clients send, the store holds at most the capacity plus one overflow
/// counter per limit and window (swept windows give room back); without reaching the
/// capacity, at most (max + 1) counters per key-only level of a limit and window.
#[test]
fn memory_stays_bounded_whatever_clients_send() {
    let f = Fixture::with(BOUNDED, 1_000_000);
    for i in 0..2_000 {
        f.call(&format!("tool-{}", i % 97), &format!("agent-{i}"), 1);
    }
    assert!(f.counters() <= 4 * 4, "{}", f.counters());
    let f = Fixture::with(&BOUNDED.replace("max_distinct_values: 3", ""), 50);
    for window in 0..5 {
        for i in 0..2_000 {
            let status = f.call(&format!("tool-{window}-{i}"), &format!("agent-{i}"), 1);
            assert!(status.limit.is_some());
            assert!(f.memory().used() <= 50 + 1, "{}", f.memory().used());
        }
        f.advance(60);
    }
}

/// A value matched by a wildcard (`value: agent-*`) is the client's choice, like a
/// key-only one: bounded by `max_distinct_values`, with counters apart from the
/// key-only sibling's.
#[test]
fn wildcard_values_are_bounded_and_counted_apart_from_key_only() {
    let limits = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wildcard.yaml"),
    )
    .unwrap();
    let f = Fixture::with(&limits, 1000);
    let agent = |name: &str| f.decide(vec![("agent_id", name), ("tool_call", "t")], 1);
    assert_eq!(agent("agent-1").overflow, None);
    assert_eq!(agent("agent-2").overflow, None);
    assert_eq!(
        agent("agent-3").overflow,
        Some(Overflow::MaxDistinctValues),
        "max_distinct_values: 2 on the wildcard"
    );
    assert_eq!(
        agent("robot").overflow,
        None,
        "the key-only sibling's own scope"
    );
    let keys = f.memory().counter_keys();
    assert!(
        keys.iter()
            .any(|k| k.starts_with("mcp_rl:{mcp_gateway|agent_id%*agent-=agent-1|tool_call=t}")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("mcp_rl:{mcp_gateway|agent_id=robot|tool_call=t}")),
        "{keys:?}"
    );
}
