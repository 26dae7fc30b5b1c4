//! The echo machine: a fixed table of connections, each with its own queue.

use core::fmt;

use crate::conn::{Close, CloseHow, CloseReason, ConnId, Counters, Interest};
use crate::queue::ByteQueue;
use crate::time::{Duration, Instant};

/// How the machine behaves; fixed at construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Close a connection when neither direction made progress for this
    /// long. `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Accept at most this many connections at once; the table's capacity
    /// `N` bounds it too. Lets a shell pick the limit at run time.
    pub max_connections: usize,
    /// While shutting down, how long an open connection must be still —
    /// nothing received or sent, and the last read found nothing waiting —
    /// before it counts as finished and closes gracefully. Longer than a
    /// round trip, so bytes a peer has in flight (held back by a full
    /// window) arrive and are echoed rather than meet a closed socket.
    pub quiet_period: Duration,
}

impl Config {
    /// No idle timeout, as many connections as the table holds.
    pub const fn new() -> Self {
        Config {
            idle_timeout: None,
            max_connections: usize::MAX,
            quiet_period: Self::QUIET_PERIOD,
        }
    }

    /// The default [`quiet_period`](Self::quiet_period): 250 ms.
    pub const QUIET_PERIOD: Duration = Duration::from_millis(250);

    /// This configuration with the given idle timeout.
    pub const fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// This configuration with at most `max` connections at once.
    pub const fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// This configuration with the given shutdown quiet period.
    pub const fn with_quiet_period(mut self, quiet: Duration) -> Self {
        self.quiet_period = quiet;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// Why [`Echo::handle_accept`] turned a connection away. The shell still
/// owns the handle and should close it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AcceptError {
    /// Every slot is taken (or `max_connections` is reached).
    Full,
    /// [`Echo::begin_shutdown`] was called.
    ShuttingDown,
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcceptError::Full => f.write_str("connection table full"),
            AcceptError::ShuttingDown => f.write_str("shutting down"),
        }
    }
}

impl core::error::Error for AcceptError {}

/// The id names no live connection: it closed, and its slot may hold another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StaleId;

impl fmt::Display for StaleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stale connection id")
    }
}

impl core::error::Error for StaleId {}

/// Why [`Echo::handle_received`] or [`Echo::handle_sent`] refused a report
/// of bytes moved. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReportError {
    /// See [`StaleId`].
    Stale,
    /// More bytes than [`Echo::recv_buf`] (or [`Echo::send_buf`]) offered:
    /// a bug in the shell.
    Overflow,
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::Stale => f.write_str("stale connection id"),
            ReportError::Overflow => f.write_str("more bytes reported than the buffer offered"),
        }
    }
}

impl core::error::Error for ReportError {}

impl From<StaleId> for ReportError {
    fn from(StaleId: StaleId) -> Self {
        ReportError::Stale
    }
}

/// Where one connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The slot holds no connection.
    Free,
    /// Both directions open.
    Open,
    /// The peer sent its last byte (end of stream): send what is queued,
    /// then close gracefully ([`CloseReason::Done`]).
    Draining,
    /// Waiting in the close queue for [`Echo::poll_close`].
    Closing(CloseHow, CloseReason),
}

/// The small, often-scanned part of a slot, kept apart from the queues so a
/// scan of the table touches a few cache lines, not every queue.
#[derive(Clone, Copy)]
struct Meta<H> {
    generation: u32,
    state: State,
    handle: Option<H>,
    last_activity: Instant,
    /// The last read found nothing waiting (no byte came since).
    read_idle: bool,
}

impl<H> Meta<H> {
    const FREE: Self = Meta {
        generation: 0,
        state: State::Free,
        handle: None,
        last_activity: Instant::ZERO,
        read_idle: false,
    };

    fn is_live(&self) -> bool {
        matches!(self.state, State::Open | State::Draining)
    }
}

/// The echo state machine for up to `N` connections with `Q`-byte queues.
///
/// `H` is the shell's handle for a connection (a file descriptor, a smoltcp
/// `SocketHandle`, …); the machine stores it and gives it back, nothing more.
/// See the [crate docs](crate) for the run loop and its contract.
pub struct Echo<H, const N: usize, const Q: usize> {
    meta: [Meta<H>; N],
    queues: [ByteQueue<Q>; N],
    /// Slots released by [`Echo::poll_close`], ready for reuse.
    free: heapless::Vec<u16, N>,
    /// Slots never used yet start here; lets `new` be `const`.
    fresh: u16,
    /// Slots waiting for [`Echo::poll_close`], oldest first.
    closing: heapless::Deque<u16, N>,
    /// Slots not free (open, draining or closing).
    used: usize,
    shutting_down: bool,
    config: Config,
    counters: Counters,
}

impl<H: Copy, const N: usize, const Q: usize> Echo<H, N, Q> {
    /// Slot indices are `u16`.
    const FITS: () = assert!(N <= u16::MAX as usize, "at most 65535 connections");

    /// An empty machine. `const`, so it can live in a `static`.
    pub const fn new(config: Config) -> Self {
        let () = Self::FITS;
        Echo {
            meta: [Meta::FREE; N],
            queues: [const { ByteQueue::new() }; N],
            free: heapless::Vec::new(),
            fresh: 0,
            closing: heapless::Deque::new(),
            used: 0,
            shutting_down: false,
            config,
            counters: Counters {
                accepted: 0,
                refused: 0,
                bytes_in: 0,
                bytes_out: 0,
                closed: 0,
                reset: 0,
                timed_out: 0,
                shut_down: 0,
            },
        }
    }

    /// The configuration it was made with.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// What it has seen so far.
    pub const fn counters(&self) -> &Counters {
        &self.counters
    }

    /// How many connections it accepts at once: `min(N, max_connections)`.
    pub const fn capacity(&self) -> usize {
        if self.config.max_connections < N {
            self.config.max_connections
        } else {
            N
        }
    }

    /// Slots in use: connections open, draining, or waiting in the close queue.
    pub const fn len(&self) -> usize {
        self.used
    }

    /// Whether no slot is in use (after a shutdown: everything is closed).
    pub const fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Whether the shell should accept now. While false, stop watching the
    /// listener: new connections wait in the stack's backlog.
    pub const fn accepting(&self) -> bool {
        !self.shutting_down && self.used < self.capacity()
    }

    /// A new connection. On error the shell keeps `handle` and closes it.
    pub fn handle_accept(&mut self, handle: H, now: Instant) -> Result<ConnId, AcceptError> {
        if self.shutting_down {
            self.counters.refused += 1;
            return Err(AcceptError::ShuttingDown);
        }
        if self.used >= self.capacity() {
            self.counters.refused += 1;
            debug!("refused: table full ({} connections)", self.used);
            return Err(AcceptError::Full);
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                // used < capacity <= N and no slot is free, so an unused one remains.
                let index = self.fresh;
                self.fresh += 1;
                index
            }
        };
        let meta = &mut self.meta[usize::from(index)];
        meta.state = State::Open;
        meta.handle = Some(handle);
        meta.last_activity = now;
        meta.read_idle = false;
        self.used += 1;
        self.counters.accepted += 1;
        let id = ConnId {
            index,
            generation: meta.generation,
        };
        debug!("{} accepted", id);
        Ok(id)
    }

    /// A connection the shell turned away before it reached the machine
    /// (a descriptor the shell cannot watch, say): counted as refused.
    pub fn handle_refused(&mut self) {
        self.counters.refused += 1;
    }

    /// The space to read the connection's next bytes into; report how many
    /// arrived with [`handle_received`](Self::handle_received). Empty while
    /// there is no read interest (queue full, or the peer half-closed).
    pub fn recv_buf(&mut self, id: ConnId) -> Result<&mut [u8], StaleId> {
        let i = self.live(id)?;
        if self.meta[i].state != State::Open {
            return Ok(&mut []);
        }
        Ok(self.queues[i].free_mut())
    }

    /// `n` bytes were read into the front of [`recv_buf`](Self::recv_buf).
    pub fn handle_received(
        &mut self,
        id: ConnId,
        n: usize,
        now: Instant,
    ) -> Result<(), ReportError> {
        let i = self.live(id)?;
        if n == 0 {
            return Ok(());
        }
        if self.meta[i].state != State::Open {
            return Err(ReportError::Overflow);
        }
        self.queues[i]
            .commit(n)
            .map_err(|_| ReportError::Overflow)?;
        self.meta[i].last_activity = now;
        self.meta[i].read_idle = false;
        self.counters.bytes_in += n as u64;
        trace!("{} received {}", id, n);
        Ok(())
    }

    /// The peer will send no more (a read returned end of stream). What is
    /// queued is still sent; then the machine orders a graceful close.
    pub fn handle_end_of_stream(&mut self, id: ConnId, now: Instant) -> Result<(), StaleId> {
        let i = self.live(id)?;
        if self.meta[i].state != State::Open {
            return Ok(());
        }
        debug!(
            "{} end of stream, {} bytes to drain",
            id,
            self.queues[i].len()
        );
        self.meta[i].last_activity = now;
        self.meta[i].state = State::Draining;
        if self.queues[i].is_empty() {
            self.schedule_close(i, CloseHow::Graceful, CloseReason::Done);
        }
        Ok(())
    }

    /// A read found nothing waiting (`EAGAIN`, an empty receive buffer).
    /// It matters only while shutting down: an open connection with nothing
    /// queued that stays so for the [quiet period](Config::quiet_period) is
    /// finished (every byte it sent was echoed), and the machine orders a
    /// graceful close ([`CloseReason::Shutdown`]), at once or at the deadline
    /// [`poll_timeout`](Self::poll_timeout) gives. Cheap, and harmless at
    /// any other time.
    pub fn handle_would_block(&mut self, id: ConnId, now: Instant) -> Result<(), StaleId> {
        let i = self.live(id)?;
        self.meta[i].read_idle = true;
        self.finish_if_quiet(i, now);
        Ok(())
    }

    /// The bytes to send next; report how many were taken with
    /// [`handle_sent`](Self::handle_sent). Empty while nothing is queued.
    pub fn send_buf(&self, id: ConnId) -> Result<&[u8], StaleId> {
        let i = self.live(id)?;
        Ok(self.queues[i].data())
    }

    /// The first `n` bytes of [`send_buf`](Self::send_buf) were sent.
    pub fn handle_sent(&mut self, id: ConnId, n: usize, now: Instant) -> Result<(), ReportError> {
        let i = self.live(id)?;
        if n == 0 {
            return Ok(());
        }
        self.queues[i]
            .consume(n)
            .map_err(|_| ReportError::Overflow)?;
        self.meta[i].last_activity = now;
        self.counters.bytes_out += n as u64;
        trace!("{} sent {}", id, n);
        if self.meta[i].state == State::Draining && self.queues[i].is_empty() {
            self.schedule_close(i, CloseHow::Graceful, CloseReason::Done);
        }
        Ok(())
    }

    /// The connection failed (reset, broken pipe, …): its queue is dropped
    /// and the machine orders an abortive close.
    pub fn handle_reset(&mut self, id: ConnId) -> Result<(), StaleId> {
        let i = self.live(id)?;
        debug!("{} reset, {} bytes dropped", id, self.queues[i].len());
        self.schedule_close(i, CloseHow::Abort, CloseReason::Reset);
        Ok(())
    }

    /// The shell wants this connection gone now: abortive close, queue dropped.
    pub fn close(&mut self, id: ConnId) -> Result<(), StaleId> {
        let i = self.live(id)?;
        self.schedule_close(i, CloseHow::Abort, CloseReason::Shutdown);
        Ok(())
    }

    /// Time has passed: close connections idle for the timeout, and (while
    /// shutting down) the ones quiet for the quiet period. Call it whenever
    /// `now` reaches [`poll_timeout`](Self::poll_timeout) (calling it more
    /// often is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..usize::from(self.fresh) {
            self.finish_if_quiet(i, now);
            let Some(idle) = self.config.idle_timeout else {
                continue;
            };
            // Not live: free, or closed just now (quiet, above).
            let meta = &self.meta[i];
            if !meta.is_live() || now - meta.last_activity < idle {
                continue;
            }
            // Bytes still queued are lost: say so with a reset.
            let how = if self.queues[i].is_empty() {
                CloseHow::Graceful
            } else {
                CloseHow::Abort
            };
            debug!("#{} idle for {}, closing", i, idle);
            self.schedule_close(i, how, CloseReason::TimedOut);
        }
    }

    /// Stop accepting; every connection goes on being served until it is
    /// finished, then closes gracefully: one whose peer half-closed once
    /// every byte is echoed ([`CloseReason::Done`]); an open one once it is
    /// quiet — nothing queued, its last read found nothing waiting
    /// ([`handle_would_block`](Self::handle_would_block)), and nothing moved
    /// either way for the [quiet period](Config::quiet_period)
    /// ([`CloseReason::Shutdown`]). So a graceful close never leaves a byte
    /// the peer sent unechoed. The shell reads each open connection once
    /// after calling this (an idle one is never readable, so the machine
    /// would never learn it is quiet), and while shutting down reads again
    /// whenever a connection's queue empties. What has not finished when the
    /// grace period ends goes with [`abort_all`](Self::abort_all).
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// Whether [`begin_shutdown`](Self::begin_shutdown) was called.
    pub const fn shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Close every connection still open at once, dropping its queue.
    pub fn abort_all(&mut self) {
        for i in 0..usize::from(self.fresh) {
            if self.meta[i].is_live() {
                self.schedule_close(i, CloseHow::Abort, CloseReason::Shutdown);
            }
        }
    }

    /// What to watch the connection's handle for.
    pub fn interest(&self, id: ConnId) -> Result<Interest, StaleId> {
        let i = self.live(id)?;
        Ok(self.interest_at(i))
    }

    /// The shell's handle for the connection.
    pub fn handle(&self, id: ConnId) -> Result<H, StaleId> {
        let i = self.live(id)?;
        // Every live slot holds its handle (set in handle_accept, taken in poll_close).
        self.meta[i].handle.ok_or(StaleId)
    }

    /// Every live connection with its handle and interest, in slot order.
    /// A shell rebuilds what it watches from this each turn.
    pub fn connections(&self) -> impl Iterator<Item = (ConnId, H, Interest)> + '_ {
        self.meta[..usize::from(self.fresh)]
            .iter()
            .enumerate()
            .filter(|(_, meta)| meta.is_live())
            .filter_map(move |(i, meta)| {
                let id = ConnId {
                    index: i as u16,
                    generation: meta.generation,
                };
                Some((id, meta.handle?, self.interest_at(i)))
            })
    }

    /// The next handle to close, or `None`. Drain it after every batch of
    /// events: the slot is already free and the id stale.
    pub fn poll_close(&mut self) -> Option<Close<H>> {
        let index = self.closing.pop_front()?;
        let i = usize::from(index);
        let meta = &mut self.meta[i];
        let State::Closing(how, reason) = meta.state else {
            // Only schedule_close queues a slot, and it sets Closing; nothing else changes it.
            return None;
        };
        let handle = meta.handle.take()?;
        let id = ConnId {
            index,
            generation: meta.generation,
        };
        meta.state = State::Free;
        meta.generation = meta.generation.wrapping_add(1);
        self.queues[i].clear();
        // Cannot overflow: each of the N slots is in `free` at most once.
        let _ = self.free.push(index);
        self.used -= 1;
        debug!("{} closed", id);
        Some(Close {
            id,
            handle,
            how,
            reason,
        })
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next; `None`:
    /// only events can make work. A shell sleeps until then or until I/O.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // No timer can be running: spare the walk over the table.
        if self.config.idle_timeout.is_none() && !self.shutting_down {
            return None;
        }
        let idle = self.config.idle_timeout;
        let mut earliest: Option<Instant> = None;
        for i in 0..usize::from(self.fresh) {
            if !self.meta[i].is_live() {
                continue;
            }
            let quiet = self.awaiting_quiet(i).then_some(self.config.quiet_period);
            for after in [idle, quiet].into_iter().flatten() {
                let at = self.meta[i].last_activity + after;
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        earliest
    }

    /// Index of a live (open or draining) connection.
    fn live(&self, id: ConnId) -> Result<usize, StaleId> {
        let i = usize::from(id.index);
        match self.meta.get(i) {
            Some(meta) if meta.generation == id.generation && meta.is_live() => Ok(i),
            _ => Err(StaleId),
        }
    }

    fn interest_at(&self, i: usize) -> Interest {
        let (meta, queue) = (&self.meta[i], &self.queues[i]);
        let open = meta.state == State::Open;
        Interest {
            read: open && !queue.is_full(),
            write: !queue.is_empty(),
            probe: self.shutting_down && open && !meta.read_idle && queue.is_empty(),
        }
    }

    /// While shutting down, closes slot `i` gracefully if it is finished:
    /// awaiting quiet (see `awaiting_quiet`) and still for the quiet period.
    fn finish_if_quiet(&mut self, i: usize, now: Instant) {
        if self.awaiting_quiet(i) && now - self.meta[i].last_activity >= self.config.quiet_period {
            self.schedule_close(i, CloseHow::Graceful, CloseReason::Shutdown);
        }
    }

    /// Whether slot `i` finishes once it stays quiet for the quiet period:
    /// shutting down, open, nothing queued, and its last read found nothing.
    fn awaiting_quiet(&self, i: usize) -> bool {
        let meta = &self.meta[i];
        self.shutting_down
            && meta.state == State::Open
            && meta.read_idle
            && self.queues[i].is_empty()
    }

    fn schedule_close(&mut self, i: usize, how: CloseHow, reason: CloseReason) {
        if how == CloseHow::Abort {
            self.queues[i].clear();
        }
        self.meta[i].state = State::Closing(how, reason);
        // Cannot overflow: a slot is queued once, when it leaves the live states.
        let _ = self.closing.push_back(i as u16);
        let counter = match reason {
            CloseReason::Done => &mut self.counters.closed,
            CloseReason::Reset => &mut self.counters.reset,
            CloseReason::TimedOut => &mut self.counters.timed_out,
            CloseReason::Shutdown => &mut self.counters.shut_down,
        };
        *counter += 1;
    }
}

impl<H, const N: usize, const Q: usize> fmt::Debug for Echo<H, N, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Echo")
            .field("connections", &self.used)
            .field("capacity", &N)
            .field("queue", &Q)
            .field("counters", &self.counters)
            .finish()
    }
}
