//! Benchmark tooling for selecho: a verifying load generator
//! (`selecho-load`), reference servers (`tokio-echo`, `tokio-udp-echo`,
//! `epoll-echo`) and a runner comparing servers (`selecho-bench`).
//!
//! Without the default `runner` feature only the load generator's engine
//! ([`load`], [`result`]) is built: what the host's smoke test needs, with
//! none of the runner's tokio, plotters or serde.

pub mod load;
#[cfg(feature = "runner")]
pub mod report;
pub mod result;
