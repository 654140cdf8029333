//! The host interface: every call the filter makes into Envoy (proxy-wasm ABI), as a
//! trait, so the request flow runs natively in tests and fuzzing against a fake host
//! that can refuse any call, and in Envoy against the adapter crate's implementation.
//! A leaf module: it depends on nothing else of the filter.

use std::fmt;

/// A host call's non-OK status (proxy-wasm ABI `WasmResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus(pub u32);

impl fmt::Display for HostStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1 => "NotFound",
            2 => "BadArgument",
            3 => "SerializationFailure",
            4 => "ParseFailure",
            6 => "InvalidMemoryAccess",
            7 => "Empty",
            10 => "InternalFailure",
            12 => "Unimplemented",
            _ => "status",
        };
        write!(f, "host call failed: {name} ({})", self.0)
    }
}

/// Log levels of the proxy-wasm ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info = 2,
    Warning = 3,
    Error = 4,
    Critical = 5,
}

/// proxy-wasm metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter = 0,
    Histogram = 2,
}

/// The shared-data status for a compare-and-swap that lost a race.
pub const CAS_MISMATCH: HostStatus = HostStatus(8);

/// The host calls a request needs. Every one can fail; none may panic.
pub trait Host {
    /// All request headers, serialised as the proxy-wasm ABI does (see `wire`).
    fn request_headers(&mut self) -> Result<Vec<u8>, HostStatus>;
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostStatus>;
    /// Sets a request header, replacing every existing copy.
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostStatus>;
    /// The first `len` bytes of the buffered request body.
    fn request_body(&mut self, len: usize) -> Result<Vec<u8>, HostStatus>;
    /// A host property; `None` when it does not exist.
    fn property(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, HostStatus>;
    fn send_response(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostStatus>;
    fn clear_route_cache(&mut self) -> Result<(), HostStatus>;
    fn log(&mut self, level: Level, message: &str);
    /// One response header (the first copy).
    fn response_header(&mut self, name: &str) -> Result<Option<String>, HostStatus>;
    fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), HostStatus>;
    fn remove_response_header(&mut self, name: &str) -> Result<(), HostStatus>;
    /// Replaces the first `current_len` bytes of the buffered response body.
    fn replace_response_body(&mut self, current_len: usize, body: &[u8]) -> Result<(), HostStatus>;
    /// The first `len` bytes of the response body chunk at hand.
    fn response_body(&mut self, len: usize) -> Result<Vec<u8>, HostStatus>;
    /// One request header (the first copy); in `on_log`, as the request left Envoy.
    fn request_header(&mut self, name: &str) -> Result<Option<String>, HostStatus>;
    /// Wall-clock time, Unix nanoseconds.
    fn now_nanos(&mut self) -> Result<u64, HostStatus>;
    /// Fills `buffer` with random bytes (the gateway's own request ids).
    fn random(&mut self, buffer: &mut [u8]) -> Result<(), HostStatus>;
    /// Sets the filter state `wasm.<path>` that access logs read.
    fn set_property(&mut self, path: &[&str], value: &[u8]) -> Result<(), HostStatus>;
    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Result<u32, HostStatus>;
    fn increment_metric(&mut self, id: u32, delta: i64) -> Result<(), HostStatus>;
    fn record_metric(&mut self, id: u32, value: u64) -> Result<(), HostStatus>;
    /// A shared-data value (across workers) and its CAS token.
    fn shared_data(&mut self, key: &str) -> Result<(Option<Vec<u8>>, u32), HostStatus>;
    /// Writes shared data if its CAS token is still `cas` (0: unconditionally).
    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), HostStatus>;
}
