//! The lines scripts read on stdout: `listening on ADDR` once a listener is
//! up, and `stopped: <counters>` at the end.

use std::io::{self, Write};
use std::net::SocketAddr;

use selecho_core::Counters;

/// Prints `listening on ADDR` for each address, in order.
pub fn listening(addrs: impl IntoIterator<Item = SocketAddr>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    for addr in addrs {
        writeln!(out, "listening on {addr}")?;
    }
    out.flush()
}

/// Prints `stopped: <counters>`.
pub fn stopped(counters: &Counters) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "stopped: {counters}")?;
    out.flush()
}
