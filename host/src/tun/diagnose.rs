//! Why a TUN/TAP device could not be opened, said so a user can fix it.

use std::io;

use anyhow::anyhow;

use crate::sys::tuntap::{self, IfName, Mode, OpenStep};

/// An actionable message for a failure to open or attach the device.
pub fn open_error(name: &IfName, mode: Mode, step: OpenStep, e: io::Error) -> anyhow::Error {
    let wanted = mode.label();
    let why = match (step, e.raw_os_error()) {
        (OpenStep::Device, Some(libc::ENOENT | libc::ENODEV | libc::ENXIO)) => {
            "/dev/net/tun is missing: load the driver (`modprobe tun`), or give the container the device (e.g. `--device /dev/net/tun`)".to_owned()
        }
        (OpenStep::Device, Some(libc::EACCES | libc::EPERM)) => {
            "permission denied opening /dev/net/tun: make it usable by your user (most systems ship it \
             as mode 0666: `sudo chmod 0666 /dev/net/tun`), or run as root"
                .to_owned()
        }
        (OpenStep::Attach, Some(libc::EPERM | libc::EACCES)) => format!(
            "permission denied: creating {name}, or attaching to one owned by another user, needs CAP_NET_ADMIN; \
             or create it once for your user: `sudo ip tuntap add dev {name} mode {} user $USER`",
            wanted.to_lowercase()
        ),
        (OpenStep::Attach, Some(libc::EBUSY)) => {
            format!("{name} is busy: another process is attached to it (stop it, or pick another --ifname)")
        }
        (OpenStep::Attach, Some(libc::EINVAL)) => match existing_kind(name, mode) {
            Some(Some(other)) => {
                let flag = match mode {
                    Mode::Tun => "add --tap",
                    Mode::Tap => "drop --tap",
                };
                format!(
                    "{name} is a {} device, not {wanted}: {flag}, or pick another --ifname",
                    other.label()
                )
            }
            Some(None) => format!("{name} exists and is not a TUN/TAP device: pick another --ifname"),
            None => format!("the kernel refused to attach to {name} as a {wanted} device ({e})"),
        },
        _ => e.to_string(),
    };
    anyhow!("cannot attach to {wanted} interface {name}: {why}")
}

/// What the interface `name`, which TUNSETIFF refused in `mode`, is: a
/// probe attaches in the other mode (and lets go at once). `Some(Some(mode))`
/// if that works (or the device is busy in that mode), `Some(None)` if
/// neither mode fits (no TUN/TAP device), `None` if the probe says nothing.
fn existing_kind(name: &IfName, mode: Mode) -> Option<Option<Mode>> {
    let other = mode.other();
    match tuntap::open(name, other, false) {
        Ok(_probe) => Some(Some(other)),
        Err((OpenStep::Attach, e)) if e.raw_os_error() == Some(libc::EBUSY) => Some(Some(other)),
        Err((OpenStep::Attach, e)) if e.raw_os_error() == Some(libc::EINVAL) => Some(None),
        Err(_) => None,
    }
}
