//! The TUN shell's flags, checked before any device is touched: every
//! mistake here is a usage error (exit status 2) with nothing created.

use std::collections::HashSet;
use std::net::IpAddr;

use selecho_core::{Config, Duration};
use smoltcp::wire::{IpAddress, IpCidr};

use super::MAX_CONNS;
use crate::cli::{TunArgs, UsageError};
use crate::sys::tuntap::{IfName, Mode};

/// What the TUN shell will do.
#[derive(Debug)]
pub struct Plan {
    pub ifname: IfName,
    pub mode: Mode,
    /// smoltcp's address on the device.
    pub address: IpCidr,
    /// The kernel's address on the device, if we configure it.
    pub host: Option<IpCidr>,
    /// Each port once, in the order given.
    pub ports: Vec<u16>,
    pub mtu: u32,
    /// Connection slots: one smoltcp socket each.
    pub slots: usize,
    /// The machine's configuration (`--max-conns`, `--idle-timeout`).
    pub machine: Config,
    pub stats_every: Option<Duration>,
    pub grace: Duration,
}

impl Plan {
    pub fn new(args: &TunArgs) -> Result<Plan, UsageError> {
        let ifname = IfName::new(&args.ifname).map_err(|e| {
            UsageError(format!(
                "invalid value '{}' for '--ifname <NAME>': {e}",
                args.ifname
            ))
        })?;
        let slots = args.max_conns as usize;
        if slots > MAX_CONNS {
            return Err(UsageError(format!(
                "invalid value '{slots}' for '--max-conns <N>': this build serves at most {MAX_CONNS} connections on a TUN/TAP device"
            )));
        }
        let address = parse_cidr("--address", &args.address)?;
        let host = match &args.host_address {
            None => None,
            Some(s) => Some(parse_cidr("--host-address", s)?),
        };
        if let Some(host) = host {
            if host.address() == address.address() {
                return Err(UsageError(format!(
                    "--host-address {} is smoltcp's own address (--address): the kernel would answer for it; \
                     give the kernel's side another address of the subnet, e.g. {}",
                    host.address(),
                    neighbour(address)
                )));
            }
            if !address.contains_addr(&host.address()) || !host.contains_addr(&address.address()) {
                return Err(UsageError(format!(
                    "--address {address} and --host-address {host} are not in the same subnet: \
                     the kernel and smoltcp could not reach each other"
                )));
            }
        }
        let mode = if args.tap { Mode::Tap } else { Mode::Tun };
        check_mtu(args.mtu, mode, address)?;
        if let Some(port) = args.ports.iter().find(|&&p| p == 0) {
            return Err(UsageError(format!(
                "invalid value '{port}' for '--port <PORT>': smoltcp cannot listen on port 0"
            )));
        }
        let mut seen = HashSet::new();
        let ports = args
            .ports
            .iter()
            .copied()
            .filter(|&p| seen.insert(p))
            .collect();
        Ok(Plan {
            ifname,
            mode,
            address,
            host,
            ports,
            mtu: args.mtu,
            slots,
            machine: Config::new()
                .with_idle_timeout(args.common.idle_timeout())
                .with_max_connections(slots),
            stats_every: args.common.stats_interval(),
            grace: args.common.grace(),
        })
    }
}

/// The largest MTU a TAP device takes: an IP packet of 65535 bytes less
/// the 14-byte Ethernet header (a TUN device takes 65535).
const TAP_MAX_MTU: u32 = 65_535 - 14;

/// The smallest MTU IPv6 works over (RFC 8200); Linux refuses an IPv6
/// address on a smaller link.
const IPV6_MIN_MTU: u32 = 1280;

/// `--mtu` for this medium and address family.
fn check_mtu(mtu: u32, mode: Mode, address: IpCidr) -> Result<(), UsageError> {
    let bad = |why: String| UsageError(format!("invalid value '{mtu}' for '--mtu <N>': {why}"));
    if mode == Mode::Tap && mtu > TAP_MAX_MTU {
        return Err(bad(format!(
            "a TAP device takes at most {TAP_MAX_MTU} (65535 less the Ethernet header)"
        )));
    }
    if matches!(address, IpCidr::Ipv6(_)) && mtu < IPV6_MIN_MTU {
        return Err(bad(format!("IPv6 needs an MTU of at least {IPV6_MIN_MTU}")));
    }
    Ok(())
}

/// `ADDRESS/PREFIX` for `flag`: a unicast address that can be a host's in
/// its subnet, with a prefix that leaves room for a peer.
fn parse_cidr(flag: &str, s: &str) -> Result<IpCidr, UsageError> {
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
    let cidr = IpCidr::new(IpAddress::from(addr), prefix);
    if !usable_host(cidr) {
        return Err(bad("not a usable unicast address for a host in its subnet"));
    }
    Ok(cidr)
}

/// Whether `cidr`'s address can be a host's: unicast, not loopback, and
/// (IPv4, prefixes up to /30) neither its subnet's network nor broadcast
/// address.
fn usable_host(cidr: IpCidr) -> bool {
    let addr = cidr.address();
    if !addr.is_unicast() || IpAddr::from(addr).is_loopback() {
        return false;
    }
    match cidr {
        IpCidr::Ipv4(v4) if v4.prefix_len() <= 30 => {
            let host = v4.address();
            Some(host) != v4.broadcast() && host != v4.network().address()
        }
        _ => true,
    }
}

/// Another address of `cidr`'s subnet, to suggest for the kernel's side:
/// the first host address, or the second if the first is `cidr`'s own.
pub fn neighbour(cidr: IpCidr) -> IpAddress {
    let (value, width) = match IpAddr::from(cidr.address()) {
        IpAddr::V4(a) => (u128::from(a.to_bits()), 32),
        IpAddr::V6(a) => (a.to_bits(), 128),
    };
    let host_bits = width - u32::from(cidr.prefix_len());
    let first = (value >> host_bits << host_bits) + 1;
    let pick = if first == value { first + 1 } else { first };
    match cidr {
        IpCidr::Ipv4(_) => IpAddress::Ipv4(std::net::Ipv4Addr::from_bits(pick as u32)),
        IpCidr::Ipv6(_) => IpAddress::Ipv6(std::net::Ipv6Addr::from_bits(pick)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> IpCidr {
        parse_cidr("--address", s).unwrap()
    }

    #[test]
    fn cidrs_are_checked() {
        assert_eq!(cidr("10.0.0.2/24").to_string(), "10.0.0.2/24");
        assert_eq!(cidr("fd00::2/64").to_string(), "fd00::2/64");
        for bad in [
            "10.0.0.2",
            "10.0.0.2/33",
            "10.0.0.2/0",
            "10.0.0.300/24",
            "127.0.0.2/8",
            "224.0.0.1/24",
            "0.0.0.0/24",
            "255.255.255.255/24",
            "10.0.0.255/24",
            "10.0.0.0/24",
            "::1/64",
            "ff02::1/64",
        ] {
            assert!(parse_cidr("--address", bad).is_err(), "{bad}");
        }
        // /31 and /32-less point-to-point links have no broadcast address.
        assert!(parse_cidr("--address", "10.0.0.0/31").is_ok());
    }

    #[test]
    fn neighbours_are_in_the_subnet_and_not_ours() {
        assert_eq!(neighbour(cidr("10.0.0.2/24")).to_string(), "10.0.0.1");
        assert_eq!(neighbour(cidr("10.0.0.1/24")).to_string(), "10.0.0.2");
        assert_eq!(neighbour(cidr("fd00::2/64")).to_string(), "fd00::1");
        let a = cidr("10.0.0.2/24");
        assert!(a.contains_addr(&"10.0.0.1".parse().unwrap()));
        assert!(!a.contains_addr(&"10.0.1.1".parse().unwrap()));
        assert!(!a.contains_addr(&"fd00::1".parse().unwrap()));
    }
}
