//! IP fragmentation for the device: a packet smoltcp built larger than the
//! link's MTU (a large UDP echo or ping reply; smoltcp is told the MTU of
//! the largest IP packet, see `device.rs`) leaves as fragments, IPv4 and
//! IPv6 alike (smoltcp 0.14 fragments only IPv4, one packet at a time).
//! Headers are read and written through `smoltcp::wire` views.

use std::ops::Range;

use smoltcp::wire::{
    IPV6_HEADER_LEN, IpAddress, IpProtocol, IpVersion, Ipv4Packet, Ipv6ExtHeader,
    Ipv6FragmentHeader, Ipv6FragmentRepr, Ipv6Packet, TcpPacket,
};

use super::coalesce::Sink;
use super::vnet::{self, VnetHdr};

/// Bytes of an IPv6 fragment header.
const FRAGMENT_HEADER: usize = 8;

/// Builds and writes fragments.
pub struct Fragmenter {
    /// Bytes before the IP header: the Ethernet header on TAP.
    l2: usize,
    /// The link's IP MTU.
    mtu: usize,
    /// Frames start with a virtio-net header.
    vnet: bool,
    /// One fragment's frame, after the virtio-net header if any (which
    /// says nothing: no offload asked).
    buf: Vec<u8>,
    /// Identification of the next fragmented packet.
    ident: u32,
}

impl Fragmenter {
    /// Fragments for a link with IP MTU `mtu`, `l2` bytes of link-layer
    /// header, a virtio-net header first if `vnet`; `seed` starts the
    /// identifications.
    pub fn new(l2: usize, mtu: usize, vnet: bool, seed: u32) -> Self {
        let room = if vnet { vnet::LEN } else { 0 } + l2 + mtu;
        let mut buf = vec![0; room];
        if vnet {
            VnetHdr::default().write(&mut buf[..vnet::LEN]);
        }
        Fragmenter {
            l2,
            mtu,
            vnet,
            buf,
            ident: seed,
        }
    }

    /// Whether `frame` (link-layer header, then an IP packet) is too large
    /// for the link.
    pub fn too_large(&self, frame: &[u8]) -> bool {
        frame.len() > self.l2 + self.mtu
    }

    /// Writes `frame` (too large for the link) as fragments; drops it if
    /// it is not an IP packet that can be fragmented (nothing smoltcp
    /// builds). With a virtio-net header, a TCP segment gets the checksum
    /// the kernel would have completed (only a peer announcing a segment
    /// size beyond the link's makes smoltcp send one this large).
    pub fn send(&mut self, frame: &mut [u8], sink: &mut impl Sink) {
        let l2 = self.l2;
        let ip = frame.get(l2..).filter(|ip| !ip.is_empty());
        let sent = match ip.and_then(|ip| IpVersion::of_packet(ip).ok()) {
            Some(IpVersion::Ipv4) => self.ipv4(frame, sink),
            Some(IpVersion::Ipv6) => self.ipv6(frame, sink),
            None => None,
        };
        if sent.is_none() {
            log::debug!(
                "tun: dropped a {}-byte packet it cannot fragment",
                frame.len()
            );
        }
    }

    fn ipv4(&mut self, frame: &mut [u8], sink: &mut impl Sink) -> Option<()> {
        let (link, ip) = frame.split_at_mut(self.l2);
        let mut p = Ipv4Packet::new_checked(ip).ok()?;
        let header_len = usize::from(p.header_len());
        let chunk = self.mtu.checked_sub(header_len)? & !7;
        if chunk == 0 {
            return None;
        }
        if self.vnet && p.next_header() == IpProtocol::Tcp {
            let (src, dst) = (p.src_addr().into(), p.dst_addr().into());
            fill_tcp_checksum(p.payload_mut(), src, dst)?;
        }
        let ident = self.next_ident() as u16;
        let ip: &[u8] = p.into_inner();
        let payload = Ipv4Packet::new_unchecked(ip).payload();
        for (piece, more) in pieces(payload.len(), chunk) {
            let packet = self.lay_out(link, &ip[..header_len], 0, &payload[piece.clone()]);
            let mut f = Ipv4Packet::new_unchecked(&mut self.buf[packet.clone()]);
            // Fits: a fragment is at most the MTU, at most 65535.
            f.set_total_len(packet.len() as u16);
            f.set_ident(ident);
            f.set_dont_frag(false);
            f.set_more_frags(more);
            f.set_frag_offset(piece.start as u16);
            f.fill_checksum();
            sink.write(&self.buf[..packet.end], 1);
        }
        Some(())
    }

    fn ipv6(&mut self, frame: &mut [u8], sink: &mut impl Sink) -> Option<()> {
        let (link, ip) = frame.split_at_mut(self.l2);
        let mut p = Ipv6Packet::new_checked(ip).ok()?;
        let chunk = self.mtu.checked_sub(IPV6_HEADER_LEN + FRAGMENT_HEADER)? & !7;
        if chunk == 0 {
            return None;
        }
        let next = p.next_header();
        if self.vnet && next == IpProtocol::Tcp {
            let (src, dst) = (p.src_addr().into(), p.dst_addr().into());
            fill_tcp_checksum(p.payload_mut(), src, dst)?;
        }
        let ident = self.next_ident();
        let ip: &[u8] = p.into_inner();
        let payload = Ipv6Packet::new_unchecked(ip).payload();
        for (piece, more) in pieces(payload.len(), chunk) {
            let header = &ip[..IPV6_HEADER_LEN];
            let data = &payload[piece.clone()];
            let packet = self.lay_out(link, header, FRAGMENT_HEADER, data);
            let mut f = Ipv6Packet::new_unchecked(&mut self.buf[packet.clone()]);
            f.set_next_header(IpProtocol::Ipv6Frag);
            // Fits: a fragment is at most the MTU, at most 65535.
            f.set_payload_len((packet.len() - IPV6_HEADER_LEN) as u16);
            let mut ext = Ipv6ExtHeader::new_unchecked(f.payload_mut());
            ext.set_next_header(next);
            ext.set_header_len(0);
            let repr = Ipv6FragmentRepr {
                // In 8-byte units: fits in the field's 13 bits.
                frag_offset: (piece.start / 8) as u16,
                more_frags: more,
                ident,
            };
            repr.emit(&mut Ipv6FragmentHeader::new_unchecked(ext.payload_mut()));
            sink.write(&self.buf[..packet.end], 1);
        }
        Some(())
    }

    /// Lays out one fragment in `buf`, after the virtio-net header: `link`,
    /// the IP `header`, `gap` bytes for the caller to fill, `piece`. Where
    /// its IP packet is.
    fn lay_out(&mut self, link: &[u8], header: &[u8], gap: usize, piece: &[u8]) -> Range<usize> {
        let head = if self.vnet { vnet::LEN } else { 0 };
        let at = head + link.len();
        let data = at + header.len() + gap;
        self.buf[head..at].copy_from_slice(link);
        self.buf[at..at + header.len()].copy_from_slice(header);
        self.buf[data..data + piece.len()].copy_from_slice(piece);
        at..data + piece.len()
    }

    fn next_ident(&mut self) -> u32 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }
}

/// The pieces `len` bytes of payload are cut into, `chunk` bytes each (a
/// multiple of 8) but the last: each piece's range, and whether more follow.
fn pieces(len: usize, chunk: usize) -> impl Iterator<Item = (Range<usize>, bool)> {
    (0..len).step_by(chunk).map(move |start| {
        let end = (start + chunk).min(len);
        (start..end, end < len)
    })
}

/// Fills in the checksum of the TCP segment `segment` between `src` and `dst`.
fn fill_tcp_checksum(segment: &mut [u8], src: IpAddress, dst: IpAddress) -> Option<()> {
    let mut tcp = TcpPacket::new_checked(segment).ok()?;
    tcp.fill_checksum(&src, &dst);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tun::reassemble::Reassembler;
    use crate::tun::testing::{Frames, net, without_vnet};
    use selecho_core::Instant;
    use smoltcp::wire::{EthernetFrame, Ipv4Packet};

    /// A UDP datagram of `len` bytes to a peer, over IPv4 or IPv6.
    fn datagram(v6: bool, len: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        let (a, b) = if v6 {
            (net::v6(2), net::v6(1))
        } else {
            (net::v4(10, 0, 0, 2), net::v4(10, 0, 0, 1))
        };
        net::udp((a, 7007), (b, 40000), &data)
    }

    /// `packet` behind an Ethernet header if `l2`.
    fn framed(packet: &[u8], l2: usize) -> Vec<u8> {
        let mut frame = vec![0xaa; l2];
        if l2 > 0 {
            let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
            let v6 = packet[0] >> 4 == 6;
            eth.set_ethertype(if v6 {
                smoltcp::wire::EthernetProtocol::Ipv6
            } else {
                smoltcp::wire::EthernetProtocol::Ipv4
            });
        }
        frame.extend_from_slice(packet);
        frame
    }

    /// Whether `got` is `want` again: the same IPv6 packet, or an IPv4 one
    /// with the same addresses, protocol and payload and a good checksum
    /// (identification and DF are the fragmenter's).
    fn same(got: &[u8], want: &[u8]) -> bool {
        if want[0] >> 4 == 6 {
            return got == want;
        }
        let (g, w) = (
            Ipv4Packet::new_checked(got).unwrap(),
            Ipv4Packet::new_checked(want).unwrap(),
        );
        g.verify_checksum()
            && (g.src_addr(), g.dst_addr(), g.next_header())
                == (w.src_addr(), w.dst_addr(), w.next_header())
            && g.payload() == w.payload()
    }

    #[test]
    fn fragments_reassemble_to_the_packet_in_any_order() {
        for (v6, l2, vnet) in [
            (false, 0, false),
            (true, 0, true),
            (false, 14, true),
            (true, 14, false),
        ] {
            for len in [1473, 1500, 8000, 65_507, 65_527] {
                if !v6 && len > 65_507 {
                    continue;
                }
                let packet = datagram(v6, len);
                let mut frame = framed(&packet, l2);
                let mut f = Fragmenter::new(l2, 1500, vnet, 7);
                assert!(f.too_large(&frame), "{len}");
                let mut out = Frames::default();
                f.send(&mut frame, &mut out);
                let pieces = if vnet {
                    without_vnet(&out)
                } else {
                    out.0.iter().map(|(frame, _)| frame.clone()).collect()
                };
                assert!(pieces.iter().all(|p| p.len() <= l2 + 1500));
                let mut shuffled: Vec<_> = pieces.iter().rev().collect();
                if shuffled.len() > 2 {
                    shuffled.swap(0, 1);
                }
                for order in [pieces.iter().collect::<Vec<_>>(), shuffled] {
                    let mut r = Reassembler::new(l2);
                    let mut whole = None;
                    for (i, piece) in order.iter().enumerate() {
                        let got = r.add(piece, Instant::ZERO).map(<[u8]>::to_vec);
                        assert_eq!(got.is_some(), i + 1 == order.len(), "piece {i}");
                        whole = whole.or(got);
                    }
                    let whole = whole.expect("the whole packet");
                    assert!(same(&whole[l2..], &packet), "v6 {v6} l2 {l2} len {len}");
                    assert_eq!(r.dropped, 0);
                }
            }
        }
    }

    #[test]
    fn ipv4_fragments_carry_their_own_identification() {
        let packet = datagram(false, 3000);
        let mut f = Fragmenter::new(0, 1500, false, 0);
        let mut out = Frames::default();
        f.send(&mut packet.clone(), &mut out);
        f.send(&mut packet.clone(), &mut out);
        let idents: Vec<u16> = out
            .0
            .iter()
            .map(|(frame, _)| Ipv4Packet::new_checked(&frame[..]).unwrap().ident())
            .collect();
        assert_eq!(idents.len(), 6);
        assert!(idents[..3].iter().all(|&i| i == idents[0]));
        assert!(idents[3..].iter().all(|&i| i == idents[3]));
        assert_ne!(idents[0], idents[3]);
        for (frame, _) in &out.0 {
            let ip = Ipv4Packet::new_checked(&frame[..]).unwrap();
            assert!(ip.verify_checksum() && !ip.dont_frag());
        }
    }
}
