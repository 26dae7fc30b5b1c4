//! From a plan to a running stack: attach the device, configure the
//! kernel's side, build smoltcp's interface and sockets and the adapter,
//! announce.

use std::net::{IpAddr, SocketAddr};

use anyhow::anyhow;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress};

use selecho_core::DatagramConfig;
use selecho_core::smoltcp::to_smoltcp;

use super::device::TunDevice;
use super::plan::{Plan, neighbour};
use super::serve::Stack;
use super::{Adapter, UdpAdapter, diagnose, host_side};
use crate::daemon::announce;
use crate::daemon::clock::Clock;
use crate::daemon::stats::Stats;
use crate::daemon::stop::Stop;
use crate::sys::tuntap::{self, Mode};

/// Receive and send buffer of each smoltcp socket: the TCP window (scaled
/// beyond 64 KiB when larger). Before the device used the kernel's
/// offloads, 64 KiB gave 1.1 Gbit/s over 4 streams and 256 KiB 1.7; with
/// them, 64 KiB and 256 KiB measure the same within noise (9.1 and 9.0
/// Gbit/s over 4 streams, `bench/run.sh`'s TUN loads, interleaved), so a
/// slot costs 128 KiB of socket buffers rather than 512. The memory is
/// allocated zeroed per slot and touched only as far as windows fill.
pub const SOCKET_BUFFER: usize = 64 * 1024;

/// Datagrams a UDP socket holds each way.
const UDP_PACKETS: usize = 64;

/// Bytes a UDP socket holds each way: two of the largest datagram, so one
/// always fits once the socket has been read.
const UDP_BUFFER: usize = 128 * 1024;

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
    let seed = random_seed();
    let mut device = TunDevice::new(
        attached,
        plan.mode,
        mtu as usize,
        &[plan.address],
        seed as u32,
    );

    let clock = Clock::new();
    let hardware = match plan.mode {
        Mode::Tun => HardwareAddress::Ip,
        Mode::Tap => HardwareAddress::Ethernet(TAP_MAC),
    };
    let mut config = IfaceConfig::new(hardware);
    config.random_seed = seed;
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

    let udp_sockets = if plan.udp { plan.ports.len() } else { 0 };
    let mut sockets = SocketSet::new(Vec::with_capacity(plan.slots + udp_sockets));
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
    let udp = udp_echoes(plan, &mut sockets)?;

    log::info!(
        "{name}: smoltcp at {} over {} (MTU {mtu}), {} connection slots over {} port(s), UDP {}",
        plan.address,
        plan.mode.label(),
        plan.slots,
        plan.ports.len(),
        if plan.udp { "too" } else { "off" }
    );
    let ip = IpAddr::from(plan.address.address());
    let tcp = plan.ports.iter().filter(|_| plan.slots > 0);
    let udp_ports = plan.ports.iter().filter(|_| plan.udp);
    announce::listening(
        tcp.map(|&port| (SocketAddr::new(ip, port), "tcp"))
            .chain(udp_ports.map(|&port| (SocketAddr::new(ip, port), "udp"))),
    );
    Ok(Stack {
        name: plan.ifname.clone(),
        device,
        iface,
        sockets,
        adapter,
        udp,
        stats: Stats::new(plan.stats_every, clock.now()),
        clock,
        stop: Stop::new(plan.grace),
    })
}

/// A UDP socket bound to smoltcp's address on each port, each with an
/// adapter; none with `--no-udp`. The ports (the first four) are the
/// machines' own: a datagram from one is never answered.
fn udp_echoes(
    plan: &Plan,
    sockets: &mut SocketSet<'static>,
) -> anyhow::Result<Vec<Box<UdpAdapter>>> {
    if !plan.udp {
        return Ok(Vec::new());
    }
    let mut own = [0; 4];
    for (place, &port) in own.iter_mut().zip(&plan.ports) {
        *place = port;
    }
    let config = DatagramConfig::new()
        .with_rate_limit(plan.udp_rate)
        .with_own_ports(own);
    plan.ports
        .iter()
        .map(|&port| {
            let handle = sockets.add(udp::Socket::new(udp_buffer(), udp_buffer()));
            let mut echo = Box::write(Box::new_uninit(), UdpAdapter::new(config));
            echo.bind(sockets, handle, (plan.address.address(), port))
                .map_err(|e| anyhow!("binding UDP port {port}: {e}"))?;
            Ok(echo)
        })
        .collect()
}

/// One direction of a UDP socket: [`UDP_PACKETS`] datagrams in
/// [`UDP_BUFFER`] bytes.
fn udp_buffer() -> udp::PacketBuffer<'static> {
    udp::PacketBuffer::new(
        vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
        vec![0; UDP_BUFFER],
    )
}

/// A seed for smoltcp's initial sequence numbers and ports: differs per run.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9E37_79B9_7F4A_7C15
}
