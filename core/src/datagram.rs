//! The datagram echo machine: UDP echo (RFC 862) as a bounded queue of
//! datagrams, with loop protection and a per-source rate limit.

mod limit;
mod peer;
pub(crate) mod ring;

use core::fmt;

use crate::time::Instant;
use limit::RateTable;
use ring::{DatagramRing, Fit, Space};

pub use limit::RateLimit;
pub use peer::{LOOP_PORTS, Peer, is_loop_port};

/// How the datagram machine behaves; fixed at construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DatagramConfig {
    /// Answers per source address; `None`: no limit (for load tests on a
    /// network of your own; never on one an attacker can reach).
    pub rate_limit: Option<RateLimit>,
    /// Source ports never answered besides [`LOOP_PORTS`]: the ports this
    /// server listens on, since a datagram from one of them most likely
    /// comes from another echo server on the same port, and the two would
    /// answer each other forever. 0 fills unused places (port 0 is refused
    /// anyway).
    pub own_ports: [u16; 4],
}

impl DatagramConfig {
    /// The [default rate limit](RateLimit::DEFAULT), no own ports.
    pub const fn new() -> Self {
        DatagramConfig {
            rate_limit: Some(RateLimit::DEFAULT),
            own_ports: [0; 4],
        }
    }

    /// This configuration with the given rate limit (`None`: off).
    pub const fn with_rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limit = limit;
        self
    }

    /// This configuration with the given own ports (0: none).
    pub const fn with_own_ports(mut self, ports: [u16; 4]) -> Self {
        self.own_ports = ports;
        self
    }

    /// Whether datagrams from `port` are never answered.
    pub const fn refuses_port(&self, port: u16) -> bool {
        is_loop_port(port) || peer::contains(&self.own_ports, port)
    }
}

impl Default for DatagramConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The UDP echo machine: up to `D` datagrams in a store of `B` bytes
/// waiting to be echoed, and rate-limit buckets for up to `S` source
/// addresses.
///
/// `P` is the shell's idea of a sender ([`Peer`]): `SocketAddr` for a
/// socket shell, smoltcp's `UdpMetadata` for the smoltcp adapter. Like
/// [`Echo`](crate::Echo) it never touches a socket or a clock: the shell
/// reports datagrams received with `handle_*` and asks what to send with
/// [`poll_transmit`](Self::poll_transmit).
///
/// # The contract
///
/// - **Receiving**: each datagram from the socket is reported once, in one
///   of three ways:
///   - zero-copy: receive into [`recv_buf`](Self::recv_buf), then report its
///     *real* length with [`handle_received`](Self::handle_received) (on
///     Linux `recvfrom` with `MSG_TRUNC` returns it): a datagram longer
///     than the buffer is dropped, never echoed shortened;
///   - copying: [`handle_datagram`](Self::handle_datagram) with the bytes;
///   - [`handle_truncated`](Self::handle_truncated): the shell got only part
///     of it and cannot tell how long it was.
///
///   Keep receiving while the queue is full: newer datagrams are dropped
///   and counted, which is what the machine is for. `recv_buf` is valid
///   until the next `handle_received` or `handle_datagram`; sends in
///   between are fine.
/// - **Sending**, in order: [`poll_transmit`](Self::poll_transmit) names
///   the oldest queued datagram and its destination. Sent: report
///   [`handle_sent`](Self::handle_sent). The socket would block: report
///   nothing, the datagram stays first in line. It can never be sent
///   (unreachable, too big for the path): [`handle_send_failed`](Self::handle_send_failed)
///   drops it.
/// - **Time** (`now`) is monotonic, as for [`Echo`](crate::Echo), and only
///   matters to the rate limit. There are no timers: nothing happens
///   between events, so the shell sleeps until the socket is readable, or
///   writable while [`is_empty`](Self::is_empty) is false.
///
/// # What is answered
///
/// A datagram is queued unless it is dropped for the first of these reasons
/// that applies (each drop counted once, see [`Dropped`]): it comes from a
/// [loop port](LOOP_PORTS), an [own port](DatagramConfig::own_ports), or
/// is not [unicast](Peer::is_unicast); it is truncated or longer than
/// [`MAX_DATAGRAM`](Self::MAX_DATAGRAM); it does not fit (no record left,
/// or no contiguous room); its source is over the [rate limit](RateLimit).
///
/// # Guarantees
///
/// - **Exact echo**: every queued datagram is offered once, whole, byte
///   for byte, to the address it came from; an empty datagram echoes as an
///   empty datagram.
/// - **Order**: datagrams are sent in the order they were queued, so the
///   order of each source's datagrams is kept.
/// - **Bounded memory**: everything is inside the machine. Each datagram
///   lies contiguous in the store, so a datagram of `n` bytes may be
///   refused with up to `n - 1` bytes free at the end of the store and as
///   many before the oldest datagram. A datagram received through
///   `recv_buf` into the start of the store leaves its end unused.
/// - **Counters add up**: `received = echoed + dropped + send_failed +`
///   [`len`](Self::len), see [`DatagramCounters`].
/// - **No panic** on any sequence of calls.
///
/// # A run loop
///
/// ```no_run
/// use std::net::SocketAddr;
/// use selecho_core::{DatagramConfig, DatagramEcho, Instant};
///
/// # fn clock() -> Instant { Instant::ZERO }
/// # fn recv_from(buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> { Ok((0, "[::]:0".parse().unwrap())) }
/// # fn send_to(buf: &[u8], to: SocketAddr) -> std::io::Result<usize> { Ok(0) }
/// # fn would_block(e: &std::io::Error) -> bool { true }
/// # fn wait(readable: bool, writable: bool) {}
/// // 64 datagrams in 64 KiB, rate-limit buckets for 256 sources.
/// let mut echo: DatagramEcho<SocketAddr, 64, 65_536, 256> =
///     DatagramEcho::new(DatagramConfig::new().with_own_ports([7007, 0, 0, 0]));
/// loop {
///     let now = clock();
///     // Receive at most a queueful a turn, straight into the queue.
///     for _ in 0..64 {
///         let buf = echo.recv_buf();
///         match recv_from(buf) {        // recvfrom(…, MSG_TRUNC): the real length
///             Ok((len, from)) => {
///                 let _ = echo.handle_received(from, len, now);
///             }
///             Err(_) => break,          // would block (or failed): done for now
///         }
///     }
///     // Send in order until the socket would block.
///     while let Some(t) = echo.poll_transmit() {
///         match send_to(t.payload, t.peer) {
///             Ok(_) => echo.handle_sent().unwrap(),
///             Err(e) if would_block(&e) => break, // keep it for the next turn
///             Err(_) => echo.handle_send_failed().unwrap(),
///         }
///     }
///     wait(true, !echo.is_empty());
/// }
/// ```
///
/// `D` must be at least 1 (a compile error otherwise). With `S = 0` and a
/// rate limit nothing is answered; with `B = 0` only empty datagrams are.
pub struct DatagramEcho<P: Peer, const D: usize, const B: usize, const S: usize> {
    queue: DatagramRing<P, D, B>,
    limits: RateTable<P::Key, S>,
    /// The space [`recv_buf`](Self::recv_buf) lent, until a datagram is queued.
    lent: Option<Space>,
    config: DatagramConfig,
    counters: DatagramCounters,
}

impl<P: Peer, const D: usize, const B: usize, const S: usize> DatagramEcho<P, D, B, S> {
    /// The longest datagram echoed: `B`, at most 65535 (a UDP payload is
    /// shorter still: 65507 bytes over IPv4, 65527 over IPv6).
    pub const MAX_DATAGRAM: usize = DatagramRing::<P, D, B>::MAX;

    /// An empty machine. `const`, so it can live in a `static`.
    pub const fn new(config: DatagramConfig) -> Self {
        DatagramEcho {
            queue: DatagramRing::new(),
            limits: RateTable::new(),
            lent: None,
            config,
            counters: DatagramCounters {
                received: 0,
                echoed: 0,
                dropped_full: 0,
                dropped_loop: 0,
                dropped_rate: 0,
                dropped_truncated: 0,
                send_failed: 0,
            },
        }
    }

    /// The configuration it was made with.
    pub const fn config(&self) -> &DatagramConfig {
        &self.config
    }

    /// What it has seen so far.
    pub const fn counters(&self) -> &DatagramCounters {
        &self.counters
    }

    /// Datagrams queued, waiting to be sent.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits to be sent: watch the socket for writability
    /// only while this is false.
    pub fn is_empty(&self) -> bool {
        self.queue.len() == 0
    }

    /// Bytes of the queued datagrams.
    pub const fn queued_bytes(&self) -> usize {
        self.queue.payload()
    }

    /// The space to receive the next datagram into, contiguous: the larger
    /// free piece of the store, at most [`MAX_DATAGRAM`](Self::MAX_DATAGRAM)
    /// bytes; empty when no datagram fits. Report what arrived with
    /// [`handle_received`](Self::handle_received).
    pub fn recv_buf(&mut self) -> &mut [u8] {
        let space = self.queue.space();
        self.lent = Some(space);
        self.queue.buf_mut(space)
    }

    /// A datagram of `len` bytes from `peer` was received into the front of
    /// [`recv_buf`](Self::recv_buf). `len` is its real length: if that is
    /// more than the buffer held, it is dropped (as [`Dropped::Full`], or
    /// [`Dropped::Truncated`] beyond [`MAX_DATAGRAM`](Self::MAX_DATAGRAM)).
    pub fn handle_received(
        &mut self,
        peer: P,
        len: usize,
        now: Instant,
    ) -> Result<(), ReceiveError> {
        let space = self.lent.take().ok_or(ReceiveError::NoBuffer)?;
        let fit = if len <= space.len {
            self.queue.fit_at(space.at, len)
        } else {
            None
        };
        let fit = self.admit(&peer, len, fit, now)?;
        self.queue.commit(peer, fit);
        Ok(())
    }

    /// A datagram from `peer`, copied in.
    pub fn handle_datagram(
        &mut self,
        peer: P,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), Dropped> {
        self.lent = None;
        let fit = self.queue.fit(payload.len());
        let fit = self.admit(&peer, payload.len(), fit, now)?;
        self.queue.fit_mut(fit).copy_from_slice(payload);
        self.queue.commit(peer, fit);
        Ok(())
    }

    /// A datagram from `peer` arrived cut short, its real length unknown:
    /// dropped ([`Dropped::Truncated`], or [`Dropped::Loop`] if it would
    /// not have been answered anyway).
    pub fn handle_truncated(&mut self, peer: P) -> Dropped {
        self.counters.received += 1;
        let reason = if self.refuses(&peer) {
            Dropped::Loop
        } else {
            Dropped::Truncated
        };
        self.count_drop(reason);
        reason
    }

    /// The next datagram to send: the oldest queued.
    pub fn poll_transmit(&self) -> Option<Transmit<'_, P>> {
        let (peer, payload) = self.queue.front()?;
        Some(Transmit { peer, payload })
    }

    /// The datagram [`poll_transmit`](Self::poll_transmit) named was sent.
    pub fn handle_sent(&mut self) -> Result<(), QueueEmpty> {
        self.queue.pop().ok_or(QueueEmpty)?;
        self.counters.echoed += 1;
        Ok(())
    }

    /// The datagram [`poll_transmit`](Self::poll_transmit) named can never
    /// be sent (no route, too big for the path, …): dropped, counted in
    /// [`send_failed`](DatagramCounters::send_failed).
    pub fn handle_send_failed(&mut self) -> Result<(), QueueEmpty> {
        self.queue.pop().ok_or(QueueEmpty)?;
        self.counters.send_failed += 1;
        debug!("a datagram could not be sent, dropped");
        Ok(())
    }

    /// Adds `port` to the own ports if there is room; whether it is refused now.
    #[cfg(feature = "smoltcp")]
    pub(crate) fn add_own_port(&mut self, port: u16) -> bool {
        if self.config.refuses_port(port) {
            return true;
        }
        let Some(free) = self.config.own_ports.iter_mut().find(|p| **p == 0) else {
            return false;
        };
        *free = port;
        true
    }

    /// Counts a datagram of `len` bytes from `peer`, which fits the queue at
    /// `fit` if anywhere, and decides whether to answer it.
    fn admit(
        &mut self,
        peer: &P,
        len: usize,
        fit: Option<Fit>,
        now: Instant,
    ) -> Result<Fit, Dropped> {
        self.counters.received += 1;
        let reason = if self.refuses(peer) {
            Dropped::Loop
        } else if len > Self::MAX_DATAGRAM {
            Dropped::Truncated
        } else if let Some(fit) = fit {
            let Some(limit) = &self.config.rate_limit else {
                return Ok(fit);
            };
            if self.limits.admit(peer.key(), limit, now) {
                return Ok(fit);
            }
            Dropped::Rate
        } else {
            Dropped::Full
        };
        self.count_drop(reason);
        Err(reason)
    }

    fn refuses(&self, peer: &P) -> bool {
        !peer.is_unicast() || self.config.refuses_port(peer.port())
    }

    fn count_drop(&mut self, reason: Dropped) {
        let counter = match reason {
            Dropped::Loop => &mut self.counters.dropped_loop,
            Dropped::Truncated => &mut self.counters.dropped_truncated,
            Dropped::Full => &mut self.counters.dropped_full,
            Dropped::Rate => &mut self.counters.dropped_rate,
        };
        *counter += 1;
        trace!("datagram dropped: {}", reason);
    }
}

impl<P: Peer, const D: usize, const B: usize, const S: usize> fmt::Debug
    for DatagramEcho<P, D, B, S>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramEcho")
            .field("queued", &self.queue.len())
            .field("records", &D)
            .field("bytes", &B)
            .field("sources", &S)
            .field("counters", &self.counters)
            .finish()
    }
}

/// A datagram to send, from [`DatagramEcho::poll_transmit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Transmit<'a, P> {
    /// Where to send it: the sender of the datagram it echoes.
    pub peer: P,
    /// The whole datagram, to send in one call.
    pub payload: &'a [u8],
}

/// Why a datagram was not queued for echo. It was counted under this reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Dropped {
    /// Answering could start a loop or a reflection: from a
    /// [loop port](LOOP_PORTS) or an [own port](DatagramConfig::own_ports),
    /// or not [unicast](Peer::is_unicast).
    Loop,
    /// Cut short on the way in, or longer than the machine's
    /// [`MAX_DATAGRAM`](DatagramEcho::MAX_DATAGRAM): never echoed shortened.
    Truncated,
    /// No room: every record taken, or no contiguous space for it.
    Full,
    /// Its source address is over the [rate limit](RateLimit).
    Rate,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dropped::Loop => "from a port or address never answered",
            Dropped::Truncated => "truncated or too long",
            Dropped::Full => "queue full",
            Dropped::Rate => "source over its rate limit",
        })
    }
}

impl core::error::Error for Dropped {}

/// Why [`DatagramEcho::handle_received`] did not queue a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReceiveError {
    /// Dropped and counted, see [`Dropped`].
    Dropped(Dropped),
    /// No buffer was lent: no [`recv_buf`](DatagramEcho::recv_buf) since the
    /// last datagram was queued. A bug in the shell; nothing counted.
    NoBuffer,
}

impl fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiveError::Dropped(reason) => write!(f, "datagram dropped: {reason}"),
            ReceiveError::NoBuffer => f.write_str("no receive buffer was lent"),
        }
    }
}

impl core::error::Error for ReceiveError {}

impl From<Dropped> for ReceiveError {
    fn from(reason: Dropped) -> Self {
        ReceiveError::Dropped(reason)
    }
}

/// [`DatagramEcho::handle_sent`] or [`DatagramEcho::handle_send_failed`]
/// with nothing queued: a bug in the shell; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QueueEmpty;

impl fmt::Display for QueueEmpty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no datagram queued")
    }
}

impl core::error::Error for QueueEmpty {}

/// What the datagram machine has seen since it was made. Every datagram
/// reported is counted in `received`, then in exactly one of the others
/// once its fate is known: `received = echoed + dropped() + send_failed`
/// plus those still queued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DatagramCounters {
    /// Datagrams reported by the shell, whole, truncated or dropped.
    pub received: u64,
    /// Datagrams echoed (reported sent).
    pub echoed: u64,
    /// Dropped: no room ([`Dropped::Full`]).
    pub dropped_full: u64,
    /// Dropped: never answered ([`Dropped::Loop`]).
    pub dropped_loop: u64,
    /// Dropped: over the rate limit ([`Dropped::Rate`]).
    pub dropped_rate: u64,
    /// Dropped: truncated or too long ([`Dropped::Truncated`]).
    pub dropped_truncated: u64,
    /// Queued, but the shell could never send them.
    pub send_failed: u64,
}

impl DatagramCounters {
    /// Datagrams dropped on arrival, for any reason.
    pub const fn dropped(&self) -> u64 {
        self.dropped_full + self.dropped_loop + self.dropped_rate + self.dropped_truncated
    }
}

impl core::ops::AddAssign for DatagramCounters {
    /// Adds `other`'s counts: the totals of several machines.
    fn add_assign(&mut self, other: DatagramCounters) {
        self.received += other.received;
        self.echoed += other.echoed;
        self.dropped_full += other.dropped_full;
        self.dropped_loop += other.dropped_loop;
        self.dropped_rate += other.dropped_rate;
        self.dropped_truncated += other.dropped_truncated;
        self.send_failed += other.send_failed;
    }
}

impl fmt::Display for DatagramCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} echoed={} dropped_full={} dropped_loop={} dropped_rate={} dropped_truncated={} send_failed={}",
            self.received,
            self.echoed,
            self.dropped_full,
            self.dropped_loop,
            self.dropped_rate,
            self.dropped_truncated,
            self.send_failed
        )
    }
}
