//! Every `unsafe` call into libc lives below this module, each with a
//! `// SAFETY:` line; the rest of the host is safe Rust.
//!
//! - [`fdset`]: the `fd_set` bitmap `select(2)` takes;
//! - [`net`]: `select(2)` and the socket calls of the select shell;
//! - [`tuntap`]: attaching to a TUN/TAP device, its ioctls, packet I/O;
//! - [`poll`]: waiting for a few descriptors (the TUN shell's loop).
//!
//! # One way to call libc
//!
//! Every call goes through [`syscall`]: a failure (`-1`) becomes the
//! `errno` as an [`io::Error`], and `EINTR` is retried. That holds for the
//! waits too: every signal the daemon handles also writes to its signal
//! pipe, so a retried `select`/`poll` returns at once with the pipe
//! readable. The one exception is `close(2)`, never retried: on Linux the
//! descriptor is released whatever it returns.

pub mod fdset;
pub mod net;
pub mod poll;
pub mod tuntap;

use std::io;

/// A libc return type whose failure value is `-1`.
pub trait Ret: Copy + PartialEq {
    /// The value that means "failed, see errno".
    const FAILED: Self;
}

impl Ret for i32 {
    const FAILED: Self = -1;
}

impl Ret for isize {
    const FAILED: Self = -1;
}

/// Runs one libc call (an `unsafe` block with its `// SAFETY:` line, at
/// the call site) until it does not fail with `EINTR`; `-1` becomes the
/// error. See the [module docs](self) for the policy.
pub fn syscall<T: Ret>(mut call: impl FnMut() -> T) -> io::Result<T> {
    loop {
        let ret = call();
        if ret != T::FAILED {
            return Ok(ret);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
