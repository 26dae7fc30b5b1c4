//! Merging the TCP segments smoltcp sends into large ones for the kernel,
//! as a NIC with segmentation offload would take them.
//!
//! Consecutive full-size data segments of one connection sent in one turn
//! are written as one large segment (`GSO_TCPV4`/`GSO_TCPV6`, split at
//! smoltcp's segment size should the kernel forward it), as the kernel's
//! GRO would have merged them; the kernel's TCP takes it in one piece. Every
//! TCP segment leaves with `F_NEEDS_CSUM` and the pseudo-header sum in its
//! checksum field: the kernel completes the checksum. Headers are read and
//! written through `smoltcp::wire` views.

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IPV6_HEADER_LEN, IpAddress, IpProtocol, IpVersion, Ipv4Packet,
    Ipv6Packet, TcpPacket, checksum,
};

use super::vnet::{self, VnetHdr};

/// Largest IP packet (IPv4 total length, or IPv6 header and payload) a
/// coalesced segment may become.
const MAX_IP: usize = 65_535;

/// Connections whose segments may be in the making at once; a segment of
/// another connection flushes the one started longest ago.
const FLOWS: usize = 8;

/// Offset of the checksum in the TCP header.
const TCP_CHECKSUM_AT: u16 = 16;

/// Where finished frames go (the device's descriptor; a list in tests).
pub trait Sink {
    /// Writes `frame` (virtio-net header first), which carries `segs` of
    /// smoltcp's packets.
    fn write(&mut self, frame: &[u8], segs: u64);
}

/// The segments being merged: one batch per connection, up to [`FLOWS`].
pub struct Coalescer {
    /// Bytes before the IP header in a frame: the Ethernet header on TAP.
    l2: usize,
    batches: Vec<Batch>,
    /// Batches started so far: orders them by age.
    started: u64,
}

/// Consecutive segments of one connection, coalesced into one: virtio-net
/// header, then the first segment's headers, then all their payload.
struct Batch {
    buf: Vec<u8>,
    /// `None` while the batch is free.
    current: Option<InProgress>,
}

/// What a batch in the making holds.
struct InProgress {
    /// Bytes of `buf` used, virtio-net header included.
    len: usize,
    /// The first segment.
    seg: Seg,
    /// Segments in it.
    segs: u64,
    /// Sequence number a segment must have to follow. (All segments so far
    /// were full-size, without PSH: a batch is written when one is not.)
    next_seq: u32,
    /// When it started, in `Coalescer::started`.
    age: u64,
}

/// The endpoints of a TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flow {
    src: IpAddress,
    dst: IpAddress,
    src_port: u16,
    dst_port: u16,
}

/// The header fields two segments must share to be merged (all but the
/// lengths, IPv4 identification, checksums, sequence number and PSH).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Template {
    flow: Flow,
    /// IPv4 DSCP and ECN, or IPv6 traffic class.
    class: u8,
    /// IPv6 flow label; 0 on IPv4.
    flow_label: u32,
    hop_limit: u8,
    dont_frag: bool,
    tcp_header_len: u8,
    ack: i32,
    window: u16,
    ns: bool,
}

/// Where the headers of a TCP segment are in a frame (after the virtio-net
/// header), and what they say.
#[derive(Clone, Copy, Debug)]
struct Seg {
    /// Offset of the IP header (the Ethernet header's length on TAP).
    l3: usize,
    v6: bool,
    /// IP header length.
    iphl: usize,
    /// TCP header length.
    tcphl: usize,
    /// Payload bytes.
    payload: usize,
    seq: u32,
    psh: bool,
    /// Data, and no flag but ACK and PSH: may start or join a batch.
    coalescable: bool,
    template: Template,
}

impl Seg {
    /// Offset of the TCP header.
    fn l4(&self) -> usize {
        self.l3 + self.iphl
    }

    /// Offset of the payload.
    fn data(&self) -> usize {
        self.l4() + self.tcphl
    }

    /// Whether `next` may follow this batch's first segment in one large
    /// segment (same headers but what [`Template`] leaves out, same TCP
    /// options).
    fn may_take(&self, frame: &[u8], next: &Seg, next_frame: &[u8]) -> bool {
        self.template == next.template && tcp_options(frame, self) == tcp_options(next_frame, next)
    }
}

impl Coalescer {
    /// Batches of `room` bytes each (a virtio-net header and the largest
    /// packet), for frames with `l2` bytes before the IP header.
    pub fn new(l2: usize, room: usize) -> Self {
        Coalescer {
            l2,
            batches: (0..FLOWS)
                .map(|_| Batch {
                    buf: vec![0; room],
                    current: None,
                })
                .collect(),
            started: 0,
        }
    }

    /// A packet smoltcp built in `staging[..end]` (after room for the
    /// virtio-net header): coalesce it, or write it. `staging` may be
    /// swapped with a batch's buffer (both have the same size).
    pub fn push(&mut self, staging: &mut Vec<u8>, end: usize, sink: &mut impl Sink) {
        let Some(seg) = parse(&staging[vnet::LEN..end], self.l2) else {
            // Not a TCP segment we merge: smoltcp filled in its checksums.
            VnetHdr::default().write(&mut staging[..vnet::LEN]);
            sink.write(&staging[..end], 1);
            return;
        };
        let flow = seg.template.flow;
        let ours = self.batches.iter().position(|b| {
            b.current
                .as_ref()
                .is_some_and(|c| c.seg.template.flow == flow)
        });
        if let Some(i) = ours {
            if self.append(i, &seg, &staging[vnet::LEN..end], sink) {
                return;
            }
            // Anything else of this connection goes after what it sent before.
            self.flush(i, sink);
        }
        // A batch of one would be written at once: write it now.
        if !seg.coalescable || seg.psh {
            let (hdr, frame) = staging[..end].split_at_mut(vnet::LEN);
            finish(hdr, frame, &seg, 1);
            sink.write(&staging[..end], 1);
            return;
        }
        let free = match self.batches.iter().position(|b| b.current.is_none()) {
            Some(i) => i,
            None => {
                let oldest = (0..self.batches.len())
                    .min_by_key(|&i| self.batches[i].current.as_ref().map_or(0, |c| c.age))
                    .unwrap_or(0);
                self.flush(oldest, sink);
                oldest
            }
        };
        let b = &mut self.batches[free];
        std::mem::swap(&mut b.buf, staging);
        b.current = Some(InProgress {
            len: end,
            seg,
            segs: 1,
            next_seq: seg.seq.wrapping_add(seg.payload as u32),
            age: self.started,
        });
        self.started += 1;
    }

    /// Appends `seg` (in `frame`) to batch `i` if it follows it: the next
    /// sequence number, no larger than the first segment, the same headers,
    /// room left; whether it did. Writes the batch if `seg` ends it (PSH,
    /// or short).
    fn append(&mut self, i: usize, seg: &Seg, frame: &[u8], sink: &mut impl Sink) -> bool {
        let Batch {
            buf,
            current: Some(c),
        } = &mut self.batches[i]
        else {
            return false;
        };
        let follows = seg.coalescable
            && seg.seq == c.next_seq
            && seg.payload <= c.seg.payload
            && c.len - vnet::LEN - c.seg.l3 + seg.payload <= MAX_IP
            && c.seg.may_take(&buf[vnet::LEN..], seg, frame);
        if !follows {
            return false;
        }
        buf[c.len..c.len + seg.payload].copy_from_slice(&frame[seg.data()..]);
        c.len += seg.payload;
        c.segs += 1;
        c.next_seq = seg.seq.wrapping_add(seg.payload as u32);
        if seg.psh {
            let at = vnet::LEN + c.seg.l4();
            TcpPacket::new_unchecked(&mut buf[at..]).set_psh(true);
        }
        if seg.psh || seg.payload < c.seg.payload {
            self.flush(i, sink);
        }
        true
    }

    /// Writes every batch in the making.
    pub fn flush_all(&mut self, sink: &mut impl Sink) {
        for i in 0..self.batches.len() {
            self.flush(i, sink);
        }
    }

    /// Writes batch `i` and frees it.
    fn flush(&mut self, i: usize, sink: &mut impl Sink) {
        let b = &mut self.batches[i];
        let Some(c) = b.current.take() else {
            return;
        };
        let (hdr, frame) = b.buf[..c.len].split_at_mut(vnet::LEN);
        finish(hdr, frame, &c.seg, c.segs);
        sink.write(&b.buf[..c.len], c.segs);
    }
}

/// The TCP segment in `frame` (an IP packet after `l2` bytes of Ethernet
/// header), if it is one to merge or checksum for the kernel: IPv4 without
/// options or fragments, or IPv6 with TCP as the next header, with lengths
/// that agree with the frame's.
fn parse(frame: &[u8], l2: usize) -> Option<Seg> {
    if l2 > 0 {
        let ethertype = EthernetFrame::new_checked(frame).ok()?.ethertype();
        if ethertype != EthernetProtocol::Ipv4 && ethertype != EthernetProtocol::Ipv6 {
            return None;
        }
    }
    // smoltcp's `IpVersion::of_packet` reads the first byte unchecked.
    let ip = frame.get(l2..).filter(|ip| !ip.is_empty())?;
    let (src, dst, iphl, class, flow_label, hop_limit, dont_frag, tcp) =
        match IpVersion::of_packet(ip).ok()? {
            IpVersion::Ipv4 => {
                let p = Ipv4Packet::new_checked(ip).ok()?;
                let whole = usize::from(p.total_len()) == ip.len();
                let unfragmented = !p.more_frags() && p.frag_offset() == 0;
                if p.next_header() != IpProtocol::Tcp
                    || p.header_len() != 20
                    || !whole
                    || !unfragmented
                {
                    return None;
                }
                let src = IpAddress::Ipv4(p.src_addr());
                let dst = IpAddress::Ipv4(p.dst_addr());
                let class = p.dscp() << 2 | p.ecn();
                let (hop_limit, dont_frag) = (p.hop_limit(), p.dont_frag());
                (src, dst, 20, class, 0, hop_limit, dont_frag, p.payload())
            }
            IpVersion::Ipv6 => {
                let p = Ipv6Packet::new_checked(ip).ok()?;
                if p.next_header() != IpProtocol::Tcp || p.total_len() != ip.len() {
                    return None;
                }
                let src = IpAddress::Ipv6(p.src_addr());
                let dst = IpAddress::Ipv6(p.dst_addr());
                let (class, label) = (p.traffic_class(), p.flow_label());
                let hop_limit = p.hop_limit();
                (
                    src,
                    dst,
                    IPV6_HEADER_LEN,
                    class,
                    label,
                    hop_limit,
                    false,
                    p.payload(),
                )
            }
        };
    let t = TcpPacket::new_checked(tcp).ok()?;
    let tcphl = usize::from(t.header_len());
    let other_flags = t.syn() || t.fin() || t.rst() || t.urg() || t.ece() || t.cwr();
    let payload = tcp.len() - tcphl;
    Some(Seg {
        l3: l2,
        v6: matches!(src, IpAddress::Ipv6(_)),
        iphl,
        tcphl,
        payload,
        seq: t.seq_number().0 as u32,
        psh: t.psh(),
        coalescable: payload > 0 && t.ack() && !other_flags,
        template: Template {
            flow: Flow {
                src,
                dst,
                src_port: t.src_port(),
                dst_port: t.dst_port(),
            },
            class,
            flow_label,
            hop_limit,
            dont_frag,
            tcp_header_len: t.header_len(),
            ack: t.ack_number().0,
            window: t.window_len(),
            ns: t.ns(),
        },
    })
}

/// The TCP options of segment `seg` in `frame`.
fn tcp_options<'a>(frame: &'a [u8], seg: &Seg) -> &'a [u8] {
    TcpPacket::new_unchecked(&frame[seg.l4()..]).options()
}

/// Makes `frame` (the segment `seg`, `segs` segments coalesced) ready for
/// the kernel: IP lengths (and IPv4 header checksum) for its size, the
/// pseudo-header sum in the TCP checksum field, and the virtio-net header in
/// `hdr` that lets the kernel finish the checksum (and split the segment
/// again, should it forward it).
fn finish(hdr: &mut [u8], frame: &mut [u8], seg: &Seg, segs: u64) {
    let ip_len = frame.len() - seg.l3;
    let tcp_len = (ip_len - seg.iphl) as u32;
    let ip = &mut frame[seg.l3..];
    let pseudo = if seg.v6 {
        let mut p = Ipv6Packet::new_unchecked(&mut *ip);
        p.set_payload_len((ip_len - seg.iphl) as u16);
        checksum::pseudo_header_v6(&p.src_addr(), &p.dst_addr(), IpProtocol::Tcp, tcp_len)
    } else {
        let mut p = Ipv4Packet::new_unchecked(&mut *ip);
        if segs > 1 {
            p.set_total_len(ip_len as u16);
            p.fill_checksum();
        }
        checksum::pseudo_header_v4(&p.src_addr(), &p.dst_addr(), IpProtocol::Tcp, tcp_len)
    };
    TcpPacket::new_unchecked(&mut ip[seg.iphl..]).set_checksum(pseudo);
    let gso_type = match (segs > 1, seg.v6) {
        (false, _) => vnet::GSO_NONE,
        (true, false) => vnet::GSO_TCPV4,
        (true, true) => vnet::GSO_TCPV6,
    };
    VnetHdr {
        flags: vnet::F_NEEDS_CSUM,
        gso_type,
        hdr_len: seg.data() as u16,
        gso_size: if segs > 1 { seg.payload as u16 } else { 0 },
        csum_start: seg.l4() as u16,
        csum_offset: TCP_CHECKSUM_AT,
    }
    .write(hdr);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tun::testing::{DST, Frames, SRC, segment};
    use smoltcp::wire::TcpControl;

    /// What the kernel does with `F_NEEDS_CSUM`: sum from `csum_start`,
    /// store the complement; then checks the result like a receiver.
    fn complete_and_verify(written: &[u8]) -> Vec<u8> {
        let (hdr, frame) = VnetHdr::split(written).unwrap();
        assert_eq!(hdr.flags, vnet::F_NEEDS_CSUM);
        let mut frame = frame.to_vec();
        let start = usize::from(hdr.csum_start);
        let at = start + usize::from(hdr.csum_offset);
        let sum = !checksum::data(&frame[start..]);
        frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        let ip = Ipv4Packet::new_checked(&frame[..]).unwrap();
        assert!(ip.verify_checksum(), "IPv4 header checksum");
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let (src, dst) = (IpAddress::Ipv4(SRC.into()), IpAddress::Ipv4(DST.into()));
        assert!(tcp.verify_checksum(&src, &dst), "TCP checksum");
        frame
    }

    fn push(c: &mut Coalescer, packet: &[u8], sink: &mut Frames) {
        let mut staging = vec![0u8; vnet::LEN + 65_535];
        staging[vnet::LEN..vnet::LEN + packet.len()].copy_from_slice(packet);
        c.push(&mut staging, vnet::LEN + packet.len(), sink);
    }

    #[test]
    fn parses_and_tells_what_may_merge() {
        let a = segment(1000, false, TcpControl::None, &[1; 100]);
        let b = segment(1100, true, TcpControl::None, &[2; 50]);
        let (sa, sb) = (parse(&a, 0).unwrap(), parse(&b, 0).unwrap());
        assert_eq!((sa.iphl, sa.tcphl, sa.payload, sa.seq), (20, 20, 100, 1000));
        assert!(sa.coalescable && sb.coalescable && sb.psh);
        assert!(sa.may_take(&a, &sb, &b));
        let fin = segment(1, false, TcpControl::Fin, &[1]);
        assert!(!parse(&fin, 0).unwrap().coalescable);
        assert!(
            !parse(&segment(1, false, TcpControl::None, &[]), 0)
                .unwrap()
                .coalescable
        );
        let mut udp = a.clone();
        Ipv4Packet::new_unchecked(&mut udp[..]).set_next_header(IpProtocol::Udp);
        assert!(parse(&udp, 0).is_none());
    }

    #[test]
    fn a_lone_segment_leaves_with_a_checksum_the_kernel_completes() {
        let mut c = Coalescer::new(0, vnet::LEN + 65_535);
        let mut out = Frames::default();
        let seg = segment(5, true, TcpControl::None, &[7; 33]);
        push(&mut c, &seg, &mut out);
        assert_eq!(out.0.len(), 1, "a PSH segment goes at once");
        let (hdr, _) = VnetHdr::split(&out.0[0].0).unwrap();
        assert_eq!(
            (hdr.gso_type, hdr.csum_start, hdr.csum_offset),
            (vnet::GSO_NONE, 20, 16)
        );
        assert_eq!(complete_and_verify(&out.0[0].0), seg);
    }

    #[test]
    fn consecutive_segments_merge_until_a_gap() {
        let mut c = Coalescer::new(0, vnet::LEN + 65_535);
        let mut out = Frames::default();
        push(
            &mut c,
            &segment(1000, false, TcpControl::None, &[1; 100]),
            &mut out,
        );
        push(
            &mut c,
            &segment(1100, false, TcpControl::None, &[2; 100]),
            &mut out,
        );
        assert!(out.0.is_empty(), "full-size segments wait for more");
        // A gap: the batch goes out and the new segment starts another.
        push(
            &mut c,
            &segment(5000, false, TcpControl::None, &[3; 100]),
            &mut out,
        );
        assert_eq!(out.0.len(), 1);
        let (written, segs) = &out.0[0];
        assert_eq!(*segs, 2);
        let (hdr, _) = VnetHdr::split(written).unwrap();
        assert_eq!((hdr.gso_type, hdr.gso_size), (vnet::GSO_TCPV4, 100));
        let frame = complete_and_verify(written);
        assert_eq!(
            Ipv4Packet::new_checked(&frame[..]).unwrap().total_len(),
            240
        );
        assert_eq!(&frame[40..140], &[1; 100]);
        assert_eq!(&frame[140..240], &[2; 100]);
        c.flush_all(&mut out);
        assert_eq!(out.0.len(), 2);
        let frame = complete_and_verify(&out.0[1].0);
        let tcp = TcpPacket::new_checked(&frame[20..]).unwrap();
        assert_eq!((tcp.seq_number().0, tcp.payload()), (5000, &[3; 100][..]));
    }

    #[test]
    fn a_short_or_psh_segment_ends_its_batch_at_once() {
        for (len, psh) in [(50, false), (100, true)] {
            let mut c = Coalescer::new(0, vnet::LEN + 65_535);
            let mut out = Frames::default();
            let first = segment(1000, false, TcpControl::None, &[1; 100]);
            push(&mut c, &first, &mut out);
            let last = segment(1100, psh, TcpControl::None, &vec![2; len]);
            push(&mut c, &last, &mut out);
            assert_eq!(out.0.len(), 1, "len {len} psh {psh}: written at once");
            assert_eq!(out.0[0].1, 2);
            let frame = complete_and_verify(&out.0[0].0);
            let tcp = TcpPacket::new_checked(&frame[20..]).unwrap();
            assert_eq!((tcp.payload().len(), tcp.psh()), (100 + len, psh));
            // The connection's next segment starts a batch of its own.
            push(
                &mut c,
                &segment(1100 + len as u32, false, TcpControl::None, &[3; 100]),
                &mut out,
            );
            assert_eq!(out.0.len(), 1);
        }
    }
}
