//! From a plan to a running shell: bind the listeners, open the spare
//! descriptor, build the machine, announce.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use anyhow::Context;
use log::info;
use socket2::{Domain, Protocol, Socket, Type};

use super::Machine;
use super::plan::Plan;
use super::serve::Shell;
use crate::daemon::announce;
use crate::daemon::signals::Signals;
use crate::sys::fdset::FD_SETSIZE;

/// Binds every listener, builds the machine, prints `listening on ADDR`
/// for each listener.
pub fn start<'a>(plan: &Plan, signals: &'a Signals) -> anyhow::Result<Shell<'a>> {
    let listeners = plan
        .listen
        .iter()
        .map(|&addr| listen(addr, plan.backlog).with_context(|| format!("cannot listen on {addr}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let spare = File::open("/dev/null").context("cannot open the spare descriptor /dev/null")?;
    let own = listeners.iter().map(AsRawFd::as_raw_fd);
    if let Some(fd) = own
        .chain([signals.fd(), spare.as_raw_fd()])
        .find(|&fd| fd as usize >= FD_SETSIZE)
    {
        anyhow::bail!(
            "descriptor {fd} is beyond FD_SETSIZE {FD_SETSIZE}: too many descriptors inherited"
        );
    }
    let echo = Box::write(Box::new_uninit(), Machine::new(plan.machine));
    let addrs = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<io::Result<Vec<_>>>()?;
    announce::listening(addrs);
    info!(
        "select shell: up to {} connections, {}-byte queues, idle timeout {}",
        echo.capacity(),
        super::QUEUE,
        plan.machine
            .idle_timeout
            .map_or_else(|| "off".to_owned(), |t| t.to_string())
    );
    Ok(Shell::new(echo, signals, listeners, spare, plan))
}

/// A non-blocking listener on `addr` (IPv6 only for an IPv6 address).
fn listen(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    // Urgent data stays in the stream (accepted sockets inherit this), so
    // an urgent byte is echoed in its place like any other.
    socket.set_out_of_band_inline(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}
