//! Fixed-window decisions for request descriptors, over a counter store, with an
//! injected clock so windows can be tested at their boundaries.

use crate::config::{Config, Limit, Quota};
use crate::store::{Backend, Counted, Increment, Overflow, StoreError};

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
pub struct Status<'c> {
    pub over_limit: bool,
    /// The limit that matched (none: the descriptor is not limited).
    pub limit: Option<&'c Limit>,
    /// Requests left in this window after this one.
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset_seconds: u64,
    /// Over the limit but allowed because the limit is in shadow mode.
    pub shadow_over_limit: bool,
    pub near_limit: bool,
    /// Counted on an overflow counter shared with other values (and why).
    pub overflow: Option<Overflow>,
}

impl Status<'_> {
    fn not_counted(limit: Option<&Limit>) -> Status<'_> {
        Status {
            over_limit: false,
            limit,
            remaining: if limit.is_some() { u32::MAX } else { 0 },
            reset_seconds: 0,
            shadow_over_limit: false,
            near_limit: false,
            overflow: None,
        }
    }
}

/// One request descriptor: its entries in order and its hits (Envoy's `hits_addend`,
/// 1 when unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor<'a> {
    pub entries: Vec<(&'a str, &'a str)>,
    pub hits: u32,
}

/// Decides each descriptor of one request, with one store round trip. Only an
/// unavailable store (Redis) fails the request, so the service can answer UNAVAILABLE
/// and let Envoy's `failure_mode_deny` decide; nothing a client sends can (see
/// [`crate::store::Memory`]).
pub async fn decide<'c>(
    config: &'c Config,
    store: &Backend,
    now: u64,
    domain: &str,
    descriptors: &[Descriptor<'_>],
) -> Result<Vec<Status<'c>>, StoreError> {
    let limits: Vec<Option<&Limit>> = descriptors
        .iter()
        .map(|d| config.find(domain, &d.entries))
        .collect();
    let mut increments = Vec::with_capacity(descriptors.len());
    for (descriptor, limit) in descriptors.iter().zip(&limits) {
        if let Some((limit, rate)) = limit.and_then(|l| Some((l, l.rate()?))) {
            increments.push(Increment {
                limit,
                unit: rate.unit,
                entries: &descriptor.entries,
                window_start: now - now % rate.unit.seconds(),
                hits: u64::from(descriptor.hits),
            });
        }
    }
    let mut counts = store.increment_all(&increments).await?.into_iter();
    let mut statuses = Vec::with_capacity(descriptors.len());
    for limit in limits {
        let status = match limit.map(|l| (l, l.quota)) {
            None => Status::not_counted(None),
            Some((limit, Quota::Unlimited)) => Status::not_counted(Some(limit)),
            Some((limit, Quota::Counted(rate))) => {
                let Counted { count, overflow } = counts.next().unwrap_or(Counted {
                    count: u64::MAX,
                    overflow: None,
                });
                let window = rate.unit.seconds();
                let allowed = u64::from(rate.requests_per_unit);
                let over = count > allowed;
                Status {
                    over_limit: over && !limit.shadow_mode,
                    remaining: u32::try_from(allowed.saturating_sub(count)).unwrap_or(u32::MAX),
                    reset_seconds: window - now % window,
                    shadow_over_limit: over && limit.shadow_mode,
                    near_limit: !over && count as f64 > allowed as f64 * NEAR_LIMIT_RATIO,
                    limit: Some(limit),
                    overflow,
                }
            }
        };
        statuses.push(status);
    }
    Ok(statuses)
}

#[cfg(test)]
mod tests;
