//! The loop: packets in one at a time, the adapter's turn, smoltcp's
//! egress, the device's coalesced writes; then sleep until the device or
//! the signal pipe is readable or the earliest deadline.

use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context, anyhow};
use smoltcp::iface::{Interface, PollIngressSingleResult, SocketSet};

use selecho_core::smoltcp::{from_smoltcp, to_smoltcp};

use super::Adapter;
use super::device::TunDevice;
use super::plan::Plan;
use crate::daemon;
use crate::daemon::clock::Clock;
use crate::daemon::signals::Signals;
use crate::daemon::stats::{Stats, Totals};
use crate::daemon::stop::{Stop, Verdict};
use crate::sys::poll;
use crate::sys::tuntap::IfName;

/// The device, smoltcp's interface and sockets, and the machine's adapter.
pub struct Stack {
    name: IfName,
    device: TunDevice,
    iface: Interface,
    sockets: SocketSet<'static>,
    adapter: Box<Adapter>,
    clock: Clock,
    stats: Stats,
    stop: Stop,
}

impl Stack {
    pub(super) fn new(
        device: TunDevice,
        iface: Interface,
        sockets: SocketSet<'static>,
        adapter: Box<Adapter>,
        clock: Clock,
        plan: &Plan,
    ) -> Self {
        Stack {
            name: plan.ifname.clone(),
            device,
            iface,
            sockets,
            adapter,
            stats: Stats::new(plan.stats_every, clock.now()),
            clock,
            stop: Stop::new(plan.grace),
        }
    }

    /// Serves until a signal, then until every connection is finished or
    /// the grace period ends; returns the final counters.
    pub fn serve(mut self, signals: &Signals) -> anyhow::Result<Totals> {
        loop {
            let now = self.clock.now();
            let busy = self.turn()?;
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
            self.stats.tick(now, &self.totals());

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
            if signalled && signals.take().handle(&self.totals()) {
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
        Ok(self.totals())
    }

    /// What the shell has done so far.
    fn totals(&self) -> Totals {
        Totals {
            open: self.adapter.echo().len(),
            tcp: *self.adapter.counters(),
            udp: None,
        }
    }

    /// One turn: every waiting packet, the adapter, smoltcp's egress, the
    /// device's writes. Whether the adapter moved anything (then look again
    /// before sleeping).
    fn turn(&mut self) -> anyhow::Result<bool> {
        let now = self.clock.now();
        let stamp = to_smoltcp(now);
        let (device, iface, sockets, adapter) = (
            &mut self.device,
            &mut self.iface,
            &mut self.sockets,
            &mut self.adapter,
        );
        // Packets one at a time, so a socket whose connection just finished
        // closing listens again before a SYN behind that last ACK is seen.
        adapter.relisten(sockets, now);
        loop {
            match iface.poll_ingress_single(stamp, device, sockets) {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => {
                    adapter.relisten(sockets, now);
                }
            }
        }
        if let Some(e) = device.take_error() {
            return Err(anyhow!(e).context(format!("reading from {}", self.name)));
        }
        let busy = adapter.poll(sockets, now);
        // Timers, then send what the adapter queued (and anything else due).
        iface.poll(stamp, device, sockets);
        // Sockets aborted this turn sent their RST: they may listen again.
        adapter.relisten(sockets, now);
        // What smoltcp sent goes out before we sleep (or look again).
        device.flush();
        Ok(busy)
    }
}
