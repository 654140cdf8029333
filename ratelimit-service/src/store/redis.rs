//! Counters in Redis, shared by replicas.

use super::scopes::{Scopes, Seen};
use super::{counter_key, Counted, Increment, Overflow, StoreError};
use crate::keys;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Counts a whole request in Redis: distinct-value scopes (`SISMEMBER`/`SCARD`/`SADD`)
/// and counters (`INCRBY` + `EXPIREAT`). A script because each level's outcome (own
/// value or overflow) names the next level's scope and the counter; run atomically, so
/// replicas never lose a hit nor let a scope pass its bound.
const SCRIPT: &str = include_str!("increment.lua");

/// Counters in Redis: one round trip per request. The first connection is made in the
/// background (from [`Redis::new`], retried until Redis answers). Calls never queue
/// behind connect attempts: while the very first attempt runs they wait for it, at
/// most [`REDIS_TIMEOUT`] (so a service started next to its Redis counts its first
/// requests); after that, until connected, they fail at once with
/// [`StoreError::Unavailable`], so Envoy's `failure_mode_deny` decides without delay.
/// Once made, the connection is shared without a lock and re-established by itself
/// after Redis comes back; while Redis is unreachable calls fail within
/// [`REDIS_TIMEOUT`].
///
/// A request whose key-only values this replica has already seen Redis admit in this
/// window is counted with a plain pipeline (`INCRBY` + `EXPIREAT` per descriptor):
/// within a window Redis never takes a value back out of a scope, so the counter key
/// is known. Any other request runs the script (`EVALSHA`), and the values it admits
/// are remembered. Those copies are bounded like Redis' sets (only admitted values,
/// at most `max_distinct_values` per scope) and dropped with their window. If Redis
/// loses its data mid-window, values remembered here keep their counters while Redis
/// admits new ones: a scope can then pass its bound once, by what replicas remembered.
///
/// Keys expire one second after their window ends (a little past it, so a slow clock
/// on one replica cannot drop a counter another replica still uses). Per limit and
/// window Redis holds at most `max_distinct_values` values per key-only scope and
/// `(max_distinct_values + 1)` counters per key-only level, whatever clients send.
pub struct Redis {
    client: redis::Client,
    /// Shared with the background connect task.
    link: Arc<Link>,
    /// A connect task is running (or has succeeded).
    connecting: AtomicBool,
    /// The script's SHA1, as `SCRIPT LOAD` answered it.
    script: OnceCell<String>,
    /// Values Redis admitted, per scope key (which names the window).
    admitted: Scopes,
}

#[derive(Default)]
struct Link {
    /// Set once, by the connect task; read without a lock on every call.
    connection: OnceLock<ConnectionManager>,
    /// `true` once the first connect attempt has ended, either way.
    first_attempt_done: tokio::sync::watch::Sender<bool>,
}

/// A Redis call that takes longer than this counts as Redis being unavailable, so
/// Envoy's own rate limit timeout and `failure_mode_deny` stay in charge.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

fn unavailable(error: RedisError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

impl Redis {
    pub fn new(url: &str) -> Result<Redis, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid Redis URL {url:?}: {e}")))?;
        let redis = Redis {
            client,
            link: Arc::default(),
            connecting: AtomicBool::new(false),
            script: OnceCell::new(),
            admitted: Scopes::default(),
        };
        redis.start_connecting();
        Ok(redis)
    }

    /// Whether the first connection has been made (later outages are the connection
    /// manager's to repair; calls then fail within [`REDIS_TIMEOUT`]).
    pub fn is_connected(&self) -> bool {
        self.link.connection.get().is_some()
    }

    /// Waits until the first connect attempt has ended (tests).
    #[cfg(test)]
    pub(super) async fn first_attempt_ended(&self) {
        let mut done = self.link.first_attempt_done.subscribe();
        let _ = done.wait_for(|done| *done).await;
    }

    /// Starts the background connect task, once, if a Tokio runtime is at hand (if
    /// not, the first call starts it).
    fn start_connecting(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let client = self.client.clone();
        let link: Weak<Link> = Arc::downgrade(&self.link);
        runtime.spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            let mut pause = Duration::from_millis(50);
            let mut warned = false;
            loop {
                let attempt =
                    ConnectionManager::new_with_config(client.clone(), config.clone()).await;
                // Weak: the task ends when the store is dropped, even if Redis never
                // answers.
                let Some(shared) = link.upgrade() else {
                    return;
                };
                let error = match attempt {
                    Ok(connection) => {
                        let _ = shared.connection.set(connection);
                        shared.first_attempt_done.send_replace(true);
                        return;
                    }
                    Err(error) => error,
                };
                shared.first_attempt_done.send_replace(true);
                drop(shared);
                // Warned once: the retries go on every second while Redis stays away.
                if warned {
                    tracing::debug!(%error, "cannot connect to Redis yet");
                } else {
                    warned = true;
                    tracing::warn!(%error, "cannot connect to Redis yet; retrying");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        });
    }

    /// The shared connection; while there is none, `Unavailable` once the first
    /// connect attempt has ended (at most [`REDIS_TIMEOUT`] of waiting for it).
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(connection) = self.link.connection.get() {
            return Ok(connection.clone());
        }
        self.start_connecting();
        let mut first_attempt = self.link.first_attempt_done.subscribe();
        let _ = tokio::time::timeout(REDIS_TIMEOUT, first_attempt.wait_for(|done| *done)).await;
        self.link.connection.get().cloned().ok_or_else(|| {
            StoreError::Unavailable(
                "not connected to Redis yet (connecting in the background)".into(),
            )
        })
    }

    async fn load_script(connection: &mut ConnectionManager) -> Result<String, RedisError> {
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(SCRIPT)
            .query_async(connection)
            .await
    }

    /// Forgets remembered values of ended windows.
    pub fn sweep(&self, now: u64) {
        self.admitted.sweep(now);
    }

    pub(super) async fn increment_all(
        &self,
        increments: &[Increment<'_>],
    ) -> Result<Vec<Counted>, StoreError> {
        if increments.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection().await?;
        let mut known = Vec::with_capacity(increments.len());
        for increment in increments {
            let key = counter_key(increment, |scope, value, _| {
                match self.admitted.check(scope, value, usize::MAX) {
                    Seen::Known => Ok(None),
                    _ => Err(()),
                }
            });
            match key {
                Ok((key, _)) => known.push(key),
                Err(()) => break,
            }
        }
        if known.len() == increments.len() {
            let mut pipe = redis::pipe();
            for (key, increment) in known.iter().zip(increments) {
                pipe.cmd("INCRBY").arg(key).arg(increment.hits);
                // A little past the window end, so a slow clock on one replica cannot
                // drop a counter another replica still uses.
                pipe.cmd("EXPIREAT")
                    .arg(key)
                    .arg(increment.expires_at() + 1)
                    .ignore();
            }
            let counts: Vec<u64> = pipe
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            return Ok(counts
                .into_iter()
                .map(|count| Counted {
                    count,
                    overflow: None,
                })
                .collect());
        }
        self.run_script(&mut connection, increments).await
    }

    async fn run_script(
        &self,
        connection: &mut ConnectionManager,
        increments: &[Increment<'_>],
    ) -> Result<Vec<Counted>, StoreError> {
        let sha = self
            .script
            .get_or_try_init(|| {
                let mut connection = connection.clone();
                async move { Self::load_script(&mut connection).await }
            })
            .await
            .map_err(unavailable)?;
        let mut command = redis::cmd("EVALSHA");
        command.arg(sha).arg(0).arg(increments.len());
        for increment in increments {
            let limit = increment.limit;
            command
                .arg(&*limit.key_head)
                .arg(increment.window_start)
                .arg(increment.window_seconds())
                .arg(increment.hits)
                .arg(increment.expires_at() + 1)
                .arg(limit.levels.len());
            for (level, (_, value)) in limit.levels.iter().zip(increment.entries) {
                match level.max_distinct_values {
                    None => command.arg(&*level.segment).arg("").arg("").arg(""),
                    Some(max) => command
                        .arg(&*level.segment)
                        .arg(&*keys::escaped(value))
                        .arg(max)
                        .arg(&*level.scope_rest),
                };
            }
        }
        let reply: Vec<u64> = match command.query_async(connection).await {
            // Redis restarted (or its scripts were flushed) since the script was
            // loaded: load it again (same SHA1) and retry once.
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                Self::load_script(connection).await.map_err(unavailable)?;
                command.query_async(connection).await
            }
            other => other,
        }
        .map_err(unavailable)?;
        if reply.len() != increments.len() * 3 {
            return Err(StoreError::Unavailable(format!(
                "unexpected answer from the counting script: {} numbers for {} descriptors",
                reply.len(),
                increments.len()
            )));
        }
        Ok(reply
            .chunks_exact(3)
            .zip(increments)
            .map(|(answer, increment)| {
                let (count, overflowed, own_levels) = (answer[0], answer[1], answer[2]);
                self.remember(increment, own_levels);
                Counted {
                    count,
                    overflow: (overflowed == 1).then_some(Overflow::MaxDistinctValues),
                }
            })
            .collect())
    }

    /// Remembers the values the script admitted (`own_levels`: bit n for the n-th
    /// key-only level), walking the scopes the way the script did.
    fn remember(&self, increment: &Increment<'_>, own_levels: u64) {
        let mut ordinal = 0;
        let _ = counter_key(increment, |scope, value, _| {
            let own = ordinal < 52 && own_levels & (1 << ordinal) != 0;
            ordinal += 1;
            if own {
                self.admitted
                    .add(scope, value, usize::MAX, increment.expires_at());
                Ok::<_, ()>(None)
            } else {
                // Past the 52nd key-only level the answer does not say: stop there.
                (ordinal <= 52)
                    .then_some(Some(Overflow::MaxDistinctValues))
                    .ok_or(())
            }
        });
    }
}
