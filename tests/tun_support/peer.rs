//! A TCP peer written by hand, on a [`Link`]: it speaks from an address the
//! kernel does not own (so the kernel never answers for it), sends exactly
//! the segments a test asks for, damaged if asked, and sees every segment
//! the server writes.

use std::time::Instant;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, Icmpv6Packet, Icmpv6Repr, IpAddress,
    IpProtocol, IpVersion, Ipv4Packet, Ipv6Packet, NdiscRepr, RawHardwareAddress, TcpControl,
    TcpPacket,
};

use super::link::{ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, Frame, Link};
use super::net;
use selecho_testkit::tcp::BOUND;

/// What to spoil in a packet before sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    None,
    /// The TCP checksum.
    TcpChecksum,
    /// The IPv4 header checksum.
    HeaderChecksum,
}

/// A TCP segment the server sent.
#[derive(Debug, Clone)]
pub struct Seg {
    pub from: (IpAddress, u16),
    pub to: (IpAddress, u16),
    pub syn: bool,
    pub rst: bool,
    pub seq: u32,
    pub payload: Vec<u8>,
}

impl Seg {
    /// The TCP segment in the IP packet `ip`, if it is one.
    pub fn parse(ip: &[u8]) -> Option<Seg> {
        // smoltcp's `IpVersion::of_packet` reads the first byte unchecked.
        if ip.is_empty() {
            return None;
        }
        let (src, dst, payload) = match IpVersion::of_packet(ip).ok()? {
            IpVersion::Ipv4 => {
                let p = Ipv4Packet::new_checked(ip).ok()?;
                if p.next_header() != IpProtocol::Tcp {
                    return None;
                }
                (p.src_addr().into(), p.dst_addr().into(), p.payload())
            }
            IpVersion::Ipv6 => {
                let p = Ipv6Packet::new_checked(ip).ok()?;
                if p.next_header() != IpProtocol::Tcp {
                    return None;
                }
                (p.src_addr().into(), p.dst_addr().into(), p.payload())
            }
        };
        let t = TcpPacket::new_checked(payload).ok()?;
        Some(Seg {
            from: (src, t.src_port()),
            to: (dst, t.dst_port()),
            syn: t.syn(),
            rst: t.rst(),
            seq: t.seq_number().0 as u32,
            payload: t.payload().to_vec(),
        })
    }
}

/// One TCP peer of the server.
pub struct Peer {
    pub link: Link,
    pub me: (IpAddress, u16),
    pub server: (IpAddress, u16),
    /// Our next sequence number.
    pub seq: u32,
    /// The server's next sequence number, once known.
    pub ack: u32,
    /// Every TCP segment the server wrote, to anyone, in order.
    pub seen: Vec<Seg>,
}

impl Peer {
    /// A peer at `me` of the server at `server`, on `link`.
    pub fn new(link: Link, me: (IpAddress, u16), server: (IpAddress, u16)) -> Peer {
        Peer {
            link,
            me,
            server,
            seq: 1000,
            ack: 0,
            seen: Vec::new(),
        }
    }

    /// On TAP: tells the server where `me` is (an ARP request or neighbour
    /// solicitation from `me`, with `mac`, the kernel's side's address) and
    /// learns its MAC from the answer.
    pub fn introduce(&mut self, mac: [u8; 6]) {
        let lladdr = EthernetAddress(mac);
        match (self.me.0, self.server.0) {
            (IpAddress::Ipv4(me), IpAddress::Ipv4(server)) => {
                let repr = ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Request,
                    source_hardware_addr: lladdr,
                    source_protocol_addr: me,
                    target_hardware_addr: EthernetAddress([0; 6]),
                    target_protocol_addr: server,
                };
                let mut buf = vec![0; repr.buffer_len()];
                repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
                self.link.send(ETH_P_ARP, &buf);
            }
            (IpAddress::Ipv6(me), IpAddress::Ipv6(server)) => {
                let repr = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
                    target_addr: server,
                    lladdr: Some(RawHardwareAddress::from(lladdr)),
                });
                let packet = net::ip(
                    self.me.0,
                    self.server.0,
                    IpProtocol::Icmpv6,
                    repr.buffer_len(),
                    |buf, _, _| {
                        let caps = ChecksumCapabilities::default();
                        repr.emit(&me, &server, &mut Icmpv6Packet::new_unchecked(buf), &caps);
                    },
                );
                self.send_ndisc(packet);
            }
            _ => panic!("mixed address families"),
        }
        let deadline = Instant::now() + BOUND;
        loop {
            let frame = self.link.recv(deadline).expect("the server's answer");
            if matches!(frame.protocol, ETH_P_ARP | ETH_P_IPV6) {
                self.link.learn(&frame);
                return;
            }
        }
    }

    /// Sends a neighbour discovery packet, hop limit 255 (RFC 4861).
    fn send_ndisc(&self, mut packet: Vec<u8>) {
        Ipv6Packet::new_unchecked(&mut packet[..]).set_hop_limit(255);
        self.link.send_ip(&packet);
    }

    /// Sends one segment from `me` (to the server, or `to`), damaged as said.
    pub fn send(
        &self,
        control: TcpControl,
        seq: u32,
        ack: Option<u32>,
        payload: &[u8],
        damage: Damage,
    ) {
        let mut packet = net::tcp(self.me, self.server, control, seq, ack, payload);
        spoil(&mut packet, damage);
        self.link.send_ip(&packet);
    }

    /// The next segment from the server to `me` that `want` accepts; the
    /// ones before it (to anyone) are kept in `seen`. Panics after the bound.
    pub fn expect(&mut self, what: &str, want: impl Fn(&Seg) -> bool) -> Seg {
        let deadline = Instant::now() + BOUND;
        loop {
            let frame = self
                .link
                .recv(deadline)
                .unwrap_or_else(|| panic!("{what}: nothing came; saw {:?}", self.seen));
            let Some(seg) = ip_of(&frame).and_then(Seg::parse) else {
                continue;
            };
            self.seen.push(seg.clone());
            if seg.to == self.me && want(&seg) {
                return seg;
            }
        }
    }

    /// SYN, SYN-ACK, ACK.
    pub fn handshake(&mut self) {
        self.send(TcpControl::Syn, self.seq, None, &[], Damage::None);
        let syn_ack = self.expect("a SYN-ACK", |s| s.syn && !s.rst);
        self.seq += 1;
        self.ack = syn_ack.seq.wrapping_add(1);
        self.send(
            TcpControl::None,
            self.seq,
            Some(self.ack),
            &[],
            Damage::None,
        );
    }

    /// Sends `data` (intact) and waits for its echo.
    pub fn echo(&mut self, data: &[u8]) {
        self.send(
            TcpControl::Psh,
            self.seq,
            Some(self.ack),
            data,
            Damage::None,
        );
        self.seq += data.len() as u32;
        let echo = self.expect("an echo", |s| !s.payload.is_empty() || s.rst);
        assert!(!echo.rst, "reset instead of an echo");
        assert_eq!(echo.payload, data, "the echo");
        self.ack = echo.seq.wrapping_add(data.len() as u32);
    }
}

/// The IP packet in `frame`, if it carries one.
fn ip_of(frame: &Frame) -> Option<&[u8]> {
    matches!(frame.protocol, ETH_P_IP | ETH_P_IPV6).then_some(&frame.payload[..])
}

/// Spoils `packet` (a TCP segment in an IP packet) as `damage` says.
fn spoil(packet: &mut [u8], damage: Damage) {
    let flip = |sum: u16| sum ^ 0x0101;
    match damage {
        Damage::None => {}
        Damage::HeaderChecksum => {
            let mut ip = Ipv4Packet::new_unchecked(packet);
            ip.set_checksum(flip(ip.checksum()));
        }
        Damage::TcpChecksum => {
            let spoil_tcp = |segment: &mut [u8]| {
                let mut tcp = TcpPacket::new_unchecked(segment);
                tcp.set_checksum(flip(tcp.checksum()));
            };
            match IpVersion::of_packet(packet).expect("an IP packet") {
                IpVersion::Ipv4 => spoil_tcp(Ipv4Packet::new_unchecked(packet).payload_mut()),
                IpVersion::Ipv6 => spoil_tcp(Ipv6Packet::new_unchecked(packet).payload_mut()),
            }
        }
    }
}
