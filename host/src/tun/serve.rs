//! The loop: packets in one at a time, the adapters' turn (TCP, then each
//! port's UDP), smoltcp's egress, the device's coalesced writes; then sleep
//! until the device or the signal pipe is readable or the earliest deadline.

use std::os::fd::{AsFd, AsRawFd};

use anyhow::Context;
use smoltcp::iface::{Interface, SocketSet};

use selecho_core::Instant;
use selecho_core::smoltcp::{from_smoltcp, to_smoltcp};

use super::device::TunDevice;
use super::ingress::Fetched;
use super::{Adapter, UdpAdapter};
use crate::daemon;
use crate::daemon::clock::Clock;
use crate::daemon::signals::Signals;
use crate::daemon::stats::{Stats, Totals};
use crate::daemon::stop::{Stop, Verdict};
use crate::sys::poll;
use crate::sys::tuntap::IfName;

/// Packets a turn takes in before smoltcp's egress.
const BATCH: usize = 64;

/// The device, smoltcp's interface and sockets, and the machine's adapter
/// (built by [`setup::start`](super::setup::start)).
pub struct Stack {
    pub(super) name: IfName,
    pub(super) device: TunDevice,
    pub(super) iface: Interface,
    pub(super) sockets: SocketSet<'static>,
    pub(super) adapter: Box<Adapter>,
    /// One per port, unless `--no-udp`.
    pub(super) udp: Vec<Box<UdpAdapter>>,
    pub(super) clock: Clock,
    pub(super) stats: Stats,
    pub(super) stop: Stop,
}

impl Stack {
    /// Serves until a signal, then until every connection is finished or
    /// the grace period ends; returns the final counters.
    pub fn serve(mut self, signals: &Signals) -> anyhow::Result<Totals> {
        loop {
            let now = self.clock.now();
            let busy = self.turn(now)?;
            match self.stop.check(now, self.adapter.open()) {
                Verdict::Serve => {}
                Verdict::Done => break,
                Verdict::GraceOver => {
                    self.adapter.abort_all(&mut self.sockets, now);
                    self.iface
                        .poll(to_smoltcp(now), &mut self.device, &mut self.sockets);
                    self.device.flush();
                    break;
                }
            }
            self.stats
                .tick(now, || totals(&self.device, &self.adapter, &self.udp));

            let deadline = daemon::earliest([
                self.iface
                    .poll_at(to_smoltcp(now), &self.sockets)
                    .map(from_smoltcp),
                self.adapter.poll_at(),
                self.stats.deadline(),
                self.stop.deadline(),
            ]);
            let timeout = if busy {
                Some(std::time::Duration::ZERO)
            } else {
                deadline.map(|d| self.clock.until(d))
            };
            let [_, signalled] =
                poll::wait_readable([self.device.as_fd().as_raw_fd(), signals.fd()], timeout)
                    .context("waiting for the device")?;
            if signalled
                && signals
                    .take()
                    .handle(|| totals(&self.device, &self.adapter, &self.udp))
            {
                let now = self.clock.now();
                if self.stop.begin(now, self.adapter.echo().len()) {
                    self.adapter.begin_shutdown();
                }
            }
        }
        let stats = self.device.stats();
        log::debug!(
            "{}: {} packets in, {} out in {} writes, {} dropped on send",
            self.name,
            stats.rx,
            stats.tx,
            stats.writes,
            stats.tx_dropped
        );
        Ok(totals(&self.device, &self.adapter, &self.udp))
    }

    /// One turn at `now`: every waiting packet, the adapter, smoltcp's
    /// egress, the device's writes. Whether the adapter moved anything (then
    /// look again before sleeping).
    fn turn(&mut self, now: Instant) -> anyhow::Result<bool> {
        let stamp = to_smoltcp(now);
        let (device, iface, sockets, adapter, udp) = (
            &mut self.device,
            &mut self.iface,
            &mut self.sockets,
            &mut self.adapter,
            &mut self.udp,
        );
        // Packets one at a time, so a socket whose connection just finished
        // closing listens again before a SYN behind that last ACK is seen,
        // and each SYN finds a listener if any slot can take it; at most
        // BATCH reads before the egress, so a flood (of good packets or of
        // bad ones) cannot hold up answers and timers.
        adapter.relisten(sockets, now);
        let mut more = true;
        for _ in 0..BATCH {
            let fetched = device
                .fetch(now)
                .with_context(|| format!("reading from {}", self.name))?;
            let arrival = match fetched {
                Fetched::Empty => {
                    more = false;
                    break;
                }
                Fetched::Taken => continue,
                Fetched::Packet(arrival) => arrival,
            };
            if let Some(syn) = arrival.syn {
                adapter.make_room(sockets, &syn, now);
            }
            iface.poll_ingress_single(stamp, device, sockets);
            adapter.relisten(sockets, now);
        }
        let mut busy = adapter.poll(sockets, now) | more;
        for echo in udp.iter_mut() {
            busy |= echo.poll(sockets, now);
        }
        // Timers, then send what the adapter queued (and anything else due).
        iface.poll(stamp, device, sockets);
        // Sockets aborted this turn sent their RST: they may listen again.
        adapter.relisten(sockets, now);
        // What smoltcp sent goes out before we sleep (or look again).
        device.flush();
        Ok(busy)
    }
}

/// What the shell has done so far.
fn totals(device: &TunDevice, adapter: &Adapter, udp: &[Box<UdpAdapter>]) -> Totals {
    let mut packets = device.counters();
    packets += *adapter.packet_counters();
    let udp = udp
        .iter()
        .map(|echo| *echo.counters())
        .reduce(|mut sum, c| {
            sum += c;
            sum
        });
    Totals {
        open: adapter.echo().len(),
        tcp: *adapter.counters(),
        udp,
        packets: Some(packets),
    }
}
