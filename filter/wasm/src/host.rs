//! The few host calls the filter makes, returning every host status as an error.
//!
//! The `proxy-wasm` SDK's `hostcalls::*` return `Result` but still `panic!` on any
//! status they do not expect, and a panic kills the worker's wasm VM (every later
//! request on that worker gets 503 until Envoy reloads it). A host that refuses a call,
//! for example a header write after the headers left because
//! `allow_on_headers_stop_iteration` is off, must instead lead to a clear error
//! response. So these wrappers declare the ABI functions themselves with a plain `u32`
//! status (a Rust enum would be undefined behaviour for statuses it does not list).

#![allow(unsafe_code)]
// Same imports as the SDK's declarations, with `u32` in place of its enums on purpose.
#![allow(clashing_extern_declarations)]

use mcp_filter_core::host::{Host, HostStatus, Level, MetricKind};
use mcp_filter_core::wire;
use std::ptr::{null, null_mut};

const HTTP_REQUEST_HEADERS: u32 = 0;
const HTTP_RESPONSE_HEADERS: u32 = 2;
const HTTP_REQUEST_BODY: u32 = 0;
const HTTP_RESPONSE_BODY: u32 = 1;
const PLUGIN_CONFIGURATION: u32 = 7;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        argument: *const u8,
        argument_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name: *const u8,
        name_size: usize,
        metric_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

fn check(status: u32) -> Result<(), HostStatus> {
    match status {
        0 => Ok(()),
        other => Err(HostStatus(other)),
    }
}

/// Takes ownership of a buffer the host allocated through the SDK's exported
/// `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes).
fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host filled `data` with `size` bytes it obtained from
    // `proxy_on_memory_allocate(size)`, which hands out a `Box<[u8]>` of that length.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// Writes to Envoy's log. Failure to log is ignored: there is nowhere to report it.
pub fn log(level: Level, message: &str) {
    // SAFETY: pointer and length describe a live &str.
    let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
}

/// The plugin configuration bytes.
pub fn plugin_configuration() -> Result<Vec<u8>, HostStatus> {
    buffer(PLUGIN_CONFIGURATION, 0, usize::MAX)
}

/// `len` bytes of the buffered request body from offset 0.
fn request_body(len: usize) -> Result<Vec<u8>, HostStatus> {
    if len == 0 {
        return Ok(Vec::new());
    }
    buffer(HTTP_REQUEST_BODY, 0, len)
}

fn buffer(buffer_type: u32, start: usize, max: usize) -> Result<Vec<u8>, HostStatus> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: out-pointers to locals; the host writes a pointer/size pair.
    match unsafe { proxy_get_buffer_bytes(buffer_type, start, max, &mut data, &mut size) } {
        0 => Ok(owned(data, size)),
        // An empty plugin configuration is reported as NotFound.
        1 => Ok(Vec::new()),
        other => Err(HostStatus(other)),
    }
}

/// All request headers as the host serialises them.
fn request_headers() -> Result<Vec<u8>, HostStatus> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: out-pointers to locals.
    check(unsafe { proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, &mut data, &mut size) })?;
    Ok(owned(data, size))
}

/// Removes every copy of a header.
fn remove_header(map: u32, name: &str) -> Result<(), HostStatus> {
    // SAFETY: pointer and length describe a live &str.
    check(unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) })
}

/// Sets a header, replacing any copy.
fn set_header(map: u32, name: &str, value: &str) -> Result<(), HostStatus> {
    // SAFETY: pointers and lengths describe live &strs.
    check(unsafe {
        proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

/// The first copy of a header, if any (not UTF-8: treated as absent).
fn header(map: u32, name: &str) -> Result<Option<String>, HostStatus> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: the name buffer is live for the call; out-pointers to locals.
    match unsafe {
        proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size)
    } {
        0 => Ok(String::from_utf8(owned(data, size)).ok()),
        1 => Ok(None),
        other => Err(HostStatus(other)),
    }
}

/// Replaces the first `current_len` bytes of the response body with `body`.
fn replace_response_body(current_len: usize, body: &[u8]) -> Result<(), HostStatus> {
    // SAFETY: the body buffer is live for the call.
    check(unsafe {
        proxy_set_buffer_bytes(
            HTTP_RESPONSE_BODY,
            0,
            current_len,
            body.as_ptr(),
            body.len(),
        )
    })
}

/// Reads a host property (`None` when it does not exist, e.g. no peer certificate).
fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostStatus> {
    // The ABI takes the path segments joined by NUL bytes.
    let serialized = path.join("\0");
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: the path buffer is live for the call; out-pointers to locals.
    match unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size) }
    {
        0 if data.is_null() => Ok(None),
        0 => Ok(Some(owned(data, size))),
        1 => Ok(None),
        other => Err(HostStatus(other)),
    }
}

/// Answers the request locally; the request goes no further.
fn send_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostStatus> {
    let headers = wire::serialize_pairs(headers);
    // SAFETY: all pointers describe live buffers for the duration of the call.
    check(unsafe {
        proxy_send_local_response(
            u32::from(status),
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Envoy's `clear_route_cache` foreign function (source/extensions/common/wasm/foreign.cc):
/// makes the router pick the route again with the headers the filter set.
fn clear_route_cache() -> Result<(), HostStatus> {
    let name = "clear_route_cache";
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: the name buffer is live for the call; out-pointers to locals.
    let status = unsafe {
        proxy_call_foreign_function(name.as_ptr(), name.len(), null(), 0, &mut data, &mut size)
    };
    drop(owned(data, size));
    check(status)
}

fn now_nanos() -> Result<u64, HostStatus> {
    let mut time = 0;
    // SAFETY: out-pointer to a local.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut time) })?;
    Ok(time)
}

/// Sets filter state `wasm.<path>` (Envoy 1.40 lets a request overwrite its own).
fn set_property(path: &[&str], value: &[u8]) -> Result<(), HostStatus> {
    let serialized = path.join("\0");
    // SAFETY: both buffers are live for the call.
    check(unsafe {
        proxy_set_property(
            serialized.as_ptr(),
            serialized.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

fn define_metric(kind: MetricKind, name: &str) -> Result<u32, HostStatus> {
    let mut id = 0;
    // SAFETY: the name buffer is live for the call; out-pointer to a local.
    check(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, u32), HostStatus> {
    let (mut data, mut size, mut cas) = (null_mut(), 0, 0);
    // SAFETY: the key buffer is live for the call; out-pointers to locals.
    match unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) }
    {
        0 => Ok((Some(owned(data, size)), cas)),
        1 => Ok((None, 0)),
        other => Err(HostStatus(other)),
    }
}

fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), HostStatus> {
    // SAFETY: both buffers are live for the call.
    check(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

/// The real host: Envoy's proxy-wasm ABI.
pub struct WasmHost;

impl Host for WasmHost {
    fn request_headers(&mut self) -> Result<Vec<u8>, HostStatus> {
        request_headers()
    }
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostStatus> {
        remove_header(HTTP_REQUEST_HEADERS, name)
    }
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostStatus> {
        set_header(HTTP_REQUEST_HEADERS, name, value)
    }
    fn request_body(&mut self, len: usize) -> Result<Vec<u8>, HostStatus> {
        request_body(len)
    }
    fn property(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, HostStatus> {
        property(path)
    }
    fn send_response(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostStatus> {
        send_response(status, headers, body)
    }
    fn clear_route_cache(&mut self) -> Result<(), HostStatus> {
        clear_route_cache()
    }
    fn log(&mut self, level: Level, message: &str) {
        log(level, message)
    }
    fn response_header(&mut self, name: &str) -> Result<Option<String>, HostStatus> {
        header(HTTP_RESPONSE_HEADERS, name)
    }
    fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), HostStatus> {
        set_header(HTTP_RESPONSE_HEADERS, name, value)
    }
    fn remove_response_header(&mut self, name: &str) -> Result<(), HostStatus> {
        remove_header(HTTP_RESPONSE_HEADERS, name)
    }
    fn replace_response_body(&mut self, current_len: usize, body: &[u8]) -> Result<(), HostStatus> {
        replace_response_body(current_len, body)
    }
    fn response_body(&mut self, len: usize) -> Result<Vec<u8>, HostStatus> {
        buffer(HTTP_RESPONSE_BODY, 0, len)
    }
    fn request_header(&mut self, name: &str) -> Result<Option<String>, HostStatus> {
        header(HTTP_REQUEST_HEADERS, name)
    }
    fn now_nanos(&mut self) -> Result<u64, HostStatus> {
        now_nanos()
    }
    fn random(&mut self, buffer: &mut [u8]) -> Result<(), HostStatus> {
        // WASI `random_get`; a failure maps to InternalFailure like other host errors.
        getrandom::getrandom(buffer).map_err(|_| HostStatus(10))
    }
    fn set_property(&mut self, path: &[&str], value: &[u8]) -> Result<(), HostStatus> {
        set_property(path, value)
    }
    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Result<u32, HostStatus> {
        define_metric(kind, name)
    }
    fn increment_metric(&mut self, id: u32, delta: i64) -> Result<(), HostStatus> {
        // SAFETY: plain values.
        check(unsafe { proxy_increment_metric(id, delta) })
    }
    fn record_metric(&mut self, id: u32, value: u64) -> Result<(), HostStatus> {
        // SAFETY: plain values.
        check(unsafe { proxy_record_metric(id, value) })
    }
    fn shared_data(&mut self, key: &str) -> Result<(Option<Vec<u8>>, u32), HostStatus> {
        shared_data(key)
    }
    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), HostStatus> {
        set_shared_data(key, value, cas)
    }
}
