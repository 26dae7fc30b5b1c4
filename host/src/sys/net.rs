//! Sockets for the select shell: `select(2)` over descriptor bitmaps, and
//! the per-connection calls (`accept4`, `recv`, `send`, `shutdown`,
//! `close`, socket options) on raw descriptors the shell owns.
//!
//! Errors come back as [`io::Error`]s for the caller to judge
//! (`WouldBlock` means "not now"); `EINTR` never does (see [`super`]).

use std::io;
use std::mem;
use std::os::fd::RawFd;
use std::ptr;
use std::time::Duration;

use super::fdset::{FD_SETSIZE, FdSet};
use super::syscall;

/// `select(2)` on the descriptors `0..nfds` of `read` and `write`, which it
/// narrows to the ready ones. `None`: wait for ever. Returns how many
/// descriptors are ready (0 on timeout).
pub fn select(
    nfds: usize,
    read: &mut FdSet,
    write: &mut FdSet,
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let mut tv = timeout.map(|t| libc::timeval {
        // Saturate: a year is the longest timeout the CLI allows anyway.
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    });
    let nfds = nfds.min(FD_SETSIZE) as libc::c_int;
    // A retry after EINTR starts again from the sets asked for (POSIX leaves
    // them undefined after an error); Linux counts the timeout down in `tv`.
    let (want_read, want_write) = (read.clone(), write.clone());
    let n = syscall(|| {
        read.clone_from(&want_read);
        write.clone_from(&want_write);
        let tv_ptr = tv
            .as_mut()
            .map_or(ptr::null_mut(), |tv| tv as *mut libc::timeval);
        // SAFETY: `FdSet` has the size and alignment of `libc::fd_set`
        // (checked at compile time) and its layout (a C array of `unsigned
        // long` bits), so the pointers are valid `fd_set`s for the call;
        // `nfds <= FD_SETSIZE` keeps the kernel inside them; `tv_ptr` is
        // null or a live `timeval`.
        unsafe {
            libc::select(
                nfds,
                (read as *mut FdSet).cast::<libc::fd_set>(),
                (write as *mut FdSet).cast::<libc::fd_set>(),
                ptr::null_mut(),
                tv_ptr,
            )
        }
    })?;
    Ok(n as usize)
}

/// Accepts one connection from the listening socket `listener`; the new
/// descriptor is non-blocking and close-on-exec. The caller owns it and
/// must [`close`] it.
pub fn accept(listener: RawFd) -> io::Result<RawFd> {
    syscall(|| {
        // SAFETY: accept4 with null address pointers writes no memory; an
        // invalid descriptor is reported as EBADF, not undefined behaviour.
        unsafe {
            libc::accept4(
                listener,
                ptr::null_mut(),
                ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        }
    })
}

/// Reads what is there into `buf`; `Ok(0)` is end of stream (for a
/// non-empty `buf`).
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let n = syscall(|| {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the
        // whole call; the kernel writes at most that many.
        unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) }
    })?;
    Ok(n as usize)
}

/// Sends what fits of `buf` without blocking, and without SIGPIPE if the
/// peer is gone (`EPIPE` comes back as an error instead).
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let n = syscall(|| {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the
        // whole call; the kernel reads at most that many.
        unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) }
    })?;
    Ok(n as usize)
}

/// Shuts the write side down: a FIN follows what the kernel still holds.
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain call on a descriptor; an invalid one is reported as EBADF.
    syscall(|| unsafe { libc::shutdown(fd, libc::SHUT_WR) }).map(drop)
}

/// Releases the descriptor. Not retried on EINTR: on Linux the descriptor
/// is gone whatever `close` returns.
pub fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses it again; an invalid
    // descriptor is reported as EBADF, not undefined behaviour.
    unsafe {
        libc::close(fd);
    }
}

/// Closes with a reset instead of a FIN: SO_LINGER {on, 0}, then close.
pub fn abort(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // Best effort: if the option fails the close is merely graceful.
    let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, &linger);
    close(fd);
}

/// Disables Nagle's algorithm (TCP_NODELAY): echoes go out at once.
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    setsockopt(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_NODELAY,
        &(1 as libc::c_int),
    )
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    syscall(|| {
        // SAFETY: `value` points to a live `T` of the given length for the
        // call; the kernel only reads it.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (value as *const T).cast(),
                mem::size_of::<T>() as libc::socklen_t,
            )
        }
    })
    .map(drop)
}

/// Whether `fd` is an open descriptor of this process.
fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; a closed one
    // yields EBADF.
    syscall(|| unsafe { libc::fcntl(fd, libc::F_GETFD) }).is_ok()
}

/// How many descriptors in `0..FD_SETSIZE` are open now.
pub fn open_below_setsize() -> usize {
    (0..FD_SETSIZE as RawFd).filter(|&fd| is_open(fd)).count()
}

/// The soft limit on open descriptors (RLIMIT_NOFILE), if it is finite.
pub fn nofile_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the live local.
    syscall(|| unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }).ok()?;
    if limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(limit.rlim_cur)
}
