//! From a plan to sockets ready to serve: bind (or take the activated
//! ones), raise the descriptor limit the plan needs, size the `select` sets
//! to it, announce.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use anyhow::Context;
use log::{info, warn};
use socket2::{Domain, Protocol, Socket, Type};

use super::activation;
use super::plan::{Plan, Source};
use crate::sys::net;

/// The listening sockets, and how far descriptor numbers may reach.
pub struct Sockets {
    pub tcp: Vec<TcpListener>,
    pub udp: Vec<UdpSocket>,
    /// Each socket's address and protocol, to announce once serving.
    pub addrs: Vec<(SocketAddr, &'static str)>,
    /// Every descriptor the process will hold is below this: the capacity
    /// of each `select` set.
    pub fd_capacity: usize,
}

/// Binds (or sorts the activated sockets), raises the soft descriptor
/// limit to what the plan needs. The addresses are announced once every
/// thread is ready to serve.
pub fn start(plan: &Plan, source: Source) -> anyhow::Result<Sockets> {
    let (tcp, udp) = match source {
        Source::Bind(addrs) => bind_all(plan, &addrs)?,
        Source::Activated(sockets) => activation::split(sockets)?,
    };
    let soft = match net::raise_nofile(plan.descriptors as u64) {
        Ok(soft) => soft,
        Err(e) => {
            // Forbidden by a sandbox, say: serve within the limit there is.
            warn!("cannot raise RLIMIT_NOFILE ({e})");
            net::nofile_limits().map_or(1024, |(soft, _)| soft)
        }
    };
    if soft < plan.descriptors as u64 {
        warn!(
            "RLIMIT_NOFILE allows {soft} descriptors, fewer than the {} that {} connections need: \
             the others are turned away while descriptors run out (raise the hard limit)",
            plan.descriptors, plan.max_conns
        );
    }
    let highest = net::open_descriptors()?
        .into_iter()
        .max()
        .unwrap_or(0)
        .max(0) as usize;
    // Descriptors are numbered from the lowest free one, so they stay below
    // what the process may have open (and above any inherited ones).
    let fd_capacity = (soft as usize).min(plan.descriptors.max(highest + 1) + 64);
    let tcp_addrs = tcp.iter().map(|l| l.local_addr().map(|a| (a, "tcp")));
    let udp_addrs = udp.iter().map(|s| s.local_addr().map(|a| (a, "udp")));
    let addrs = tcp_addrs.chain(udp_addrs).collect::<io::Result<Vec<_>>>()?;
    info!(
        "select shell: {} thread(s), up to {} connections, {}-byte queues, idle timeout {}",
        plan.threads,
        plan.max_conns,
        super::QUEUE,
        plan.machine
            .idle_timeout
            .map_or_else(|| "off".to_owned(), |t| t.to_string())
    );
    Ok(Sockets {
        tcp,
        udp,
        addrs,
        fd_capacity,
    })
}

/// A TCP listener and a UDP socket on each address, as the plan asks: the
/// UDP socket on the port its TCP listener got (port 0 picks one).
fn bind_all(
    plan: &Plan,
    addrs: &[SocketAddr],
) -> anyhow::Result<(Vec<TcpListener>, Vec<UdpSocket>)> {
    let (mut tcp, mut udp) = (Vec::new(), Vec::new());
    for &addr in addrs {
        let mut addr = addr;
        if plan.tcp {
            let listener = listen(addr, plan.backlog)
                .with_context(|| format!("cannot listen on {addr} (tcp)"))?;
            addr.set_port(listener.local_addr()?.port());
            tcp.push(listener);
        }
        if plan.udp {
            let socket =
                bind_udp(addr).with_context(|| format!("cannot listen on {addr} (udp)"))?;
            udp.push(socket);
        }
    }
    Ok((tcp, udp))
}

/// A non-blocking listener on `addr` (IPv6 only for an IPv6 address).
fn listen(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = new_socket(addr, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    // Accepted sockets inherit both options (Linux clones the listener),
    // so no connection needs a call of its own: urgent data stays in the
    // stream, so an urgent byte is echoed in its place like any other; and
    // no Nagle delay, so echoes go out at once.
    socket.set_out_of_band_inline(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// A non-blocking UDP socket bound to `addr`.
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = new_socket(addr, Type::DGRAM, Protocol::UDP)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A non-blocking socket for `addr`'s family (IPv6 only for IPv6).
fn new_socket(addr: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}
