//! From a plan to a running stack: attach the device, configure the
//! kernel's side, build smoltcp's interface and sockets and the adapter,
//! announce.

use std::net::{IpAddr, SocketAddr};

use anyhow::anyhow;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress};

use selecho_core::smoltcp::to_smoltcp;

use super::device::TunDevice;
use super::plan::{Plan, neighbour};
use super::serve::Stack;
use super::{Adapter, diagnose, host_side};
use crate::daemon::announce;
use crate::daemon::clock::Clock;
use crate::sys::tuntap::{self, Mode};

/// Receive and send buffer of each smoltcp socket: the TCP window (scaled
/// beyond 64 KiB). Measured over a 1500-byte-MTU TUN with 4 streaming
/// connections: 64 KiB gave 1.1 Gbit/s, 256 KiB 1.7 Gbit/s. The memory is
/// allocated zeroed per slot and touched only as far as windows fill.
pub const SOCKET_BUFFER: usize = 256 * 1024;

/// A peer that acknowledges nothing for this long while we have data for it
/// (or never completes a handshake) is dropped by smoltcp.
const TCP_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(60);

/// A locally administered, unicast MAC for smoltcp's side of a TAP device.
const TAP_MAC: EthernetAddress = EthernetAddress([0x02, 0x73, 0x65, 0x6c, 0x65, 0x63]);

/// Attaches the device and builds everything the loop needs; prints
/// `listening on ADDR` for each port.
pub fn start(plan: &Plan) -> anyhow::Result<Stack> {
    let name = &plan.ifname;
    let attached = tuntap::open(name, plan.mode, true)
        .map_err(|(step, e)| diagnose::open_error(name, plan.mode, step, e))?;
    let mtu = host_side::set_mtu(name, plan.mtu)?;
    match plan.host {
        Some(host) => host_side::configure(name, host)?,
        None => {
            let suggest = neighbour(plan.address);
            let prefix = plan.address.prefix_len();
            log::info!(
                "{name}: the kernel's side needs an address and to be up; run: ip addr add {suggest}/{prefix} dev {name} && ip link set {name} up"
            );
        }
    }
    let mut device = TunDevice::new(attached, plan.mode, mtu as usize);

    let clock = Clock::new();
    let hardware = match plan.mode {
        Mode::Tun => HardwareAddress::Ip,
        Mode::Tap => HardwareAddress::Ethernet(TAP_MAC),
    };
    let mut config = IfaceConfig::new(hardware);
    config.random_seed = random_seed();
    let mut iface = Interface::new(config, &mut device, to_smoltcp(clock.now()));
    iface.update_ip_addrs(|addrs| {
        // The list holds at least one address, and it was empty.
        let _ = addrs.push(plan.address);
    });
    if let Some(host) = plan.host {
        let routes = iface.routes_mut();
        let added = match host.address() {
            IpAddress::Ipv4(gw) => routes.add_default_ipv4_route(gw).is_ok(),
            IpAddress::Ipv6(gw) => routes.add_default_ipv6_route(gw).is_ok(),
        };
        if !added {
            log::warn!("no room for a default route via {}", host.address());
        }
    }

    let mut sockets = SocketSet::new(Vec::with_capacity(plan.slots));
    let handles: Vec<_> = (0..plan.slots)
        .map(|_| {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
                tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
            );
            // Echo small writes at once, like TCP_NODELAY on the select shell's sockets.
            socket.set_nagle_enabled(false);
            socket.set_timeout(Some(TCP_TIMEOUT));
            sockets.add(socket)
        })
        .collect();
    let mut adapter = Box::write(Box::new_uninit(), Adapter::new(plan.machine));
    adapter
        .add_sockets(&mut sockets, handles, &plan.ports)
        .map_err(|e| anyhow!("setting up {} sockets: {e}", plan.slots))?;

    log::info!(
        "{name}: smoltcp at {} over {} (MTU {mtu}), {} connection slots over {} port(s)",
        plan.address,
        plan.mode.label(),
        plan.slots,
        plan.ports.len()
    );
    let ip = IpAddr::from(plan.address.address());
    announce::listening(plan.ports.iter().map(|&port| SocketAddr::new(ip, port)));
    Ok(Stack::new(device, iface, sockets, adapter, clock, plan))
}

/// A seed for smoltcp's initial sequence numbers and ports: differs per run.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9E37_79B9_7F4A_7C15
}
