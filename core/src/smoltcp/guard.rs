//! What every received packet must pass before smoltcp sees it: [`Guard`].
//!
//! smoltcp trusts its device: told that checksums need no checking (a
//! device whose peer is the local kernel), it accepts a corrupted segment,
//! acknowledges it and hands its bytes to the socket; and it answers
//! packets from sources no real peer has (its own address, loopback,
//! broadcast). The guard reads each packet through `smoltcp::wire` views
//! and says whether to let it through:
//!
//! - **Checksums**: the IPv4 header's, always; the TCP, UDP, ICMPv4 and
//!   ICMPv6 checksum unless the device says someone already checked it or
//!   will fill it in ([`Checksums::Vouched`]: a virtio-net header's
//!   `DATA_VALID` or `NEEDS_CSUM`, a NIC's receive offload). A UDP checksum
//!   of 0 means "none" over IPv4 and is refused over IPv6 (RFC 8200).
//! - **Martian sources**: the interface's own addresses, loopback,
//!   multicast, broadcast (the limited one and each own IPv4 subnet's) and
//!   the unspecified address. Answering them would talk to ourselves (a
//!   LAND attack) or to many hosts at once.
//! - **Shape**: a packet whose lengths or headers do not parse.
//!
//! Each refusal is counted in [`PacketCounters`]. A fragment passes with
//! its IP header checked ([`Inbound::Fragment`]): its transport checksum can
//! be checked only once it is reassembled, so whoever reassembles it
//! inspects the whole packet again. A packet the guard lets through also
//! says whether it is a TCP SYN for one of our addresses ([`Syn`]), which a
//! shell hands to [`SmolEcho::make_room`](super::SmolEcho::make_room) before
//! smoltcp processes it.
//!
//! Packets of other protocols (and IPv6 packets with extension headers the
//! guard does not walk: only hop-by-hop is skipped) pass unverified; smoltcp
//! answers them with an ICMP error or ignores them.

use core::fmt;

use ::smoltcp::wire::{
    Icmpv4Packet, IpAddress, IpCidr, IpEndpoint, IpProtocol, IpVersion, Ipv4Packet, TcpPacket,
    UdpPacket,
};
#[cfg(feature = "ipv6")]
use ::smoltcp::wire::{Icmpv6Packet, Ipv6ExtHeader, Ipv6Packet};

use super::PacketCounters;

/// Addresses a guard knows as its interface's own.
pub const MAX_ADDRESSES: usize = 4;

/// Whether the transport checksum of a packet must be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Checksums {
    /// Check every checksum.
    Verify,
    /// The device vouches for the transport checksum (checked by the NIC,
    /// or a packet built on this host whose checksum is yet to be filled
    /// in): check only the IPv4 header's.
    Vouched,
}

/// A packet the guard let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Inbound {
    /// A whole packet, checked; `syn` if it opens a TCP connection to one
    /// of our addresses.
    Packet {
        /// The SYN's endpoints, if it is one.
        syn: Option<Syn>,
    },
    /// An IP fragment whose header was checked: reassemble it, then inspect
    /// the whole packet.
    Fragment,
}

/// A TCP SYN (without ACK or RST) to one of the interface's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Syn {
    /// Who wants to connect.
    pub remote: IpEndpoint,
    /// Where to: one of our addresses and a port.
    pub local: IpEndpoint,
}

/// Why the guard dropped a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Rejected {
    /// A checksum did not verify: corrupted (or forged) on the way.
    Checksum,
    /// From a source no peer can have.
    Martian,
    /// Its lengths or headers do not parse.
    Malformed,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejected::Checksum => "bad checksum",
            Rejected::Martian => "martian source address",
            Rejected::Malformed => "malformed",
        })
    }
}

impl core::error::Error for Rejected {}

/// The checks, and what they dropped. See the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct Guard {
    own: heapless::Vec<IpCidr, MAX_ADDRESSES>,
    counters: PacketCounters,
}

impl Guard {
    /// A guard for an interface with the addresses `own` (at most
    /// [`MAX_ADDRESSES`]; the rest are ignored, and said to be).
    pub fn new(own: &[IpCidr]) -> Self {
        let mut guard = Guard::default();
        for &cidr in own {
            if guard.own.push(cidr).is_err() {
                warn!("guard: address {} ignored, too many", cidr);
            }
        }
        guard
    }

    /// What it dropped so far (the `bad_checksum`, `martian` and
    /// `malformed` fields).
    pub const fn counters(&self) -> &PacketCounters {
        &self.counters
    }

    /// Checks `packet` (an IP packet, no link-layer header); counts and
    /// returns why if it must be dropped.
    pub fn inspect(&mut self, packet: &[u8], checksums: Checksums) -> Result<Inbound, Rejected> {
        // smoltcp's `IpVersion::of_packet` reads the first byte unchecked.
        let verdict = match packet.first().map(|_| IpVersion::of_packet(packet)) {
            Some(Ok(IpVersion::Ipv4)) => self.ipv4(packet, checksums),
            #[cfg(feature = "ipv6")]
            Some(Ok(IpVersion::Ipv6)) => self.ipv6(packet, checksums),
            _ => Err(Rejected::Malformed),
        };
        if let Err(why) = verdict {
            let counter = match why {
                Rejected::Checksum => &mut self.counters.bad_checksum,
                Rejected::Martian => &mut self.counters.martian,
                Rejected::Malformed => &mut self.counters.malformed,
            };
            *counter += 1;
            trace!("packet dropped: {}", why);
        }
        verdict
    }

    fn ipv4(&self, packet: &[u8], checksums: Checksums) -> Result<Inbound, Rejected> {
        let ip = Ipv4Packet::new_checked(packet).map_err(|_| Rejected::Malformed)?;
        if !ip.verify_checksum() {
            return Err(Rejected::Checksum);
        }
        let src = ip.src_addr();
        let subnet_broadcast = self
            .own
            .iter()
            .any(|cidr| matches!(cidr, IpCidr::Ipv4(v4) if v4.broadcast() == Some(src)));
        if subnet_broadcast || src.is_broadcast() || self.martian(IpAddress::Ipv4(src)) {
            return Err(Rejected::Martian);
        }
        if ip.more_frags() || ip.frag_offset() != 0 {
            return Ok(Inbound::Fragment);
        }
        let (src, dst) = (IpAddress::Ipv4(src), IpAddress::Ipv4(ip.dst_addr()));
        let verify = checksums == Checksums::Verify;
        let payload = ip.payload();
        let syn = match ip.next_header() {
            IpProtocol::Tcp => self.tcp(src, dst, payload, verify)?,
            IpProtocol::Udp => udp(src, dst, payload, verify).map(|()| None)?,
            IpProtocol::Icmp => {
                let icmp = Icmpv4Packet::new_checked(payload).map_err(|_| Rejected::Malformed)?;
                if verify && !icmp.verify_checksum() {
                    return Err(Rejected::Checksum);
                }
                None
            }
            _ => None,
        };
        Ok(Inbound::Packet { syn })
    }

    #[cfg(feature = "ipv6")]
    fn ipv6(&self, packet: &[u8], checksums: Checksums) -> Result<Inbound, Rejected> {
        let ip = Ipv6Packet::new_checked(packet).map_err(|_| Rejected::Malformed)?;
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if self.martian(IpAddress::Ipv6(src)) {
            return Err(Rejected::Martian);
        }
        let (mut next, mut payload) = (ip.next_header(), ip.payload());
        if next == IpProtocol::HopByHop {
            let ext = Ipv6ExtHeader::new_checked(payload).map_err(|_| Rejected::Malformed)?;
            next = ext.next_header();
            payload = &payload[2 + ext.payload().len()..];
        }
        let verify = checksums == Checksums::Verify;
        let (src_ip, dst_ip) = (IpAddress::Ipv6(src), IpAddress::Ipv6(dst));
        let syn = match next {
            IpProtocol::Ipv6Frag => return Ok(Inbound::Fragment),
            IpProtocol::Tcp => self.tcp(src_ip, dst_ip, payload, verify)?,
            IpProtocol::Udp => udp(src_ip, dst_ip, payload, verify).map(|()| None)?,
            IpProtocol::Icmpv6 => {
                let icmp = Icmpv6Packet::new_checked(payload).map_err(|_| Rejected::Malformed)?;
                if verify && !icmp.verify_checksum(&src, &dst) {
                    return Err(Rejected::Checksum);
                }
                None
            }
            _ => None,
        };
        Ok(Inbound::Packet { syn })
    }

    /// Checks a TCP segment; the SYN, if it is one to an address of ours.
    fn tcp(
        &self,
        src: IpAddress,
        dst: IpAddress,
        payload: &[u8],
        verify: bool,
    ) -> Result<Option<Syn>, Rejected> {
        let tcp = TcpPacket::new_checked(payload).map_err(|_| Rejected::Malformed)?;
        if verify && !tcp.verify_checksum(&src, &dst) {
            return Err(Rejected::Checksum);
        }
        let opens = tcp.syn() && !tcp.ack() && !tcp.rst() && !tcp.fin();
        if !opens || !self.own.iter().any(|cidr| cidr.address() == dst) {
            return Ok(None);
        }
        Ok(Some(Syn {
            remote: IpEndpoint::new(src, tcp.src_port()),
            local: IpEndpoint::new(dst, tcp.dst_port()),
        }))
    }

    /// Whether no peer can send from `src`: an address of ours, loopback,
    /// multicast or unspecified (IPv4 broadcasts are the caller's).
    fn martian(&self, src: IpAddress) -> bool {
        let own = self.own.iter().any(|cidr| cidr.address() == src);
        let ip = core::net::IpAddr::from(src);
        own || ip.is_loopback() || ip.is_multicast() || ip.is_unspecified()
    }
}

/// Checks a UDP datagram.
fn udp(src: IpAddress, dst: IpAddress, payload: &[u8], verify: bool) -> Result<(), Rejected> {
    let udp = UdpPacket::new_checked(payload).map_err(|_| Rejected::Malformed)?;
    if !verify {
        return Ok(());
    }
    // Over IPv6 the checksum is mandatory: 0 is not "none" (RFC 8200 8.1).
    let missing_v6 = udp.checksum() == 0 && !matches!(src, IpAddress::Ipv4(_));
    if missing_v6 || !udp.verify_checksum(&src, &dst) {
        return Err(Rejected::Checksum);
    }
    Ok(())
}
