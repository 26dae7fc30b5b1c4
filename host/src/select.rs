//! The select() shell: one thread, `select(2)` over non-blocking sockets,
//! driving the echo machine.
//!
//! Each round: watch the signal pipe, the listeners (only while the machine
//! is [`accepting`](Echo::accepting)) and every connection for what the
//! machine wants; sleep in `select` until I/O or the nearest deadline (idle
//! timeout, stats, end of grace; none: block); serve what is ready; close
//! what the machine says to close. Everything is allocated before the first
//! round.
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

use std::fs::File;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::thread;

use anyhow::Context;
use log::{debug, info, warn};
use selecho_core::{CloseHow, CloseReason, Config, ConnId, Counters, Duration, Echo, Instant};
use socket2::{Domain, Protocol, Socket, Type};

use crate::UsageError;
use crate::cli::{SelectArgs, duration_or_off};
use crate::clock::Clock;
use crate::signals::Signals;
use crate::sys::net::{self, FD_SETSIZE, FdSet};

/// Bytes queued per connection; the table costs 16 MiB. Measured on
/// loopback (10 connections streaming 16 KiB writes), 16 KiB echoes about
/// twice the bytes per second of 4 KiB at a third of the CPU per byte;
/// 64-byte ping-pong does not notice.
const QUEUE: usize = 16 * 1024;

/// The machine: one slot per descriptor `select` can watch.
type Machine = Echo<RawFd, FD_SETSIZE, QUEUE>;

/// Most connections taken from one listener per round, so a flood of new
/// connections cannot starve the ones being served.
const ACCEPT_BATCH: usize = 64;

/// How long to stop accepting after an error that retrying at once would
/// only repeat (no memory, no descriptor to shed a connection with).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Most reads spent per round discarding what a closing connection still sends.
const DISCARD_READS: usize = 4;

/// Stack of the thread that builds the machine: room for `Echo::new` to
/// build it on the stack (a debug build copies it a few times on its way
/// into the box; a release build writes it straight into the box). Only
/// pages touched cost memory, and only until the thread ends.
const BUILD_STACK: usize = 4 * size_of::<Machine>() + (8 << 20);

/// Serves until a signal; returns the final counters.
pub fn run(args: &SelectArgs, signals: &Signals) -> anyhow::Result<Counters> {
    Shell::start(args, signals)?.serve()
}

/// The machine, boxed, built on a thread of its own: 16 MiB is far more
/// than the main thread's stack.
fn new_machine(config: Config) -> anyhow::Result<Box<Machine>> {
    thread::Builder::new()
        .name("select-init".to_owned())
        .stack_size(BUILD_STACK)
        .spawn(move || Box::write(Box::new_uninit(), Machine::new(config)))
        .context("cannot start a thread to build the connection table")?
        .join()
        .map_err(|_| anyhow::anyhow!("building the connection table failed"))
}

/// Why accepting failed, for one warning per episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// EMFILE/ENFILE.
    Descriptors,
    /// ENOBUFS, ENOMEM or an error not expected from accept.
    Other,
}

/// What one `select` call watches, and then what it found ready.
struct Watch {
    read: FdSet,
    write: FdSet,
    /// One more than the highest descriptor watched.
    nfds: usize,
}

struct Shell<'a> {
    echo: Box<Machine>,
    clock: Clock,
    signals: &'a Signals,
    /// Empty once shutting down.
    listeners: Vec<TcpListener>,
    /// The connection on each descriptor below `FD_SETSIZE`.
    by_fd: Vec<Option<ConnId>>,
    /// Descriptors closed gracefully during shutdown: FIN sent, still read
    /// (and what comes discarded) until the peer closes, so a close with
    /// unread data does not reset the connection and drop what the kernel
    /// still has to send.
    lingering: FdSet,
    lingering_count: usize,
    /// Open on /dev/null: closed to make room for accepting (and at once
    /// closing) a connection when the process is out of descriptors.
    spare: Option<File>,
    scratch: Box<[u8]>,
    /// The machine's `poll_timeout` as of the last rebuild.
    machine_deadline: Option<Instant>,
    /// Accept again at this time (after a [`Trouble`]).
    paused_until: Option<Instant>,
    trouble: Option<Trouble>,
    warned_setsize: bool,
    stats_every: Option<Duration>,
    next_stats: Option<Instant>,
    grace: Duration,
    /// Set when the shutdown begins.
    grace_deadline: Option<Instant>,
}

impl<'a> Shell<'a> {
    /// Checks the limits, binds every listener, builds the machine, and
    /// prints `listening on ADDR` for each listener.
    fn start(args: &SelectArgs, signals: &'a Signals) -> anyhow::Result<Self> {
        let max_conns = args.max_conns as usize;
        // Held for the whole run: stdio and the signal pipe (open now), the
        // listeners and the spare (opened below).
        let reserved = net::open_below_setsize() + args.listen.len() + 1;
        let limit = FD_SETSIZE.saturating_sub(reserved);
        if max_conns > limit {
            return Err(UsageError(format!(
                "--max-conns {max_conns} is more than select() can watch here: at most {limit} \
                 (FD_SETSIZE {FD_SETSIZE} less {reserved} descriptors the server holds)"
            ))
            .into());
        }
        if let Some(nofile) = net::nofile_limit()
            && (reserved + max_conns) as u64 > nofile
        {
            warn!(
                "RLIMIT_NOFILE is {nofile}: fewer than --max-conns {max_conns} connections fit; \
                 the others are turned away while descriptors run out"
            );
        }
        let listeners = args
            .listen
            .iter()
            .map(|&addr| {
                listen(addr, args.backlog).with_context(|| format!("cannot listen on {addr}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let spare =
            File::open("/dev/null").context("cannot open the spare descriptor /dev/null")?;
        let own = listeners.iter().map(AsRawFd::as_raw_fd);
        if let Some(fd) = own
            .chain([signals.fd(), spare.as_raw_fd()])
            .find(|&fd| fd as usize >= FD_SETSIZE)
        {
            anyhow::bail!(
                "descriptor {fd} is beyond FD_SETSIZE {FD_SETSIZE}: too many descriptors inherited"
            );
        }
        let config = Config::new()
            .with_idle_timeout(duration_or_off(args.idle_timeout))
            .with_max_connections(max_conns);
        let echo = new_machine(config)?;

        let mut out = io::stdout().lock();
        for listener in &listeners {
            writeln!(out, "listening on {}", listener.local_addr()?)?;
        }
        out.flush()?;
        info!(
            "select shell: up to {max_conns} connections, {QUEUE}-byte queues, idle timeout {}",
            config
                .idle_timeout
                .map_or_else(|| "off".to_owned(), |t| t.to_string())
        );

        let clock = Clock::new();
        let stats_every = duration_or_off(args.stats_interval);
        Ok(Shell {
            echo,
            clock,
            signals,
            listeners,
            by_fd: vec![None; FD_SETSIZE],
            lingering: FdSet::new(),
            lingering_count: 0,
            spare: Some(spare),
            scratch: vec![0; QUEUE].into_boxed_slice(),
            machine_deadline: None,
            paused_until: None,
            trouble: None,
            warned_setsize: false,
            stats_every,
            next_stats: stats_every.map(|every| clock.now() + every),
            grace: duration_or_off(args.grace).unwrap_or(Duration::ZERO),
            grace_deadline: None,
        })
    }

    /// The loop: until a signal, then until everything is flushed or the
    /// grace period ends.
    fn serve(mut self) -> anyhow::Result<Counters> {
        let mut watch = Watch {
            read: FdSet::new(),
            write: FdSet::new(),
            nfds: 0,
        };
        loop {
            let now = self.clock.now();
            if self.stopped(now) {
                info!("stopped");
                return Ok(*self.echo.counters());
            }
            let timeout = self
                .rebuild(&mut watch, now)
                .map(|deadline| self.clock.until(deadline));
            match net::select(watch.nfds, &mut watch.read, &mut watch.write, timeout) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("select"),
            }
            let now = self.clock.now();
            if watch.read.contains(self.signals.fd()) && self.signals.take() {
                self.begin_shutdown(now);
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
            if let (Some(every), Some(next)) = (self.stats_every, self.next_stats)
                && next <= now
            {
                info!("stats: {} open, {}", self.echo.len(), self.echo.counters());
                self.next_stats = Some(now + every);
            }
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
        [
            self.machine_deadline,
            self.next_stats,
            self.grace_deadline,
            self.paused_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// One ready connection: read once (if it was readable), then send
    /// what is queued at once rather than waiting a round for writability.
    fn serve_conn(&mut self, id: ConnId, fd: RawFd, readable: bool, now: Instant) {
        if readable && let Ok(buf) = self.echo.recv_buf(id) {
            // Empty once shutting down (or the queue is full): nothing to read.
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

    /// Accepts up to [`ACCEPT_BATCH`] connections from listener `i`.
    fn accept_from(&mut self, i: usize, now: Instant) {
        let listener = self.listeners[i].as_raw_fd();
        for _ in 0..ACCEPT_BATCH {
            if !self.echo.accepting() {
                return;
            }
            let e = match net::accept(listener) {
                Ok(fd) => {
                    if self.trouble.take().is_some() {
                        info!("accepting again");
                    }
                    self.admit(fd, now);
                    continue;
                }
                Err(e) => e,
            };
            match e.raw_os_error() {
                _ if e.kind() == io::ErrorKind::WouldBlock => return,
                Some(libc::EMFILE | libc::ENFILE) => {
                    self.report(Trouble::Descriptors, &e);
                    if !self.shed(listener, now) {
                        return;
                    }
                }
                // The connection died in the backlog, or Linux passed a
                // network error through accept (see accept(2)): next one.
                Some(
                    libc::ECONNABORTED
                    | libc::EPROTO
                    | libc::EPERM
                    | libc::ENETDOWN
                    | libc::ENETUNREACH
                    | libc::ENOPROTOOPT
                    | libc::EHOSTDOWN
                    | libc::EHOSTUNREACH
                    | libc::ENONET
                    | libc::EOPNOTSUPP
                    | libc::ETIMEDOUT,
                ) => debug!("accept: {e}"),
                _ => {
                    self.report(Trouble::Other, &e);
                    self.paused_until = Some(now + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    /// Takes a new connection into the machine, or closes it.
    fn admit(&mut self, fd: RawFd, now: Instant) {
        if fd as usize >= FD_SETSIZE {
            // Never into an fd_set: see the module docs.
            if !self.warned_setsize {
                warn!(
                    "accepted descriptor {fd} is beyond FD_SETSIZE {FD_SETSIZE}: refusing such connections"
                );
                self.warned_setsize = true;
            }
            net::abort(fd);
            self.echo.handle_refused();
            return;
        }
        if let Err(e) = net::set_nodelay(fd) {
            debug!("TCP_NODELAY on descriptor {fd}: {e}");
        }
        match self.echo.handle_accept(fd, now) {
            Ok(id) => self.by_fd[fd as usize] = Some(id),
            Err(_) => net::abort(fd),
        }
    }

    /// Out of descriptors: frees the spare to accept one waiting connection
    /// and reset it at once, so the backlog drains instead of keeping the
    /// listener readable for ever. Returns whether one was shed (more may
    /// wait); otherwise accepting pauses.
    fn shed(&mut self, listener: RawFd, now: Instant) -> bool {
        let mut shed = false;
        if self.spare.take().is_some() {
            if let Ok(fd) = net::accept(listener) {
                net::abort(fd);
                self.echo.handle_refused();
                shed = true;
            }
            self.spare = File::open("/dev/null").ok();
        }
        if !shed {
            self.spare = self.spare.take().or_else(|| File::open("/dev/null").ok());
            self.paused_until = Some(now + ACCEPT_PAUSE);
        }
        shed
    }

    /// Warns once per episode of accept trouble.
    fn report(&mut self, trouble: Trouble, e: &io::Error) {
        if self.trouble == Some(trouble) {
            return;
        }
        self.trouble = Some(trouble);
        match trouble {
            Trouble::Descriptors => {
                warn!("accept: {e}: turning new connections away until descriptors free up")
            }
            Trouble::Other => warn!("accept: {e}: pausing accepts for {ACCEPT_PAUSE} at a time"),
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
    fn begin_shutdown(&mut self, now: Instant) {
        if self.grace_deadline.is_some() {
            return;
        }
        info!(
            "stopping: {} connections get up to {} to flush",
            self.echo.len(),
            self.grace
        );
        self.listeners.clear();
        self.echo.begin_shutdown();
        self.grace_deadline = Some(now + self.grace);
    }

    /// Whether the shutdown is over: everything flushed and closed, or the
    /// grace period ended (then whatever is left is reset).
    fn stopped(&mut self, now: Instant) -> bool {
        let Some(deadline) = self.grace_deadline else {
            return false;
        };
        if self.echo.is_empty() && self.lingering_count == 0 {
            return true;
        }
        if now < deadline {
            return false;
        }
        info!(
            "grace period over: resetting {} connections",
            self.echo.len()
        );
        self.echo.abort_all();
        self.close_finished();
        for fd in self.lingering.iter() {
            net::close(fd);
        }
        self.lingering.clear();
        self.lingering_count = 0;
        true
    }
}

/// A non-blocking listener on `addr` (IPv6 only for an IPv6 address).
fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}
