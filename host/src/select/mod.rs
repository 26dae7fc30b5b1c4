//! The select() shell: one thread, `select(2)` over non-blocking sockets,
//! driving the echo machine.
//!
//! Flags become a checked [`Plan`](plan::Plan) (`plan.rs`); [`setup`]
//! binds the listeners and builds the machine; [`serve`] is the loop, and
//! [`accept`] what it does with a readable listener.
//!
//! Each round: watch the signal pipe, the listeners (only while the machine
//! is [`accepting`](selecho_core::Echo::accepting)) and every connection
//! for what the machine wants; sleep in `select` until I/O or the nearest
//! deadline (idle timeout, stats, end of grace; none: block); serve what is
//! ready; close what the machine says to close. Everything is allocated
//! before the first round.
//!
//! # The `FD_SETSIZE` limit
//!
//! `select` can only watch descriptors below `FD_SETSIZE` (1024), so the
//! machine's table has 1024 slots and `--max-conns` may be at most 1024 less
//! the descriptors the server holds itself (stdio, the signal pipe, the
//! listeners, the spare descriptor): a larger value is a usage error. A
//! connection accepted on a descriptor at or above `FD_SETSIZE` anyway (one
//! inherited or opened behind the server's back took a low number) is
//! closed at once and counted as refused: it never reaches an `fd_set`.

mod accept;
mod plan;
mod serve;
mod setup;

use std::os::fd::RawFd;

use selecho_core::Echo;

use crate::cli::SelectArgs;
use crate::daemon::signals::Signals;
use crate::daemon::stats::Totals;
use crate::daemon::thread;
use crate::sys::fdset::FD_SETSIZE;

/// Bytes queued per connection; the table costs 16 MiB. Measured on
/// loopback (10 connections streaming 16 KiB writes), 16 KiB echoes about
/// twice the bytes per second of 4 KiB at a third of the CPU per byte;
/// 64-byte ping-pong does not notice.
const QUEUE: usize = 16 * 1024;

/// The machine: one slot per descriptor `select` can watch.
type Machine = Echo<RawFd, FD_SETSIZE, QUEUE>;

/// Serves until a signal; returns the final counters.
pub fn run(args: &SelectArgs, signals: &Signals) -> anyhow::Result<Totals> {
    let plan = plan::Plan::new(args)?;
    thread::with_stack_for::<Machine, _>("select", || setup::start(&plan, signals)?.serve())
}
