//! The kernel's side of the device: its MTU, and (with `--host-address`)
//! its address and link state, set with `ip`.

use std::process::Command;

use anyhow::{Context, anyhow, bail};
use smoltcp::wire::IpCidr;

use crate::sys::tuntap::{self, IfName};

/// Sets the interface's MTU; if not allowed (a device made for this user,
/// run without CAP_NET_ADMIN), keeps the MTU it has, with a warning.
pub fn set_mtu(name: &IfName, mtu: u32) -> anyhow::Result<u32> {
    match tuntap::set_mtu(name, mtu) {
        Ok(()) => Ok(mtu),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let current =
                tuntap::mtu(name).with_context(|| format!("reading the MTU of {name}"))?;
            if current != mtu {
                log::warn!("{name}: not allowed to set the MTU to {mtu} ({e}); keeping {current}");
            }
            Ok(current)
        }
        Err(e) => Err(anyhow!(e).context(format!("setting the MTU of {name} to {mtu}"))),
    }
}

/// Gives the kernel's side of the device `host` and brings it up.
pub fn configure(name: &IfName, host: IpCidr) -> anyhow::Result<()> {
    let host_arg = host.to_string();
    // On this two-party link nobody else can hold the address: skip IPv6
    // duplicate address detection, which would hold the address back (and
    // so the peer) for a second or two after `listening on` is printed.
    let mut args = vec!["addr", "replace", &host_arg, "dev", name.as_str()];
    if matches!(host, IpCidr::Ipv6(_)) {
        args.push("nodad");
    }
    ip(&args)?;
    ip(&["link", "set", "dev", name.as_str(), "up"])?;
    log::info!("{name}: kernel side at {host}, up");
    Ok(())
}

/// Runs `ip ARGS`, failing with its message.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let shown = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running `{shown}` (is iproute2 installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed: {} (configuring the kernel's side needs CAP_NET_ADMIN; or drop --host-address and configure it yourself)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
