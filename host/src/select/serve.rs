//! The loop: rebuild the descriptor sets from the machine's interest,
//! `select`, serve what is ready, carry out the machine's close orders.

use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};

use anyhow::Context;
use log::debug;
use selecho_core::{CloseHow, CloseReason, ConnId, Counters, Instant};

use super::Machine;
use super::accept::Trouble;
use super::plan::Plan;
use crate::daemon::clock::Clock;
use crate::daemon::signals::Signals;
use crate::daemon::stats::Stats;
use crate::daemon::stop::{Stop, Verdict};
use crate::daemon::{self};
use crate::sys::fdset::{FD_SETSIZE, FdSet};
use crate::sys::net;

/// Most reads spent per round discarding what a closing connection still sends.
const DISCARD_READS: usize = 4;

/// What one `select` call watches, and then what it found ready.
struct Watch {
    read: FdSet,
    write: FdSet,
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
    /// Descriptors closed gracefully while stopping: FIN sent, still read
    /// (and what comes discarded) until the peer closes, so a close with
    /// unread data does not reset the connection and drop what the kernel
    /// still has to send.
    lingering: FdSet,
    lingering_count: usize,
    /// Open on /dev/null: closed to make room for accepting (and at once
    /// closing) a connection when the process is out of descriptors.
    pub(super) spare: Option<File>,
    scratch: Box<[u8]>,
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
            lingering: FdSet::new(),
            lingering_count: 0,
            spare: Some(spare),
            scratch: vec![0; super::QUEUE].into_boxed_slice(),
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
    pub fn serve(mut self) -> anyhow::Result<Counters> {
        let mut watch = Watch {
            read: FdSet::new(),
            write: FdSet::new(),
            nfds: 0,
        };
        loop {
            let now = self.clock.now();
            match self.stop.check(now, self.echo.len() + self.lingering_count) {
                Verdict::Serve => {}
                Verdict::Done => return Ok(*self.echo.counters()),
                Verdict::GraceOver => {
                    self.abort_all();
                    return Ok(*self.echo.counters());
                }
            }
            let timeout = self
                .rebuild(&mut watch, now)
                .map(|deadline| self.clock.until(deadline));
            net::select(watch.nfds, &mut watch.read, &mut watch.write, timeout)
                .context("select")?;
            let now = self.clock.now();
            if watch.read.contains(self.signals.fd()) && self.signals.take() {
                self.begin_stop(now);
            }
            for fd in watch.read.iter_union(&watch.write, watch.nfds) {
                if let Some(id) = self.by_fd[fd as usize] {
                    self.serve_conn(id, fd, watch.read.contains(fd), now);
                } else if self.lingering.contains(fd) {
                    self.discard(fd);
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
            self.stats.tick(now, self.echo.len(), self.echo.counters());
        }
    }

    /// Fills `watch` for the next `select`; returns the nearest deadline.
    fn rebuild(&mut self, watch: &mut Watch, now: Instant) -> Option<Instant> {
        watch.read.clear();
        watch.write.clear();
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
            end = end.max(fd as usize + 1);
        }
        if self.lingering_count > 0 {
            watch.read.union_with(&self.lingering);
            end = end.max(self.lingering.end());
        }
        watch.nfds = end;
        self.machine_deadline = self.echo.poll_timeout();
        daemon::earliest([
            self.machine_deadline,
            self.stats.deadline(),
            self.stop.deadline(),
            self.paused_until,
        ])
    }

    /// One ready connection: read once (if it was readable), then send
    /// what is queued at once rather than waiting a round for writability.
    fn serve_conn(&mut self, id: ConnId, fd: RawFd, readable: bool, now: Instant) {
        if readable && let Ok(buf) = self.echo.recv_buf(id) {
            // Empty once stopping (or the queue is full): nothing to read.
            if !buf.is_empty() {
                let reported = match net::recv(fd, buf) {
                    Ok(0) => self.echo.handle_end_of_stream(id, now).is_ok(),
                    Ok(n) => self.echo.handle_received(id, n, now).is_ok(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                    Err(e) => {
                        debug!("{id} recv: {e}");
                        let _ = self.echo.handle_reset(id);
                        return;
                    }
                };
                // The id is live and n fits what recv_buf offered.
                debug_assert!(reported, "{id}: the machine refused a read report");
            }
        }
        self.flush(id, fd, now);
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

    /// Carries out the machine's close orders.
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
                    // Only a shutdown stops reading a peer that may still
                    // send: let that peer finish before closing.
                    if close.reason == CloseReason::Shutdown {
                        self.lingering.insert(fd);
                        self.lingering_count += 1;
                    } else {
                        net::close(fd);
                    }
                }
            }
            // A descriptor freed: accepting may work again.
            if self.trouble == Some(Trouble::Descriptors) {
                self.paused_until = None;
            }
        }
    }

    /// Reads and drops what a lingering connection sends; closes it at its
    /// end of stream or error.
    fn discard(&mut self, fd: RawFd) {
        for _ in 0..DISCARD_READS {
            match net::recv(fd, &mut self.scratch) {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // End of stream, or an error: done with it.
                _ => {
                    self.lingering.remove(fd);
                    self.lingering_count -= 1;
                    net::close(fd);
                    return;
                }
            }
        }
    }

    /// The first signal: close the listeners, let every connection flush.
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
        for fd in self.lingering.iter() {
            net::close(fd);
        }
        self.lingering.clear();
        self.lingering_count = 0;
    }
}
