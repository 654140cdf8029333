//! Counter storage: in memory for one replica, Redis when several replicas (and
//! several Envoys) must share counters.
//!
//! Both stores name counters the same way (`keys.rs`) and bound what clients can make
//! them hold: a value matched by a key-only descriptor gets its own counter only while
//! its scope has fewer than `max_distinct_values` values in the window
//! ([`crate::config::Level`]); later values share the scope's overflow counter.

mod memory;
mod redis;
mod scopes;

pub use self::memory::Memory;
pub use self::redis::Redis;

use crate::config::{Limit, Unit};
use crate::keys;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be asked (Redis down, slow or refusing). The only store
    /// error: the memory store never fails, even full (see [`Memory`]).
    #[error("rate limit store unavailable: {0}")]
    Unavailable(String),
}

/// Hits to add for one descriptor that reached a counted limit.
#[derive(Debug, Clone, Copy)]
pub struct Increment<'a> {
    /// A counted limit (an unlimited one is never incremented).
    pub limit: &'a Limit,
    /// The unit of the limit's rate: the window's length.
    pub unit: Unit,
    /// The descriptor's entries, one per `limit.levels`.
    pub entries: &'a [(&'a str, &'a str)],
    /// Start of the limit's current window (Unix seconds).
    pub window_start: u64,
    pub hits: u64,
}

impl Increment<'_> {
    pub fn window_seconds(&self) -> u64 {
        self.unit.seconds()
    }

    /// End of the window: the counter (and the values seen) may be dropped after it.
    pub fn expires_at(&self) -> u64 {
        self.window_start + self.window_seconds()
    }
}

/// Why hits went to a counter shared with other values (ordered: a full store is the
/// reason reported when both apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Overflow {
    /// A key-only value past its scope's `max_distinct_values` in this window.
    MaxDistinctValues,
    /// The memory store was full: no new counter could be made (see [`Memory`]).
    StoreFull,
}

impl Overflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::MaxDistinctValues => "max_distinct_values",
            Overflow::StoreFull => "store_full",
        }
    }
}

/// A counter after an increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub count: u64,
    /// Set when the hits were counted on an overflow counter.
    pub overflow: Option<Overflow>,
}

/// Writes the counter key of `increment`. For each key-only level, `admit(scope key,
/// value, max_distinct_values)` says whether the value has its own counter (`None`)
/// or shares the scope's overflow counter (and why); an error stops the writing. One
/// buffer for the whole key: each scope key is the counter key so far plus the scope's
/// rest, handed out and cut off again, so a known descriptor costs one allocation.
fn counter_key<E>(
    increment: &Increment<'_>,
    mut admit: impl FnMut(&str, &str, u32) -> Result<Option<Overflow>, E>,
) -> Result<(String, Option<Overflow>), E> {
    let Increment {
        limit,
        entries,
        window_start,
        ..
    } = *increment;
    let mut key = String::with_capacity(
        limit.key_head.len()
            + entries
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>()
            + 32,
    );
    key.push_str(&limit.key_head);
    let mut overflow = None;
    for (level, (_, value)) in limit.levels.iter().zip(entries) {
        key.push_str(&level.segment);
        let Some(max) = level.max_distinct_values else {
            continue;
        };
        let mark = key.len();
        key.push_str(&level.scope_rest);
        keys::push_scope_window(&mut key, window_start, increment.window_seconds());
        let refused = admit(&key[..], value, max);
        key.truncate(mark);
        key.push('=');
        match refused? {
            None => keys::escape_into(&mut key, value),
            Some(reason) => {
                key.push_str(keys::OVERFLOW);
                // A full store is the reason to report if there are two.
                overflow = overflow.max(Some(reason));
            }
        }
    }
    keys::push_counter_window(&mut key, window_start);
    Ok((key, overflow))
}

/// Where counters live.
pub enum Backend {
    Memory(Memory),
    Redis(Redis),
}

impl Backend {
    /// Adds to every counter and returns the new counts, in order.
    pub async fn increment_all(
        &self,
        increments: &[Increment<'_>],
    ) -> Result<Vec<Counted>, StoreError> {
        match self {
            Backend::Memory(memory) => Ok(increments.iter().map(|i| memory.increment(i)).collect()),
            Backend::Redis(redis) => redis.increment_all(increments).await,
        }
    }
}

#[cfg(test)]
mod tests;
