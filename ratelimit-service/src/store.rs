//! Counter storage. In memory for one replica; Redis (to come) for several.

use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("rate limit store is full ({0} counters)")]
    Full(usize),
    #[error("rate limit store unavailable: {0}")]
    Unavailable(String),
}

pub trait Store: Send + Sync {
    /// Adds `hits` to `key` (created at 0, valid until `expires_at`, Unix seconds) and
    /// returns the new count.
    fn increment(&self, key: &str, hits: u64, expires_at: u64) -> Result<u64, StoreError>;
}

/// Counters in a concurrent map. Expired windows are reclaimed by [`Memory::sweep`]
/// (run it periodically) and whenever the map reaches its capacity, so memory stays
/// bounded: at capacity with nothing expired, increments fail (and the service answers
/// UNAVAILABLE) rather than grow.
pub struct Memory {
    counters: DashMap<String, (AtomicU64, u64)>,
    capacity: usize,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl Memory {
    pub fn new(capacity: usize, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Memory {
        Memory {
            counters: DashMap::new(),
            capacity,
            clock: Box::new(clock),
        }
    }

    /// Drops every counter whose window has ended.
    pub fn sweep(&self) {
        let now = (self.clock)();
        self.counters.retain(|_, (_, expires_at)| *expires_at > now);
    }

    pub fn len(&self) -> usize {
        self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }
}

impl Store for Memory {
    fn increment(&self, key: &str, hits: u64, expires_at: u64) -> Result<u64, StoreError> {
        if let Some(entry) = self.counters.get(key) {
            return Ok(entry.0.fetch_add(hits, Ordering::Relaxed) + hits);
        }
        if self.counters.len() >= self.capacity {
            self.sweep();
            if self.counters.len() >= self.capacity {
                return Err(StoreError::Full(self.capacity));
            }
        }
        let entry = self
            .counters
            .entry(key.to_owned())
            .or_insert_with(|| (AtomicU64::new(0), expires_at));
        Ok(entry.0.fetch_add(hits, Ordering::Relaxed) + hits)
    }
}
