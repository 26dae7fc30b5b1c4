//! Who sent a datagram, as far as the machine cares: the [`Peer`] trait, and
//! the source ports it never answers.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Source ports whose datagrams are never answered, sorted.
///
/// Answering a service that itself answers any datagram starts a loop: a
/// single forged datagram "from" such a service makes it and the echo
/// server answer each other until a packet is lost (the old chargen ↔ echo
/// storm, CVE-1999-0103). No client sends from these ports, so refusing
/// them costs nothing. The list:
///
/// | port | service | why |
/// | --: | --- | --- |
/// | 0 | — | reserved; not a port anyone can answer from |
/// | 7 | echo | echo ↔ echo loops forever |
/// | 9 | discard | never a client; also the usual Wake-on-LAN port |
/// | 11 | systat | answers any datagram |
/// | 13 | daytime | answers any datagram |
/// | 15 | netstat | answers any datagram |
/// | 17 | qotd | answers any datagram |
/// | 19 | chargen | answers any datagram, with up to 512 bytes |
/// | 37 | time | answers any datagram |
/// | 53 | DNS | servers answer malformed queries (FORMERR) |
/// | 123 | NTP | servers answer requests and error replies (CVE-2009-3563 was an ntpd ↔ ntpd loop) |
/// | 137, 138 | NetBIOS name, datagram | answer queries, often from broadcast |
/// | 161 | SNMP | agents answer malformed requests |
/// | 1900 | SSDP | answers discovery requests |
/// | 5353 | mDNS | responders answer queries sent from 5353 |
/// | 11211 | memcached | answers any datagram with a framing header |
///
/// Ports of the ephemeral ranges (Linux 32768–60999, IANA 49152–65535)
/// never appear here: real clients send from those. Beyond this list,
/// [`DatagramConfig::own_ports`](crate::DatagramConfig::own_ports) names
/// the server's own ports: another echo server on the same port would
/// ping-pong with this one.
pub const LOOP_PORTS: [u16; 17] = [
    0, 7, 9, 11, 13, 15, 17, 19, 37, 53, 123, 137, 138, 161, 1900, 5353, 11211,
];

/// Whether `port` is one of [`LOOP_PORTS`].
pub const fn is_loop_port(port: u16) -> bool {
    contains(&LOOP_PORTS, port)
}

/// Whether `port` is in `ports` (`[T]::contains`, which is not `const`).
pub(crate) const fn contains(ports: &[u16], port: u16) -> bool {
    let mut i = 0;
    while i < ports.len() {
        if ports[i] == port {
            return true;
        }
        i += 1;
    }
    false
}

/// Where a datagram came from: what the machine stores with it, gives back
/// as the destination of its echo, and asks for its checks.
///
/// Implemented for `core::net` socket addresses (the select shell) and,
/// with the `smoltcp` feature, for smoltcp's `IpEndpoint` and `UdpMetadata`
/// (which also records where the datagram was sent, so the echo leaves from
/// that address). A shell may implement it for a type of its own, say an
/// address together with the socket it arrived on.
pub trait Peer: Copy {
    /// What the per-source rate limit counts by: the source address.
    type Key: Copy + Eq;

    /// The source port.
    fn port(&self) -> u16;

    /// The source address, as the rate limit's key.
    fn key(&self) -> Self::Key;

    /// Whether an answer would reach exactly one host: the source is a
    /// unicast address, and, where the type records it, the datagram was not
    /// sent to a broadcast or multicast address. Datagrams for which this is
    /// false are never answered (an echo of a datagram sent to a broadcast
    /// address is the "fraggle" reflection attack).
    fn is_unicast(&self) -> bool;
}

impl Peer for SocketAddr {
    type Key = IpAddr;

    fn port(&self) -> u16 {
        SocketAddr::port(self)
    }

    /// An IPv4-mapped IPv6 address counts as its IPv4 address.
    fn key(&self) -> IpAddr {
        self.ip().to_canonical()
    }

    fn is_unicast(&self) -> bool {
        match self.ip().to_canonical() {
            IpAddr::V4(ip) => unicast_v4(ip),
            IpAddr::V6(ip) => unicast_v6(ip),
        }
    }
}

impl Peer for SocketAddrV4 {
    type Key = Ipv4Addr;

    fn port(&self) -> u16 {
        SocketAddrV4::port(self)
    }

    fn key(&self) -> Ipv4Addr {
        *self.ip()
    }

    fn is_unicast(&self) -> bool {
        unicast_v4(*self.ip())
    }
}

impl Peer for SocketAddrV6 {
    type Key = Ipv6Addr;

    fn port(&self) -> u16 {
        SocketAddrV6::port(self)
    }

    fn key(&self) -> Ipv6Addr {
        *self.ip()
    }

    fn is_unicast(&self) -> bool {
        unicast_v6(*self.ip())
    }
}

fn unicast_v4(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
}

fn unicast_v6(ip: Ipv6Addr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_ports_are_sorted_and_low() {
        assert!(LOOP_PORTS.windows(2).all(|w| w[0] < w[1]));
        assert!(LOOP_PORTS.iter().all(|&p| p < 32_768));
        assert!(is_loop_port(0) && is_loop_port(19) && is_loop_port(11211));
        assert!(!is_loop_port(1) && !is_loop_port(7007) && !is_loop_port(40_000));
    }

    #[test]
    fn socket_addresses() {
        let v4: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        assert_eq!(Peer::port(&v4), 5000);
        assert!(v4.is_unicast());
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:5000".parse().unwrap();
        assert_eq!(mapped.key(), v4.key());
        for bad in [
            "0.0.0.0:5000",
            "255.255.255.255:5000",
            "224.0.0.251:5353",
            "[::]:5000",
            "[ff02::1]:5000",
            "[::ffff:255.255.255.255]:5000",
        ] {
            let addr: SocketAddr = bad.parse().unwrap();
            assert!(!addr.is_unicast(), "{bad}");
        }
    }
}
