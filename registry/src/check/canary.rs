//! `gateway.canary`: a second version of the server behind a weighted split. What is
//! checked here is what render could not turn into a faithful split, and what the
//! watcher needs to judge it.

use super::{choice, endpoint, version_at, Rules};
use crate::duration;
use crate::manifest::RawGateway;
use crate::model::{Canary, CanaryWatch, Endpoint, Promote};
use crate::problems::FileProblems;
use std::time::Duration;

const FIELD: &str = "gateway.canary";

/// Shortest window: the watcher needs several evaluations inside one, and the seed asks
/// for 30 minutes in production; seconds are for tests and demos.
const MIN_WINDOW: Duration = Duration::from_secs(5);

/// Longest window: a day of samples per server is what the watcher keeps.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The section's canary, or `None` when the manifest has none or it has a problem
/// (reported). `stable_version` and `stable_endpoint` are `None` when they have a
/// problem of their own.
pub(super) fn canary(
    g: &RawGateway,
    stable_version: Option<&str>,
    stable_endpoint: Option<&Endpoint>,
    istio_sidecar: bool,
    rules: &Rules,
    p: &mut FileProblems<'_>,
) -> Option<Canary> {
    let raw = g.canary.as_ref()?;
    if istio_sidecar {
        // The server's own sidecar sees the traffic of the pods it runs in, one
        // version; a split between versions is the mesh's routing, not this filter's.
        p.add(
            FIELD,
            "not supported with gateway.istio_sidecar: the server's own sidecar sees one version; split the traffic with the mesh's routing (a VirtualService) instead",
        );
        return None;
    }
    let field = format!("{FIELD}.version");
    let version = version_at(&field, raw.version.as_ref(), p);
    let version = match (version, stable_version) {
        (Some(v), Some(stable)) if v == stable => {
            p.add(
                &field,
                format!("{v:?} is the server's own version; a canary is another version"),
            );
            None
        }
        (v, _) => v,
    };
    let field = format!("{FIELD}.endpoint");
    let endpoint = match raw.endpoint.as_deref() {
        None => {
            p.add(&field, "missing (the canary's upstream URL)");
            None
        }
        Some(url) => match (endpoint(url, rules), stable_endpoint) {
            (Err(reason), _) => {
                p.add(&field, reason);
                None
            }
            // Envoy rewrites the path per route, not per weighted cluster, so both
            // versions are reached on one path.
            (Ok(canary), Some(stable)) if canary.path != stable.path => {
                p.add(
                    &field,
                    format!(
                        "path {:?} differs from the endpoint's {:?}: both versions must serve the same path (the gateway rewrites the path once per route)",
                        canary.path, stable.path
                    ),
                );
                None
            }
            (Ok(canary), Some(stable))
                if canary.host == stable.host && canary.port == stable.port =>
            {
                p.add(
                    &field,
                    format!(
                        "{url:?} is the server's own endpoint; a canary runs elsewhere (another host or port)"
                    ),
                );
                None
            }
            (Ok(canary), _) => Some(canary),
        },
    };
    let field = format!("{FIELD}.weight");
    let weight = match raw.weight {
        None => {
            p.add(&field, "missing (percent of the server's requests, 0-100)");
            None
        }
        Some(w) if w > 100 => {
            p.add(&field, format!("{w} must be between 0 and 100 (percent)"));
            None
        }
        Some(w) => u8::try_from(w).ok(),
    };
    let watch = watch(raw, p);
    Some(Canary {
        version: version?,
        endpoint: endpoint?,
        weight: weight?,
        watch: watch?,
    })
}

fn watch(raw: &crate::manifest::RawCanary, p: &mut FileProblems<'_>) -> Option<CanaryWatch> {
    let w = &raw.watch;
    let defaults = CanaryWatch::default();
    let mut ok = true;
    let field = format!("{FIELD}.watch.window");
    let window = match w.window.as_deref().map(duration::parse) {
        None => defaults.window,
        Some(Ok(window)) if (MIN_WINDOW..=MAX_WINDOW).contains(&window) => window,
        Some(Ok(_)) => {
            p.add(
                &field,
                format!(
                    "{:?} must be between {}s and {}h",
                    w.window.as_deref().unwrap_or_default(),
                    MIN_WINDOW.as_secs(),
                    MAX_WINDOW.as_secs() / 3600
                ),
            );
            ok = false;
            defaults.window
        }
        Some(Err(reason)) => {
            p.add(&field, reason);
            ok = false;
            defaults.window
        }
    };
    let min_calls = match w.min_calls {
        None => defaults.min_calls,
        Some(n) => match u32::try_from(n) {
            Ok(n) if n >= 1 => n,
            _ => {
                p.add(
                    format!("{FIELD}.watch.min_calls"),
                    format!("{n} must be between 1 and {}", u32::MAX),
                );
                ok = false;
                defaults.min_calls
            }
        },
    };
    let mut margin = |name: &str, value: Option<f64>, default: f64| match value {
        None => default,
        Some(m) if (0.0..=1.0).contains(&m) => m,
        Some(m) => {
            p.add(
                format!("{FIELD}.watch.{name}"),
                format!("{m} must be between 0 and 1 (a difference of two ratios)"),
            );
            ok = false;
            default
        }
    };
    let error_margin = margin("error_margin", w.error_margin, defaults.error_margin);
    let negotiation_margin = margin(
        "negotiation_margin",
        w.negotiation_margin,
        defaults.negotiation_margin,
    );
    let promote = choice(
        &format!("{FIELD}.watch.promote"),
        w.promote.as_deref(),
        &[("manual", Promote::Manual), ("auto", Promote::Auto)],
        p,
    );
    let watch = CanaryWatch {
        window,
        min_calls,
        error_margin,
        negotiation_margin,
        promote: promote?,
    };
    ok.then_some(watch)
}
