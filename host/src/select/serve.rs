//! The loop: rebuild the descriptor sets from the machine's interest,
//! `select`, serve what is ready, carry out the machine's close orders.

use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};

use anyhow::Context;
use log::debug;
use selecho_core::{CloseHow, ConnId, Instant};

use super::Machine;
use super::accept::Trouble;
use super::plan::Plan;
use crate::daemon::clock::Clock;
use crate::daemon::signals::Signals;
use crate::daemon::stats::{Stats, Totals};
use crate::daemon::stop::{Stop, Verdict};
use crate::daemon::{self};
use crate::sys::fdset::{FD_SETSIZE, FdSet};
use crate::sys::net;

/// What one `select` call watches, and then what it found ready.
struct Watch {
    read: FdSet,
    write: FdSet,
    /// To read whether `select` says readable or not (the machine's
    /// [`probe`](selecho_core::Interest::probe)).
    probe: FdSet,
    /// One more than the highest descriptor watched.
    nfds: usize,
}

/// The select shell between start-up and exit.
pub struct Shell<'a> {
    pub(super) echo: Box<Machine>,
    clock: Clock,
    signals: &'a Signals,
    /// Empty once stopping.
    pub(super) listeners: Vec<TcpListener>,
    /// The connection on each descriptor below `FD_SETSIZE`.
    pub(super) by_fd: Vec<Option<ConnId>>,
    /// Open on /dev/null: closed to make room for accepting (and at once
    /// closing) a connection when the process is out of descriptors.
    pub(super) spare: Option<File>,
    /// The machine's `poll_timeout` as of the last rebuild.
    machine_deadline: Option<Instant>,
    /// Accept again at this time (after a [`Trouble`]).
    pub(super) paused_until: Option<Instant>,
    pub(super) trouble: Option<Trouble>,
    pub(super) warned_setsize: bool,
    stats: Stats,
    stop: Stop,
}

impl<'a> Shell<'a> {
    pub(super) fn new(
        echo: Box<Machine>,
        signals: &'a Signals,
        listeners: Vec<TcpListener>,
        spare: File,
        plan: &Plan,
    ) -> Self {
        let clock = Clock::new();
        Shell {
            echo,
            clock,
            signals,
            listeners,
            by_fd: vec![None; FD_SETSIZE],
            spare: Some(spare),
            machine_deadline: None,
            paused_until: None,
            trouble: None,
            warned_setsize: false,
            stats: Stats::new(plan.stats_every, clock.now()),
            stop: Stop::new(plan.grace),
        }
    }

    /// The loop: until a signal, then until everything is flushed or the
    /// grace period ends.
    pub fn serve(mut self) -> anyhow::Result<Totals> {
        let mut watch = Watch {
            read: FdSet::new(),
            write: FdSet::new(),
            probe: FdSet::new(),
            nfds: 0,
        };
        loop {
            let now = self.clock.now();
            match self.stop.check(now, self.echo.len()) {
                Verdict::Serve => {}
                Verdict::Done => return Ok(self.totals()),
                Verdict::GraceOver => {
                    self.abort_all();
                    return Ok(self.totals());
                }
            }
            let timeout = self
                .rebuild(&mut watch, now)
                .map(|deadline| self.clock.until(deadline));
            net::select(watch.nfds, &mut watch.read, &mut watch.write, timeout)
                .context("select")?;
            let now = self.clock.now();
            if watch.read.contains(self.signals.fd()) && self.signals.take().handle(&self.totals())
            {
                self.begin_stop(now);
            }
            watch.read.union_with(&watch.probe);
            for fd in watch.read.iter_union(&watch.write, watch.nfds) {
                if let Some(id) = self.by_fd[fd as usize] {
                    self.serve_conn(id, fd, watch.read.contains(fd), now);
                }
            }
            for i in 0..self.listeners.len() {
                if watch.read.contains(self.listeners[i].as_raw_fd()) {
                    self.accept_from(i, now);
                }
            }
            if self
                .machine_deadline
                .is_some_and(|deadline| deadline <= now)
            {
                self.echo.handle_timeout(now);
            }
            self.close_finished();
            self.stats.tick(now, &self.totals());
        }
    }

    /// What the shell has done so far.
    fn totals(&self) -> Totals {
        Totals {
            open: self.echo.len(),
            tcp: *self.echo.counters(),
            udp: None,
        }
    }

    /// Fills `watch` for the next `select`; returns the nearest deadline.
    fn rebuild(&mut self, watch: &mut Watch, now: Instant) -> Option<Instant> {
        watch.read.clear();
        watch.write.clear();
        watch.probe.clear();
        let mut probing = false;
        let signal = self.signals.fd();
        watch.read.insert(signal);
        let mut end = signal as usize + 1;
        if self.paused_until.is_some_and(|until| until <= now) {
            self.paused_until = None;
        }
        if self.echo.accepting() && self.paused_until.is_none() {
            for listener in &self.listeners {
                let fd = listener.as_raw_fd();
                watch.read.insert(fd);
                end = end.max(fd as usize + 1);
            }
        }
        for (_, fd, interest) in self.echo.connections() {
            if interest.read {
                watch.read.insert(fd);
            }
            if interest.write {
                watch.write.insert(fd);
            }
            if interest.probe {
                watch.probe.insert(fd);
                probing = true;
            }
            end = end.max(fd as usize + 1);
        }
        watch.nfds = end;
        self.machine_deadline = self.echo.poll_timeout();
        if probing {
            // Probes are read at once: look, do not wait.
            return Some(now);
        }
        daemon::earliest([
            self.machine_deadline,
            self.stats.deadline(),
            self.stop.deadline(),
            self.paused_until,
        ])
    }

    /// One ready connection: read once (if it was readable, or the machine
    /// asked for a probe), then send what is queued at once rather than
    /// waiting a round for writability.
    fn serve_conn(&mut self, id: ConnId, fd: RawFd, readable: bool, now: Instant) {
        if readable && !self.read(id, fd, now) {
            return;
        }
        self.flush(id, fd, now);
    }

    /// Reads once into the connection's queue and reports what happened;
    /// false once the connection is gone (reset, or stale).
    fn read(&mut self, id: ConnId, fd: RawFd, now: Instant) -> bool {
        let Ok(buf) = self.echo.recv_buf(id) else {
            return false;
        };
        // Empty while the queue is full or the peer has finished.
        if buf.is_empty() {
            return true;
        }
        let reported = match net::recv(fd, buf) {
            Ok(0) => self.echo.handle_end_of_stream(id, now).is_ok(),
            Ok(n) => self.echo.handle_received(id, n, now).is_ok(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.echo.handle_would_block(id, now).is_ok()
            }
            Err(e) => {
                debug!("{id} recv: {e}");
                let _ = self.echo.handle_reset(id);
                return false;
            }
        };
        // The id is live and n fits what recv_buf offered.
        debug_assert!(reported, "{id}: the machine refused a read report");
        reported
    }

    /// Sends what the connection has queued until it is empty or the
    /// socket's buffer is full (a partial send or EAGAIN: next round).
    fn flush(&mut self, id: ConnId, fd: RawFd, now: Instant) {
        // Stale once the machine closed it (the last byte sent while draining).
        while let Ok(buf) = self.echo.send_buf(id) {
            if buf.is_empty() {
                return;
            }
            let offered = buf.len();
            match net::send(fd, buf) {
                Ok(n) => {
                    let reported = self.echo.handle_sent(id, n, now).is_ok();
                    // The id is live and n fits what send_buf offered.
                    debug_assert!(reported, "{id}: the machine refused a send report");
                    if !reported || n < offered {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!("{id} send: {e}");
                    let _ = self.echo.handle_reset(id);
                    return;
                }
            }
        }
    }

    /// Carries out the machine's close orders. A graceful one closes after
    /// a FIN: the machine orders it only once every byte the peer sent was
    /// echoed, so nothing is left unread; should the peer send more, the
    /// kernel answers with a reset, which is the truth.
    fn close_finished(&mut self) {
        while let Some(close) = self.echo.poll_close() {
            let fd = close.handle;
            self.by_fd[fd as usize] = None;
            debug!("{} closing ({:?}, {:?})", close.id, close.how, close.reason);
            match close.how {
                CloseHow::Abort => net::abort(fd),
                CloseHow::Graceful => {
                    if let Err(e) = net::shutdown_write(fd) {
                        debug!("{} shutdown: {e}", close.id);
                    }
                    net::close(fd);
                }
            }
            // A descriptor freed: accepting may work again.
            if self.trouble == Some(Trouble::Descriptors) {
                self.paused_until = None;
            }
        }
    }

    /// The first signal: close the listeners; every connection goes on being
    /// served until it is finished (the machine asks for the reads that
    /// tell it so: see [`Interest::probe`](selecho_core::Interest::probe)).
    fn begin_stop(&mut self, now: Instant) {
        if !self.stop.begin(now, self.echo.len()) {
            return;
        }
        self.listeners.clear();
        self.echo.begin_shutdown();
    }

    /// The grace period is over: reset whatever is left.
    fn abort_all(&mut self) {
        self.echo.abort_all();
        self.close_finished();
    }
}
