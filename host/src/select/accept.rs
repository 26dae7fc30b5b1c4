//! A readable listener: accept a bounded batch, admit each connection into
//! the machine or turn it away, and weather running out of descriptors.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use log::{debug, info, warn};
use selecho_core::{Duration, Instant};

use super::serve::Shell;
use crate::sys::fdset::FD_SETSIZE;
use crate::sys::net;

/// Most connections taken from one listener per round, so a flood of new
/// connections cannot starve the ones being served.
const ACCEPT_BATCH: usize = 64;

/// How long to stop accepting after an error that retrying at once would
/// only repeat (no memory, no descriptor to shed a connection with).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Why accepting failed, for one warning per episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// EMFILE/ENFILE.
    Descriptors,
    /// ENOBUFS, ENOMEM or an error not expected from accept.
    Other,
}

impl Shell<'_> {
    /// Accepts up to [`ACCEPT_BATCH`] connections from listener `i`.
    pub(super) fn accept_from(&mut self, i: usize, now: Instant) {
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
}
