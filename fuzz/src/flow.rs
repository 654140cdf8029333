//! The whole filter as Envoy drives it (request headers, body chunks, response, log)
//! against the core's [`FakeHost`], with one host call failing where the input says.
//!
//! Input: byte 0 is the number of the host call that fails (0: none; 255: the host
//! returns the rest of the input as a malformed header map), byte 1 the request body
//! chunk size (0: one chunk), byte 2 the response type (even: JSON, odd: SSE) and the
//! rest a request in the `input` text form; a line `--response--` after the body
//! starts the response body.
//!
//! Properties: the filter never panics; a request that goes upstream carries no
//! gateway header the filter did not set itself; an MCP POST that goes upstream
//! carries exactly the labels the core computes for it (so no host failure lets a
//! request through unlabelled); a request ends with at most one audit record, which
//! is a JSON object, and exactly one when no host call failed.

use crate::input::{find, FuzzRequest};
use crate::request::config;
use mcp_filter_core::fake_host::FakeHost;
use mcp_filter_core::flow::{RequestFlow, Verdict};
use mcp_filter_core::headers::is_gateway_header;
use mcp_filter_core::metric_ids::MetricIds;
use mcp_filter_core::wire::parse_pairs;
use mcp_filter_core::{label_request, on_request_head, HeadAction, RequestHead};
use serde::Deserialize;
use std::rc::Rc;

const RESPONSE_MARK: &[u8] = b"\n--response--\n";

pub fn run(data: &[u8]) {
    drive(data);
}

/// Runs one input and checks it; returns the request headers that went upstream.
pub fn drive(data: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let [fail_at, chunk, response_kind, rest @ ..] = data else {
        return None;
    };
    let (request_part, response_body) = match find(rest, RESPONSE_MARK) {
        Some(at) => (&rest[..at], &rest[at + RESPONSE_MARK.len()..]),
        None => (rest, &rest[..0]),
    };
    let request = FuzzRequest::parse(request_part);
    let raw_header_map = (*fail_at == 255).then(|| rest.to_vec());
    let headers = match &raw_header_map {
        // The host's map is what the raw bytes say, when they say anything.
        Some(raw) => parse_pairs(raw)
            .unwrap_or_default()
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_vec()))
            .collect(),
        None => request
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), v.to_vec()))
            .collect(),
    };
    let mut host = FakeHost {
        headers,
        fail_at: u32::from(*fail_at),
        raw_header_map,
        ..FakeHost::default()
    };
    let config = Rc::new(config().clone());
    let mut flow = RequestFlow::new(config.clone(), Rc::new(MetricIds::default()));

    // Request: Envoy hands the headers, then (headers paused) the body as it buffers,
    // reporting the total buffered size; a local reply ends the request path.
    let body = request.body;
    let mut forwarded = None;
    let verdict = flow.on_headers(&mut host, body.is_empty());
    if verdict == Verdict::Continue {
        forwarded = Some(host.headers.clone());
    }
    let step = if *chunk == 0 {
        body.len()
    } else {
        usize::from(*chunk)
    };
    let mut seen = 0;
    while seen < body.len() && host.replies.is_empty() {
        seen = (seen + step).min(body.len());
        let end = seen == body.len();
        let size = if forwarded.is_some() {
            // Not paused: each chunk passes on as it comes.
            host.body = body[seen - step.min(seen)..seen].to_vec();
            host.body.len()
        } else {
            host.body = body[..seen].to_vec();
            seen
        };
        let verdict = flow.on_body(&mut host, size, end);
        if forwarded.is_none() && end && verdict == Verdict::Continue {
            forwarded = Some(host.headers.clone());
        }
    }
    if !host.replies.is_empty() {
        forwarded = None;
    }

    if let Some(headers) = &forwarded {
        check_forwarded(&host, headers, &request, *fail_at == 255);
        // Response: the upstream answers.
        let content_type = if response_kind % 2 == 0 {
            "application/json"
        } else {
            "text/event-stream"
        };
        host.response_headers = vec![
            (":status".into(), "200".into()),
            ("content-type".into(), content_type.into()),
        ];
        flow.on_response_headers(&mut host, response_body.is_empty());
        let pieces = response_body.chunks(usize::from(response_kind / 2).max(1));
        let count = pieces.len();
        for (index, piece) in pieces.enumerate() {
            host.response_body = piece.to_vec();
            flow.on_response_body(&mut host, piece.len(), index + 1 == count);
        }
    }
    flow.on_log(&mut host);

    let records: Vec<&Vec<u8>> = host
        .set_properties
        .iter()
        .filter(|(name, _)| name == "mcp_audit")
        .map(|(_, value)| value)
        .collect();
    assert!(records.len() <= 1, "{} audit records", records.len());
    for record in &records {
        // Numbers are copied as sent (a JSON-RPC id of 400 digits), so they are
        // skipped here rather than converted.
        let record: Record = serde_json::from_slice(record)
            .unwrap_or_else(|e| panic!("the audit record is not JSON: {e}"));
        assert!(!record.decision.is_empty());
    }
    let on_mcp_path = host_path(&request).is_some_and(|path| config.is_mcp_path(&path));
    if on_mcp_path && !host.failed && *fail_at != 255 {
        assert_eq!(records.len(), 1, "no audit record for an MCP request");
    }
    forwarded
}

fn host_path(request: &FuzzRequest<'_>) -> Option<String> {
    let (_, path) = request.headers.iter().find(|(n, _)| n == ":path")?;
    String::from_utf8(path.to_vec()).ok()
}

fn check_forwarded(
    host: &FakeHost,
    headers: &[(String, Vec<u8>)],
    request: &FuzzRequest<'_>,
    malformed_map: bool,
) {
    for (name, value) in headers.iter().filter(|(n, _)| is_gateway_header(n)) {
        let set = host.set_by_filter.get(name);
        assert_eq!(
            set.map(String::as_bytes),
            Some(value.as_slice()),
            "{name} went upstream without the filter setting it"
        );
    }
    if malformed_map {
        return;
    }
    // The core's decision on the same request (gateway headers play no part in it).
    let head = RequestHead::from_headers(request.pairs());
    if !matches!(on_request_head(config(), &head), HeadAction::ReadBody) {
        return;
    }
    let labels = match label_request(config(), &head, request.body) {
        Ok(labels) => labels,
        Err(rejection) => panic!("forwarded a request the core refuses: {rejection:?}"),
    };
    for (name, value) in &labels.headers {
        let copies: Vec<&[u8]> = headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .collect();
        assert_eq!(copies, [value.as_bytes()], "{name} upstream");
    }
}

#[derive(Deserialize)]
struct Record {
    decision: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> Vec<u8> {
        let path = format!("{}/seeds/flow/seed-{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).expect("seed")
    }

    fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Vec<&'a [u8]> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// The properties above are not vacuous: the seeds do go upstream, labelled.
    #[test]
    fn a_valid_call_goes_upstream_labelled_and_forgeries_are_replaced() {
        for name in [
            "modern-call",
            "modern-call-byte-chunks",
            "forged-gateway-headers",
        ] {
            let headers = drive(&seed(name)).expect("forwarded");
            assert_eq!(
                header(&headers, "x-mcp-tool-name"),
                [&b"get_account_balance"[..]]
            );
            assert!(header(&headers, "x-agent-id").is_empty(), "{name}");
            assert!(header(&headers, "x-user-id").is_empty(), "{name}");
        }
    }

    #[test]
    fn refused_and_failed_requests_stay_here() {
        for name in [
            "mcp-name-disagrees",
            "duplicate-name",
            "batch",
            "compressed",
        ] {
            assert!(drive(&seed(name)).is_none(), "{name} went upstream");
        }
        // Whichever call fails while labelling, the request is answered here, not
        // sent on unlabelled; failures after it (response, log) change nothing upstream.
        let refused = (1..24)
            .filter(|n| drive(&seed(&format!("modern-call-failing-call-{n}"))).is_none())
            .count();
        assert!(
            refused >= 5,
            "only {refused} failing calls stopped the request"
        );
    }
}
