//! Drives an [`Echo`] from a smoltcp [`SocketSet`] of TCP sockets
//! ([`SmolEcho`], below), and a [`DatagramEcho`](crate::DatagramEcho) from a
//! UDP socket ([`SmolUdpEcho`], see its docs).
//!
//! smoltcp has no listening socket with a backlog: a TCP socket in `Listen`
//! takes exactly one connection. So the adapter owns a fixed set of sockets,
//! one per connection slot, each listening on one port; while a socket
//! carries a connection it does not listen, and once that connection has
//! ended it listens again. With no socket of a port in `Listen`, smoltcp
//! answers a SYN with RST: that is how a full server refuses (the machine
//! never sees those attempts, so they are not in [`Counters::refused`]).
//!
//! # Ports
//!
//! [`SmolEcho::add_sockets`] spreads the sockets round-robin over the
//! ports: socket `i` first listens on `ports[i % ports.len()]`. Left at
//! that, a port would own its share of the slots and refuse while another
//! port had free ones; so a shell that can look at a packet before smoltcp
//! processes it hands every TCP SYN the [`Guard`] finds to
//! [`SmolEcho::make_room`], which makes sure a socket listens on the SYN's
//! port if any slot can take it: an idle listener of another port moves
//! over, or else the oldest half-open connection is dropped (see below).
//! Any free slot then serves any port (at most [`MAX_PORTS`] ports). A
//! shell that cannot look ahead keeps the fixed shares.
//!
//! # Half-open connections
//!
//! A socket that got a SYN waits in `SynReceived` for the handshake's last
//! ACK, which a spoofed source never sends. So a half-open connection holds
//! its slot for at most the [half-open timeout](SmolEcho::set_half_open_timeout)
//! (default [`DEFAULT_HALF_OPEN_TIMEOUT`]) and is dropped silently (no RST
//! to a source that may be forged) to listen again; and while every slot is
//! taken, [`SmolEcho::make_room`] drops the oldest half-open connection for
//! a new SYN, so a flood of spoofed SYNs cannot keep a real client out for
//! long. Both are counted ([`PacketCounters::syn_expired`],
//! [`PacketCounters::syn_evicted`]).
//!
//! # Closing
//!
//! When the machine releases a connection the socket is closed as it says
//! ([`CloseHow::Graceful`]: `close()`, a FIN after what the socket still
//! holds; [`CloseHow::Abort`]: `abort()`, an RST) and listens again once
//! TCP is done with it:
//!
//! - `Closed` with no RST left to send: listen again at once;
//! - `TimeWait` (after the server closed first): listen again at once rather
//!   than holding the slot for smoltcp's 10 s TIME-WAIT. The peer already
//!   acknowledged our FIN; a retransmitted FIN of its own then meets a
//!   listening socket and is answered with RST, which is harmless;
//! - `FinWait1`/`FinWait2`/`Closing`/`LastAck`: wait, at most the
//!   [linger](SmolEcho::set_linger) time (a peer that never acknowledges
//!   or never sends its own FIN would hold the slot forever), then abort.
//!
//! Bytes that arrive on a socket after its graceful close (nobody will
//! echo them) abort it: the peer learns of the cut from a reset, not a clean
//! close. While shutting down, a connection closes once it is quiet (see
//! [`Echo::begin_shutdown`]): the adapter reports every turn whether bytes
//! wait unread.
//!
//! # A turn of the shell
//!
//! ```text
//! let stamp = to_smoltcp(now);
//! // Incoming packets one by one, so a socket that just finished closing
//! // listens again before a SYN queued behind its last ACK is processed.
//! adapter.relisten(&mut sockets, now);
//! while let Some(packet) = device.peek() {                // a packet smoltcp has yet to see
//!     match guard.inspect(packet, checksums) {
//!         Err(_) => { device.drop_it(); continue }          // counted by the guard
//!         Ok(Inbound::Packet { syn: Some(syn) }) => { adapter.make_room(&mut sockets, &syn, now); }
//!         Ok(_) => {}
//!     }
//!     iface.poll_ingress_single(stamp, &mut device, &mut sockets);
//!     adapter.relisten(&mut sockets, now);
//! }
//! let busy = adapter.poll(&mut sockets, now);      // move bytes, accept, close
//! iface.poll(stamp, &mut device, &mut sockets);    // timers, and send at once
//! adapter.relisten(&mut sockets, now);             // aborted sockets sent their RST
//! sleep until the device is readable or min(iface.poll_at(), adapter.poll_at()),
//! or not at all if busy
//! ```
//!
//! # Panics
//!
//! The adapter keeps the [`SocketHandle`]s it is given and looks them up in
//! the `SocketSet` passed to each call, with smoltcp's `get_mut`, which
//! panics if a handle names no TCP socket of that set. Always pass the set
//! the handles came from, and never remove those sockets from it.

mod counters;
pub mod guard;
mod room;
mod udp;

use ::smoltcp::iface::{SocketHandle, SocketSet};
use ::smoltcp::socket::tcp::{self, State};

use crate::{CloseHow, Config, ConnId, Counters, Duration, Echo, Instant};

pub use counters::PacketCounters;
pub use guard::{Checksums, Guard, Inbound, MAX_ADDRESSES, Rejected, Syn};
pub use room::{DEFAULT_HALF_OPEN_TIMEOUT, Room};
pub use udp::{BindError, SmolUdpEcho};

/// Most ports one [`SmolEcho`] serves.
pub const MAX_PORTS: usize = 16;

/// How long a gracefully closed socket may take to finish closing before it
/// is aborted, unless [`SmolEcho::set_linger`] says otherwise.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(30);

/// How many times a turn [`SmolEcho::poll`] moves bytes from one socket
/// through the machine's queue and back: a full queue's worth each time.
const MOVES: usize = 4;

/// The core's instant as smoltcp's (both count microseconds).
pub fn to_smoltcp(now: Instant) -> ::smoltcp::time::Instant {
    let micros = i64::try_from(now.total_micros()).unwrap_or(i64::MAX);
    ::smoltcp::time::Instant::from_micros(micros)
}

/// smoltcp's instant as the core's (one before the origin becomes the origin).
pub fn from_smoltcp(instant: ::smoltcp::time::Instant) -> Instant {
    Instant::from_micros(u64::try_from(instant.total_micros()).unwrap_or(0))
}

/// Why [`SmolEcho::add_socket`] did not take a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AddError {
    /// The adapter already has `N` sockets, or as many as the machine's
    /// `max_connections`.
    Full,
    /// Port 0 cannot be listened on.
    PortZero,
    /// The socket is open (not `Closed`): hand over fresh sockets.
    InUse,
    /// No ports were given to [`SmolEcho::add_sockets`].
    NoPorts,
    /// More than [`MAX_PORTS`] ports.
    TooManyPorts,
}

impl core::fmt::Display for AddError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AddError::Full => "no room for another socket",
            AddError::PortZero => "cannot listen on port 0",
            AddError::InUse => "the socket is already open",
            AddError::NoPorts => "no port to listen on",
            AddError::TooManyPorts => "too many ports",
        })
    }
}

impl core::error::Error for AddError {}

/// Where one socket is, as the adapter sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Carries no connection of the machine's: listening, in a handshake
    /// not seen yet, or closed for good after a shutdown.
    Idle,
    /// Carries no connection of the machine's: half-open (in
    /// `SynReceived`) since this instant (see [`room`]).
    HalfOpen(Instant),
    /// Carries this connection of the machine's.
    Open(ConnId),
    /// Released by the machine; TCP is still closing it. Aborted at the
    /// deadline if there is one (after a graceful close).
    Closing(Option<Instant>),
}

impl Phase {
    /// Carries no connection of the machine's (half-open or not).
    fn is_idle(self) -> bool {
        matches!(self, Phase::Idle | Phase::HalfOpen(_))
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    handle: SocketHandle,
    /// The port the socket listens on (or last did).
    port: u16,
    phase: Phase,
    /// The peer's FIN was reported to the machine.
    fin_reported: bool,
}

/// One [`Echo`] machine served through up to `N` smoltcp TCP sockets, with
/// `Q`-byte queues. See the [module docs](self).
pub struct SmolEcho<const N: usize, const Q: usize> {
    echo: Echo<SocketHandle, N, Q>,
    slots: heapless::Vec<Slot, N>,
    /// Machine slot ([`ConnId::slot`]) → index into `slots`.
    owner: [u16; N],
    /// Slots in [`Phase::Closing`].
    closing: usize,
    linger: Duration,
    /// Every port served, whether or not a socket listens on it now.
    ports: heapless::Vec<u16, MAX_PORTS>,
    half_open_timeout: Duration,
    /// Half-open connections dropped: `syn_evicted` and `syn_expired`.
    packets: PacketCounters,
}

impl<const N: usize, const Q: usize> SmolEcho<N, Q> {
    /// An adapter with no sockets yet; add them with
    /// [`add_socket`](Self::add_socket) or [`add_sockets`](Self::add_sockets).
    pub const fn new(config: Config) -> Self {
        SmolEcho {
            echo: Echo::new(config),
            slots: heapless::Vec::new(),
            owner: [0; N],
            closing: 0,
            linger: DEFAULT_LINGER,
            ports: heapless::Vec::new(),
            half_open_timeout: DEFAULT_HALF_OPEN_TIMEOUT,
            packets: PacketCounters {
                bad_checksum: 0,
                martian: 0,
                malformed: 0,
                fragments_dropped: 0,
                syn_evicted: 0,
                syn_expired: 0,
            },
        }
    }

    /// Aborts a gracefully closed socket that has not finished closing
    /// after `linger` (default [`DEFAULT_LINGER`]).
    pub fn set_linger(&mut self, linger: Duration) {
        self.linger = linger;
    }

    /// Takes a fresh (closed) TCP socket of `sockets` as one connection slot
    /// and makes it listen on `port`.
    pub fn add_socket(
        &mut self,
        sockets: &mut SocketSet<'_>,
        handle: SocketHandle,
        port: u16,
    ) -> Result<(), AddError> {
        if self.slots.len() >= self.echo.capacity() {
            return Err(AddError::Full);
        }
        self.add_port(port)?;
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if socket.state() != State::Closed {
            return Err(AddError::InUse);
        }
        socket.listen(port).map_err(|_| AddError::InUse)?;
        let slot = Slot {
            handle,
            port,
            phase: Phase::Idle,
            fin_reported: false,
        };
        self.slots.push(slot).map_err(|_| AddError::Full)
    }

    /// [`add_socket`](Self::add_socket) for each handle, spreading them
    /// round-robin over `ports` (the `i`-th handle listens on
    /// `ports[i % ports.len()]`). Stops at the first error.
    pub fn add_sockets<I>(
        &mut self,
        sockets: &mut SocketSet<'_>,
        handles: I,
        ports: &[u16],
    ) -> Result<(), AddError>
    where
        I: IntoIterator<Item = SocketHandle>,
    {
        if ports.is_empty() {
            return Err(AddError::NoPorts);
        }
        // Every port is served, even with fewer sockets than ports.
        for &port in ports {
            self.add_port(port)?;
        }
        for (i, handle) in handles.into_iter().enumerate() {
            self.add_socket(sockets, handle, ports[i % ports.len()])?;
        }
        Ok(())
    }

    /// The machine, for its counters and state.
    pub const fn echo(&self) -> &Echo<SocketHandle, N, Q> {
        &self.echo
    }

    /// What the machine has seen so far.
    pub const fn counters(&self) -> &Counters {
        self.echo.counters()
    }

    /// How many sockets the adapter serves with.
    pub fn sockets(&self) -> usize {
        self.slots.len()
    }

    /// Connections not finished yet: open in the machine, or released by
    /// it while TCP is still closing them.
    pub fn open(&self) -> usize {
        self.echo.len() + self.closing
    }

    /// Whether no connection is open and no socket is still closing: after
    /// [`begin_shutdown`](Self::begin_shutdown), the shell may stop.
    pub fn is_empty(&self) -> bool {
        self.open() == 0
    }

    /// One turn: take newly established connections, move bytes between the
    /// sockets and the machine, report FINs, resets and timeouts, and carry
    /// out the machine's close orders. Returns whether anything happened (so
    /// the shell should let smoltcp send before it sleeps).
    pub fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) -> bool {
        let mut progress = self.relisten(sockets, now);
        for i in 0..self.slots.len() {
            let socket = sockets.get_mut::<tcp::Socket>(self.slots[i].handle);
            if self.slots[i].phase.is_idle() {
                progress |= self.tend_idle(i, socket, now);
            }
            if let Phase::Open(id) = self.slots[i].phase {
                progress |= self.serve(i, id, socket, now);
            }
        }
        self.echo.handle_timeout(now);
        progress |= self.carry_out_closes(sockets, now);
        progress
    }

    /// Finishes closing sockets that TCP is done with and makes them listen
    /// again; aborts those past their linger deadline. Cheap when nothing is
    /// closing, so a shell may call it between incoming packets: a socket
    /// whose last ACK just arrived then listens before the next SYN is
    /// processed. Returns whether any socket changed.
    pub fn relisten(&mut self, sockets: &mut SocketSet<'_>, now: Instant) -> bool {
        if self.closing == 0 {
            return false;
        }
        let shutting_down = self.echo.shutting_down();
        let mut changed = false;
        for slot in self.slots.iter_mut() {
            let Phase::Closing(deadline) = slot.phase else {
                continue;
            };
            let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
            if socket.recv_queue() > 0 && socket.state() != State::Closed {
                // Bytes after our FIN, which nobody will echo: say so with
                // a reset rather than let them vanish behind a clean close.
                debug!(
                    "socket on port {} got bytes after closing, aborting",
                    slot.port
                );
                socket.abort();
                slot.phase = Phase::Closing(None);
                changed = true;
                continue;
            }
            match socket.state() {
                // An abort's RST is sent by the next egress; listening now would drop it.
                State::Closed if socket.local_endpoint().is_some() => continue,
                State::Closed | State::TimeWait | State::Listen => {
                    slot.phase = Phase::Idle;
                    self.closing -= 1;
                    if !shutting_down {
                        listen(socket, slot.port);
                    }
                    changed = true;
                }
                _ => {
                    if deadline.is_some_and(|deadline| now >= deadline) {
                        debug!(
                            "socket on port {} still {} after linger, aborting",
                            slot.port,
                            socket.state()
                        );
                        socket.abort();
                        slot.phase = Phase::Closing(None);
                        changed = true;
                    }
                }
            }
        }
        changed
    }

    /// When to call [`poll`](Self::poll) next at the latest, or `None`: only
    /// network events can make work. (smoltcp's own timers are the
    /// interface's `poll_at`.)
    pub fn poll_at(&self) -> Option<Instant> {
        let deadlines = self
            .slots
            .iter()
            .filter_map(|slot| match slot.phase {
                Phase::Closing(deadline) => deadline,
                Phase::HalfOpen(since) => Some(since + self.half_open_timeout),
                _ => None,
            })
            .min();
        match (self.echo.poll_timeout(), deadlines) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Stop taking connections (listening sockets close, so new ones are
    /// refused) and serve every connection until it is finished, then close
    /// it gracefully (see [`Echo::begin_shutdown`]). Poll on until
    /// [`is_empty`](Self::is_empty) or the grace period ends, then call
    /// [`abort_all`](Self::abort_all).
    pub fn begin_shutdown(&mut self) {
        self.echo.begin_shutdown();
    }

    /// Abort every connection and every socket still closing or in a
    /// handshake, and stop listening. Poll the interface once more so the
    /// RSTs go out.
    pub fn abort_all(&mut self, sockets: &mut SocketSet<'_>, now: Instant) {
        self.echo.begin_shutdown();
        self.echo.abort_all();
        self.carry_out_closes(sockets, now);
        for slot in self.slots.iter_mut() {
            let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
            match socket.state() {
                State::Listen => socket.close(),
                State::Closed | State::TimeWait => {}
                _ => socket.abort(),
            }
            if let Phase::Closing(_) = slot.phase {
                self.closing -= 1;
            }
            slot.phase = Phase::Idle;
        }
    }

    /// A socket that carries no connection: accept it once established,
    /// listen again if it fell back to `Closed`, stop listening on shutdown.
    fn tend_idle(&mut self, i: usize, socket: &mut tcp::Socket<'_>, now: Instant) -> bool {
        let shutting_down = self.echo.shutting_down();
        if socket.state() == State::SynReceived && !shutting_down {
            return self.tend_half_open(i, socket, now);
        }
        let slot = &mut self.slots[i];
        slot.phase = Phase::Idle;
        match socket.state() {
            State::Established | State::CloseWait => {
                match self.echo.handle_accept(slot.handle, now) {
                    Ok(id) => {
                        slot.phase = Phase::Open(id);
                        slot.fin_reported = false;
                        // Cannot truncate: there are at most N <= u16::MAX slots.
                        self.owner[id.slot()] = i as u16;
                        true
                    }
                    Err(e) => {
                        debug!("connection on port {} refused: {}", slot.port, e);
                        socket.abort();
                        slot.phase = Phase::Closing(None);
                        self.closing += 1;
                        true
                    }
                }
            }
            State::Listen if shutting_down => {
                socket.close();
                true
            }
            // Only while shutting down: tend_half_open takes it otherwise.
            State::SynReceived => {
                socket.abort();
                slot.phase = Phase::Closing(None);
                self.closing += 1;
                true
            }
            // A handshake that timed out or was reset.
            State::Closed | State::TimeWait if !shutting_down => {
                listen(socket, slot.port);
                true
            }
            _ => false,
        }
    }

    /// One connection's share of a turn: receive and send in turn while
    /// bytes move (at most [`MOVES`] times, so one busy connection cannot
    /// hold up the others for long), then the FIN.
    fn serve(&mut self, i: usize, id: ConnId, socket: &mut tcp::Socket<'_>, now: Instant) -> bool {
        if !matches!(socket.state(), State::Established | State::CloseWait) {
            // Reset by the peer or timed out by smoltcp: the socket is gone.
            let _ = self.echo.handle_reset(id);
            return true;
        }
        let mut progress = false;
        for _ in 0..MOVES {
            let mut moved = false;
            if let Ok(buf) = self.echo.recv_buf(id)
                && !buf.is_empty()
                && socket.can_recv()
                && let Ok(n) = socket.recv_slice(buf)
                && n > 0
            {
                let _ = self.echo.handle_received(id, n, now);
                moved = true;
            }
            // The queue is a ring: its bytes may come in two pieces.
            for _ in 0..2 {
                let Ok(data) = self.echo.send_buf(id) else {
                    break;
                };
                if data.is_empty() || !socket.can_send() {
                    break;
                }
                match socket.send_slice(data) {
                    Ok(n) if n > 0 => {
                        let _ = self.echo.handle_sent(id, n, now);
                        moved = true;
                    }
                    _ => break,
                }
            }
            progress |= moved;
            if !moved {
                break;
            }
        }
        // Nothing waiting: what a shutdown needs to learn (see Echo::begin_shutdown).
        if socket.may_recv() && socket.recv_queue() == 0 {
            let _ = self.echo.handle_would_block(id, now);
        }
        // May not receive any more: the peer's FIN came and every byte before it was read.
        if !socket.may_recv() && !self.slots[i].fin_reported {
            self.slots[i].fin_reported = true;
            let _ = self.echo.handle_end_of_stream(id, now);
            progress = true;
        }
        progress
    }

    /// Drains the machine's close orders onto the sockets.
    fn carry_out_closes(&mut self, sockets: &mut SocketSet<'_>, now: Instant) -> bool {
        let mut any = false;
        while let Some(close) = self.echo.poll_close() {
            any = true;
            let socket = sockets.get_mut::<tcp::Socket>(close.handle);
            let deadline = match close.how {
                CloseHow::Graceful => {
                    socket.close();
                    Some(now + self.linger)
                }
                CloseHow::Abort => {
                    socket.abort();
                    None
                }
            };
            let index = usize::from(self.owner[close.id.slot()]);
            if let Some(slot) = self.slots.get_mut(index)
                && slot.phase == Phase::Open(close.id)
            {
                slot.phase = Phase::Closing(deadline);
                self.closing += 1;
            }
        }
        any
    }
}

impl<const N: usize, const Q: usize> core::fmt::Debug for SmolEcho<N, Q> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SmolEcho")
            .field("echo", &self.echo)
            .field("sockets", &self.slots.len())
            .field("closing", &self.closing)
            .field("shutting_down", &self.echo.shutting_down())
            .finish()
    }
}

/// Listens on `port`; the socket is closed or in TIME-WAIT, so only a bug
/// could make this fail, and then the slot stays idle (and is logged).
fn listen(socket: &mut tcp::Socket<'_>, port: u16) {
    if let Err(e) = socket.listen(port) {
        warn!("cannot listen on port {} again: {}", port, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_convert_both_ways() {
        let t = Instant::from_micros(1_234_567);
        assert_eq!(to_smoltcp(t).total_micros(), 1_234_567);
        assert_eq!(from_smoltcp(to_smoltcp(t)), t);
        assert_eq!(
            to_smoltcp(Instant::from_micros(u64::MAX)).total_micros(),
            i64::MAX
        );
        assert_eq!(
            from_smoltcp(::smoltcp::time::Instant::from_micros(-5)),
            Instant::ZERO
        );
    }
}
