//! SIGINT/SIGTERM as an event a poll loop can wait on (the self-pipe trick,
//! done by `signal-hook`), and a second signal that exits at once.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use signal_hook::consts::{SIGINT, SIGTERM};

/// Exit status when a second signal cuts the graceful stop short.
const FORCED_EXIT: i32 = 130;

/// The read end of the signal pipe.
pub struct Signals {
    read: UnixStream,
}

impl Signals {
    /// Registers the handlers. The first SIGINT/SIGTERM makes [`fd`](Self::fd)
    /// readable; any later one exits the process at once.
    pub fn install() -> io::Result<Self> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let armed = Arc::new(AtomicBool::new(false));
        for signal in [SIGINT, SIGTERM] {
            // Order matters: the conditional exit checks the flag before the
            // flag handler sets it, so only a second signal exits.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                FORCED_EXIT,
                Arc::clone(&armed),
            )?;
            signal_hook::flag::register(signal, Arc::clone(&armed))?;
            signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
        }
        Ok(Signals { read })
    }

    /// Readable once a signal arrived: watch it with the other descriptors.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Whether a signal arrived since the last call (empties the pipe).
    pub fn take(&self) -> bool {
        let mut buf = [0u8; 64];
        let mut got = false;
        loop {
            match (&self.read).read(&mut buf) {
                Ok(0) => return got,
                Ok(_) => got = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return got,
            }
        }
    }
}
