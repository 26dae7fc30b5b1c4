//! An in-memory network and a fake clock that play the shell, for tests:
//! TCP here, UDP in [`udp`].
//!
//! [`Sim`] owns an [`Echo`] whose handles are [`ClientId`]s and a set of
//! fake clients, each joined to the server by two byte pipes standing in for
//! the kernel's socket buffers. A test acts as the clients ([`connect`],
//! [`write`], [`read`], [`shutdown_write`], [`reset`]) and lets the server
//! run with [`step`] (one turn of the documented run loop) or [`drive`]
//! (turns until nothing changes). Time moves only when the test says so.
//!
//! Like a real stack, the simulator turns some moves into resets: a client
//! that writes after the server released its handle gets a reset, and so
//! does one whose unread bytes were still in the pipe when the server closed.
//!
//! ```
//! use selecho_core::Config;
//! use selecho_core::sim::{ClientState, Sim};
//!
//! // 4 connections, 64-byte queues, at most 4 clients, 64-byte pipes.
//! let mut sim: Sim<4, 64, 4, 64> = Sim::new(Config::new());
//! let client = sim.connect()?;
//! assert_eq!(sim.write(client, b"hello"), 5);
//! sim.drive()?;
//! let mut buf = [0; 16];
//! assert_eq!(sim.read(client, &mut buf), 5);
//! assert_eq!(&buf[..5], b"hello");
//!
//! sim.shutdown_write(client);
//! sim.drive()?;
//! assert_eq!(sim.state(client), ClientState::Eof);
//! assert_eq!(sim.echo().counters().closed, 1);
//! # Ok::<(), selecho_core::sim::SimError>(())
//! ```
//!
//! [`connect`]: Sim::connect
//! [`write`]: Sim::write
//! [`read`]: Sim::read
//! [`shutdown_write`]: Sim::shutdown_write
//! [`reset`]: Sim::reset
//! [`step`]: Sim::step
//! [`drive`]: Sim::drive

pub mod udp;

use core::fmt;

use crate::conn::{Close, CloseHow, ConnId};
use crate::echo::{Config, Echo};
use crate::queue::ByteQueue;
use crate::time::{Duration, Instant};

/// Names one simulated client; it is also the handle the machine stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClientId(u16);

impl ClientId {
    /// The client's number, in order of [`Sim::connect`] calls from 0.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client{}", self.0)
    }
}

/// What a client sees of its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientState {
    /// Waiting in the listener's backlog for the server to accept it.
    Connecting,
    /// Accepted, and not yet at end of stream.
    Open,
    /// The server closed gracefully and the client has read every byte.
    Eof,
    /// Either side aborted: the server reset it, or the client did.
    Reset,
}

/// What went wrong in the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SimError {
    /// [`Sim::connect`] was called with all `C` clients already made.
    TooManyClients,
    /// [`Sim::drive`] took [`Sim::MAX_STEPS`] steps and things still changed.
    NoQuiet,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::TooManyClients => f.write_str("every client slot is taken"),
            SimError::NoQuiet => f.write_str("the simulation did not settle"),
        }
    }
}

impl core::error::Error for SimError {}

/// Where a client stands with the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// In the backlog, not yet accepted.
    Backlog,
    /// Accepted as this connection.
    Accepted(ConnId),
    /// The server released its handle.
    Released,
}

/// One client and the two pipes between it and the server.
#[derive(Clone)]
struct Client<const P: usize> {
    phase: Phase,
    /// Written by the client, not yet read by the server.
    to_server: ByteQueue<P>,
    /// Sent by the server, not yet read by the client.
    to_client: ByteQueue<P>,
    /// The client shut its write side down.
    shut_write: bool,
    /// The server shut its write side down (graceful close).
    fin: bool,
    /// The connection was aborted, by either side.
    reset: bool,
    /// The order the server's shell got when it released the handle.
    close: Option<Close<ClientId>>,
}

impl<const P: usize> Client<P> {
    const NEW: Self = Client {
        phase: Phase::Backlog,
        to_server: ByteQueue::new(),
        to_client: ByteQueue::new(),
        shut_write: false,
        fin: false,
        reset: false,
        close: None,
    };

    /// The connection dies: whatever is in flight either way is lost.
    fn abort(&mut self) {
        self.reset = true;
        self.to_server.clear();
        self.to_client.clear();
    }
}

/// A simulated server: an [`Echo`] of `N` connections with `Q`-byte queues,
/// at most `C` clients, and `P`-byte pipes each way per client.
///
/// See the [module docs](self) for an example.
pub struct Sim<const N: usize, const Q: usize, const C: usize, const P: usize> {
    echo: Echo<ClientId, N, Q>,
    clients: heapless::Vec<Client<P>, C>,
    now: Instant,
    send_limit: Option<usize>,
    recv_limit: Option<usize>,
}

impl<const N: usize, const Q: usize, const C: usize, const P: usize> Sim<N, Q, C, P> {
    /// [`drive`](Self::drive) gives up after this many steps.
    pub const MAX_STEPS: usize = MAX_STEPS;

    /// Client ids are `u16`.
    const FITS: () = assert!(C <= u16::MAX as usize, "at most 65535 clients");

    /// A server with no clients at [`Instant::ZERO`], sends and reads unlimited.
    pub const fn new(config: Config) -> Self {
        let () = Self::FITS;
        Sim {
            echo: Echo::new(config),
            clients: heapless::Vec::new(),
            now: Instant::ZERO,
            send_limit: None,
            recv_limit: None,
        }
    }

    /// The machine, for its counters, connections and deadlines.
    pub const fn echo(&self) -> &Echo<ClientId, N, Q> {
        &self.echo
    }

    /// The machine, for what a shell does besides I/O:
    /// [`begin_shutdown`](Echo::begin_shutdown), [`abort_all`](Echo::abort_all),
    /// [`close`](Echo::close). The closes it orders are carried out at the
    /// next step; do not [`poll_close`](Echo::poll_close) yourself.
    pub const fn echo_mut(&mut self) -> &mut Echo<ClientId, N, Q> {
        &mut self.echo
    }

    /// The fake clock.
    pub const fn now(&self) -> Instant {
        self.now
    }

    /// Each send by the server's shell takes at most `limit` bytes (`None`:
    /// all the pipe has room for). `Some(0)` stalls every send.
    pub const fn set_send_limit(&mut self, limit: Option<usize>) {
        self.send_limit = limit;
    }

    /// Each read by the server's shell takes at most `limit` bytes (`None`:
    /// all that [`recv_buf`](Echo::recv_buf) offers). `Some(0)` stalls every read.
    pub const fn set_recv_limit(&mut self, limit: Option<usize>) {
        self.recv_limit = limit;
    }

    /// A new client, waiting in the backlog until a step accepts it.
    pub fn connect(&mut self) -> Result<ClientId, SimError> {
        // Cannot truncate: FITS bounds C, and so the number of clients.
        let id = ClientId(self.clients.len() as u16);
        self.clients
            .push(Client::NEW)
            .map_err(|_| SimError::TooManyClients)?;
        Ok(id)
    }

    /// The client writes `bytes` without blocking: returns how many fit in
    /// the pipe to the server. Nothing is written after the client shut its
    /// write side down or the connection was reset; writing to a server that
    /// released its handle resets the connection.
    pub fn write(&mut self, client: ClientId, bytes: &[u8]) -> usize {
        let Some(client) = self.clients.get_mut(client.index()) else {
            return 0;
        };
        if bytes.is_empty() || client.reset || client.shut_write {
            return 0;
        }
        if client.phase == Phase::Released {
            client.abort();
            return 0;
        }
        client.to_server.push_slice(bytes)
    }

    /// The client reads what the server sent, without blocking: returns how
    /// many bytes were moved into `out`.
    pub fn read(&mut self, client: ClientId, out: &mut [u8]) -> usize {
        let Some(client) = self.clients.get_mut(client.index()) else {
            return 0;
        };
        client.to_client.pop_slice(out)
    }

    /// The client shuts its write side down: once the server has read every
    /// byte before it, its next read sees end of stream.
    pub fn shutdown_write(&mut self, client: ClientId) {
        if let Some(client) = self.clients.get_mut(client.index()) {
            client.shut_write = true;
        }
    }

    /// The client aborts: bytes in flight either way are lost, and the
    /// server's next step on the connection sees the reset.
    pub fn reset(&mut self, client: ClientId) {
        if let Some(client) = self.clients.get_mut(client.index()) {
            client.abort();
        }
    }

    /// What the client sees of its connection.
    pub fn state(&self, client: ClientId) -> ClientState {
        let Some(client) = self.clients.get(client.index()) else {
            return ClientState::Reset;
        };
        if client.reset {
            return ClientState::Reset;
        }
        if client.phase == Phase::Backlog {
            return ClientState::Connecting;
        }
        if client.fin && client.to_client.is_empty() {
            return ClientState::Eof;
        }
        ClientState::Open
    }

    /// The machine's id for the client's connection, once accepted (stale
    /// after the server closed it).
    pub fn conn_id(&self, client: ClientId) -> Option<ConnId> {
        match self.clients.get(client.index())?.phase {
            Phase::Accepted(id) => Some(id),
            Phase::Backlog | Phase::Released => None,
        }
    }

    /// The close order the server's shell carried out for the client, if any.
    pub fn close_of(&self, client: ClientId) -> Option<Close<ClientId>> {
        self.clients.get(client.index())?.close
    }

    /// Bytes the client wrote that the server has not read yet.
    pub fn unread_by_server(&self, client: ClientId) -> usize {
        self.clients
            .get(client.index())
            .map_or(0, |client| client.to_server.len())
    }

    /// Bytes the server sent that the client has not read yet.
    pub fn unread_by_client(&self, client: ClientId) -> usize {
        self.clients
            .get(client.index())
            .map_or(0, |client| client.to_client.len())
    }

    /// Moves the fake clock forward. Nothing runs until the next step.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
    }

    /// Jumps the clock to the machine's next deadline, if it has one and it
    /// is not past, then steps. Returns the deadline; `None`: nothing done.
    pub fn step_to_deadline(&mut self) -> Option<Instant> {
        let deadline = self.echo.poll_timeout()?;
        if deadline > self.now {
            self.now = deadline;
        }
        self.step();
        Some(deadline)
    }

    /// Steps until a step changes nothing; returns how many steps changed
    /// something, or [`SimError::NoQuiet`] after [`MAX_STEPS`](Self::MAX_STEPS).
    pub fn drive(&mut self) -> Result<usize, SimError> {
        settle(|| self.step())
    }

    /// One turn of the run loop, in the documented drain order: accept from
    /// the backlog while the machine is accepting; for each connection, see a
    /// reset, else read once (or see end of stream) if it wants to read and
    /// send once if it wants to write; the timeout; then carry out every
    /// close order. Returns whether anything changed.
    pub fn step(&mut self) -> bool {
        let mut changed = self.accept();
        let mut ready: heapless::Vec<(ConnId, ClientId), N> = heapless::Vec::new();
        for (id, client, _) in self.echo.connections() {
            // Cannot overflow: the machine holds at most N connections.
            let _ = ready.push((id, client));
        }
        for &(id, client) in &ready {
            changed |= self.serve(id, client);
        }
        self.echo.handle_timeout(self.now);
        while let Some(close) = self.echo.poll_close() {
            self.release(close);
            changed = true;
        }
        changed
    }

    /// Accepts clients from the backlog, oldest first, while the machine takes them.
    fn accept(&mut self) -> bool {
        let mut changed = false;
        for (index, client) in self.clients.iter_mut().enumerate() {
            if !self.echo.accepting() {
                break;
            }
            if client.phase != Phase::Backlog {
                continue;
            }
            // Cannot truncate: index < C, which FITS bounds.
            let handle = ClientId(index as u16);
            changed = true;
            match self.echo.handle_accept(handle, self.now) {
                Ok(id) => client.phase = Phase::Accepted(id),
                Err(_) => {
                    client.phase = Phase::Released;
                    client.abort();
                }
            }
        }
        changed
    }

    /// The shell's work on one ready connection this turn.
    fn serve(&mut self, id: ConnId, client: ClientId) -> bool {
        let Some(pipes) = self.clients.get_mut(client.index()) else {
            return false;
        };
        if pipes.reset {
            return self.echo.handle_reset(id).is_ok();
        }
        let mut changed = false;
        if self.echo.interest(id).is_ok_and(|interest| interest.read) {
            changed |= receive(&mut self.echo, pipes, id, self.recv_limit, self.now);
        }
        if self.echo.interest(id).is_ok_and(|interest| interest.write) {
            changed |= send(&mut self.echo, pipes, id, self.send_limit, self.now);
        }
        changed
    }

    /// Carries out one close order on the client's side of the pipes.
    fn release(&mut self, close: Close<ClientId>) {
        let Some(client) = self.clients.get_mut(close.handle.index()) else {
            return;
        };
        client.phase = Phase::Released;
        client.close = Some(close);
        match close.how {
            // Closing with unread bytes makes a real stack answer with a reset.
            CloseHow::Graceful if client.to_server.is_empty() => client.fin = true,
            CloseHow::Graceful | CloseHow::Abort => client.abort(),
        }
    }
}

impl<const N: usize, const Q: usize, const C: usize, const P: usize> fmt::Debug
    for Sim<N, Q, C, P>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("clients", &self.clients.len())
            .field("echo", &self.echo)
            .finish()
    }
}

/// How many steps a simulator's `drive` takes before it gives up.
const MAX_STEPS: usize = 1 << 20;

/// Calls `step` until it changes nothing; returns how many calls changed
/// something, or [`SimError::NoQuiet`] after [`MAX_STEPS`] of them.
fn settle(mut step: impl FnMut() -> bool) -> Result<usize, SimError> {
    for steps in 0..MAX_STEPS {
        if !step() {
            return Ok(steps);
        }
    }
    Err(SimError::NoQuiet)
}

/// One read by the shell: at most `limit` bytes from the client's pipe into
/// the machine, or end of stream once the pipe is empty and shut.
fn receive<const N: usize, const Q: usize, const P: usize>(
    echo: &mut Echo<ClientId, N, Q>,
    client: &mut Client<P>,
    id: ConnId,
    limit: Option<usize>,
    now: Instant,
) -> bool {
    if client.to_server.is_empty() {
        if client.shut_write {
            return echo.handle_end_of_stream(id, now).is_ok();
        }
        // Nothing waiting: a shutting-down machine may close it now (the
        // close is carried out, and counted as a change, after the turn).
        let _ = echo.handle_would_block(id, now);
        return false;
    }
    let Ok(buf) = echo.recv_buf(id) else {
        return false;
    };
    let room = limit.map_or(buf.len(), |limit| limit.min(buf.len()));
    let n = client.to_server.pop_slice(&mut buf[..room]);
    n > 0 && echo.handle_received(id, n, now).is_ok()
}

/// One send by the shell: at most `limit` bytes from the machine into the
/// client's pipe, as many as the pipe has room for.
fn send<const N: usize, const Q: usize, const P: usize>(
    echo: &mut Echo<ClientId, N, Q>,
    client: &mut Client<P>,
    id: ConnId,
    limit: Option<usize>,
    now: Instant,
) -> bool {
    let Ok(data) = echo.send_buf(id) else {
        return false;
    };
    let offered = limit.map_or(data.len(), |limit| limit.min(data.len()));
    let n = client.to_client.push_slice(&data[..offered]);
    n > 0 && echo.handle_sent(id, n, now).is_ok()
}
