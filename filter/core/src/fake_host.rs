//! One configurable fake of the proxy-wasm host, for the flow's unit tests (here) and
//! the fuzzed flow (`fuzz/`, feature `test-support`). It holds what Envoy would hold
//! (request and response header maps, buffered bodies, properties, metrics, shared
//! data), records what the filter did to it, and can refuse any host call, either by
//! name (a test that wants `set_request_header` to fail) or by position (the fuzzer
//! picks "the 7th call fails"), as a real host's calls can fail.
//!
//! The benches keep their own minimal canned host (`benches/canned`): what they
//! measure is the flow's cost, and the recording done here (maps by name, copies of
//! every reply) would be counted in it.

use crate::host::{Host, HostStatus, Level, MetricKind, CAS_MISMATCH};
use crate::wire::serialize_pairs;
use std::collections::HashMap;

/// proxy-wasm `BadArgument`: what a refused call returns.
pub const REFUSED: HostStatus = HostStatus(2);

/// A local reply the filter sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct FakeHost {
    /// The request header map, as Envoy holds it (raw value bytes, repeats kept).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Replaces the serialised header map with these bytes (a host bug, for fuzzing).
    pub raw_header_map: Option<Vec<u8>>,
    /// The request body buffered so far.
    pub body: Vec<u8>,
    /// Host properties, by path.
    pub properties: HashMap<Vec<String>, Vec<u8>>,
    /// What clearing the route cache does to `properties` (Envoy picks the route again,
    /// so route properties can change): the value a path has then, `None` for gone.
    pub properties_after_reroute: Vec<(Vec<String>, Option<Vec<u8>>)>,
    /// Names of the calls (the `Host` method names) that fail.
    pub refuse: Vec<&'static str>,
    /// The position (1-based, over every call but `log`) of the call that fails; 0: none.
    pub fail_at: u32,
    /// Host calls so far, and whether a refusal has happened.
    pub calls: u32,
    pub failed: bool,
    /// Request headers the filter set, by name (the last value).
    pub set_by_filter: HashMap<String, String>,
    pub replies: Vec<Reply>,
    pub route_cleared: bool,
    /// The request header map when the route cache was last cleared: what Envoy's new
    /// route (and weighted cluster) pick sees.
    pub headers_at_reroute: Vec<(String, Vec<u8>)>,
    pub logs: Vec<(Level, String)>,
    pub response_headers: Vec<(String, String)>,
    /// The response body chunk at hand.
    pub response_body: Vec<u8>,
    /// Host clock, advanced 1 ms per read.
    pub clock: u64,
    /// Filter state written, in order.
    pub set_properties: Vec<(String, Vec<u8>)>,
    pub metric_names: Vec<String>,
    pub counters: HashMap<String, i64>,
    pub histograms: HashMap<String, Vec<u64>>,
    pub shared: HashMap<String, (Vec<u8>, u32)>,
}

/// 2025-01-15T14:23:07.441Z: the clock's start, so records have a known timestamp.
const EPOCH_NANOS: u64 = 1_736_950_987_441_000_000;

impl FakeHost {
    /// A host holding this request head.
    pub fn with_headers(headers: &[(&str, &str)]) -> FakeHost {
        FakeHost {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            ..FakeHost::default()
        }
    }

    /// Every copy of a request header, as text.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap_or("<not UTF-8>"))
            .collect()
    }

    /// The last value the filter wrote to the filter state `path` (dotted).
    pub fn set_property_value(&self, path: &str) -> Option<&[u8]> {
        self.set_properties
            .iter()
            .rev()
            .find(|(p, _)| p == path)
            .map(|(_, v)| v.as_slice())
    }

    /// Counts the call and refuses it when told to.
    fn call(&mut self, name: &'static str) -> Result<(), HostStatus> {
        self.calls += 1;
        if self.calls == self.fail_at || self.refuse.contains(&name) {
            self.failed = true;
            return Err(REFUSED);
        }
        Ok(())
    }

    fn metric_name(&self, id: u32) -> Result<String, HostStatus> {
        let index = usize::try_from(id).map_err(|_| REFUSED)?;
        self.metric_names.get(index).cloned().ok_or(REFUSED)
    }
}

fn prefix(bytes: &[u8], len: usize) -> Vec<u8> {
    bytes[..len.min(bytes.len())].to_vec()
}

impl Host for FakeHost {
    fn request_headers(&mut self) -> Result<Vec<u8>, HostStatus> {
        self.call("request_headers")?;
        Ok(match &self.raw_header_map {
            Some(raw) => raw.clone(),
            None => serialize_pairs(&self.headers),
        })
    }
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostStatus> {
        self.call("remove_request_header")?;
        self.headers.retain(|(k, _)| k != name);
        Ok(())
    }
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostStatus> {
        self.call("set_request_header")?;
        self.headers.retain(|(k, _)| k != name);
        self.headers.push((name.into(), value.as_bytes().to_vec()));
        self.set_by_filter.insert(name.into(), value.into());
        Ok(())
    }
    fn request_body(&mut self, len: usize) -> Result<Vec<u8>, HostStatus> {
        self.call("request_body")?;
        Ok(prefix(&self.body, len))
    }
    fn property(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, HostStatus> {
        self.call("property")?;
        let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        Ok(self.properties.get(&key).cloned())
    }
    fn send_response(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostStatus> {
        self.call("send_response")?;
        self.replies.push(Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        });
        Ok(())
    }
    fn clear_route_cache(&mut self) -> Result<(), HostStatus> {
        self.call("clear_route_cache")?;
        self.route_cleared = true;
        self.headers_at_reroute = self.headers.clone();
        for (path, value) in std::mem::take(&mut self.properties_after_reroute) {
            match value {
                Some(value) => self.properties.insert(path, value),
                None => self.properties.remove(&path),
            };
        }
        Ok(())
    }
    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.into()));
    }
    fn response_header(&mut self, name: &str) -> Result<Option<String>, HostStatus> {
        self.call("response_header")?;
        Ok(self
            .response_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone()))
    }
    fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), HostStatus> {
        self.call("set_response_header")?;
        self.response_headers.retain(|(k, _)| k != name);
        self.response_headers.push((name.into(), value.into()));
        Ok(())
    }
    fn remove_response_header(&mut self, name: &str) -> Result<(), HostStatus> {
        self.call("remove_response_header")?;
        self.response_headers.retain(|(k, _)| k != name);
        Ok(())
    }
    fn replace_response_body(&mut self, current_len: usize, body: &[u8]) -> Result<(), HostStatus> {
        self.call("replace_response_body")?;
        let end = current_len.min(self.response_body.len());
        self.response_body.splice(..end, body.iter().copied());
        Ok(())
    }
    fn response_body(&mut self, len: usize) -> Result<Vec<u8>, HostStatus> {
        self.call("response_body")?;
        Ok(prefix(&self.response_body, len))
    }
    fn request_header(&mut self, name: &str) -> Result<Option<String>, HostStatus> {
        self.call("request_header")?;
        Ok(self
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned()))
    }
    fn now_nanos(&mut self) -> Result<u64, HostStatus> {
        self.call("now_nanos")?;
        self.clock += 1_000_000;
        Ok(EPOCH_NANOS + self.clock)
    }
    fn random(&mut self, buffer: &mut [u8]) -> Result<(), HostStatus> {
        self.call("random")?;
        buffer.fill(0x2a);
        Ok(())
    }
    fn set_property(&mut self, path: &[&str], value: &[u8]) -> Result<(), HostStatus> {
        self.call("set_property")?;
        self.set_properties.push((path.join("."), value.to_vec()));
        Ok(())
    }
    fn define_metric(&mut self, _kind: MetricKind, name: &str) -> Result<u32, HostStatus> {
        self.call("define_metric")?;
        self.metric_names.push(name.into());
        u32::try_from(self.metric_names.len() - 1).map_err(|_| REFUSED)
    }
    fn increment_metric(&mut self, id: u32, delta: i64) -> Result<(), HostStatus> {
        self.call("increment_metric")?;
        let name = self.metric_name(id)?;
        *self.counters.entry(name).or_default() += delta;
        Ok(())
    }
    fn record_metric(&mut self, id: u32, value: u64) -> Result<(), HostStatus> {
        self.call("record_metric")?;
        let name = self.metric_name(id)?;
        self.histograms.entry(name).or_default().push(value);
        Ok(())
    }
    fn shared_data(&mut self, key: &str) -> Result<(Option<Vec<u8>>, u32), HostStatus> {
        self.call("shared_data")?;
        Ok(match self.shared.get(key) {
            Some((value, cas)) => (Some(value.clone()), *cas),
            None => (None, 0),
        })
    }
    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), HostStatus> {
        self.call("set_shared_data")?;
        let current = self.shared.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return Err(CAS_MISMATCH);
        }
        self.shared
            .insert(key.into(), (value.to_vec(), current.wrapping_add(1)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_by_name_and_by_position() {
        let mut host = FakeHost::with_headers(&[(":path", "/mcp")]);
        host.refuse.push("clear_route_cache");
        assert_eq!(host.clear_route_cache(), Err(REFUSED));
        assert!(host.failed);

        let mut host = FakeHost {
            fail_at: 2,
            ..FakeHost::with_headers(&[(":path", "/mcp")])
        };
        assert!(host.request_headers().is_ok());
        assert_eq!(host.set_request_header("x", "1"), Err(REFUSED));
        assert!(host.header("x").is_empty());
        assert!(host.set_request_header("x", "2").is_ok());
        assert_eq!(host.header("x"), ["2"]);
    }

    #[test]
    fn shared_data_compare_and_swap() {
        let mut host = FakeHost::default();
        host.set_shared_data("k", b"a", 0).unwrap();
        let (_, cas) = host.shared_data("k").unwrap();
        host.set_shared_data("k", b"b", cas).unwrap();
        assert_eq!(host.set_shared_data("k", b"c", cas), Err(CAS_MISMATCH));
        assert_eq!(host.shared_data("k").unwrap().0.as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn metrics_by_name_and_unknown_ids_refused() {
        let mut host = FakeHost::default();
        let id = host.define_metric(MetricKind::Counter, "c").unwrap();
        host.increment_metric(id, 2).unwrap();
        host.record_metric(id, 7).unwrap();
        assert_eq!(host.counters["c"], 2);
        assert_eq!(host.histograms["c"], [7]);
        assert_eq!(host.increment_metric(id + 1, 1), Err(REFUSED));
    }
}
