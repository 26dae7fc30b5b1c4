//! Sockets for the select shell: `select(2)` over descriptor bitmaps, and
//! the per-connection calls (`accept4`, `recv`, `send`, `shutdown`,
//! `close`, socket options) on raw descriptors the shell owns.
//!
//! Errors come back as [`io::Error`]s for the caller to judge
//! (`WouldBlock` means "not now"); `EINTR` never does (see [`super`]).

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use socket2::{SockAddr, SockAddrStorage, Socket};

use super::fdset::FdSet;
use super::syscall;

/// `select(2)` on the descriptors of `read` and `write`, which it narrows
/// to the ready ones. `None`: wait for ever. Returns how many descriptors
/// are ready (0 on timeout).
pub fn select(read: &mut FdSet, write: &mut FdSet, timeout: Option<Duration>) -> io::Result<usize> {
    let mut tv = timeout.map(|t| libc::timeval {
        // Saturate: a year is the longest timeout the CLI allows anyway.
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    });
    let nfds = read
        .end()
        .max(write.end())
        .min(read.capacity())
        .min(write.capacity());
    let nfds = libc::c_int::try_from(nfds).unwrap_or(libc::c_int::MAX);
    // A retry after EINTR starts from the sets asked for: Linux writes the
    // sets back only when select succeeds (fs/select.c copies the results
    // out after a non-negative return), and counts the timeout down in
    // `tv`. (POSIX leaves them undefined after an error; this is Linux's.)
    let n = syscall(|| {
        let tv_ptr = tv
            .as_mut()
            .map_or(ptr::null_mut(), |tv| tv as *mut libc::timeval);
        // SAFETY: each set is a live bitmap of `capacity` bits in the
        // layout the kernel reads (see `FdSet`), and `nfds` is at most the
        // smaller capacity, so the kernel reads and writes inside them (Linux
        // takes sets of any length; glibc's FD_SETSIZE bounds only its own
        // `fd_set` type, not used here); `tv_ptr` is null or a live `timeval`.
        unsafe {
            libc::select(
                nfds,
                read.as_mut_ptr().cast::<libc::fd_set>(),
                write.as_mut_ptr().cast::<libc::fd_set>(),
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

/// Sets the socket option `level`/`name` to `value`.
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

/// The descriptors this process has open now (from `/proc/self/fd`).
pub fn open_descriptors() -> io::Result<Vec<RawFd>> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        // Names are numbers; the one read_dir itself holds is among them.
        if let Some(fd) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
            fds.push(fd);
        }
    }
    Ok(fds)
}

/// The soft and hard limits on open descriptors (RLIMIT_NOFILE);
/// `u64::MAX` for unlimited.
pub fn nofile_limits() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the live local.
    syscall(|| unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) })?;
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Raises the soft limit on open descriptors to `wanted`, or as far as the
/// hard limit allows; returns the soft limit now in force.
pub fn raise_nofile(wanted: u64) -> io::Result<u64> {
    let (soft, hard) = nofile_limits()?;
    if soft >= wanted {
        return Ok(soft);
    }
    let limit = libc::rlimit {
        rlim_cur: wanted.min(hard),
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads one `rlimit` from the live local.
    syscall(|| unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) })?;
    Ok(limit.rlim_cur)
}

/// Receives up to two datagrams, into `first` and then `second`, in one
/// call (`recvmmsg`): for each, its real length (`MSG_TRUNC`: more than the
/// buffer's if it did not fit, and then cut short) and its sender. Fewer
/// than two means the socket had no more waiting; none is `WouldBlock`.
pub fn recv_two(
    fd: RawFd,
    first: &mut [u8],
    second: &mut [u8],
) -> io::Result<[Option<(usize, SocketAddr)>; 2]> {
    let mut from = [SockAddrStorage::zeroed(), SockAddrStorage::zeroed()];
    let mut iov = [first, second].map(|buf| libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    });
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
    let mut msgs: [libc::mmsghdr; 2] = unsafe { mem::zeroed() };
    for ((msg, iov), from) in msgs.iter_mut().zip(&mut iov).zip(&mut from) {
        msg.msg_hdr.msg_namelen = from.size_of();
        // `SockAddrStorage` is a transparent `sockaddr_storage`.
        msg.msg_hdr.msg_name = (from as *mut SockAddrStorage).cast();
        msg.msg_hdr.msg_iov = iov;
        msg.msg_hdr.msg_iovlen = 1;
    }
    let n = syscall(|| {
        // SAFETY: each mmsghdr names a live iovec over its buffer (valid for
        // writes of its length) and a live address storage of the length
        // given, all alive for the call; the kernel writes within them.
        unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                2,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                ptr::null_mut(),
            )
        }
    })?;
    let mut got = [None, None];
    for (i, (msg, from)) in msgs.iter().zip(from).enumerate().take(n as usize) {
        // SAFETY: the kernel filled in `msg_namelen` bytes of the address.
        let addr = unsafe { SockAddr::new(from, msg.msg_hdr.msg_namelen) };
        let sender = addr
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP sender"))?;
        got[i] = Some((msg.msg_len as usize, sender));
    }
    Ok(got)
}

/// Sends `buf` as one datagram to `to`, without blocking.
pub fn send_to(fd: RawFd, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
    let to = SockAddr::from(to);
    let n = syscall(|| {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes and `to` is a
        // live socket address of `to.len()` bytes, both for the whole call.
        unsafe {
            libc::sendto(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
                to.as_ptr().cast(),
                to.len(),
            )
        }
    })?;
    Ok(n as usize)
}

/// The sockets handed over by socket activation (`sd_listen_fds(3)`), if
/// `LISTEN_PID` names this process: descriptors 3 to 3 + `LISTEN_FDS` - 1,
/// owned by the caller from now on. `None` if the process was not
/// activated. Only the first call may take them; a later one fails.
pub fn activated_sockets() -> io::Result<Option<Vec<Socket>>> {
    const FIRST: RawFd = 3;
    const MOST: RawFd = 1024;
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let Ok(pid) = std::env::var("LISTEN_PID") else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    let count = std::env::var("LISTEN_FDS").unwrap_or_default();
    let Some(count) = count
        .trim()
        .parse::<RawFd>()
        .ok()
        .filter(|n| (1..=MOST).contains(n))
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("LISTEN_FDS={count:?} is not a count of descriptors"),
        ));
    };
    if TAKEN.swap(true, Ordering::AcqRel) {
        return Err(io::Error::other("the activated sockets were taken already"));
    }
    let mut sockets = Vec::new();
    for fd in FIRST..FIRST + count {
        // F_GETFD fails with EBADF on a descriptor that is not open.
        // SAFETY: F_GETFD only reads the descriptor's flags.
        syscall(|| unsafe { libc::fcntl(fd, libc::F_GETFD) }).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("descriptor {fd} handed over is not open: {e}"),
            )
        })?;
        // SAFETY: LISTEN_PID names this process, so by the activation
        // protocol descriptors 3.. are handed to it to own; TAKEN makes this
        // the one place in the process that wraps them.
        sockets.push(unsafe { Socket::from_raw_fd(fd) });
    }
    Ok(Some(sockets))
}
