//! Counter storage: in memory for one replica, Redis when several replicas (and
//! several Envoys) must share counters.

use dashmap::DashMap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("rate limit store is full ({0} counters)")]
    Full(usize),
    #[error("rate limit store unavailable: {0}")]
    Unavailable(String),
}

/// One counter to add to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Increment {
    pub key: String,
    pub hits: u64,
    /// End of the window (Unix seconds): the counter may be dropped after it.
    pub expires_at: u64,
}

/// Where counters live.
pub enum Backend {
    Memory(Memory),
    Redis(Redis),
}

impl Backend {
    /// Adds to every counter and returns the new counts, in order.
    pub async fn increment_all(&self, increments: &[Increment]) -> Result<Vec<u64>, StoreError> {
        match self {
            Backend::Memory(memory) => increments.iter().map(|i| memory.increment(i)).collect(),
            Backend::Redis(redis) => redis.increment_all(increments).await,
        }
    }
}

/// Counters in a concurrent map. Expired windows are reclaimed by [`Memory::sweep`]
/// (the service runs it every few seconds) and whenever the map reaches its capacity,
/// so memory stays bounded: at capacity with nothing expired, increments fail (the
/// service answers UNAVAILABLE) rather than grow.
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

    pub fn increment(&self, increment: &Increment) -> Result<u64, StoreError> {
        let Increment {
            key,
            hits,
            expires_at,
        } = increment;
        if let Some(entry) = self.counters.get(key) {
            return Ok(entry.0.fetch_add(*hits, Ordering::Relaxed) + hits);
        }
        if self.counters.len() >= self.capacity {
            self.sweep();
            if self.counters.len() >= self.capacity {
                return Err(StoreError::Full(self.capacity));
            }
        }
        let entry = self
            .counters
            .entry(key.clone())
            .or_insert_with(|| (AtomicU64::new(0), *expires_at));
        Ok(entry.0.fetch_add(*hits, Ordering::Relaxed) + hits)
    }
}

/// Counters in Redis: one pipelined round trip per request (`INCRBY` + `EXPIREAT` per
/// descriptor; INCRBY is atomic, so replicas never lose a hit). The connection is
/// reused and re-established by itself after Redis comes back; while Redis is
/// unreachable every call fails fast with [`StoreError::Unavailable`].
pub struct Redis {
    client: redis::Client,
    connection: Mutex<Option<ConnectionManager>>,
}

/// A Redis call that takes longer than this counts as Redis being unavailable, so
/// Envoy's own rate limit timeout and `failure_mode_deny` stay in charge.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

impl Redis {
    pub fn new(url: &str) -> Result<Redis, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid Redis URL {url:?}: {e}")))?;
        Ok(Redis {
            client,
            connection: Mutex::new(None),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    async fn increment_all(&self, increments: &[Increment]) -> Result<Vec<u64>, StoreError> {
        if increments.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection().await?;
        let mut pipe = redis::pipe();
        for Increment {
            key,
            hits,
            expires_at,
        } in increments
        {
            pipe.cmd("INCRBY").arg(key).arg(*hits);
            // A little past the window end, so a slow clock on one replica cannot
            // drop a counter another replica still uses.
            pipe.cmd("EXPIREAT").arg(key).arg(expires_at + 1).ignore();
        }
        pipe.query_async(&mut connection)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
}
