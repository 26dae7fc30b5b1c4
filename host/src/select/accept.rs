//! A readable listener: accept a bounded batch, admit each connection into
//! the machine or turn it away, and weather running out of descriptors. The
//! listeners are shared by every worker with room: each wakeup takes a batch
//! shrunk by the number of workers, so they take turns; [`Admission`] keeps
//! the total under `--max-conns`.

use std::fs::File;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use log::{debug, info, warn};
use selecho_core::{Duration, Instant};

use super::worker::Worker;
use crate::sys::net;

/// Most connections taken from one listener per round, so a flood of new
/// connections cannot starve the ones being served.
const ACCEPT_BATCH: usize = 64;

/// How long to stop accepting after an error that retrying at once would
/// only repeat (no memory, no descriptor to shed a connection with).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Connections at once over all workers: the one thing the workers share,
/// touched only when accepting and closing.
#[derive(Debug)]
pub struct Admission {
    max: usize,
    /// Most connections one wakeup accepts: [`ACCEPT_BATCH`] shared out
    /// over the workers, so that each takes a few and they take turns.
    batch: usize,
    open: AtomicUsize,
}

impl Admission {
    /// At most `max` connections over `workers` workers.
    pub fn new(max: usize, workers: usize) -> Self {
        Admission {
            max,
            batch: (ACCEPT_BATCH / workers.max(1)).max(1),
            open: AtomicUsize::new(0),
        }
    }

    /// Whether there is room for another connection: watch the listeners.
    pub fn has_room(&self) -> bool {
        self.open.load(Ordering::Relaxed) < self.max
    }

    /// Takes a place for one more connection; false when all are taken.
    pub fn admit(&self) -> bool {
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a place back.
    pub fn release(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why accepting failed, for one warning per episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// EMFILE/ENFILE.
    Descriptors,
    /// ENOBUFS, ENOMEM or an error not expected from accept.
    Other,
}

impl Worker {
    /// Accepts a batch of connections from `listener` (see [`Admission`]),
    /// while this worker and the process have room.
    pub(super) fn accept_from(&mut self, listener: RawFd, now: Instant) {
        for _ in 0..self.admission.batch {
            if !self.echo.accepting() || !self.admission.admit() {
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
            self.admission.release();
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

    /// Takes a new connection (its place already admitted) into the
    /// machine, or closes it and gives the place back.
    fn admit(&mut self, fd: RawFd, now: Instant) {
        if fd as usize >= self.by_fd.len() {
            // Beyond what the sets can hold (descriptors were opened behind
            // the server's back): never into a set.
            if !self.warned_capacity {
                warn!(
                    "accepted descriptor {fd} is beyond the {} the server planned for: refusing such connections",
                    self.by_fd.len()
                );
                self.warned_capacity = true;
            }
            net::abort(fd);
            self.echo.handle_refused();
            self.admission.release();
            return;
        }
        match self.echo.handle_accept(fd, now) {
            Ok(id) => self.by_fd[fd as usize] = Some(id),
            Err(_) => {
                net::abort(fd);
                self.admission.release();
            }
        }
    }

    /// Out of descriptors: frees the spare to accept one waiting connection
    /// and reset it at once, so the backlog drains instead of keeping the
    /// listener readable for ever. Returns whether one was shed (more may
    /// wait); otherwise accepting pauses.
    fn shed(&mut self, listener: RawFd, now: Instant) -> bool {
        // Dropped here: its descriptor is the one the accept below takes.
        let freed = self.spare.take().is_some();
        let shed = freed && net::accept(listener).map(net::abort).is_ok();
        // Open the spare again (or try to, should the last try have failed).
        self.spare = File::open("/dev/null").ok();
        if shed {
            self.echo.handle_refused();
        } else {
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
}
