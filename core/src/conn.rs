//! The small types that cross the machine's boundary: connection ids,
//! interest, close orders and counters.

use core::fmt;

/// Names one connection for as long as it lives.
///
/// A slot of the table is reused after its connection closes; the generation
/// makes every id given out for the old connection stale, so a late event for
/// it gets [`StaleId`](crate::StaleId) instead of touching the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnId {
    pub(crate) index: u16,
    pub(crate) generation: u32,
}

impl ConnId {
    /// The table slot this connection occupies, `0..capacity`: handy for a
    /// shell that keeps per-slot state of its own (the smoltcp adapter does).
    pub const fn slot(self) -> usize {
        self.index as usize
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.index, self.generation)
    }
}

/// What the shell should watch a connection's handle for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Interest {
    /// The queue has room and the peer may still send: read from it.
    pub read: bool,
    /// Bytes are queued: send them when the handle is writable.
    pub write: bool,
    /// Read now, readable or not: the machine must learn whether anything
    /// is waiting. Only while shutting down, for an open connection whose
    /// queue emptied after a read that found bytes; a quiet peer would
    /// never make it readable (see
    /// [`Echo::begin_shutdown`](crate::Echo::begin_shutdown)).
    pub probe: bool,
}

impl Interest {
    /// Neither read nor write.
    pub const NONE: Interest = Interest {
        read: false,
        write: false,
        probe: false,
    };
}

/// How the shell must end a connection it is told to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CloseHow {
    /// Every queued byte has been handed to the shell: shut the write side
    /// down (FIN after what the kernel still holds), then release the handle.
    Graceful,
    /// Bytes were dropped or the connection is already dead: release the
    /// handle at once (a reset where the stack allows it).
    Abort,
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CloseReason {
    /// The peer half-closed and every byte it sent was echoed.
    Done,
    /// The shell reported a reset or another fatal error on the connection.
    Reset,
    /// Neither direction made progress for the idle timeout.
    TimedOut,
    /// The server is stopping: a quiet connection closed gracefully after
    /// [`Echo::begin_shutdown`](crate::Echo::begin_shutdown), or one cut by
    /// [`Echo::abort_all`](crate::Echo::abort_all) or
    /// [`Echo::close`](crate::Echo::close).
    Shutdown,
}

/// An order to close one handle, from [`Echo::poll_close`](crate::Echo::poll_close).
///
/// By the time the shell sees it the slot is free and the id is stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Close<H> {
    /// The connection that ended (now stale).
    pub id: ConnId,
    /// The shell's handle, given back.
    pub handle: H,
    /// How to close it.
    pub how: CloseHow,
    /// Why.
    pub reason: CloseReason,
}

/// What the machine has seen since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Counters {
    /// Connections taken into the table.
    pub accepted: u64,
    /// Connections turned away because the table was full.
    pub refused: u64,
    /// Bytes received from peers.
    pub bytes_in: u64,
    /// Bytes echoed back (handed to the shell and reported sent).
    pub bytes_out: u64,
    /// Connections that ended after echoing everything ([`CloseReason::Done`]).
    pub closed: u64,
    /// Connections that ended in a reset or error ([`CloseReason::Reset`]).
    pub reset: u64,
    /// Connections closed by the idle timeout ([`CloseReason::TimedOut`]).
    pub timed_out: u64,
    /// Connections closed on the shell's request ([`CloseReason::Shutdown`]).
    pub shut_down: u64,
}

impl core::ops::AddAssign for Counters {
    /// Adds `other`'s counts: the totals of several machines.
    fn add_assign(&mut self, other: Counters) {
        self.accepted += other.accepted;
        self.refused += other.refused;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.closed += other.closed;
        self.reset += other.reset;
        self.timed_out += other.timed_out;
        self.shut_down += other.shut_down;
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} refused={} bytes_in={} bytes_out={} closed={} reset={} timed_out={} shut_down={}",
            self.accepted,
            self.refused,
            self.bytes_in,
            self.bytes_out,
            self.closed,
            self.reset,
            self.timed_out,
            self.shut_down
        )
    }
}
