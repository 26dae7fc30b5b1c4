//! Every `unsafe` call into libc lives below this module, each with a
//! `// SAFETY:` line; the rest of the host is safe Rust.

pub mod net;
pub mod tun;
