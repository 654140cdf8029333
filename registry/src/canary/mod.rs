//! The canary watcher (`mcp-registry canary watch`): compares each canary version's
//! tool-call error ratio and capability-negotiation failure ratio with its stable
//! version's, on the gateway's own metrics over a sliding window, and rolls the canary
//! back to 0 % when it is worse by the manifest's margin, or promotes it after a clean
//! window. Decisions go to the rollout state file (`crate::rollout`), then the fleet is
//! rendered again in-process, as `mcp-registry render` would.
//!
//! - [`expo`]: the Prometheus text format (Envoy's `/stats/prometheus`).
//! - [`counts`]: which series feed which count, per server version.
//! - [`window`]: sliding-window increases from timestamped scrapes (restarts, new series).
//! - [`source`]: Envoy admin scrapes or Prometheus instant queries.
//! - [`decision`]: the comparison and the verdict (pure).
//! - [`watch`]: one evaluation of the whole fleet (pure; the watcher's memory).
//! - [`act`]: state file, then render.
//! - [`metrics`]: the watcher's own metrics.
//! - [`run`], [`cli`]: the loop and the command line.

pub mod act;
pub mod cli;
pub mod counts;
pub mod decision;
pub mod expo;
pub mod metrics;
pub mod run;
pub mod source;
pub mod watch;
pub mod window;
