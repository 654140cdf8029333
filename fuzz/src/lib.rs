//! Fuzz targets of the gateway, as library functions: `fuzz_targets/*.rs` hand them
//! libFuzzer's inputs, and `cargo test` replays the committed corpus
//! (`fuzz/seeds/<target>/`, hand-written, and `fuzz/corpus/<target>/`, what fuzzing
//! kept) through the same functions on stable Rust.
//!
//! Each target checks properties, not only "no panic": a labelled request carries
//! exactly the names a strict JSON parser reads from the body, chunking never changes
//! what a response reader reports, and the whole filter flow never forwards a request
//! with a header it did not set itself, whichever host call fails, nor (with the
//! servers named by the routes) labelled for another server than its route's; a
//! filtered list never shows an entry the caller may not see, however a client reads
//! its keys; the authz-service checks exactly the arguments a strict parser reads, and
//! never puts an argument value into the audit form of a refusal.

pub mod arguments;
pub mod config;
pub mod flow;
pub mod input;
pub mod lists;
pub mod request;
pub mod response;
pub mod route;

#[cfg(test)]
mod replay;
