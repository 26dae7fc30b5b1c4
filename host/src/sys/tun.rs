//! TUN/TAP devices and the few descriptor calls the TUN shell needs:
//! attach (TUNSETIFF, with a virtio-net header when the kernel offers one),
//! offloads (TUNSETOFFLOAD), MTU (SIOCGIFMTU/SIOCSIFMTU), read, write, poll.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Which kind of device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Layer 3: IP packets.
    Tun,
    /// Layer 2: Ethernet frames.
    Tap,
}

const TUN_PATH: &CStr = c"/dev/net/tun";

/// `name` as the `ifr_name` of an `ifreq`; `None` if it does not fit
/// (`IFNAMSIZ` - 1 bytes) or holds a NUL.
fn ifreq_for(name: &str) -> Option<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.as_bytes().contains(&0) {
        return None;
    }
    // SAFETY: ifreq is plain old data (arrays, integers, a union of them); all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    Some(ifr)
}

fn bad_name(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "`{name}` is not a valid interface name (1 to {} bytes)",
            libc::IFNAMSIZ - 1
        ),
    )
}

/// Which step of [`open`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenStep {
    /// Opening `/dev/net/tun` (`ENOENT`: no such device node; `EACCES`).
    Device,
    /// Attaching to the interface with TUNSETIFF (`EPERM`: not allowed to
    /// create it or not its owner; `EBUSY`: another process is attached;
    /// `EINVAL`: it exists in the other mode or is no TUN/TAP device).
    Attach,
}

/// A descriptor attached to a TUN/TAP interface by [`open`].
#[derive(Debug)]
pub struct Attached {
    /// Non-blocking, close-on-exec.
    pub fd: OwnedFd,
    /// Every packet read or written starts with a `struct virtio_net_hdr`
    /// ([`VNET_HDR_LEN`] bytes; `IFF_VNET_HDR`).
    pub vnet_hdr: bool,
}

/// Size of the legacy `struct virtio_net_hdr` a TUN/TAP descriptor with
/// `IFF_VNET_HDR` puts before each packet (the kernel's default size).
pub const VNET_HDR_LEN: usize = 10;

/// Opens `/dev/net/tun` (non-blocking, close-on-exec) and attaches it to the
/// interface `name` in `mode`, creating the interface if it does not exist.
/// With `vnet_hdr`, asks for a virtio-net header on every packet if the
/// kernel offers it ([`Attached::vnet_hdr`] says whether it did).
pub fn open(name: &str, mode: Mode, vnet_hdr: bool) -> Result<Attached, (OpenStep, io::Error)> {
    let mut ifr = ifreq_for(name).ok_or_else(|| (OpenStep::Attach, bad_name(name)))?;
    // SAFETY: the path is a NUL-terminated C string; open has no other memory effects.
    let fd = unsafe {
        libc::open(
            TUN_PATH.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err((OpenStep::Device, io::Error::last_os_error()));
    }
    // SAFETY: open just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let kind = match mode {
        Mode::Tun => libc::IFF_TUN,
        Mode::Tap => libc::IFF_TAP,
    };
    let vnet_hdr = vnet_hdr && features(fd.as_fd()).is_ok_and(|f| f & libc::IFF_VNET_HDR != 0);
    let mut flags = kind | libc::IFF_NO_PI;
    if vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    ifreq_ioctl(fd.as_fd(), libc::TUNSETIFF, &mut ifr).map_err(|e| (OpenStep::Attach, e))?;
    Ok(Attached { fd, vnet_hdr })
}

/// The `IFF_*` flags this kernel's TUN driver supports (TUNGETFEATURES).
fn features(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    let mut features: libc::c_uint = 0;
    // SAFETY: TUNGETFEATURES writes one unsigned int through the pointer,
    // which points to one, borrowed mutably for the call.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNGETFEATURES,
            &mut features as *mut libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(features as libc::c_int)
}

/// Tells the kernel which offloads the reader of `fd` (attached with a
/// virtio-net header) handles (TUNSETOFFLOAD, `TUN_F_*`): with `TUN_F_CSUM`
/// it may hand over packets whose transport checksum is not filled in, with
/// `TUN_F_TSO4`/`TUN_F_TSO6` TCP segments larger than the MTU.
pub fn set_offload(fd: BorrowedFd<'_>, offloads: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long of
    // flags) and touches no memory of ours.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(offloads),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One interface ioctl (`request` takes a `struct ifreq`) on `fd`.
fn ifreq_ioctl(fd: BorrowedFd<'_>, request: libc::Ioctl, ifr: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: every request passed here reads and/or writes exactly one
    // `struct ifreq`, and `ifr` is one, borrowed mutably for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, ifr as *mut libc::ifreq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A datagram socket to carry interface ioctls.
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The interface's (IP) MTU.
pub fn mtu(name: &str) -> io::Result<u32> {
    let mut ifr = ifreq_for(name).ok_or_else(|| bad_name(name))?;
    let sock = ioctl_socket()?;
    ifreq_ioctl(sock.as_fd(), libc::SIOCGIFMTU, &mut ifr)?;
    // SAFETY: on success SIOCGIFMTU filled in the `ifru_mtu` member of the union.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    Ok(mtu.max(0) as u32)
}

/// Sets the interface's (IP) MTU (needs CAP_NET_ADMIN).
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mut ifr = ifreq_for(name).ok_or_else(|| bad_name(name))?;
    ifr.ifr_ifru.ifru_mtu =
        libc::c_int::try_from(mtu).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let sock = ioctl_socket()?;
    ifreq_ioctl(sock.as_fd(), libc::SIOCSIFMTU, &mut ifr)
}

/// One packet (or frame) into `buf`; `WouldBlock` when none is waiting.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes for the whole call.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One packet (or frame) from `buf`.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for reads of buf.len() bytes for the whole call.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Waits until one of `fds` (open descriptors) is readable or `timeout` passes (`None`: no
/// limit); which ones are readable (also on error or hang-up). A signal
/// interrupting the wait counts as a wake-up with nothing readable.
pub fn poll_readable<const K: usize>(
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
    // SAFETY: pollfds is an array of K pollfd structs, valid for the call; K fits in nfds_t.
    let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), K as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok([false; K]);
        }
        return Err(err);
    }
    Ok(pollfds.map(|p| p.revents != 0))
}
