//! One select() loop, on a thread of its own with its own machine: rebuild
//! the descriptor sets from the machine's interest, `select`, serve what is
//! ready (connections, the listeners while there is room, its UDP sockets),
//! carry out the machine's close orders. It shares nothing with the other
//! loops per round; the main thread tells it through its control pipe to
//! stop or to report its counts.

use std::fs::File;
use std::io::{self, Read};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, mpsc};

use anyhow::Context;
use log::debug;
use selecho_core::{CloseHow, ConnId, DatagramConfig, Instant};

use super::Machine;
use super::accept::{Admission, Trouble};
use super::plan::Plan;
use super::udp::Udp;
use crate::daemon;
use crate::daemon::clock::{self, Clock};
use crate::daemon::stats::Totals;
use crate::daemon::stop::{Stop, Verdict};
use crate::sys::fdset::FdSet;
use crate::sys::net;

/// What the main thread writes on a worker's control pipe.
pub mod order {
    /// Stop: begin the graceful stop.
    pub const STOP: u8 = b'S';
    /// Report: send your totals back.
    pub const REPORT: u8 = b'R';
}

/// What one `select` call watches, and then what it found ready.
struct Watch {
    read: FdSet,
    write: FdSet,
    /// To read whether `select` says readable or not (the machine's
    /// [`probe`](selecho_core::Interest::probe)).
    probe: FdSet,
}

impl Watch {
    /// Empty sets for descriptors below `capacity`.
    fn new(capacity: usize) -> Self {
        Watch {
            read: FdSet::with_capacity(capacity),
            write: FdSet::with_capacity(capacity),
            probe: FdSet::with_capacity(capacity),
        }
    }

    /// Empties the sets for the next round.
    fn clear(&mut self) {
        self.read.clear();
        self.write.clear();
        self.probe.clear();
    }
}

/// What a worker starts with.
pub struct Start {
    pub index: usize,
    /// Shared with the other workers; dropped when stopping (the last one
    /// dropped closes the listeners).
    pub listeners: Arc<[TcpListener]>,
    /// Its own: each UDP socket is served by one worker, which keeps the
    /// order of each sender's datagrams.
    pub udp: Vec<UdpSocket>,
    pub datagram: DatagramConfig,
    pub admission: Arc<Admission>,
    pub control: UnixStream,
    pub replies: mpsc::Sender<(usize, Totals)>,
    pub fd_capacity: usize,
}

/// One select() loop between start-up and exit.
pub struct Worker {
    index: usize,
    pub(super) echo: Box<Machine>,
    udp: Vec<Udp>,
    clock: Clock,
    control: UnixStream,
    replies: mpsc::Sender<(usize, Totals)>,
    /// Holds the shared listeners open; `None` once stopping.
    listeners: Option<Arc<[TcpListener]>>,
    /// Their descriptors, for the loop (no shared count touched per
    /// round); empty once stopping.
    listener_fds: Vec<RawFd>,
    pub(super) admission: Arc<Admission>,
    /// The connection on each descriptor below the sets' capacity.
    pub(super) by_fd: Vec<Option<ConnId>>,
    /// Open on /dev/null: closed to make room for accepting (and at once
    /// closing) a connection when the process is out of descriptors.
    pub(super) spare: Option<File>,
    /// The machine's `poll_timeout` as of the last rebuild.
    machine_deadline: Option<Instant>,
    /// Accept again at this time (after a [`Trouble`]).
    pub(super) paused_until: Option<Instant>,
    pub(super) trouble: Option<Trouble>,
    pub(super) warned_capacity: bool,
    stop: Stop,
}

impl Worker {
    /// Builds the machine (on this thread: its stack has room) and opens
    /// the spare descriptor.
    pub fn new(start: Start, plan: &Plan) -> anyhow::Result<Self> {
        let spare =
            File::open("/dev/null").context("cannot open the spare descriptor /dev/null")?;
        let capacity = start.fd_capacity;
        Ok(Worker {
            index: start.index,
            echo: Box::write(Box::new_uninit(), Machine::new(plan.machine)),
            udp: start
                .udp
                .into_iter()
                .map(|socket| Udp::new(socket, start.datagram))
                .collect(),
            clock: Clock::new(),
            control: start.control,
            replies: start.replies,
            listener_fds: start.listeners.iter().map(AsRawFd::as_raw_fd).collect(),
            listeners: Some(start.listeners),
            admission: start.admission,
            by_fd: vec![None; capacity],
            spare: Some(spare),
            machine_deadline: None,
            paused_until: None,
            trouble: None,
            warned_capacity: false,
            stop: Stop::new(plan.grace),
        })
    }

    /// The loop: until told to stop, then until everything is finished or
    /// the grace period ends. Returns what the worker did.
    pub fn serve(mut self) -> anyhow::Result<Totals> {
        let mut watch = Watch::new(self.by_fd.len());
        loop {
            let now = self.clock.now();
            match self.stop.check(now, self.unfinished()) {
                Verdict::Serve => {}
                Verdict::Done => return Ok(self.totals()),
                Verdict::GraceOver => {
                    self.echo.abort_all();
                    self.close_finished();
                    return Ok(self.totals());
                }
            }
            // From the `now` above: the rebuild's few microseconds only
            // make the wait end that much after the deadline, never before.
            let timeout = self
                .rebuild(&mut watch, now)
                .map(|deadline| clock::between(now, deadline));
            net::select(&mut watch.read, &mut watch.write, timeout).context("select")?;
            let now = self.clock.now();
            if watch.read.contains(self.control.as_raw_fd()) {
                self.obey(now);
            }
            self.serve_ready(&mut watch, now);
            if self
                .machine_deadline
                .is_some_and(|deadline| deadline <= now)
            {
                self.echo.handle_timeout(now);
            }
            self.close_finished();
        }
    }

    /// Connections, UDP sockets and listeners that `select` found ready.
    fn serve_ready(&mut self, watch: &mut Watch, now: Instant) {
        watch.read.union_with(&watch.probe);
        let end = watch.read.end().max(watch.write.end());
        for fd in watch.read.iter_union(&watch.write, end) {
            let Some(id) = self.by_fd.get(fd as usize).copied().flatten() else {
                continue;
            };
            self.serve_conn(id, fd, watch.read.contains(fd), now);
        }
        let stopping = self.stop.begun();
        for udp in &mut self.udp {
            let fd = udp.fd();
            let readable = watch.read.contains(fd) && !stopping;
            udp.serve(readable, watch.write.contains(fd), now);
        }
        for i in 0..self.listener_fds.len() {
            let fd = self.listener_fds[i];
            if watch.read.contains(fd) {
                self.accept_from(fd, now);
            }
        }
    }

    /// Connections, and UDP datagrams queued, not yet finished.
    fn unfinished(&self) -> usize {
        self.echo.len() + self.udp.iter().map(Udp::queued).sum::<usize>()
    }

    /// What the worker has done so far.
    fn totals(&self) -> Totals {
        let mut totals = Totals {
            open: self.echo.len(),
            tcp: *self.echo.counters(),
            ..Totals::default()
        };
        for udp in &self.udp {
            totals += Totals {
                udp: Some(udp.counters()),
                ..Totals::default()
            };
        }
        totals
    }

    /// Reads the main thread's orders and carries them out.
    fn obey(&mut self, now: Instant) {
        let mut orders = [0u8; 16];
        loop {
            let n = match (&self.control).read(&mut orders) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!("worker {}: control pipe: {e}", self.index);
                    return;
                }
            };
            for &order in &orders[..n] {
                match order {
                    order::STOP => self.begin_stop(now),
                    order::REPORT => {
                        // The main thread waits for it; should it be gone,
                        // the process is ending anyway.
                        let _ = self.replies.send((self.index, self.totals()));
                    }
                    _ => debug!("worker {}: unknown order {order}", self.index),
                }
            }
        }
    }

    /// Fills the sets for the next `select`; returns the nearest deadline.
    /// Every descriptor fits them: the listeners, UDP sockets and control
    /// pipe were counted into their capacity, and [`accept`](super::accept)
    /// turns away a connection beyond it.
    fn rebuild(&mut self, watch: &mut Watch, now: Instant) -> Option<Instant> {
        watch.clear();
        watch.read.insert(self.control.as_raw_fd());
        if self.paused_until.is_some_and(|until| until <= now) {
            self.paused_until = None;
        }
        if self.echo.accepting() && self.paused_until.is_none() && self.admission.has_room() {
            for &fd in &self.listener_fds {
                watch.read.insert(fd);
            }
        }
        let stopping = self.stop.begun();
        for udp in &self.udp {
            let fd = udp.fd();
            if !stopping {
                watch.read.insert(fd);
            }
            if udp.queued() > 0 {
                watch.write.insert(fd);
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
            }
        }
        self.machine_deadline = self.echo.poll_timeout();
        if watch.probe.end() > 0 {
            // Probes are read at once: look, do not wait.
            return Some(now);
        }
        daemon::earliest([
            self.machine_deadline,
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
            self.admission.release();
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

    /// The order to stop: let go of the listeners (the last worker to do so
    /// closes them) and stop reading UDP; every connection goes on being
    /// served until it is finished (the machine asks for the reads that
    /// tell it so: see [`Interest::probe`](selecho_core::Interest::probe)).
    fn begin_stop(&mut self, now: Instant) {
        if !self.stop.begin(now, self.echo.len()) {
            return;
        }
        self.listener_fds.clear();
        self.listeners = None;
        self.echo.begin_shutdown();
    }
}
