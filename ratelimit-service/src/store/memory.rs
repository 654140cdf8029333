//! Counters in memory, for one replica.

use super::scopes::{Scopes, Seen};
use super::{counter_key, Counted, Increment, Overflow};
use crate::config::Limit;
use crate::keys;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Counters and the values each key-only scope has seen, in concurrent maps. At most
/// `capacity` entries (counters plus values seen, about 100 bytes each) are made for
/// requests; expired windows are reclaimed by [`Memory::sweep`] (the service runs it
/// every few seconds) and, at most once a second, when the store is full.
///
/// Full, the store never fails a decision: a failure would be answered UNAVAILABLE,
/// and Envoy's default `failure_mode_deny: false` would then let *every* client
/// through unlimited, so whoever fills the store would switch limiting off for all.
/// Nor does it let the request through uncounted. Existing counters keep counting; a
/// request that needs a new counter is counted on its limit's *overflow counter*: its
/// key-only values replaced by the overflow value, its listed values kept. There is
/// one such counter per limit of the configuration and window, so the store may pass
/// its capacity by at most that many, a number the configuration fixes, not clients.
/// Those requests are limited together (the limit's budget shared) rather than
/// refused outright: refusing every new counter would let whoever fills the store shut
/// out every newcomer, while sharing still holds the flood to one limit. Evicting old
/// counters instead would reset them, and a client could cycle names to be unlimited.
pub struct Memory {
    counters: DashMap<String, Counter>,
    scopes: Scopes,
    /// Counters plus values seen: what `capacity` bounds.
    used: AtomicUsize,
    capacity: usize,
    /// The clock second of the last sweep for room: windows end on whole seconds, so a
    /// second sweep in the same second would find nothing, only cost a full scan.
    last_sweep: AtomicU64,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
}

struct Counter {
    count: AtomicU64,
    expires_at: u64,
}

impl Counter {
    fn add(&self, hits: u64) -> u64 {
        self.count.fetch_add(hits, Ordering::Relaxed) + hits
    }
}

impl Memory {
    pub fn new(capacity: usize, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Memory {
        Memory {
            counters: DashMap::new(),
            scopes: Scopes::default(),
            used: AtomicUsize::new(0),
            capacity,
            last_sweep: AtomicU64::new(u64::MAX),
            clock: Box::new(clock),
        }
    }

    /// Drops every counter and every scope whose window has ended.
    pub fn sweep(&self) {
        let now = (self.clock)();
        let mut freed = 0;
        self.counters.retain(|_, counter| {
            let keep = counter.expires_at > now;
            freed += usize::from(!keep);
            keep
        });
        freed += self.scopes.sweep(now);
        self.used.fetch_sub(freed, Ordering::AcqRel);
    }

    /// Counters held.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// Counters plus values seen: at most the capacity plus one overflow counter per
    /// limit and window.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn increment(&self, increment: &Increment<'_>) -> Counted {
        let Increment {
            limit,
            window_start,
            hits,
            ..
        } = *increment;
        let expires_at = increment.expires_at();
        let Ok((key, overflow)) = counter_key(increment, |scope, value, max| {
            Ok::<_, Infallible>(self.admit(scope, value, max, expires_at))
        });
        if let Some(counter) = self.counters.get(key.as_str()) {
            return Counted {
                count: counter.add(hits),
                overflow,
            };
        }
        if self.reserve() {
            let count = match self.counters.entry(key) {
                Entry::Occupied(counter) => {
                    // Made by another request meanwhile.
                    self.used.fetch_sub(1, Ordering::AcqRel);
                    counter.get().add(hits)
                }
                Entry::Vacant(slot) => {
                    slot.insert(Counter {
                        count: AtomicU64::new(hits),
                        expires_at,
                    });
                    hits
                }
            };
            return Counted { count, overflow };
        }
        // Full: the limit's overflow counter (see the type's documentation), made even
        // past the capacity. A limit without key-only levels has one counter per window
        // anyway: that one, exact.
        if limit.levels.iter().all(|l| l.max_distinct_values.is_none()) {
            return Counted {
                count: self.add_past_capacity(key, hits, expires_at),
                overflow,
            };
        }
        Counted {
            count: self.add_past_capacity(overflow_key(limit, window_start), hits, expires_at),
            overflow: Some(Overflow::StoreFull),
        }
    }

    /// Adds to a counter, making it even if the store is full: only for keys the
    /// configuration bounds (one per limit and window).
    fn add_past_capacity(&self, key: String, hits: u64, expires_at: u64) -> u64 {
        match self.counters.entry(key) {
            Entry::Occupied(counter) => counter.get().add(hits),
            Entry::Vacant(slot) => {
                self.used.fetch_add(1, Ordering::AcqRel);
                slot.insert(Counter {
                    count: AtomicU64::new(hits),
                    expires_at,
                });
                hits
            }
        }
    }

    /// The counter keys held, sorted (for tests and debugging).
    pub fn counter_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.counters.iter().map(|e| e.key().clone()).collect();
        keys.sort();
        keys
    }

    /// The scope keys held, sorted, each with its values (sorted).
    pub fn scope_keys(&self) -> Vec<(String, Vec<String>)> {
        self.scopes.list()
    }

    /// `None` if `value` has (or now gets) its own counter in `scope`; otherwise why
    /// not.
    fn admit(&self, scope: &str, value: &str, max: u32, expires_at: u64) -> Option<Overflow> {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        match self.scopes.check(scope, value, max) {
            Seen::Known => return None,
            Seen::Full => return Some(Overflow::MaxDistinctValues),
            Seen::New => {}
        }
        if !self.reserve() {
            return Some(Overflow::StoreFull);
        }
        match self.scopes.add(scope, value, max, expires_at) {
            Seen::New => None,
            // Another request added it, or filled the scope, meanwhile.
            seen => {
                self.used.fetch_sub(1, Ordering::AcqRel);
                (seen == Seen::Full).then_some(Overflow::MaxDistinctValues)
            }
        }
    }

    /// Takes room for one entry, sweeping expired windows first if the store is full.
    /// Must not be called while holding a reference into either map (the sweep locks
    /// every shard).
    fn reserve(&self) -> bool {
        let take = || {
            self.used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                    (used < self.capacity).then_some(used + 1)
                })
                .is_ok()
        };
        if take() {
            return true;
        }
        let now = (self.clock)();
        let last = self.last_sweep.load(Ordering::Acquire);
        if last != now
            && self
                .last_sweep
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.sweep();
        }
        take()
    }
}

/// The counter a limit's requests share when the store is full: every key-only value
/// replaced by the overflow value, listed values kept.
fn overflow_key(limit: &Limit, window_start: u64) -> String {
    let mut key = String::from(&*limit.key_head);
    for level in limit.levels.iter() {
        key.push_str(&level.segment);
        if level.max_distinct_values.is_some() {
            key.push('=');
            key.push_str(keys::OVERFLOW);
        }
    }
    keys::push_counter_window(&mut key, window_start);
    key
}
