//! The smoltcp shell: echo over a TUN (IP) or TAP (Ethernet) device, with
//! smoltcp as the TCP/IP stack and the same machine as the select shell,
//! driven through `selecho_core::smoltcp::SmolEcho`.
//!
//! One thread, one loop: wait (poll(2)) for the device or the signal pipe,
//! at most until smoltcp's or the machine's next deadline; then feed the
//! device's packets to smoltcp, let the adapter move bytes, let smoltcp
//! send, and let the device write what it coalesced. An idle server sleeps
//! in poll(2).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;

use anyhow::{Context, anyhow, bail};
use smoltcp::iface::{Config as IfaceConfig, Interface, PollIngressSingleResult, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

use selecho_core::smoltcp::{SmolEcho, to_smoltcp};
use selecho_core::{Config, Counters, Instant};

use crate::UsageError;
use crate::cli::{TunArgs, duration_or_off};
use crate::clock::Clock;
use crate::signals::Signals;
use crate::sys::tun::{self, Mode, OpenStep};
use crate::tundev::TunDevice;

/// Most connection slots (`--max-conns`) this build serves.
pub const MAX_CONNS: usize = 256;

/// Bytes a connection may hold in the machine between receiving and echoing.
/// smoltcp's socket buffers ([`SOCKET_BUFFER`]) hold more on both sides.
const QUEUE: usize = 16 * 1024;

/// Receive and send buffer of each smoltcp socket: the TCP window (scaled
/// beyond 64 KiB). Measured over a 1500-byte-MTU TUN with 4 streaming
/// connections: 64 KiB gave 1.1 Gbit/s, 256 KiB 1.7 Gbit/s. The memory is
/// allocated zeroed per slot and touched only as far as windows fill.
const SOCKET_BUFFER: usize = 256 * 1024;

/// A peer that acknowledges nothing for this long while we have data for it
/// (or never completes a handshake) is dropped by smoltcp.
const TCP_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(60);

/// A locally administered, unicast MAC for smoltcp's side of a TAP device.
const TAP_MAC: EthernetAddress = EthernetAddress([0x02, 0x73, 0x65, 0x6c, 0x65, 0x63]);

type Adapter = SmolEcho<MAX_CONNS, QUEUE>;

/// An address with its prefix length, from `ADDR/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(flag: &str, s: &str) -> Result<Cidr, UsageError> {
        let bad = |why: &str| UsageError(format!("invalid value '{s}' for '{flag} <CIDR>': {why}"));
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX, e.g. 10.7.0.2/24"))?;
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (1..max).contains(p))
            .ok_or_else(|| bad(&format!("the prefix length must be 1 to {}", max - 1)))?;
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
            return Err(bad("not a usable unicast address"));
        }
        Ok(Cidr { addr, prefix })
    }

    /// The address as a number, and the mask of this prefix.
    fn bits(&self) -> (u128, u128) {
        let (value, width) = match self.addr {
            IpAddr::V4(a) => (u128::from(a.to_bits()), 32),
            IpAddr::V6(a) => (a.to_bits(), 128),
        };
        let mask = (!0u128 >> (128 - width)) & !((1u128 << (width - u32::from(self.prefix))) - 1);
        (value, mask)
    }

    /// Whether `addr` lies in this address's subnet.
    fn contains(&self, addr: IpAddr) -> bool {
        let other = Cidr {
            addr,
            prefix: self.prefix,
        };
        if addr.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let (a, mask) = self.bits();
        let (b, _) = other.bits();
        a & mask == b & mask
    }

    /// Another address of the subnet, to suggest for the kernel's side.
    fn neighbour(&self) -> Cidr {
        let (value, mask) = self.bits();
        let first = (value & mask) + 1;
        let pick = if first == value { first + 1 } else { first };
        let addr = match self.addr {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from_bits(pick as u32)),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from_bits(pick)),
        };
        Cidr {
            addr,
            prefix: self.prefix,
        }
    }

    fn to_smoltcp(self) -> IpCidr {
        IpCidr::new(self.addr.into(), self.prefix)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The checked command line.
struct Plan {
    mode: Mode,
    address: Cidr,
    host: Option<Cidr>,
    ports: Vec<u16>,
}

impl Plan {
    fn new(args: &TunArgs) -> Result<Plan, UsageError> {
        let name = &args.ifname;
        if name.is_empty()
            || name.len() >= libc::IFNAMSIZ
            || name.contains(['/', ':', '%'])
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
            || name == "."
            || name == ".."
        {
            return Err(UsageError(format!(
                "invalid value '{name}' for '--ifname <NAME>': an interface name is 1 to {} characters, without '/', ':' or spaces",
                libc::IFNAMSIZ - 1
            )));
        }
        if args.max_conns as usize > MAX_CONNS {
            return Err(UsageError(format!(
                "invalid value '{}' for '--max-conns <N>': this build serves at most {MAX_CONNS} connections on a TUN/TAP device",
                args.max_conns
            )));
        }
        let address = Cidr::parse("--address", &args.address)?;
        let host = match &args.host_address {
            None => None,
            Some(s) => Some(Cidr::parse("--host-address", s)?),
        };
        if let Some(host) = host {
            if host.addr == address.addr {
                return Err(UsageError(format!(
                    "--host-address {} is smoltcp's own address (--address): the kernel would answer for it; \
                     give the kernel's side another address of the subnet, e.g. {}",
                    host.addr,
                    address.neighbour().addr
                )));
            }
            if !address.contains(host.addr) || !host.contains(address.addr) {
                return Err(UsageError(format!(
                    "--address {address} and --host-address {host} are not in the same subnet: \
                     the kernel and smoltcp could not reach each other"
                )));
            }
        }
        if let Some(port) = args.ports.iter().find(|&&p| p == 0) {
            return Err(UsageError(format!(
                "invalid value '{port}' for '--port <PORT>': smoltcp cannot listen on port 0"
            )));
        }
        // Each port once, in the order given.
        let mut ports = args.ports.clone();
        let mut seen = std::collections::HashSet::new();
        ports.retain(|&port| seen.insert(port));
        Ok(Plan {
            mode: if args.tap { Mode::Tap } else { Mode::Tun },
            address,
            host,
            ports,
        })
    }
}

/// Serves until a signal; returns the final counters.
pub fn run(args: &TunArgs, signals: &Signals) -> anyhow::Result<Counters> {
    let plan = Plan::new(args)?;
    // The machine is a few MiB; an unoptimised build may build it on the
    // stack before boxing it, more than once. Serve on a thread whose stack
    // has room for that (untouched stack pages cost nothing).
    let stack = 4 * std::mem::size_of::<Adapter>() + (8 << 20);
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("tun".into())
            .stack_size(stack)
            .spawn_scoped(scope, || serve(args, &plan, signals))
            .context("starting the serving thread")?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn serve(args: &TunArgs, plan: &Plan, signals: &Signals) -> anyhow::Result<Counters> {
    let name = args.ifname.as_str();
    let attached = tun::open(name, plan.mode, true)
        .map_err(|(step, e)| open_error(name, plan.mode, step, e))?;
    let mtu = set_mtu(name, args.mtu)?;
    match plan.host {
        Some(host) => configure_host_side(name, host)?,
        None => {
            let suggest = plan.address.neighbour();
            log::info!(
                "{name}: the kernel's side needs an address and to be up; run: ip addr add {suggest} dev {name} && ip link set {name} up"
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
        let _ = addrs.push(plan.address.to_smoltcp());
    });
    if let Some(host) = plan.host {
        let routes = iface.routes_mut();
        let added = match host.addr {
            IpAddr::V4(gw) => routes.add_default_ipv4_route(gw).is_ok(),
            IpAddr::V6(gw) => routes.add_default_ipv6_route(gw).is_ok(),
        };
        if !added {
            log::warn!("no room for a default route via {}", host.addr);
        }
    }

    let slots = args.max_conns as usize;
    let mut sockets = SocketSet::new(Vec::with_capacity(slots));
    let handles: Vec<_> = (0..slots)
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
    let machine = Config::new()
        .with_idle_timeout(duration_or_off(args.idle_timeout))
        .with_max_connections(slots);
    let mut adapter = Box::new(Adapter::new(machine));
    adapter
        .add_sockets(&mut sockets, handles, &plan.ports)
        .map_err(|e| anyhow!("setting up {slots} sockets: {e}"))?;

    log::info!(
        "{name}: smoltcp at {} over {} (MTU {mtu}), {slots} connection slots over {} port(s)",
        plan.address,
        match plan.mode {
            Mode::Tun => "TUN",
            Mode::Tap => "TAP",
        },
        plan.ports.len()
    );
    let mut stdout = std::io::stdout().lock();
    for &port in &plan.ports {
        writeln!(
            stdout,
            "listening on {}",
            SocketAddr::new(plan.address.addr, port)
        )?;
    }
    stdout.flush()?;
    drop(stdout);

    let grace = duration_or_off(args.grace);
    let mut stop_at: Option<Instant> = None;
    loop {
        let now = clock.now();
        let stamp = to_smoltcp(now);
        // Packets one at a time, so a socket whose connection just finished
        // closing listens again before a SYN behind that last ACK is seen.
        adapter.relisten(&mut sockets, now);
        loop {
            match iface.poll_ingress_single(stamp, &mut device, &mut sockets) {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => {
                    adapter.relisten(&mut sockets, now);
                }
            }
        }
        if let Some(e) = device.take_error() {
            return Err(anyhow!(e).context(format!("reading from {name}")));
        }
        let busy = adapter.poll(&mut sockets, now);
        // Timers, then send what the adapter queued (and anything else due).
        iface.poll(stamp, &mut device, &mut sockets);
        // Sockets aborted this turn sent their RST: they may listen again.
        adapter.relisten(&mut sockets, now);

        // What smoltcp sent goes out before we sleep (or look again).
        device.flush();

        if let Some(stop) = stop_at {
            if adapter.is_empty() {
                break;
            }
            if now >= stop {
                log::info!("grace period over; aborting what is left");
                adapter.abort_all(&mut sockets, now);
                iface.poll(stamp, &mut device, &mut sockets);
                device.flush();
                break;
            }
        }

        let deadline = [
            iface
                .poll_at(stamp, &sockets)
                .map(selecho_core::smoltcp::from_smoltcp),
            adapter.poll_at(),
            stop_at,
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = if busy {
            Some(std::time::Duration::ZERO)
        } else {
            deadline.map(|d| clock.until(d))
        };
        let [_, signalled] = wait(&device, signals, timeout)?;
        if signalled && signals.take() && stop_at.is_none() {
            log::info!("signal: finishing connections (grace {}s)", args.grace);
            adapter.begin_shutdown();
            let now = clock.now();
            stop_at = Some(match grace {
                Some(grace) => now + grace,
                None => now,
            });
        }
    }
    let stats = device.stats();
    log::debug!(
        "{name}: {} packets in, {} out in {} writes, {} dropped on send",
        stats.rx,
        stats.tx,
        stats.writes,
        stats.tx_dropped
    );
    Ok(*adapter.counters())
}

/// Waits for the device or the signal pipe; which is readable.
fn wait(
    device: &TunDevice,
    signals: &Signals,
    timeout: Option<std::time::Duration>,
) -> anyhow::Result<[bool; 2]> {
    tun::poll_readable([device.as_fd().as_raw_fd(), signals.fd()], timeout)
        .context("waiting for the device")
}

/// Sets the interface's MTU; if not allowed (a device made for this user,
/// run without CAP_NET_ADMIN), keeps the MTU it has, with a warning.
fn set_mtu(name: &str, mtu: u32) -> anyhow::Result<u32> {
    match tun::set_mtu(name, mtu) {
        Ok(()) => Ok(mtu),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let current = tun::mtu(name).with_context(|| format!("reading the MTU of {name}"))?;
            if current != mtu {
                log::warn!("{name}: not allowed to set the MTU to {mtu} ({e}); keeping {current}");
            }
            Ok(current)
        }
        Err(e) => Err(anyhow!(e).context(format!("setting the MTU of {name} to {mtu}"))),
    }
}

/// Gives the kernel's side of the device `host` and brings it up, with `ip`.
fn configure_host_side(name: &str, host: Cidr) -> anyhow::Result<()> {
    let host = host.to_string();
    // On this two-party link nobody else can hold the address: skip IPv6
    // duplicate address detection, which would hold the address back (and
    // so the peer) for a second or two after `listening on` is printed.
    let mut args = vec!["addr", "replace", &host, "dev", name];
    if host.contains(':') {
        args.push("nodad");
    }
    ip(&args)?;
    ip(&["link", "set", "dev", name, "up"])?;
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

/// An actionable message for a failure to open or attach the device.
fn open_error(name: &str, mode: Mode, step: OpenStep, e: std::io::Error) -> anyhow::Error {
    let errno = e.raw_os_error();
    let (wanted, other, flag) = match mode {
        Mode::Tun => ("TUN", "TAP", "add --tap"),
        Mode::Tap => ("TAP", "TUN", "drop --tap"),
    };
    let why = match (step, errno) {
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
            Some(Some(kind)) if kind != wanted => {
                format!("{name} is a {other} device, not {wanted}: {flag}, or pick another --ifname")
            }
            Some(None) => format!("{name} exists and is not a TUN/TAP device: pick another --ifname"),
            _ => format!("the kernel refused to attach to {name} as a {wanted} device ({e})"),
        },
        _ => e.to_string(),
    };
    anyhow!("cannot attach to {wanted} interface {name}: {why}")
}

/// What the interface `name`, which TUNSETIFF refused in `mode`, is: a
/// probe attaches in the other mode (and lets go at once). `Some("TUN" |
/// "TAP")` if that works (or the device is busy in that mode), `Some(None)`
/// if neither mode fits (no TUN/TAP device), `None` if the probe says nothing.
fn existing_kind(name: &str, mode: Mode) -> Option<Option<&'static str>> {
    let (other, label) = match mode {
        Mode::Tun => (Mode::Tap, "TAP"),
        Mode::Tap => (Mode::Tun, "TUN"),
    };
    match tun::open(name, other, false) {
        Ok(_probe) => Some(Some(label)),
        Err((OpenStep::Attach, e)) if e.raw_os_error() == Some(libc::EBUSY) => Some(Some(label)),
        Err((OpenStep::Attach, e)) if e.raw_os_error() == Some(libc::EINVAL) => Some(None),
        Err(_) => None,
    }
}

/// A seed for smoltcp's initial sequence numbers and ports: differs per run.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9E37_79B9_7F4A_7C15
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_checked() {
        assert!(Cidr::parse("--address", "10.0.0.2/24").is_ok());
        assert!(Cidr::parse("--address", "10.0.0.2").is_err());
        assert!(Cidr::parse("--address", "10.0.0.2/33").is_err());
        assert!(Cidr::parse("--address", "10.0.0.300/24").is_err());
        assert!(Cidr::parse("--address", "fd00::2/64").is_ok());
        let a = Cidr::parse("--address", "10.0.0.2/24").unwrap();
        assert!(a.contains("10.0.0.1".parse().unwrap()));
        assert!(!a.contains("10.0.1.1".parse().unwrap()));
        assert!(!a.contains("fd00::1".parse().unwrap()));
        assert_eq!(a.neighbour().to_string(), "10.0.0.1/24");
        let b = Cidr::parse("--address", "10.0.0.1/24").unwrap();
        assert_eq!(b.neighbour().to_string(), "10.0.0.2/24");
        let c = Cidr::parse("--address", "fd00::2/64").unwrap();
        assert_eq!(c.neighbour().to_string(), "fd00::1/64");
    }
}
