//! An in-memory UDP network and a fake clock that play the shell of a
//! [`DatagramEcho`], for tests.
//!
//! [`UdpSim`] owns the machine, the server socket's receive buffer, and
//! client sockets bound at addresses of the test's choosing, each with a
//! receive buffer of its own. A test binds clients ([`bind`]), sends
//! datagrams from any address, bound or not (a forged source, a loop port:
//! [`send`]), lets the server run with [`step`] (one turn of the documented
//! run loop) or [`drive`] (turns until nothing changes), and reads the
//! echoes ([`recv`]). Time moves only when the test says so ([`advance`]).
//!
//! Like a real network, the simulator loses datagrams without a word when a
//! receive buffer is full or no socket is bound at the destination; it
//! counts them in [`lost`](UdpSim::lost).
//!
//! ```
//! use selecho_core::DatagramConfig;
//! use selecho_core::sim::udp::UdpSim;
//!
//! // 8 datagrams in 1 KiB (the machine's queue and every socket buffer),
//! // rate-limit buckets for 4 sources, at most 4 clients.
//! let mut sim: UdpSim<8, 1024, 4, 4> = UdpSim::new(DatagramConfig::new());
//! let client = "10.0.0.1:40000".parse().unwrap();
//! sim.bind(client)?;
//! assert!(sim.send(client, b"hello"));
//! sim.drive()?;
//! let mut buf = [0; 16];
//! assert_eq!(sim.recv(client, &mut buf), Some(5));
//! assert_eq!(&buf[..5], b"hello");
//!
//! // From chargen's port: never answered.
//! let chargen = "10.0.0.2:19".parse().unwrap();
//! sim.bind(chargen)?;
//! sim.send(chargen, b"x");
//! sim.drive()?;
//! assert_eq!(sim.recv(chargen, &mut buf), None);
//! assert_eq!(sim.echo().counters().dropped_loop, 1);
//! # Ok::<(), selecho_core::sim::SimError>(())
//! ```
//!
//! [`bind`]: UdpSim::bind
//! [`send`]: UdpSim::send
//! [`step`]: UdpSim::step
//! [`drive`]: UdpSim::drive
//! [`recv`]: UdpSim::recv
//! [`advance`]: UdpSim::advance

use core::fmt;
use core::net::SocketAddr;

use super::{MAX_STEPS, SimError, settle};
use crate::datagram::ring::DatagramRing;
use crate::datagram::{DatagramConfig, DatagramEcho};
use crate::time::{Duration, Instant};

/// How the simulated shell receives datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RecvMode {
    /// Straight into [`recv_buf`](DatagramEcho::recv_buf), reporting the real
    /// length as `recvfrom` with `MSG_TRUNC` does.
    Lend,
    /// Into a buffer of the shell's own of `buf` bytes (at most the
    /// machine's longest datagram), then
    /// [`handle_datagram`](DatagramEcho::handle_datagram); a datagram longer
    /// than the buffer is reported with
    /// [`handle_truncated`](DatagramEcho::handle_truncated).
    Copy {
        /// The shell's buffer size.
        buf: usize,
    },
}

/// A datagram waiting in the server socket's receive buffer: its sender
/// and its real length (the buffer keeps at most the machine's longest).
#[derive(Clone, Copy)]
struct Arrival {
    from: SocketAddr,
    len: usize,
}

/// A client socket and the echoes waiting in its receive buffer.
struct Client<const D: usize, const B: usize> {
    addr: SocketAddr,
    inbox: DatagramRing<(), D, B>,
}

/// A simulated UDP echo server: a [`DatagramEcho`] of `D` records, `B`
/// bytes and `S` rate-limit sources, and at most `C` client sockets. Every
/// socket's receive buffer, the server's included, also holds `D` datagrams
/// in `B` bytes.
///
/// See the [module docs](self) for an example.
pub struct UdpSim<const D: usize, const B: usize, const S: usize, const C: usize> {
    echo: DatagramEcho<SocketAddr, D, B, S>,
    /// The server socket's receive buffer.
    inbound: DatagramRing<Arrival, D, B>,
    clients: heapless::Vec<Client<D, B>, C>,
    now: Instant,
    mode: RecvMode,
    send_limit: Option<usize>,
    lost: u64,
}

impl<const D: usize, const B: usize, const S: usize, const C: usize> UdpSim<D, B, S, C> {
    /// [`drive`](Self::drive) gives up after this many steps.
    pub const MAX_STEPS: usize = MAX_STEPS;

    /// A server with no clients at [`Instant::ZERO`], receiving with
    /// [`RecvMode::Lend`], sends unlimited.
    pub const fn new(config: DatagramConfig) -> Self {
        UdpSim {
            echo: DatagramEcho::new(config),
            inbound: DatagramRing::new(),
            clients: heapless::Vec::new(),
            now: Instant::ZERO,
            mode: RecvMode::Lend,
            send_limit: None,
            lost: 0,
        }
    }

    /// The machine, for its counters and queue.
    pub const fn echo(&self) -> &DatagramEcho<SocketAddr, D, B, S> {
        &self.echo
    }

    /// The fake clock.
    pub const fn now(&self) -> Instant {
        self.now
    }

    /// Datagrams the network lost: a receive buffer was full, no client was
    /// bound at the destination, or the datagram was longer than UDP allows.
    pub const fn lost(&self) -> u64 {
        self.lost
    }

    /// How the server's shell receives from now on.
    pub const fn set_recv_mode(&mut self, mode: RecvMode) {
        self.mode = mode;
    }

    /// The server's socket takes at most `limit` datagrams a step (`None`:
    /// all); `Some(0)`: its send buffer is full, every send would block.
    pub const fn set_send_limit(&mut self, limit: Option<usize>) {
        self.send_limit = limit;
    }

    /// A client socket bound at `addr`, to receive echoes there. Binding an
    /// address twice is harmless.
    pub fn bind(&mut self, addr: SocketAddr) -> Result<(), SimError> {
        if self.client(addr).is_some() {
            return Ok(());
        }
        let client = Client {
            addr,
            inbox: DatagramRing::new(),
        };
        self.clients
            .push(client)
            .map_err(|_| SimError::TooManyClients)
    }

    /// A datagram from `from` (bound or not: any source address and port)
    /// to the server. Returns whether it reached the server's receive
    /// buffer; if not, the network lost it.
    pub fn send(&mut self, from: SocketAddr, payload: &[u8]) -> bool {
        let max_udp = if from.is_ipv4() { 65_507 } else { 65_527 };
        let kept = payload.len().min(DatagramRing::<Arrival, D, B>::MAX);
        let arrival = Arrival {
            from,
            len: payload.len(),
        };
        if payload.len() > max_udp || !self.inbound.push(arrival, &payload[..kept]) {
            self.lost += 1;
            return false;
        }
        true
    }

    /// The next echo waiting at the client bound at `at`: copies what fits
    /// into `out` and returns the datagram's length (`None`: nothing waits).
    pub fn recv(&mut self, at: SocketAddr, out: &mut [u8]) -> Option<usize> {
        let inbox = &mut self.client_mut(at)?.inbox;
        let ((), payload) = inbox.front()?;
        let len = payload.len();
        let n = len.min(out.len());
        out[..n].copy_from_slice(&payload[..n]);
        inbox.pop();
        Some(len)
    }

    /// Echoes waiting at the client bound at `at`.
    pub fn pending(&self, at: SocketAddr) -> usize {
        self.client(at).map_or(0, |client| client.inbox.len())
    }

    /// Datagrams sent to the server that it has not read yet.
    pub fn unread_by_server(&self) -> usize {
        self.inbound.len()
    }

    /// Moves the fake clock forward. Nothing runs until the next step.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
    }

    /// Steps until a step changes nothing; returns how many steps changed
    /// something, or [`SimError::NoQuiet`] after [`MAX_STEPS`](Self::MAX_STEPS).
    pub fn drive(&mut self) -> Result<usize, SimError> {
        settle(|| self.step())
    }

    /// One turn of the run loop: read every datagram waiting (as the
    /// [`RecvMode`] says), then send in order while the socket takes them.
    /// Returns whether anything changed.
    pub fn step(&mut self) -> bool {
        let mut changed = false;
        while let Some((arrival, bytes)) = self.inbound.front() {
            match self.mode {
                RecvMode::Lend => {
                    let buf = self.echo.recv_buf();
                    let n = bytes.len().min(buf.len());
                    buf[..n].copy_from_slice(&bytes[..n]);
                    let _ = self
                        .echo
                        .handle_received(arrival.from, arrival.len, self.now);
                }
                RecvMode::Copy { buf } if arrival.len > buf.min(bytes.len()) => {
                    self.echo.handle_truncated(arrival.from);
                }
                RecvMode::Copy { .. } => {
                    let _ = self.echo.handle_datagram(arrival.from, bytes, self.now);
                }
            }
            self.inbound.pop();
            changed = true;
        }
        let mut sent = 0;
        while let Some(t) = self.echo.poll_transmit() {
            if self.send_limit.is_some_and(|limit| sent >= limit) {
                break;
            }
            // Not `client_mut`: `t` borrows the machine.
            let delivered = self
                .clients
                .iter_mut()
                .find(|client| client.addr == t.peer)
                .is_some_and(|client| client.inbox.push((), t.payload));
            if !delivered {
                self.lost += 1;
            }
            let _ = self.echo.handle_sent();
            sent += 1;
            changed = true;
        }
        changed
    }

    fn client(&self, addr: SocketAddr) -> Option<&Client<D, B>> {
        self.clients.iter().find(|client| client.addr == addr)
    }

    fn client_mut(&mut self, addr: SocketAddr) -> Option<&mut Client<D, B>> {
        self.clients.iter_mut().find(|client| client.addr == addr)
    }
}

impl<const D: usize, const B: usize, const S: usize, const C: usize> fmt::Debug
    for UdpSim<D, B, S, C>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSim")
            .field("now", &self.now)
            .field("clients", &self.clients.len())
            .field("lost", &self.lost)
            .field("echo", &self.echo)
            .finish()
    }
}
