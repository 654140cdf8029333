//! The seeds end as they should (so the properties are not vacuous), and the checks
//! catch the mistakes they are there for.

use super::*;
use crate::route::{cluster_path, metadata_path};

fn seed(name: &str) -> Vec<u8> {
    let path = format!("{}/seeds/flow/seed-{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path).unwrap_or_else(|e| panic!("seed {name}: {e}"))
}

fn routed_seed(name: &str) -> Run {
    drive_routed(&seed(name)).expect("an input")
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

#[test]
fn the_fleet_labels_with_the_routes_server_never_the_clients() {
    for name in [
        "routed-call",
        "routed-call-byte-chunks",
        "routed-forged-server-id",
        "routed-other-path",
        "routed-unlisted-tool",
        "routed-get-stream",
        "routed-rerouted-same-server",
        "routed-server-and-unregistered",
    ] {
        let run = routed_seed(name);
        let headers = run.forwarded.expect(name);
        assert_eq!(
            header(&headers, X_MCP_SERVER_ID),
            [&b"hr-directory"[..]],
            "{name}"
        );
        assert!(header(&headers, "x-agent-id").is_empty(), "{name}");
        let records = audit_records(&run.host);
        assert_eq!(records[0].server_id.as_deref(), Some("hr-directory"));
    }
}

/// Without a route section the route names the one server: both modes agree.
#[test]
fn the_default_route_is_the_one_server() {
    for name in ["modern-call", "forged-gateway-headers", "get"] {
        let run = routed_seed(name);
        let headers = run.forwarded.expect(name);
        assert_eq!(header(&headers, X_MCP_SERVER_ID), [&b"fuzz"[..]], "{name}");
        assert_eq!(Some(headers), drive(&seed(name)), "{name}");
    }
}

#[test]
fn a_request_rerouted_to_another_server_stays_here() {
    for name in [
        "routed-rerouted-elsewhere",
        "routed-rerouted-elsewhere-byte-chunks",
        "routed-rerouted-to-no-server",
        "routed-rerouted-to-unregistered",
        "routed-rerouted-invalid",
        "routed-get-rerouted",
    ] {
        let run = routed_seed(name);
        assert!(run.forwarded.is_none(), "{name} went upstream");
        assert!(run.host.route_cleared, "{name}");
        assert_eq!(
            replies(&run.host),
            [(500, Some(GATEWAY_INTERNAL))],
            "{name}"
        );
    }
    // Refused before the route is picked again: the refusal is the body's.
    let run = routed_seed("routed-refused-then-rerouted");
    assert!(!run.host.route_cleared);
    assert_eq!(run.host.replies.len(), 1);
    assert_eq!(run.host.replies[0].status, 400);
}

#[test]
fn an_unregistered_route_gets_404_and_one_audit_record() {
    for name in ["routed-unregistered", "routed-unregistered-get"] {
        let run = routed_seed(name);
        assert!(run.forwarded.is_none(), "{name}");
        assert_eq!(replies(&run.host), [(404, Some(-31014))], "{name}");
        let records = audit_records(&run.host);
        assert_eq!(records.len(), 1, "{name}");
        assert_eq!(records[0].server_id, None);
        assert_eq!(records[0].error_code, Some(-31014));
    }
    // Whichever call fails, it never goes upstream.
    for n in 1..12 {
        let run = routed_seed(&format!("routed-unregistered-failing-call-{n}"));
        assert!(run.forwarded.is_none(), "failing call {n}");
    }
}

#[test]
fn a_route_without_a_server_passes_the_request_stripped() {
    for name in ["routed-no-metadata", "routed-other-metadata"] {
        let run = routed_seed(name);
        let headers = run.forwarded.expect(name);
        assert!(
            !headers.iter().any(|(n, _)| is_gateway_header(n)),
            "{name}: {headers:?}"
        );
        assert!(audit_records(&run.host).is_empty(), "{name}");
    }
}

#[test]
fn unusable_route_metadata_is_refused() {
    for name in [
        "routed-invalid-server-id",
        "routed-long-server-id",
        "routed-non-utf8-server-id",
        "routed-empty-version",
    ] {
        let run = routed_seed(name);
        assert!(run.forwarded.is_none(), "{name}");
        assert_eq!(
            replies(&run.host),
            [(500, Some(GATEWAY_INTERNAL))],
            "{name}"
        );
    }
}

/// A failing host call in the fleet mode stops the request or lets it through
/// labelled for its route's server (checked by `drive_routed`); both happen.
#[test]
fn failing_calls_in_the_fleet() {
    let runs: Vec<Run> = (1..32)
        .map(|n| routed_seed(&format!("routed-call-failing-call-{n}")))
        .collect();
    let refused = runs.iter().filter(|run| run.forwarded.is_none()).count();
    assert!(
        refused >= 8,
        "only {refused} failing calls stopped the request"
    );
    assert!(
        refused < runs.len(),
        "no failing call let the request through"
    );
    // The route is read and read again: a failing read refuses, never forwards.
    assert!(runs
        .iter()
        .any(|run| run.forwarded.is_none() && run.host.route_cleared));
}

// The checks catch what they are for: outcomes of a filter with a mistake.

/// `routed-call` on the route `route`, checked against `spec`, after `tamper`.
fn check_tampered(route: &[u8], spec: &[u8], tamper: impl FnOnce(&mut Run)) {
    let data = seed("routed-call");
    let input = Input::parse(&data).expect("an input");
    let mut run = simulate(fleet_config(), &input, &RouteSpec::parse(route));
    tamper(&mut run);
    check_routed(&input, &RouteSpec::parse(spec), &run);
}

const HR: &[u8] = b"server_id: hr-directory";

#[test]
fn an_untampered_run_passes() {
    check_tampered(HR, HR, |_| {});
}

#[test]
#[should_panic(expected = "the gateway headers upstream")]
fn a_client_server_id_upstream_is_caught() {
    check_tampered(HR, HR, |run| {
        let headers = run.forwarded.as_mut().expect("forwarded");
        for (name, value) in headers.iter_mut() {
            if name == X_MCP_SERVER_ID {
                *value = b"payments".to_vec();
            }
        }
        run.host
            .set_by_filter
            .insert(X_MCP_SERVER_ID.into(), "payments".into());
    });
}

/// A filter that does not look at the route again after clearing the cache.
#[test]
#[should_panic(expected = "went upstream on a route that is not its server's")]
fn a_request_forwarded_after_a_reroute_is_caught() {
    let spec = b"server_id: hr-directory\nafter server_id: payments";
    check_tampered(HR, spec, |run| {
        run.host
            .properties
            .insert(metadata_path("server_id"), b"payments".to_vec());
    });
}

#[test]
#[should_panic(expected = "a request on an unregistered route went upstream")]
fn an_unregistered_route_forwarded_is_caught() {
    check_tampered(HR, b"unregistered: true", |_| {});
}

#[test]
#[should_panic(expected = "no audit record for an unregistered path")]
fn a_missing_audit_record_is_caught() {
    let unregistered = b"unregistered: true";
    check_tampered(unregistered, unregistered, |run| {
        run.host
            .set_properties
            .retain(|(name, _)| name != "mcp_audit");
    });
}

// Canary releases: the version comes from the cluster that served the request.

const CANARY: &[u8] =
    b"server_id: hr-directory\nserver_version: 1.3.2\ncluster server_id: hr-directory\ncluster server_version: 1.4.0";

#[test]
fn the_served_clusters_version_is_recorded_and_counted() {
    let data = seed("routed-call");
    let input = Input::parse(&data).expect("an input");
    let run = simulate(fleet_config(), &input, &RouteSpec::parse(CANARY));
    check_routed(&input, &RouteSpec::parse(CANARY), &run);
    assert_eq!(
        audit_records(&run.host)[0].server_version.as_deref(),
        Some("1.4.0")
    );
    assert!(!run.host.metric_names.is_empty());
    // A version that would add a stat tag is not taken: the route's stands.
    let bad = b"server_id: hr-directory\nserver_version: 1.3.2\ncluster server_version: 1;tool=x";
    let run = simulate(fleet_config(), &input, &RouteSpec::parse(bad));
    check_routed(&input, &RouteSpec::parse(bad), &run);
    assert_eq!(
        audit_records(&run.host)[0].server_version.as_deref(),
        Some("1.3.2")
    );
}

#[test]
#[should_panic(expected = "is neither the cluster's nor the route's")]
fn a_record_with_the_routes_version_on_a_canary_is_caught() {
    let stable_only = b"server_id: hr-directory\nserver_version: 1.3.2";
    check_tampered(stable_only, CANARY, |run| {
        // The check reads the cluster from the host the request ended on.
        run.host
            .properties
            .insert(cluster_path("server_version"), b"1.4.0".to_vec());
    });
}

/// A request refused here on a route whose cluster (the client's pick, for all the
/// filter knows) is the canary: the route's version, no version tag.
fn refused_on_the_canary() -> (Vec<u8>, Run) {
    let data = seed("batch");
    let input = Input::parse(&data).expect("an input");
    let run = simulate(fleet_config(), &input, &RouteSpec::parse(CANARY));
    assert!(run.forwarded.is_none(), "a batch went upstream");
    (data, run)
}

#[test]
fn a_refused_request_carries_the_routes_version_and_no_tag() {
    let (data, run) = refused_on_the_canary();
    let input = Input::parse(&data).expect("an input");
    check_routed(&input, &RouteSpec::parse(CANARY), &run);
    let record = &audit_records(&run.host)[0];
    assert_eq!(record.decision, "invalid");
    assert_eq!(record.server_version.as_deref(), Some("1.3.2"));
    assert!(!run.host.metric_names.is_empty());
    assert!(run
        .host
        .metric_names
        .iter()
        .all(|name| !name.contains(";version=")));
}

/// A filter that labels a refusal with the cluster Envoy holds (the client's pick).
#[test]
#[should_panic(expected = "is neither the cluster's nor the route's")]
fn a_refusal_under_the_canarys_version_is_caught() {
    let (data, mut run) = refused_on_the_canary();
    for (name, value) in run.host.set_properties.iter_mut() {
        if name == "mcp_audit" {
            let text = String::from_utf8(value.clone()).unwrap();
            *value = text.replace("\"1.3.2\"", "\"1.4.0\"").into_bytes();
        }
    }
    let input = Input::parse(&data).expect("an input");
    check_routed(&input, &RouteSpec::parse(CANARY), &run);
}

/// The same, in the stats only.
#[test]
#[should_panic(expected = "the version tags of")]
fn a_refusal_counted_under_a_version_is_caught() {
    let (data, mut run) = refused_on_the_canary();
    run.host.metric_names.push(
        "mcp_requests_total;server=hr-directory;version=1.4.0;method=other;decision=invalid".into(),
    );
    let input = Input::parse(&data).expect("an input");
    check_routed(&input, &RouteSpec::parse(CANARY), &run);
}
