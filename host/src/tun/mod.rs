//! The smoltcp shell: echo over a TUN (IP) or TAP (Ethernet) device, with
//! smoltcp as the TCP/IP stack and the same machine as the select shell,
//! driven through `selecho_core::smoltcp::SmolEcho`.
//!
//! Flags become a checked [`Plan`](plan::Plan) (`plan.rs`) before anything
//! is touched; [`setup`] attaches the device ([`diagnose`] explains a
//! failure), configures the kernel's side ([`host_side`]) and builds the
//! interface, the sockets and the adapter; [`serve`] is the loop. The
//! device is ours: [`device`] lends smoltcp buffers allocated at start-up,
//! and [`coalesce`] merges the segments smoltcp sends into large ones for
//! the kernel.
//!
//! One thread, one loop: wait (poll(2)) for the device or the signal pipe,
//! at most until smoltcp's or the machine's next deadline; then feed the
//! device's packets to smoltcp, let the adapter move bytes, let smoltcp
//! send, and let the device write what it coalesced. An idle server sleeps
//! in poll(2).

mod coalesce;
mod device;
mod diagnose;
mod host_side;
mod plan;
mod serve;
mod setup;
#[cfg(test)]
mod testing;
mod vnet;

use selecho_core::smoltcp::SmolEcho;

use crate::cli::TunArgs;
use crate::daemon::signals::Signals;
use crate::daemon::stats::Totals;
use crate::daemon::thread;

/// Most connection slots (`--max-conns`) this build serves.
pub const MAX_CONNS: usize = 256;

/// Bytes a connection may hold in the machine between receiving and echoing.
/// smoltcp's socket buffers ([`setup::SOCKET_BUFFER`]) hold more on both sides.
const QUEUE: usize = 16 * 1024;

/// The machine, through the smoltcp adapter.
type Adapter = SmolEcho<MAX_CONNS, QUEUE>;

/// Serves until a signal; returns the final counters.
pub fn run(args: &TunArgs, signals: &Signals) -> anyhow::Result<Totals> {
    let plan = plan::Plan::new(args)?;
    thread::with_stack_for::<Adapter, _>("tun", || setup::start(&plan)?.serve(signals))
}
