//! Benchmark tooling for selecho: a verifying load generator
//! (`selecho-load`), a reference tokio echo server (`tokio-echo`) and a
//! runner comparing servers (`selecho-bench`).

pub mod load;
pub mod pattern;
pub mod procstat;
pub mod report;
pub mod result;
