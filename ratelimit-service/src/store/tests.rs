use super::*;
use crate::config::Config;
use mcp_service_kit::testing::RedisServer;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const START: u64 = 1_800_000_000; // a minute boundary

/// tool_call (key-only, at most 2) -> agent_id listed `vip` or key-only (at most 2).
const LIMITS: &str = r#"
domain: mcp_gateway
max_distinct_values: 2
descriptors:
  - key: tool_call
    descriptors:
      - key: agent_id
        value: vip
        rate_limit: {unit: minute, requests_per_unit: 100}
      - key: agent_id
        rate_limit: {unit: minute, requests_per_unit: 100}
"#;

fn config() -> Config {
    Config::parse([(Path::new("limits.yaml"), LIMITS)]).unwrap()
}

/// Increments for `calls` (tool, agent), each found in `config`.
fn increments<'a>(
    config: &'a Config,
    calls: &'a [[(&'a str, &'a str); 2]],
    window_start: u64,
) -> Vec<Increment<'a>> {
    calls
        .iter()
        .map(|entries| Increment {
            limit: config.find("mcp_gateway", entries).unwrap(),
            unit: crate::config::Unit::Minute,
            entries,
            window_start,
            hits: 1,
        })
        .collect()
}

fn call<'a>(tool: &'a str, agent: &'a str) -> [(&'a str, &'a str); 2] {
    [("tool_call", tool), ("agent_id", agent)]
}

#[test]
fn counter_keys_name_the_descriptor_escape_values_and_mark_overflow() {
    let config = config();
    let memory = Memory::new(1000, || START);
    let calls = [
        call("q", "a1"),
        call("x|agent_id=a1", "a1"),
        call("third", "a1"),
        call("q", "vip"),
    ];
    let counted: Vec<Counted> = increments(&config, &calls, START)
        .iter()
        .map(|i| memory.increment(i))
        .collect();
    assert_eq!(
        counted.iter().map(|c| c.overflow).collect::<Vec<_>>(),
        [None, None, Some(Overflow::MaxDistinctValues), None]
    );
    assert_eq!(
        memory.counter_keys(),
        [
            // Plain values: the key format from before escaping existed.
            "mcp_rl:{mcp_gateway|tool_call=%overflow|agent_id=a1}:1800000000",
            "mcp_rl:{mcp_gateway|tool_call=q|agent_id=a1}:1800000000",
            "mcp_rl:{mcp_gateway|tool_call=q|agent_id=vip}:1800000000",
            "mcp_rl:{mcp_gateway|tool_call=x%7Cagent_id%3Da1|agent_id=a1}:1800000000",
        ]
    );
    let scopes = memory.scope_keys();
    let names: Vec<&str> = scopes.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            // The agent scopes per tool value, then the tool scopes of the two limits.
            "mcp_rl:{mcp_gateway|tool_call=%overflow|agent_id}:1800000000/60",
            "mcp_rl:{mcp_gateway|tool_call=q|agent_id}:1800000000/60",
            "mcp_rl:{mcp_gateway|tool_call=x%7Cagent_id%3Da1|agent_id}:1800000000/60",
            "mcp_rl:{mcp_gateway|tool_call|agent_id=vip}:1800000000/60",
            "mcp_rl:{mcp_gateway|tool_call|agent_id}:1800000000/60",
        ]
    );
    assert_eq!(
        scopes.last().unwrap().1,
        ["q", "x|agent_id=a1"],
        "the values seen"
    );
}

#[test]
fn expired_windows_are_reclaimed_and_the_capacity_holds() {
    let config = config();
    let clock = Arc::new(AtomicU64::new(START));
    let c = clock.clone();
    // Room for one counter and its two values.
    let memory = Memory::new(3, move || c.load(Ordering::Relaxed));
    let calls = [call("a", "x"), call("a", "x"), call("b", "y")];
    let counted: Vec<Counted> = increments(&config, &calls, START)
        .iter()
        .map(|i| memory.increment(i))
        .collect();
    assert_eq!(
        counted,
        [
            Counted {
                count: 1,
                overflow: None
            },
            Counted {
                count: 2,
                overflow: None
            },
            // Full: the limit's overflow counter, made past the capacity.
            Counted {
                count: 1,
                overflow: Some(Overflow::StoreFull)
            },
        ]
    );
    assert_eq!(memory.used(), 4);
    // The next window: the full store sweeps the ended one and has room again.
    clock.store(START + 60, Ordering::Relaxed);
    let next = increments(&config, &calls[2..], START + 60);
    assert_eq!(
        memory.increment(&next[0]),
        Counted {
            count: 1,
            overflow: None
        }
    );
    assert_eq!(memory.used(), 3);
    assert_eq!(
        memory.counter_keys(),
        ["mcp_rl:{mcp_gateway|tool_call=b|agent_id=y}:1800000060"]
    );
}

/// A connection to a test Redis, to look at its keys.
fn connection(server: &RedisServer) -> ::redis::Connection {
    ::redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// The same requests in memory and in a real Redis: the same counts, the same
/// overflow decisions, the same keys and values seen; Redis keys expire with the
/// window; a flood of names leaves Redis bounded.
#[tokio::test]
async fn memory_and_redis_count_and_name_alike() {
    let server = RedisServer::start();
    let config = config();
    let memory = Backend::Memory(Memory::new(1000, || START));
    let redis = Redis::new(&server.url()).unwrap();
    connected(&redis).await;
    let redis = Backend::Redis(redis);
    let calls = [
        call("q", "a1"),
        call("x|agent_id=a1", "a1"),
        call("third", "a1"),
        call("fourth", "a1"),
        call("q", "a2"),
        call("q", "a3"),
        call("q", "vip"),
        call("new", "vip"),
        call("newer", "vip"),
    ];
    let batch = increments(&config, &calls, START);
    // One request with several descriptors, then one descriptor per request.
    let in_memory = memory.increment_all(&batch).await.unwrap();
    let in_redis = redis.increment_all(&batch).await.unwrap();
    assert_eq!(in_memory, in_redis);
    for increment in &batch {
        let one = std::slice::from_ref(increment);
        assert_eq!(
            memory.increment_all(one).await.unwrap(),
            redis.increment_all(one).await.unwrap()
        );
    }
    let overflowed: Vec<bool> = in_redis.iter().map(|c| c.overflow.is_some()).collect();
    assert_eq!(
        overflowed,
        [false, false, true, true, false, true, false, false, true]
    );

    let Backend::Memory(memory) = &memory else {
        unreachable!()
    };
    let mut connection = connection(&server);
    let mut keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("mcp_rl:*")
        .query(&mut connection)
        .unwrap();
    keys.sort();
    let mut expected: Vec<String> = memory.counter_keys();
    expected.extend(memory.scope_keys().into_iter().map(|(k, _)| k));
    expected.sort();
    assert_eq!(keys, expected);
    for (scope, values) in memory.scope_keys() {
        let mut members: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(&scope)
            .query(&mut connection)
            .unwrap();
        members.sort();
        // Redis holds the values escaped, memory as sent.
        let escaped: Vec<String> = values
            .iter()
            .map(|v| crate::keys::escaped(v).into_owned())
            .collect();
        assert_eq!(members, escaped, "{scope}");
    }
    for key in &keys {
        let expire_at: i64 = ::redis::cmd("EXPIRETIME")
            .arg(key)
            .query(&mut connection)
            .unwrap();
        assert_eq!(expire_at, (START + 61) as i64, "{key}");
    }
    let count: u64 = ::redis::cmd("GET")
        .arg("mcp_rl:{mcp_gateway|tool_call=q|agent_id=a1}:1800000000")
        .query(&mut connection)
        .unwrap();
    assert_eq!(count, 2);

    // Values this replica saw Redis admit: counted with a plain pipeline, no script.
    let scripts = evalsha_calls(&mut connection);
    let known = increments(&config, &calls[..2], START);
    let counts: Vec<u64> = redis
        .increment_all(&known)
        .await
        .unwrap()
        .iter()
        .map(|c| c.count)
        .collect();
    assert_eq!(counts, [3, 3]);
    assert_eq!(evalsha_calls(&mut connection), scripts);

    // A flood of unique names from one agent adds one key: its overflow counter.
    let flood: Vec<String> = (0..500).map(|i| format!("made-up-{i}")).collect();
    let flood_calls: Vec<[(&str, &str); 2]> = flood.iter().map(|t| call(t, "a9")).collect();
    for increment in increments(&config, &flood_calls, START) {
        redis.increment_all(&[increment]).await.unwrap();
    }
    let size: usize = ::redis::cmd("DBSIZE").query(&mut connection).unwrap();
    assert_eq!(size, keys.len() + 1);
    let count: u64 = ::redis::cmd("GET")
        .arg("mcp_rl:{mcp_gateway|tool_call=%overflow|agent_id=a9}:1800000000")
        .query(&mut connection)
        .unwrap();
    assert_eq!(count, 500);

    // Scripts flushed (as after a Redis restart): loaded again on the next request.
    let _: () = ::redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut connection)
        .unwrap();
    let again = increments(&config, &flood_calls[..1], START);
    assert_eq!(redis.increment_all(&again).await.unwrap()[0].count, 501);
    assert_eq!(evalsha_calls(&mut connection), scripts + 500 + 2);
}

/// Waits (up to 10 s) for the background connect task.
async fn connected(redis: &Redis) {
    for _ in 0..1000 {
        if redis.is_connected() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the Redis store did not connect");
}

/// Redis not answering at start-up (a socket that accepts and never replies): calls
/// do not queue behind connect attempts. Ten concurrent calls wait at most for the
/// first attempt, together (the old lock made each wait for one of its own); after it,
/// calls fail at once with Unavailable. Once a real Redis listens there, the store
/// connects by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_silent_at_start_fails_fast_then_connects() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let redis = Arc::new(Redis::new(&format!("redis://127.0.0.1:{port}/")).unwrap());
    let config = Arc::new(config());
    let ten_calls = || {
        let calls: Vec<_> = (0..10)
            .map(|_| {
                let (redis, config) = (redis.clone(), config.clone());
                tokio::spawn(async move {
                    let calls = [call("q", "a1")];
                    let batch = increments(&config, &calls, START);
                    redis.increment_all(&batch).await
                })
            })
            .collect();
        async move {
            let started = std::time::Instant::now();
            for call in calls {
                assert!(matches!(
                    call.await.unwrap(),
                    Err(StoreError::Unavailable(_))
                ));
            }
            started.elapsed()
        }
    };
    let waited = ten_calls().await;
    assert!(
        waited < Duration::from_millis(900),
        "ten calls took {waited:?}: they queued behind connect attempts"
    );
    tokio::time::timeout(Duration::from_secs(10), redis.first_attempt_ended())
        .await
        .unwrap();
    let waited = ten_calls().await;
    assert!(
        waited < Duration::from_millis(100),
        "after the first attempt, ten calls took {waited:?}"
    );
    assert!(!redis.is_connected());
    drop(silent);
    let server = RedisServer::start_on(port);
    connected(&redis).await;
    let calls = [call("q", "a1")];
    let counted = redis
        .increment_all(&increments(&config, &calls, START))
        .await
        .unwrap();
    assert_eq!(counted[0].count, 1);
    drop(server);
}

/// How many times Redis ran EVALSHA (including calls refused with NOSCRIPT).
fn evalsha_calls(connection: &mut ::redis::Connection) -> u64 {
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query(connection)
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}
