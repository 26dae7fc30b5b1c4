//! Sockets for the select shell: `select(2)` over descriptor bitmaps, and
//! the per-connection calls (`accept4`, `recv`, `send`, `shutdown`,
//! `close`, socket options) on raw descriptors the shell owns.
//!
//! Every call retries `EINTR` itself; every other error comes back as an
//! [`io::Error`] for the caller to judge (`WouldBlock` means "not now").

use std::io;
use std::mem;
use std::os::fd::RawFd;
use std::ptr;
use std::time::Duration;

/// How many descriptors `select(2)` can watch: descriptors `0..FD_SETSIZE`.
/// A descriptor at or above it must never be put in an [`FdSet`].
pub const FD_SETSIZE: usize = libc::FD_SETSIZE;

const WORD_BITS: usize = libc::c_ulong::BITS as usize;
const WORDS: usize = FD_SETSIZE / WORD_BITS;

/// A set of descriptors below [`FD_SETSIZE`], laid out as the kernel's
/// `fd_set`: a bitmap of `unsigned long`s, descriptor `fd` at bit
/// `fd % BITS` of word `fd / BITS`. Plain bit operations (no `FD_SET`
/// call) and a word-at-a-time scan of what is set.
#[repr(C)]
#[derive(Clone)]
pub struct FdSet {
    words: [libc::c_ulong; WORDS],
}

// The cast to `*mut libc::fd_set` in `select` relies on these.
const _: () = assert!(mem::size_of::<FdSet>() == mem::size_of::<libc::fd_set>());
const _: () = assert!(mem::align_of::<FdSet>() == mem::align_of::<libc::fd_set>());

impl FdSet {
    /// The empty set.
    pub const fn new() -> Self {
        FdSet { words: [0; WORDS] }
    }

    /// Empties the set.
    pub fn clear(&mut self) {
        self.words = [0; WORDS];
    }

    /// Adds `fd`; false (and nothing changes) if it is outside `0..FD_SETSIZE`.
    pub fn insert(&mut self, fd: RawFd) -> bool {
        let Some((word, bit)) = position(fd) else {
            return false;
        };
        self.words[word] |= bit;
        true
    }

    /// Removes `fd` (nothing happens if it is not in the set).
    pub fn remove(&mut self, fd: RawFd) {
        if let Some((word, bit)) = position(fd) {
            self.words[word] &= !bit;
        }
    }

    /// Whether `fd` is in the set.
    pub fn contains(&self, fd: RawFd) -> bool {
        position(fd).is_some_and(|(word, bit)| self.words[word] & bit != 0)
    }

    /// Adds every descriptor of `other`.
    pub fn union_with(&mut self, other: &FdSet) {
        for (mine, theirs) in self.words.iter_mut().zip(&other.words) {
            *mine |= theirs;
        }
    }

    /// One more than the highest descriptor in the set; 0 when empty.
    pub fn end(&self) -> usize {
        match self.words.iter().rposition(|&w| w != 0) {
            Some(i) => i * WORD_BITS + (WORD_BITS - self.words[i].leading_zeros() as usize),
            None => 0,
        }
    }

    /// Every descriptor in the set, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.iter_union(self, FD_SETSIZE)
    }

    /// Every descriptor below `end` in `self` or in `other`, in ascending
    /// order: O(words + descriptors found), not O(descriptors watched).
    pub fn iter_union<'a>(
        &'a self,
        other: &'a FdSet,
        end: usize,
    ) -> impl Iterator<Item = RawFd> + 'a {
        let words = end.min(FD_SETSIZE).div_ceil(WORD_BITS);
        (0..words).flat_map(move |i| {
            let mut bits = self.words[i] | other.words[i];
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                // Below FD_SETSIZE, so it fits an i32.
                Some((i * WORD_BITS + bit) as RawFd)
            })
        })
    }
}

impl Default for FdSet {
    fn default() -> Self {
        Self::new()
    }
}

/// The word and the bit of `fd`, if it is in `0..FD_SETSIZE`.
fn position(fd: RawFd) -> Option<(usize, libc::c_ulong)> {
    let fd = usize::try_from(fd).ok().filter(|&fd| fd < FD_SETSIZE)?;
    Some((fd / WORD_BITS, 1 << (fd % WORD_BITS)))
}

/// `select(2)` on the descriptors `0..nfds` of `read` and `write`, which it
/// narrows to the ready ones. `None`: wait for ever. Returns how many
/// descriptors are ready (0 on timeout); `Interrupted` is returned, not
/// retried, so the caller can recompute its timeout.
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
    let tv_ptr = tv
        .as_mut()
        .map_or(ptr::null_mut(), |tv| tv as *mut libc::timeval);
    let nfds = nfds.min(FD_SETSIZE) as libc::c_int;
    // SAFETY: `FdSet` has the size and alignment of `libc::fd_set` (checked
    // at compile time) and its layout (a C array of `unsigned long` bits), so
    // the pointers are valid `fd_set`s for the call; `nfds <= FD_SETSIZE`
    // keeps the kernel inside them; `tv_ptr` is null or a live `timeval`.
    let n = unsafe {
        libc::select(
            nfds,
            (read as *mut FdSet).cast::<libc::fd_set>(),
            (write as *mut FdSet).cast::<libc::fd_set>(),
            ptr::null_mut(),
            tv_ptr,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Runs `call` until it does not fail with `EINTR`; maps `-1` to the error.
fn retry(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Accepts one connection from the listening socket `listener`; the new
/// descriptor is non-blocking and close-on-exec. The caller owns it and
/// must [`close`] it.
pub fn accept(listener: RawFd) -> io::Result<RawFd> {
    let fd = retry(|| {
        // SAFETY: accept4 with null address pointers writes no memory; an
        // invalid descriptor is reported as EBADF, not undefined behaviour.
        unsafe {
            libc::accept4(
                listener,
                ptr::null_mut(),
                ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            ) as isize
        }
    })?;
    Ok(fd as RawFd)
}

/// Reads what is there into `buf`; `Ok(0)` is end of stream (for a
/// non-empty `buf`).
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    retry(|| {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the
        // whole call; the kernel writes at most that many.
        unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) }
    })
}

/// Sends what fits of `buf` without blocking, and without SIGPIPE if the
/// peer is gone (`EPIPE` comes back as an error instead).
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    retry(|| {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the
        // whole call; the kernel reads at most that many.
        unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) }
    })
}

/// Shuts the write side down: a FIN follows what the kernel still holds.
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain call on a descriptor; an invalid one is reported as EBADF.
    retry(|| unsafe { libc::shutdown(fd, libc::SHUT_WR) as isize }).map(drop)
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
    // SAFETY: `value` points to a live `T` of the given length for the call;
    // the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `fd` is an open descriptor of this process.
fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; a closed one
    // yields EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
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
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc < 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_set_bits() {
        let mut a = FdSet::new();
        assert_eq!(a.end(), 0);
        assert!(a.insert(0));
        assert!(a.insert(63));
        assert!(a.insert(64));
        assert!(a.insert(1023));
        assert!(!a.insert(1024));
        assert!(!a.insert(-1));
        assert!(a.contains(63) && a.contains(1023) && !a.contains(1) && !a.contains(5000));
        assert_eq!(a.end(), 1024);
        let mut b = FdSet::new();
        b.insert(5);
        b.insert(64);
        assert_eq!(b.end(), 65);
        let all: Vec<_> = a.iter_union(&b, 1024).collect();
        assert_eq!(all, [0, 5, 63, 64, 1023]);
        let low: Vec<_> = a.iter_union(&b, 64).collect();
        assert_eq!(low, [0, 5, 63]);
        a.remove(1023);
        a.union_with(&b);
        assert_eq!(
            a.iter_union(&FdSet::new(), 1024).collect::<Vec<_>>(),
            [0, 5, 63, 64]
        );
        a.clear();
        assert_eq!(a.end(), 0);
    }
}
