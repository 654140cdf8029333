//! The filter's Envoy stats: defined on first use (labels are part of the name, see
//! `crate::stats`) and cached per VM, so each label set costs one
//! `proxy_define_metric` per worker.

use crate::host::{Host, MetricKind};
use std::cell::RefCell;
use std::collections::HashMap;

/// Metric ids by stat name, shared by the root context and its requests. Label values
/// are bounded (allow-listed tools, fixed outcome names), so this map is too.
#[derive(Debug, Default)]
pub struct MetricIds(RefCell<HashMap<String, u32>>);

impl MetricIds {
    /// Adds `delta` to a counter.
    pub fn add(&self, host: &mut impl Host, name: String, delta: i64) {
        if let Some(id) = self.id(host, MetricKind::Counter, name) {
            // Metrics are best effort: a refused increment must not fail the request.
            let _ = host.increment_metric(id, delta);
        }
    }

    /// Records one histogram value.
    pub fn record(&self, host: &mut impl Host, name: String, value: u64) {
        if let Some(id) = self.id(host, MetricKind::Histogram, name) {
            let _ = host.record_metric(id, value);
        }
    }

    fn id(&self, host: &mut impl Host, kind: MetricKind, name: String) -> Option<u32> {
        if let Some(id) = self.0.borrow().get(&name) {
            return Some(*id);
        }
        let id = host.define_metric(kind, &name).ok()?;
        self.0.borrow_mut().insert(name, id);
        Some(id)
    }
}
