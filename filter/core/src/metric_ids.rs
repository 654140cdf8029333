//! The filter's Envoy stats: defined on first use (labels are part of the name, see
//! `crate::stats`) and cached per VM, so each label set costs one
//! `proxy_define_metric` per worker. The cache is keyed by [`Stat`], a small value, so
//! a request neither formats nor allocates a stat name once its stats exist.

use crate::config::FilterConfig;
use crate::host::Host;
use crate::stats::Stat;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A server id interned for the metric id cache: the cache key stays a small value
/// and a request looks its server up once, not once per stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerKey(u32);

/// Metric ids by server and stat, shared by the root context and its requests. Label
/// values are bounded (servers come from the configuration or the route metadata,
/// never from the client; allow-listed tools; fixed outcome names), so this map is too.
#[derive(Debug, Default)]
pub struct MetricIds {
    ids: RefCell<HashMap<(ServerKey, Stat), u32>>,
    servers: RefCell<Servers>,
}

#[derive(Debug, Default)]
struct Servers {
    keys: HashMap<Rc<str>, ServerKey>,
    names: Vec<Rc<str>>,
}

impl MetricIds {
    /// The key of a server id, interned on first sight (a map look-up, so the cost
    /// per request does not grow with the fleet).
    pub fn server_key(&self, server: &str) -> ServerKey {
        let mut servers = self.servers.borrow_mut();
        if let Some(key) = servers.keys.get(server) {
            return *key;
        }
        let key = ServerKey(u32::try_from(servers.names.len()).unwrap_or(u32::MAX));
        let name: Rc<str> = Rc::from(server);
        servers.names.push(name.clone());
        servers.keys.insert(name, key);
        key
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
            let server_id = servers.names.get(usize::try_from(server.0).ok()?)?;
            stat.name(config, server_id)
        };
        let id = host.define_metric(stat.kind(), &name).ok()?;
        self.ids.borrow_mut().insert((server, stat), id);
        Some(id)
    }
}
