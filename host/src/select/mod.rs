//! The select() shell: `select(2)` loops over non-blocking sockets, one
//! per thread, each driving echo machines of its own (TCP, and UDP on the
//! same ports).
//!
//! Flags become a checked [`Plan`](plan::Plan) (`plan.rs`); [`setup`]
//! binds the sockets, or takes the ones socket activation hands over
//! ([`activation`]), and raises the descriptor limit the plan needs;
//! [`control`] is the main thread, which starts the workers and turns
//! signals and the stats interval into orders for them; [`worker`] is one
//! select() loop, with [`accept`] for a readable listener and [`udp`] for
//! a UDP socket.
//!
//! # Threads
//!
//! With `--threads N` there are N loops, each with its own machine (up to
//! [`PER_THREAD`] connections) and its own `select` sets: no state is shared
//! per round. The listeners are shared: every loop with room (and no more
//! than its share, so they fill evenly) watches them, and one count of the
//! connections open keeps the total under `--max-conns`. Each UDP socket is
//! served by one loop, which keeps each sender's datagrams in order.
//!
//! # Beyond `FD_SETSIZE`
//!
//! glibc's `fd_set` holds descriptors below 1024, but Linux's select(2)
//! takes sets of any length; the shell sizes its sets to the descriptors it
//! plans to hold (see [`FdSet`](crate::sys::fdset::FdSet)), raising its own
//! soft `RLIMIT_NOFILE` as far as the hard limit allows. A connection
//! accepted on a descriptor beyond that anyway (one opened behind the
//! server's back) is closed at once and counted as refused.

mod accept;
mod activation;
mod control;
mod plan;
mod setup;
mod udp;
mod worker;

use std::os::fd::RawFd;

use selecho_core::Echo;

use crate::cli::SelectArgs;
use crate::daemon::signals::Signals;
use crate::daemon::stats::Totals;

/// Bytes queued per connection; a thread's table costs 16 MiB. Measured on
/// loopback (10 connections streaming 16 KiB writes), 16 KiB echoes about
/// twice the bytes per second of 4 KiB at a third of the CPU per byte;
/// 64-byte ping-pong does not notice.
const QUEUE: usize = 16 * 1024;

/// Connections one select() loop serves at most: its machine's table.
pub const PER_THREAD: usize = 1024;

/// One loop's machine.
type Machine = Echo<RawFd, PER_THREAD, QUEUE>;

/// Serves until a signal; returns the final totals of every thread.
pub fn run(args: &SelectArgs, signals: &Signals) -> anyhow::Result<Totals> {
    let (plan, source) = plan::Plan::new(args)?;
    let sockets = setup::start(&plan, source)?;
    control::run(&plan, sockets, signals)
}
