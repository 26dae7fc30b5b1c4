//! Signals as events a loop waits on: every signal handled here writes to
//! one pipe (the self-pipe trick, done by `signal-hook`) and sets a flag of
//! its own; the loop watches the pipe with its other descriptors and asks
//! [`Signals::take`] what arrived.
//!
//! | signal | what the daemon does |
//! | --- | --- |
//! | SIGINT, SIGTERM | stop gracefully (see [`super::stop`]); a second one exits at once, status 130 |
//! | SIGUSR1 | log the counters (at info level, like `--stats-interval`), as `dd` does |
//! | SIGHUP | there is no configuration to reload: logged, serving goes on |
//! | SIGUSR2 | no meaning: logged, serving goes on |
//!
//! None of them ends the process without its `stopped:` line.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use log::info;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};

use super::stats::{self, Totals};

/// Exit status when a second signal cuts the graceful stop short.
const FORCED_EXIT: i32 = 130;

/// The read end of the signal pipe, and a flag per kind of signal.
pub struct Signals {
    read: UnixStream,
    stop: Arc<AtomicBool>,
    report: Arc<AtomicBool>,
    hangup: Arc<AtomicBool>,
    user2: Arc<AtomicBool>,
}

/// What arrived since the last [`Signals::take`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arrived {
    /// SIGINT or SIGTERM.
    pub stop: bool,
    /// SIGUSR1.
    pub report: bool,
    /// SIGHUP.
    pub hangup: bool,
    /// SIGUSR2.
    pub user2: bool,
}

impl Signals {
    /// Registers the handlers. Each signal makes [`fd`](Self::fd) readable;
    /// a SIGINT/SIGTERM after the first exits the process at once.
    pub fn install() -> io::Result<Self> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let signals = Signals {
            read,
            stop: Arc::default(),
            report: Arc::default(),
            hangup: Arc::default(),
            user2: Arc::default(),
        };
        let armed = Arc::new(AtomicBool::new(false));
        for signal in [SIGINT, SIGTERM] {
            // Order matters: the conditional exit checks `armed` before the
            // flag handler sets it, so only a second signal exits.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                FORCED_EXIT,
                Arc::clone(&armed),
            )?;
            signal_hook::flag::register(signal, Arc::clone(&armed))?;
        }
        let flags = [
            (SIGINT, &signals.stop),
            (SIGTERM, &signals.stop),
            (SIGUSR1, &signals.report),
            (SIGHUP, &signals.hangup),
            (SIGUSR2, &signals.user2),
        ];
        for (signal, flag) in flags {
            signal_hook::flag::register(signal, Arc::clone(flag))?;
            signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
        }
        Ok(signals)
    }

    /// Readable once a signal arrived: watch it with the other descriptors.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// What arrived since the last call (empties the pipe).
    pub fn take(&self) -> Arrived {
        let mut buf = [0u8; 64];
        // Until empty (WouldBlock) or an error: the flags say what came.
        while (&self.read).read(&mut buf).is_ok_and(|n| n > 0) {}
        Arrived {
            stop: self.stop.swap(false, Ordering::Relaxed),
            report: self.report.swap(false, Ordering::Relaxed),
            hangup: self.hangup.swap(false, Ordering::Relaxed),
            user2: self.user2.swap(false, Ordering::Relaxed),
        }
    }
}

impl Arrived {
    /// Does what the signals other than a stop ask for (logging, with the
    /// shell's `totals` at hand); whether a stop was asked.
    pub fn handle(self, totals: &Totals) -> bool {
        if self.report {
            stats::log_totals(totals);
        }
        if self.hangup {
            info!("SIGHUP: there is no configuration to reload; serving on");
        }
        if self.user2 {
            info!("SIGUSR2 means nothing to selecho; serving on");
        }
        self.stop
    }
}
