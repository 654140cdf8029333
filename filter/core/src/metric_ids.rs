//! The filter's Envoy stats: defined on first use (labels are part of the name, see
//! `crate::stats`) and cached per VM, so each label set costs one
//! `proxy_define_metric` per worker. The cache is keyed by [`Stat`], a small value, so
//! a request neither formats nor allocates a stat name once its stats exist.

use crate::config::FilterConfig;
use crate::host::Host;
use crate::stats::{Stat, ToolKey};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A server id interned for the metric id cache: the cache key stays a small value
/// and a request looks its server up once, not once per stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerKey(u32);

/// Metric ids by server and stat, shared by the root context and its requests. Label
/// values are bounded: servers and registered tools come from the configuration or the
/// route metadata, never from the client; allow-listed tools; fixed outcome names.
#[derive(Debug, Default)]
pub struct MetricIds {
    ids: RefCell<HashMap<(ServerKey, Stat), u32>>,
    servers: RefCell<Interner>,
    tools: RefCell<Interner>,
}

/// Names by small key and keys by name: a map look-up, so the cost per request does
/// not grow with the fleet.
#[derive(Debug, Default)]
struct Interner {
    keys: HashMap<Rc<str>, u32>,
    names: Vec<Rc<str>>,
}

impl Interner {
    fn key(&mut self, name: &str) -> u32 {
        if let Some(key) = self.keys.get(name) {
            return *key;
        }
        let key = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        let name: Rc<str> = Rc::from(name);
        self.names.push(name.clone());
        self.keys.insert(name, key);
        key
    }

    fn name(&self, key: u32) -> Option<&Rc<str>> {
        self.names.get(usize::try_from(key).ok()?)
    }
}

impl MetricIds {
    /// The key of a server id, interned on first sight.
    pub fn server_key(&self, server: &str) -> ServerKey {
        ServerKey(self.servers.borrow_mut().key(server))
    }

    /// The key of a tool the route's server is registered with, interned on first sight.
    pub fn tool_key(&self, tool: &str) -> ToolKey {
        ToolKey(self.tools.borrow_mut().key(tool))
    }

    /// Adds `delta` to a counter.
    pub fn add(
        &self,
        host: &mut impl Host,
        config: &FilterConfig,
        server: ServerKey,
        stat: Stat,
        delta: i64,
    ) {
        if let Some(id) = self.id(host, config, server, stat) {
            // Metrics are best effort: a refused increment must not fail the request.
            let _ = host.increment_metric(id, delta);
        }
    }

    /// Records one histogram value.
    pub fn record(
        &self,
        host: &mut impl Host,
        config: &FilterConfig,
        server: ServerKey,
        stat: Stat,
        value: u64,
    ) {
        if let Some(id) = self.id(host, config, server, stat) {
            let _ = host.record_metric(id, value);
        }
    }

    fn id(
        &self,
        host: &mut impl Host,
        config: &FilterConfig,
        server: ServerKey,
        stat: Stat,
    ) -> Option<u32> {
        if let Some(id) = self.ids.borrow().get(&(server, stat)) {
            return Some(*id);
        }
        let name = {
            let servers = self.servers.borrow();
            let tools = self.tools.borrow();
            stat.name(config, servers.name(server.0)?, &tools.names)
        };
        let id = host.define_metric(stat.kind(), &name).ok()?;
        self.ids.borrow_mut().insert((server, stat), id);
        Some(id)
    }
}
