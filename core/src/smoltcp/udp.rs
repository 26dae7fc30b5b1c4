//! Drives a [`DatagramEcho`] from one smoltcp UDP socket: [`SmolUdpEcho`].

use ::smoltcp::iface::{SocketHandle, SocketSet};
use ::smoltcp::socket::udp::{self, SendError, UdpMetadata};
use ::smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint, Ipv4Address};

use crate::{DatagramConfig, DatagramCounters, DatagramEcho, Instant, Peer};

impl Peer for IpEndpoint {
    type Key = IpAddress;

    fn port(&self) -> u16 {
        self.port
    }

    fn key(&self) -> IpAddress {
        self.addr
    }

    fn is_unicast(&self) -> bool {
        self.addr.is_unicast()
    }
}

/// The sender, and where the datagram was sent: a broadcast or multicast
/// destination is not answered.
impl Peer for UdpMetadata {
    type Key = IpAddress;

    fn port(&self) -> u16 {
        self.endpoint.port
    }

    fn key(&self) -> IpAddress {
        self.endpoint.addr
    }

    fn is_unicast(&self) -> bool {
        let to_group = |to: IpAddress| to.is_broadcast() || to.is_multicast();
        self.endpoint.addr.is_unicast() && !self.local_address.is_some_and(to_group)
    }
}

/// Why [`SmolUdpEcho::bind`] did not take a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BindError {
    /// The adapter already serves a socket.
    Bound,
    /// Port 0 cannot be bound.
    PortZero,
    /// The socket is already bound: hand over a fresh one.
    InUse,
}

impl core::fmt::Display for BindError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BindError::Bound => "the adapter already serves a socket",
            BindError::PortZero => "cannot bind port 0",
            BindError::InUse => "the socket is already bound",
        })
    }
}

impl core::error::Error for BindError {}

/// One [`DatagramEcho`] served through one smoltcp UDP socket: up to `D`
/// datagrams in `B` bytes, rate-limit buckets for `S` sources.
///
/// [`SmolUdpEcho::bind`] binds a UDP socket of the `SocketSet` to a port;
/// each [`poll`](SmolUdpEcho::poll) then sends what the machine has queued,
/// takes every datagram the socket has received into the machine (which
/// drops those it must not or cannot answer, and counts them), and sends
/// again. The machine keeps smoltcp's `UdpMetadata` as the peer, so each
/// echo leaves from the address its datagram was sent to.
///
/// One adapter serves one socket; serve several ports with one adapter each.
///
/// # A turn of the shell
///
/// ```text
/// let stamp = to_smoltcp(now);
/// iface.poll_ingress_single / iface.poll(stamp, &mut device, &mut sockets);
/// let busy = udp.poll(&mut sockets, now);         // echo what came in
/// iface.poll(stamp, &mut device, &mut sockets);   // and send it at once
/// sleep until the device is readable or iface.poll_at(), or not at all if busy
/// ```
///
/// The adapter needs no timer of its own. When the socket's transmit buffer
/// is full, datagrams wait in the machine; smoltcp's egress makes room and
/// the next `poll` sends them (`poll` returns `true` while anything moves).
///
/// # Broadcasts and multicasts
///
/// smoltcp delivers datagrams sent to a broadcast or multicast address even
/// to a socket bound to one unicast address. The machine never answers
/// those; it can tell them by their destination (`UdpMetadata::local_address`)
/// when that is the limited broadcast or a multicast address, and when the
/// socket is bound to a unicast address, by a destination other than it.
/// So bind to the interface's own address: bound to the unspecified address,
/// a subnet-directed broadcast (10.0.0.255 on 10.0.0.0/24) cannot be told
/// from unicast and is answered.
///
/// # Sizes
///
/// A datagram longer than the socket's receive buffer never reaches the
/// adapter (smoltcp drops it); one longer than its transmit buffer can
/// never be sent and is counted in
/// [`send_failed`](crate::DatagramCounters::send_failed). Datagrams larger
/// than the link MTU need smoltcp's IP fragmentation: the features
/// `proto-ipv4-fragmentation` / `proto-ipv6-fragmentation`, reassembly
/// buffers large enough to receive them (`reassembly-buffer-size-*`) and a
/// fragmentation buffer to send them (`fragmentation-buffer-size-*`);
/// without, the largest echo is the MTU less the headers (1472 bytes over
/// IPv4 at MTU 1500).
/// On a microcontroller, smoltcp's receive buffer is the real queue: the
/// machine's store `B` needs to hold only what waits while the transmit
/// buffer is full, e.g. one or two datagrams of the largest size served.
///
/// # Panics
///
/// Like [`SmolEcho`](super::SmolEcho), the adapter looks its handle up with
/// smoltcp's `get_mut`, which panics if the handle names no UDP socket of the
/// set passed in. Always pass the set the handle came from.
pub struct SmolUdpEcho<const D: usize, const B: usize, const S: usize> {
    echo: DatagramEcho<UdpMetadata, D, B, S>,
    handle: Option<SocketHandle>,
}

impl<const D: usize, const B: usize, const S: usize> SmolUdpEcho<D, B, S> {
    /// An adapter with no socket yet; give it one with [`bind`](Self::bind).
    pub const fn new(config: DatagramConfig) -> Self {
        SmolUdpEcho {
            echo: DatagramEcho::new(config),
            handle: None,
        }
    }

    /// Binds a fresh UDP socket of `sockets` to `endpoint` and serves it.
    /// Its port joins the machine's [own ports](DatagramConfig::own_ports)
    /// (if one of the four places is free), so another echo server on the
    /// same port is never answered.
    pub fn bind(
        &mut self,
        sockets: &mut SocketSet<'_>,
        handle: SocketHandle,
        endpoint: impl Into<IpListenEndpoint>,
    ) -> Result<(), BindError> {
        if self.handle.is_some() {
            return Err(BindError::Bound);
        }
        let endpoint = endpoint.into();
        if endpoint.port == 0 {
            return Err(BindError::PortZero);
        }
        let socket = sockets.get_mut::<udp::Socket>(handle);
        socket.bind(endpoint).map_err(|_| BindError::InUse)?;
        self.handle = Some(handle);
        if !self.echo.add_own_port(endpoint.port) {
            warn!(
                "own ports full: port {} not refused as a source",
                endpoint.port
            );
        }
        Ok(())
    }

    /// The machine, for its counters and queue.
    pub const fn echo(&self) -> &DatagramEcho<UdpMetadata, D, B, S> {
        &self.echo
    }

    /// What the machine has seen so far.
    pub const fn counters(&self) -> &DatagramCounters {
        self.echo.counters()
    }

    /// One turn: send what is queued, take in every datagram received, send
    /// again. Returns whether anything moved (so the shell should let
    /// smoltcp send before it sleeps).
    pub fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) -> bool {
        let Some(handle) = self.handle else {
            return false;
        };
        let socket = sockets.get_mut::<udp::Socket>(handle);
        let local = socket.endpoint().addr;
        let mut progress = self.flush(socket);
        while let Ok((payload, mut meta)) = socket.recv() {
            // Bound to one address, smoltcp passes only broadcasts and
            // multicasts for others: say so in the machine's terms.
            if local.is_some() && meta.local_address != local {
                meta.local_address = Some(IpAddress::Ipv4(Ipv4Address::BROADCAST));
            }
            let _ = self.echo.handle_datagram(meta, payload, now);
            progress = true;
        }
        progress | self.flush(socket)
    }

    /// Sends queued datagrams until the socket's buffer is full.
    fn flush(&mut self, socket: &mut udp::Socket<'_>) -> bool {
        let mut any = false;
        while let Some(t) = self.echo.poll_transmit() {
            let never_fits = t.payload.len() > socket.payload_send_capacity()
                || socket.packet_send_capacity() == 0;
            // Too big for the socket's buffer, ever: as hopeless as no route.
            let sent = if never_fits {
                Err(SendError::Unaddressable)
            } else {
                socket.send_slice(t.payload, t.peer)
            };
            let _ = match sent {
                Ok(()) => self.echo.handle_sent(),
                Err(SendError::BufferFull) => break,
                Err(SendError::Unaddressable) => self.echo.handle_send_failed(),
            };
            any = true;
        }
        any
    }
}

impl<const D: usize, const B: usize, const S: usize> core::fmt::Debug for SmolUdpEcho<D, B, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SmolUdpEcho")
            .field("echo", &self.echo)
            .field("bound", &self.handle.is_some())
            .finish()
    }
}
