//! TUN/TAP devices: attach (TUNSETIFF, with a virtio-net header when the
//! kernel offers one), offloads (TUNSETOFFLOAD), MTU (SIOCGIFMTU and
//! SIOCSIFMTU), and packet reads and writes.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::syscall;

/// Which kind of device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Layer 3: IP packets.
    Tun,
    /// Layer 2: Ethernet frames.
    Tap,
}

impl Mode {
    /// "TUN" or "TAP".
    pub fn label(self) -> &'static str {
        match self {
            Mode::Tun => "TUN",
            Mode::Tap => "TAP",
        }
    }

    /// The other mode.
    pub fn other(self) -> Mode {
        match self {
            Mode::Tun => Mode::Tap,
            Mode::Tap => Mode::Tun,
        }
    }
}

const TUN_PATH: &CStr = c"/dev/net/tun";

/// An interface name the kernel accepts (its `dev_valid_name`): 1 to
/// `IFNAMSIZ - 1` bytes, not `.` or `..`, without `/`, `:`, NUL or white
/// space. The one place this rule lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfName(String);

/// Why a string is not an [`IfName`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadIfName;

impl fmt::Display for BadIfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an interface name is 1 to {} bytes, not `.` or `..`, without '/', ':' or spaces",
            libc::IFNAMSIZ - 1
        )
    }
}

impl IfName {
    /// `name`, if the kernel would take it.
    pub fn new(name: &str) -> Result<IfName, BadIfName> {
        let bad = name.is_empty()
            || name.len() >= libc::IFNAMSIZ
            || name == "."
            || name == ".."
            || name
                .chars()
                .any(|c| matches!(c, '/' | ':' | '\0') || c.is_whitespace() || c.is_control());
        if bad {
            return Err(BadIfName);
        }
        Ok(IfName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An `ifreq` naming this interface, the rest zeroed.
    fn ifreq(&self) -> libc::ifreq {
        // SAFETY: ifreq is plain old data (arrays, integers, a union of
        // them); all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        // Fits with a NUL after it: checked in `new`.
        for (dst, &src) in ifr.ifr_name.iter_mut().zip(self.0.as_bytes()) {
            *dst = src as libc::c_char;
        }
        ifr
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
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
pub fn open(name: &IfName, mode: Mode, vnet_hdr: bool) -> Result<Attached, (OpenStep, io::Error)> {
    let fd = syscall(|| {
        // SAFETY: the path is a NUL-terminated C string; open has no other
        // memory effects.
        unsafe {
            libc::open(
                TUN_PATH.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        }
    })
    .map_err(|e| (OpenStep::Device, e))?;
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
    let mut ifr = name.ifreq();
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    ifreq_ioctl(fd.as_fd(), libc::TUNSETIFF, &mut ifr).map_err(|e| (OpenStep::Attach, e))?;
    Ok(Attached { fd, vnet_hdr })
}

/// The `IFF_*` flags this kernel's TUN driver supports (TUNGETFEATURES).
fn features(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    let mut features: libc::c_uint = 0;
    syscall(|| {
        // SAFETY: TUNGETFEATURES writes one unsigned int through the
        // pointer, which points to one, borrowed mutably for the call.
        unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNGETFEATURES,
                &mut features as *mut libc::c_uint,
            )
        }
    })?;
    Ok(features as libc::c_int)
}

/// Tells the kernel which offloads the reader of `fd` (attached with a
/// virtio-net header) handles (TUNSETOFFLOAD, `TUN_F_*`): with `TUN_F_CSUM`
/// it may hand over packets whose transport checksum is not filled in, with
/// `TUN_F_TSO4`/`TUN_F_TSO6` TCP segments larger than the MTU.
pub fn set_offload(fd: BorrowedFd<'_>, offloads: libc::c_uint) -> io::Result<()> {
    syscall(|| {
        // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned
        // long of flags) and touches no memory of ours.
        unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(offloads),
            )
        }
    })
    .map(drop)
}

/// One interface ioctl (`request` takes a `struct ifreq`) on `fd`.
fn ifreq_ioctl(fd: BorrowedFd<'_>, request: libc::Ioctl, ifr: &mut libc::ifreq) -> io::Result<()> {
    syscall(|| {
        // SAFETY: every request passed here reads and/or writes exactly one
        // `struct ifreq`, and `ifr` is one, borrowed mutably for the call.
        unsafe { libc::ioctl(fd.as_raw_fd(), request, ifr as *mut libc::ifreq) }
    })
    .map(drop)
}

/// A datagram socket to carry interface ioctls.
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers.
    let fd = syscall(|| unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: socket just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The interface's (IP) MTU.
pub fn mtu(name: &IfName) -> io::Result<u32> {
    let mut ifr = name.ifreq();
    ifreq_ioctl(ioctl_socket()?.as_fd(), libc::SIOCGIFMTU, &mut ifr)?;
    // SAFETY: on success SIOCGIFMTU filled in the `ifru_mtu` member of the union.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    Ok(mtu.max(0) as u32)
}

/// Sets the interface's (IP) MTU (needs CAP_NET_ADMIN).
pub fn set_mtu(name: &IfName, mtu: u32) -> io::Result<()> {
    let mut ifr = name.ifreq();
    ifr.ifr_ifru.ifru_mtu =
        libc::c_int::try_from(mtu).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    ifreq_ioctl(ioctl_socket()?.as_fd(), libc::SIOCSIFMTU, &mut ifr)
}

/// One packet (or frame) into `buf`; `WouldBlock` when none is waiting.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let n = syscall(|| {
        // SAFETY: buf is valid for writes of buf.len() bytes for the whole call.
        unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
    })?;
    Ok(n as usize)
}

/// One packet (or frame) from `buf`.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    let n = syscall(|| {
        // SAFETY: buf is valid for reads of buf.len() bytes for the whole call.
        unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) }
    })?;
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernels_rule() {
        for good in ["tun0", "selecho0", "a", "a-b_c.d", "fifteen-chars15"] {
            assert!(IfName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\0b",
            "sixteen-chars-16",
        ] {
            assert_eq!(IfName::new(bad), Err(BadIfName), "{bad:?}");
        }
    }
}
