//! The filter's Envoy stats: defined on first use (labels are part of the name, see
//! `crate::stats`) and cached per VM, so each label set costs one
//! `proxy_define_metric` per worker. The cache is keyed by [`Stat`], a small value, so
//! a request neither formats nor allocates a stat name once its stats exist.

use crate::config::FilterConfig;
use crate::host::Host;
use crate::stats::{ServerLabel, Stat, ToolKey};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A server id and version interned for the metric id cache: the cache key stays a
/// small value and a request looks its server up once, not once per stat. Each
/// (server, version) pair is its own key: a canary's stats are not its stable
/// version's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerKey(u32);

/// Metric ids by server and stat, shared by the root context and its requests. Label
/// values are bounded: servers and registered tools come from the configuration or the
/// route metadata, never from the client; allow-listed tools; fixed outcome names.
#[derive(Debug, Default)]
pub struct MetricIds {
    ids: RefCell<HashMap<(ServerKey, Stat), u32>>,
    servers: RefCell<Servers>,
    tools: RefCell<Interner>,
}

/// (server id, version) pairs by key and keys by pair. Looked up by id, then by
/// version (`""` for none: a version is never empty), so a look-up allocates nothing.
#[derive(Debug, Default)]
struct Servers {
    keys: HashMap<Rc<str>, HashMap<Rc<str>, u32>>,
    pairs: Vec<(Rc<str>, Option<Rc<str>>)>,
}

impl Servers {
    fn key(&mut self, id: &str, version: Option<&str>) -> u32 {
        let version_key = version.unwrap_or("");
        if let Some(key) = self.keys.get(id).and_then(|v| v.get(version_key)) {
            return *key;
        }
        let key = u32::try_from(self.pairs.len()).unwrap_or(u32::MAX);
        let id: Rc<str> = match self.keys.get_key_value(id) {
            Some((id, _)) => id.clone(),
            None => Rc::from(id),
        };
        let version: Option<Rc<str>> = version.map(Rc::from);
        self.pairs.push((id.clone(), version.clone()));
        self.keys
            .entry(id)
            .or_default()
            .insert(version.unwrap_or_else(|| Rc::from("")), key);
        key
    }

    fn label(&self, key: u32) -> Option<ServerLabel<'_>> {
        let (id, version) = self.pairs.get(usize::try_from(key).ok()?)?;
        Some(ServerLabel::new(id, version.as_deref()))
    }
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
}

impl MetricIds {
    /// The key of a server id and version, interned on first sight.
    pub fn server_key(&self, server: &str, version: Option<&str>) -> ServerKey {
        ServerKey(self.servers.borrow_mut().key(server, version))
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
            stat.name(config, servers.label(server.0)?, &tools.names)
        };
        let id = host.define_metric(stat.kind(), &name).ok()?;
        self.ids.borrow_mut().insert((server, stat), id);
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::FakeHost;

    #[test]
    fn each_server_version_is_its_own_set_of_stats() {
        let config = FilterConfig::from_json(br#"{"servers_from_routes":true}"#).unwrap();
        let metrics = MetricIds::default();
        let stable = metrics.server_key("fin", Some("1.3.2"));
        let canary = metrics.server_key("fin", Some("1.4.0"));
        let none = metrics.server_key("fin", None);
        assert_ne!(stable, canary);
        assert_ne!(stable, none);
        assert_eq!(metrics.server_key("fin", Some("1.3.2")), stable);
        assert_eq!(metrics.server_key("fin", None), none);
        assert_ne!(metrics.server_key("kb", Some("1.3.2")), stable);

        let mut host = FakeHost::default();
        let stat = Stat::Sessions { event: "started" };
        for key in [stable, canary, none, stable] {
            metrics.add(&mut host, &config, key, stat, 1);
        }
        assert_eq!(
            host.metric_names,
            [
                "mcp_sessions_total;server=fin;version=1.3.2;event=started",
                "mcp_sessions_total;server=fin;version=1.4.0;event=started",
                "mcp_sessions_total;server=fin;event=started",
            ],
            "one definition per (server, version), cached after"
        );
        assert_eq!(
            host.counters["mcp_sessions_total;server=fin;version=1.3.2;event=started"],
            2
        );
    }
}
