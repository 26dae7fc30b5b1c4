//! Waiting for a few descriptors at once: `poll(2)`.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use super::syscall;

/// Waits until one of `fds` (open descriptors) is readable or `timeout`
/// passes (`None`: no limit); which ones are readable (also on error or
/// hang-up).
pub fn wait_readable<const K: usize>(
    fds: [RawFd; K],
    timeout: Option<Duration>,
) -> io::Result<[bool; K]> {
    let mut pollfds = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let timeout_ms = match timeout {
        None => -1,
        // Round up so a wait never ends just before its deadline and spins.
        Some(t) => t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
    };
    syscall(|| {
        // SAFETY: pollfds is an array of K pollfd structs, valid for the
        // call; K fits in nfds_t.
        unsafe { libc::poll(pollfds.as_mut_ptr(), K as libc::nfds_t, timeout_ms) }
    })?;
    Ok(pollfds.map(|p| p.revents != 0))
}
