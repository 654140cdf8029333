//! The filter's Envoy stats: defined on first use (labels are part of the name, see
//! `crate::stats`) and cached per VM, so each label set costs one
//! `proxy_define_metric` per worker. The cache is keyed by [`Stat`], a small value, so
//! a request neither formats nor allocates a stat name once its stats exist.

use crate::config::FilterConfig;
use crate::host::Host;
use crate::stats::Stat;
use std::cell::RefCell;
use std::collections::HashMap;

/// Metric ids by stat, shared by the root context and its requests. Label values are
/// bounded (allow-listed tools, fixed outcome names), so this map is too.
#[derive(Debug, Default)]
pub struct MetricIds(RefCell<HashMap<Stat, u32>>);

impl MetricIds {
    /// Adds `delta` to a counter.
    pub fn add(&self, host: &mut impl Host, config: &FilterConfig, stat: Stat, delta: i64) {
        if let Some(id) = self.id(host, config, stat) {
            // Metrics are best effort: a refused increment must not fail the request.
            let _ = host.increment_metric(id, delta);
        }
    }

    /// Records one histogram value.
    pub fn record(&self, host: &mut impl Host, config: &FilterConfig, stat: Stat, value: u64) {
        if let Some(id) = self.id(host, config, stat) {
            let _ = host.record_metric(id, value);
        }
    }

    fn id(&self, host: &mut impl Host, config: &FilterConfig, stat: Stat) -> Option<u32> {
        if let Some(id) = self.0.borrow().get(&stat) {
            return Some(*id);
        }
        let id = host.define_metric(stat.kind(), &stat.name(config)).ok()?;
        self.0.borrow_mut().insert(stat, id);
        Some(id)
    }
}
