//! Fixed-window decisions for request descriptors, over a counter store, with an
//! injected clock so windows can be tested at their boundaries.

use crate::config::{Config, Limit};
use crate::store::{Store, StoreError};

/// Seconds since the Unix epoch.
pub trait Clock: Send + Sync {
    fn now(&self) -> u64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    }
}

/// A request is "near" its limit past this share of it (a metric, not a decision).
const NEAR_LIMIT_RATIO: f64 = 0.8;

/// The outcome for one descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub over_limit: bool,
    /// The limit that matched (none: the descriptor is not limited).
    pub limit: Option<Limit>,
    /// Requests left in this window after this one.
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset_seconds: u64,
    /// Over the limit but allowed because the limit is in shadow mode.
    pub shadow_over_limit: bool,
    pub near_limit: bool,
}

/// Decides each descriptor of one request; `hits` is Envoy's `hits_addend` (default 1).
/// A store failure fails the whole request, so the caller can answer UNAVAILABLE and
/// let Envoy's `failure_mode_deny` decide.
pub fn decide(
    config: &Config,
    store: &dyn Store,
    now: u64,
    domain: &str,
    descriptors: &[Vec<(&str, &str)>],
    hits: u32,
) -> Result<Vec<Status>, StoreError> {
    let mut statuses = Vec::with_capacity(descriptors.len());
    for entries in descriptors {
        let Some(limit) = config.find(domain, entries) else {
            statuses.push(Status {
                over_limit: false,
                limit: None,
                remaining: 0,
                reset_seconds: 0,
                shadow_over_limit: false,
                near_limit: false,
            });
            continue;
        };
        if limit.unlimited {
            statuses.push(Status {
                over_limit: false,
                limit: Some(limit.clone()),
                remaining: u32::MAX,
                reset_seconds: 0,
                shadow_over_limit: false,
                near_limit: false,
            });
            continue;
        }
        let window = limit.unit.seconds();
        let start = now - now % window;
        let key = counter_key(domain, entries, start);
        let count = store.increment(&key, u64::from(hits), start + window)?;
        let allowed = u64::from(limit.requests_per_unit);
        let over = count > allowed;
        statuses.push(Status {
            over_limit: over && !limit.shadow_mode,
            remaining: allowed.saturating_sub(count) as u32,
            reset_seconds: start + window - now,
            shadow_over_limit: over && limit.shadow_mode,
            near_limit: !over && count as f64 > allowed as f64 * NEAR_LIMIT_RATIO,
            limit: Some(limit.clone()),
        });
    }
    Ok(statuses)
}

/// The counter of one descriptor in one window. The `{...}` hash tag keeps every key
/// of a descriptor in one Redis Cluster slot; the window start makes each window a
/// fresh key that expires on its own.
pub fn counter_key(domain: &str, entries: &[(&str, &str)], window_start: u64) -> String {
    let mut key = format!("mcp_rl:{{{domain}");
    for (k, v) in entries {
        key.push('|');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key.push_str(&format!("}}:{window_start}"));
    key
}

#[cfg(test)]
mod tests;
