//! A host for the fuzzed filter flow: headers and bodies from the input, and one host
//! call (picked by the input) that fails, as a real host's calls can.

use mcp_filter_core::host::{Host, HostStatus, Level, MetricKind, CAS_MISMATCH};
use mcp_filter_core::wire::serialize_pairs;
use std::collections::HashMap;

/// proxy-wasm `BadArgument`.
const REFUSED: HostStatus = HostStatus(2);

#[derive(Default)]
pub struct FuzzHost {
    /// The request header map, as Envoy holds it (raw value bytes).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Values the filter set, by name (the last one).
    pub set_by_filter: HashMap<String, String>,
    /// The request body buffered so far.
    pub body: Vec<u8>,
    pub response_headers: Vec<(String, String)>,
    /// The response chunk at hand.
    pub response_chunk: Vec<u8>,
    /// Local replies sent: (status, body).
    pub replies: Vec<(u16, Vec<u8>)>,
    /// Filter state written, in order.
    pub properties_set: Vec<(String, Vec<u8>)>,
    /// Replaces the serialised header map with these bytes (a host bug).
    pub raw_header_map: Option<Vec<u8>>,
    /// The number (1-based) of the host call that fails; 0: none.
    pub fail_at: u32,
    /// Host calls so far, and whether the one meant to fail has.
    pub calls: u32,
    pub failed: bool,
    pub(crate) metrics: Vec<String>,
    pub(crate) shared: HashMap<String, (Vec<u8>, u32)>,
    pub(crate) clock: u64,
}

impl FuzzHost {
    fn call(&mut self) -> Result<(), HostStatus> {
        self.calls += 1;
        if self.calls == self.fail_at {
            self.failed = true;
            return Err(REFUSED);
        }
        Ok(())
    }

    fn first(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

impl Host for FuzzHost {
    fn request_headers(&mut self) -> Result<Vec<u8>, HostStatus> {
        self.call()?;
        Ok(match &self.raw_header_map {
            Some(raw) => raw.clone(),
            None => serialize_pairs(&self.headers),
        })
    }
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostStatus> {
        self.call()?;
        self.headers.retain(|(n, _)| n != name);
        Ok(())
    }
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostStatus> {
        self.call()?;
        self.headers.retain(|(n, _)| n != name);
        self.headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
        self.set_by_filter.insert(name.to_owned(), value.to_owned());
        Ok(())
    }
    fn request_body(&mut self, len: usize) -> Result<Vec<u8>, HostStatus> {
        self.call()?;
        Ok(self.body.get(..len).unwrap_or(&self.body).to_vec())
    }
    fn property(&mut self, _path: &[&str]) -> Result<Option<Vec<u8>>, HostStatus> {
        self.call()?;
        Ok(None)
    }
    fn send_response(
        &mut self,
        status: u16,
        _headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostStatus> {
        self.call()?;
        self.replies.push((status, body.to_vec()));
        Ok(())
    }
    fn clear_route_cache(&mut self) -> Result<(), HostStatus> {
        self.call()
    }
    fn log(&mut self, _level: Level, _message: &str) {}
    fn response_header(&mut self, name: &str) -> Result<Option<String>, HostStatus> {
        self.call()?;
        Ok(self
            .response_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone()))
    }
    fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), HostStatus> {
        self.call()?;
        self.response_headers.retain(|(n, _)| n != name);
        self.response_headers
            .push((name.to_owned(), value.to_owned()));
        Ok(())
    }
    fn remove_response_header(&mut self, name: &str) -> Result<(), HostStatus> {
        self.call()?;
        self.response_headers.retain(|(n, _)| n != name);
        Ok(())
    }
    fn replace_response_body(&mut self, _len: usize, body: &[u8]) -> Result<(), HostStatus> {
        self.call()?;
        self.response_chunk = body.to_vec();
        Ok(())
    }
    fn response_body(&mut self, len: usize) -> Result<Vec<u8>, HostStatus> {
        self.call()?;
        Ok(self
            .response_chunk
            .get(..len)
            .unwrap_or(&self.response_chunk)
            .to_vec())
    }
    fn request_header(&mut self, name: &str) -> Result<Option<String>, HostStatus> {
        self.call()?;
        Ok(self
            .first(name)
            .map(|v| String::from_utf8_lossy(v).into_owned()))
    }
    fn random(&mut self, buffer: &mut [u8]) -> Result<(), HostStatus> {
        self.call()?;
        buffer.fill(0x5a);
        Ok(())
    }
    fn now_nanos(&mut self) -> Result<u64, HostStatus> {
        self.call()?;
        self.clock += 1_000_000;
        Ok(1_763_683_200_000_000_000 + self.clock)
    }
    fn set_property(&mut self, path: &[&str], value: &[u8]) -> Result<(), HostStatus> {
        self.call()?;
        self.properties_set.push((path.join("."), value.to_vec()));
        Ok(())
    }
    fn define_metric(&mut self, _kind: MetricKind, name: &str) -> Result<u32, HostStatus> {
        self.call()?;
        self.metrics.push(name.to_owned());
        u32::try_from(self.metrics.len() - 1).map_err(|_| REFUSED)
    }
    fn increment_metric(&mut self, id: u32, _delta: i64) -> Result<(), HostStatus> {
        self.call()?;
        let known = usize::try_from(id).is_ok_and(|id| id < self.metrics.len());
        known.then_some(()).ok_or(REFUSED)
    }
    fn record_metric(&mut self, id: u32, value: u64) -> Result<(), HostStatus> {
        self.increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX))
    }
    fn shared_data(&mut self, key: &str) -> Result<(Option<Vec<u8>>, u32), HostStatus> {
        self.call()?;
        Ok(match self.shared.get(key) {
            Some((value, cas)) => (Some(value.clone()), *cas),
            None => (None, 0),
        })
    }
    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), HostStatus> {
        self.call()?;
        let current = self.shared.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return Err(CAS_MISMATCH);
        }
        self.shared
            .insert(key.to_owned(), (value.to_vec(), current.wrapping_add(1)));
        Ok(())
    }
}
