//! A smoltcp [`Device`] over a TUN/TAP descriptor that never allocates per
//! packet: it reads each packet into one receive buffer and builds each
//! outgoing one in one transmit buffer, both owned by the device and lent to
//! smoltcp through the tokens, and coalesces segments in a few buffers
//! allocated with it. (smoltcp's own `TunTapInterface` allocates a `Vec` for
//! every packet in each direction.)
//!
//! # Offloads
//!
//! With a virtio-net header on the descriptor (`IFF_VNET_HDR`, see
//! [`tun::open`]) the device does what a virtual NIC with checksum and TCP
//! segmentation offload does, which is where the time goes at 1500-byte MTU
//! (the kernel's TCP work for every segment runs in our thread, inside our
//! `write`s):
//!
//! - Receive: the kernel may hand over TCP segments of up to 64 KiB (`TSO`)
//!   whose checksum is not filled in (`CSUM`). smoltcp takes a large segment
//!   like any other (it does not check received lengths against its MTU), and
//!   it never verifies received checksums on this device: the peer is the
//!   local kernel.
//! - Send: smoltcp leaves TCP checksums to the device (they are the
//!   kernel's, `VIRTIO_NET_HDR_F_NEEDS_CSUM` with the pseudo-header sum in the
//!   checksum field, as a NIC expects), and consecutive full-size data
//!   segments of one connection sent in one turn are written as one large
//!   segment (`VIRTIO_NET_HDR_GSO_TCPV4`/`TCPV6` with smoltcp's segment size),
//!   as the kernel's GRO would have merged them: the kernel's TCP takes it in
//!   one piece (and splits it again only should it forward it). The shell
//!   calls [`TunDevice::flush`] before it sleeps.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::EthernetFrame;

use crate::sys::tun::{self, VNET_HDR_LEN};

/// The largest packet a TUN/TAP device can hand over: an IP packet of
/// 65535 bytes, plus an Ethernet header on TAP.
const MAX_PACKET: usize = 65_535 + 14;

/// Largest IP packet (IPv4 total length, or IPv6 header and payload) a
/// coalesced segment may become.
const MAX_IP: usize = 65_535;

/// Connections whose segments may be in the making at once; a segment of
/// another connection flushes the one started longest ago.
const FLOWS: usize = 8;

/// `struct virtio_net_hdr` fields.
const VNET_F_NEEDS_CSUM: u8 = 1;
const VNET_GSO_NONE: u8 = 0;
const VNET_GSO_TCPV4: u8 = 1;
const VNET_GSO_TCPV6: u8 = 4;
const VNET_GSO_ECN: u8 = 0x80;

/// TCP flags.
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

/// Offset of the checksum in the TCP header.
const TCP_CSUM: usize = 16;

/// Packet counts, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct DevStats {
    /// Packets read from the device.
    pub rx: u64,
    /// Packets smoltcp sent.
    pub tx: u64,
    /// Writes to the device (fewer than `tx` when segments were coalesced).
    pub writes: u64,
    /// Packets the device would not take (full queue or an error): TCP
    /// retransmits them.
    pub tx_dropped: u64,
}

/// A TUN (IP packets) or TAP (Ethernet frames) device.
pub struct TunDevice {
    fd: OwnedFd,
    medium: Medium,
    /// smoltcp's MTU: the IP MTU, plus the Ethernet header on TAP.
    mtu: usize,
    rx: Vec<u8>,
    out: Out,
    /// A read failed with something other than "nothing to read".
    error: Option<io::Error>,
}

impl TunDevice {
    /// A device over the descriptor [`tun::open`] attached, whose interface
    /// has IP MTU `ip_mtu`. With a virtio-net header, asks the kernel for
    /// checksum and TCP segmentation offload (and does without if refused).
    pub fn new(attached: tun::Attached, mode: tun::Mode, ip_mtu: usize) -> Self {
        let tun::Attached { fd, vnet_hdr } = attached;
        let (medium, l2) = match mode {
            tun::Mode::Tun => (Medium::Ip, 0),
            tun::Mode::Tap => (Medium::Ethernet, EthernetFrame::<&[u8]>::header_len()),
        };
        if vnet_hdr {
            let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
            if let Err(e) = tun::set_offload(fd.as_fd(), offloads) {
                log::debug!("tun: no receive offloads ({e})");
            }
        }
        let hdr = if vnet_hdr { VNET_HDR_LEN } else { 0 };
        // Larger than any MTU, so a packet is never truncated even if
        // someone raises the interface's MTU while we run.
        let room = hdr + MAX_PACKET;
        TunDevice {
            fd,
            medium,
            mtu: ip_mtu + l2,
            rx: vec![0; room],
            out: Out {
                vnet_hdr,
                l2,
                staging: vec![0; if vnet_hdr { room } else { ip_mtu + l2 }],
                batches: if vnet_hdr {
                    (0..FLOWS).map(|_| Batch::new(room)).collect()
                } else {
                    Vec::new()
                },
                started: 0,
                stats: DevStats::default(),
            },
            error: None,
        }
    }

    /// The first read error since the last call, if any: the device is gone
    /// or broken, and the shell should stop.
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }

    /// Packet counts so far.
    pub fn stats(&self) -> DevStats {
        self.out.stats
    }

    /// Writes the segments being coalesced. Call before waiting for the
    /// device, so nothing smoltcp sent waits with us.
    pub fn flush(&mut self) {
        self.out.flush_all(self.fd.as_fd());
    }
}

impl AsFd for TunDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Device for TunDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        if self.error.is_some() {
            return None;
        }
        loop {
            match tun::read(self.fd.as_fd(), &mut self.rx) {
                Ok(n) => {
                    self.out.stats.rx += 1;
                    let packet = if self.out.vnet_hdr {
                        received(&self.rx[..n])
                    } else {
                        &self.rx[..n]
                    };
                    let rx = RxToken { packet };
                    let tx = TxToken {
                        fd: self.fd.as_fd(),
                        out: &mut self.out,
                    };
                    return Some((rx, tx));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            }
        }
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            fd: self.fd.as_fd(),
            out: &mut self.out,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = self.medium;
        caps.max_transmission_unit = self.mtu;
        // The peer is the local kernel, which hands over packets with
        // correct checksums (or, with offloads, none it expects checked):
        // compute them on send, skip verifying them on receive. With a
        // virtio-net header TCP's are the device's (see the module docs).
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        checksum.tcp = if self.out.vnet_hdr {
            Checksum::None
        } else {
            Checksum::Tx
        };
        checksum.udp = Checksum::Tx;
        checksum.icmpv4 = Checksum::Tx;
        checksum.icmpv6 = Checksum::Tx;
        caps.checksum = checksum;
        caps
    }
}

/// The packet after the virtio-net header of what a read returned; empty
/// (smoltcp skips it) if the header is cut short or announces a kind of
/// large segment other than TCP's, which the device did not ask for.
fn received(read: &[u8]) -> &[u8] {
    let Some((hdr, packet)) = read.split_at_checked(VNET_HDR_LEN) else {
        return &[];
    };
    match hdr[1] & !VNET_GSO_ECN {
        VNET_GSO_NONE | VNET_GSO_TCPV4 | VNET_GSO_TCPV6 => packet,
        _ => &[],
    }
}

/// One received packet, lent from the device's receive buffer.
pub struct RxToken<'a> {
    packet: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.packet)
    }
}

/// Room for one packet to send, lent from the device's transmit buffer.
pub struct TxToken<'a> {
    fd: BorrowedFd<'a>,
    out: &'a mut Out,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let out = self.out;
        let start = if out.vnet_hdr { VNET_HDR_LEN } else { 0 };
        // smoltcp never asks for more than the MTU, which the buffer holds;
        // should it, grow once rather than fail.
        if out.staging.len() < start + len {
            out.staging.resize(start + len, 0);
        }
        let result = f(&mut out.staging[start..start + len]);
        out.stats.tx += 1;
        if out.vnet_hdr {
            out.send(self.fd, start + len);
        } else {
            out.write(self.fd, Buf::Staging, len, 1);
        }
        result
    }
}

/// The sending half of the device: the transmit buffer, and the segments
/// being coalesced.
struct Out {
    vnet_hdr: bool,
    /// Bytes before the IP header in a frame: the Ethernet header on TAP.
    l2: usize,
    /// Where smoltcp builds each packet, after room for the virtio-net
    /// header. Swapped with a batch's buffer when a batch starts with it.
    staging: Vec<u8>,
    batches: Vec<Batch>,
    /// Batches started so far: orders them by age.
    started: u64,
    stats: DevStats,
}

/// Which buffer to write.
#[derive(Clone, Copy)]
enum Buf {
    Staging,
    Batch(usize),
}

/// Consecutive segments of one connection, coalesced into one: virtio-net
/// header, then the first segment's headers, then all their payload.
struct Batch {
    buf: Vec<u8>,
    /// Bytes used, header included; 0 when the batch is free.
    len: usize,
    seg: Seg,
    /// Segments in it.
    segs: u64,
    /// Sequence number a segment must have to follow.
    next_seq: u32,
    /// It may take another segment: all so far were full-size, no PSH.
    open: bool,
    /// When it started, in `Out::started`.
    age: u64,
}

impl Batch {
    fn new(room: usize) -> Batch {
        Batch {
            buf: vec![0; room],
            len: 0,
            seg: Seg::default(),
            segs: 0,
            next_seq: 0,
            open: false,
            age: 0,
        }
    }
}

/// Where the headers of a TCP segment are, in a frame (after the virtio-net
/// header).
#[derive(Clone, Copy, Debug, Default)]
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
    flags: u8,
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

    /// May start or join a coalesced segment: data, and no flag but ACK and PSH.
    fn coalescable(&self) -> bool {
        self.payload > 0 && self.flags & !TCP_PSH == TCP_ACK
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The TCP segment in `frame` (IP packet after `l2` bytes of Ethernet
/// header), if it is one smoltcp built: IPv4 unfragmented, or IPv6 with TCP
/// as the next header, with lengths that agree with the frame's.
fn parse(frame: &[u8], l2: usize) -> Option<Seg> {
    if l2 > 0 {
        let ethertype = be16(frame.get(..l2)?, 12);
        if ethertype != 0x0800 && ethertype != 0x86dd {
            return None;
        }
    }
    let ip = &frame[l2..];
    let (v6, iphl) = match ip.first()? >> 4 {
        4 => {
            let iphl = usize::from(ip[0] & 0x0f) * 4;
            if iphl < 20
                || ip.len() < iphl + 20
                || ip[9] != 6
                || be16(ip, 6) & 0x3fff != 0
                || usize::from(be16(ip, 2)) != ip.len()
            {
                return None;
            }
            (false, iphl)
        }
        6 => {
            if ip.len() < 40 + 20 || ip[6] != 6 || usize::from(be16(ip, 4)) + 40 != ip.len() {
                return None;
            }
            (true, 40)
        }
        _ => return None,
    };
    let tcp = &ip[iphl..];
    let tcphl = usize::from(tcp[12] >> 4) * 4;
    if tcphl < 20 || tcp.len() < tcphl {
        return None;
    }
    Some(Seg {
        l3: l2,
        v6,
        iphl,
        tcphl,
        payload: tcp.len() - tcphl,
        seq: be32(tcp, 4),
        flags: tcp[13],
    })
}

/// Whether `a` and `b` (frames, with their segments) belong to one connection.
fn same_flow(a: &[u8], sa: &Seg, b: &[u8], sb: &Seg) -> bool {
    if sa.v6 != sb.v6 {
        return false;
    }
    let addrs = if sa.v6 { 8..40 } else { 12..20 };
    a[sa.l3..][addrs.clone()] == b[sb.l3..][addrs] && a[sa.l4()..][..4] == b[sb.l4()..][..4]
}

/// Whether segment `b` may follow `a` in one coalesced segment: the same
/// IP header fields but lengths, identification and checksum, and the same
/// TCP header but sequence number, checksum and PSH.
fn same_headers(a: &[u8], sa: &Seg, b: &[u8], sb: &Seg) -> bool {
    if sa.iphl != sb.iphl || sa.tcphl != sb.tcphl {
        return false;
    }
    let (ia, ib) = (&a[sa.l3..], &b[sb.l3..]);
    let ip_same = if sa.v6 {
        ia[..4] == ib[..4] && ia[7] == ib[7]
    } else {
        ia[..2] == ib[..2] && ia[6..9] == ib[6..9] && ia[20..sa.iphl] == ib[20..sb.iphl]
    };
    let (ta, tb) = (&a[sa.l4()..], &b[sb.l4()..]);
    ip_same
        && ta[8..13] == tb[8..13]
        && ta[13] & !TCP_PSH == tb[13] & !TCP_PSH
        && ta[14..16] == tb[14..16]
        && ta[18..sa.tcphl] == tb[18..sb.tcphl]
}

/// Adds big-endian 16-bit words to a one's-complement sum.
fn sum_words(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for word in &mut chunks {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Makes `frame` (the segment `seg`, `segs` segments coalesced) ready for
/// the kernel: IP lengths (and IPv4 header checksum) for its size, the
/// pseudo-header sum in the TCP checksum field, and the virtio-net header in
/// `hdr` that lets the kernel finish the checksum (and split the segment
/// again, should it forward it).
fn finish(hdr: &mut [u8], frame: &mut [u8], seg: &Seg, segs: u64, gso_size: usize) {
    let ip_len = frame.len() - seg.l3;
    let tcp_len = ip_len - seg.iphl;
    let ip = &mut frame[seg.l3..];
    let addrs = if seg.v6 {
        if segs > 1 {
            ip[4..6].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
        }
        8..40
    } else {
        if segs > 1 {
            ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
            ip[10..12].fill(0);
            let csum = !fold(sum_words(0, &ip[..seg.iphl]));
            ip[10..12].copy_from_slice(&csum.to_be_bytes());
        }
        12..20
    };
    let pseudo = sum_words(6 + tcp_len as u32, &ip[addrs]);
    let at = seg.iphl + TCP_CSUM;
    ip[at..at + 2].copy_from_slice(&fold(pseudo).to_be_bytes());

    // struct virtio_net_hdr, in the host's byte order (legacy virtio).
    let gso_type = match (segs > 1, seg.v6) {
        (false, _) => VNET_GSO_NONE,
        (true, false) => VNET_GSO_TCPV4,
        (true, true) => VNET_GSO_TCPV6,
    };
    let u16s = [
        (seg.data()) as u16,
        if segs > 1 { gso_size as u16 } else { 0 },
        seg.l4() as u16,
        TCP_CSUM as u16,
    ];
    hdr[0] = VNET_F_NEEDS_CSUM;
    hdr[1] = gso_type;
    for (i, value) in u16s.into_iter().enumerate() {
        hdr[2 + 2 * i..4 + 2 * i].copy_from_slice(&value.to_ne_bytes());
    }
}

impl Out {
    /// A packet smoltcp built in `staging[..end]` (virtio-net header first):
    /// coalesce it, or write it.
    fn send(&mut self, fd: BorrowedFd<'_>, end: usize) {
        let Some(seg) = parse(&self.staging[VNET_HDR_LEN..end], self.l2) else {
            // Not TCP: smoltcp filled in the checksums.
            self.staging[..VNET_HDR_LEN].fill(0);
            self.write(fd, Buf::Staging, end, 1);
            return;
        };
        let frame = &self.staging[VNET_HDR_LEN..end];
        let ours = self
            .batches
            .iter()
            .position(|b| b.len > 0 && same_flow(&b.buf[VNET_HDR_LEN..], &b.seg, frame, &seg));
        if let Some(i) = ours {
            let b = &mut self.batches[i];
            if b.open
                && seg.coalescable()
                && seg.seq == b.next_seq
                && seg.payload <= b.seg.payload
                && b.len - VNET_HDR_LEN - b.seg.l3 + seg.payload <= MAX_IP
                && same_headers(&b.buf[VNET_HDR_LEN..], &b.seg, frame, &seg)
            {
                let payload = &frame[seg.data()..];
                b.buf[b.len..b.len + payload.len()].copy_from_slice(payload);
                b.len += payload.len();
                b.segs += 1;
                b.next_seq = seg.seq.wrapping_add(seg.payload as u32);
                if seg.flags & TCP_PSH != 0 {
                    let psh = VNET_HDR_LEN + b.seg.l4() + 13;
                    b.buf[psh] |= TCP_PSH;
                }
                b.open = seg.flags & TCP_PSH == 0 && seg.payload == b.seg.payload;
                if !b.open {
                    self.flush(fd, i);
                }
                return;
            }
            // Anything else of this connection goes after what it sent before.
            self.flush(fd, i);
        }
        // A batch of one would be written at once: write it now.
        if !seg.coalescable() || seg.flags & TCP_PSH != 0 {
            let (hdr, frame) = self.staging[..end].split_at_mut(VNET_HDR_LEN);
            finish(hdr, frame, &seg, 1, 0);
            self.write(fd, Buf::Staging, end, 1);
            return;
        }
        let free = match self.batches.iter().position(|b| b.len == 0) {
            Some(i) => i,
            None => {
                let (oldest, _) = self
                    .batches
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, b)| b.age)
                    .expect("FLOWS > 0");
                self.flush(fd, oldest);
                oldest
            }
        };
        let b = &mut self.batches[free];
        std::mem::swap(&mut b.buf, &mut self.staging);
        b.len = end;
        b.seg = seg;
        b.segs = 1;
        b.next_seq = seg.seq.wrapping_add(seg.payload as u32);
        b.open = true;
        b.age = self.started;
        self.started += 1;
    }

    /// Writes batch `i` and frees it.
    fn flush(&mut self, fd: BorrowedFd<'_>, i: usize) {
        let b = &mut self.batches[i];
        if b.len == 0 {
            return;
        }
        let (hdr, frame) = b.buf[..b.len].split_at_mut(VNET_HDR_LEN);
        finish(hdr, frame, &b.seg, b.segs, b.seg.payload);
        let (len, segs) = (b.len, b.segs);
        b.len = 0;
        self.write(fd, Buf::Batch(i), len, segs);
    }

    fn flush_all(&mut self, fd: BorrowedFd<'_>) {
        for i in 0..self.batches.len() {
            self.flush(fd, i);
        }
    }

    /// Writes `len` bytes of `buf`, which hold `segs` of smoltcp's packets.
    fn write(&mut self, fd: BorrowedFd<'_>, buf: Buf, len: usize, segs: u64) {
        let bytes = match buf {
            Buf::Staging => &self.staging[..len],
            Buf::Batch(i) => &self.batches[i].buf[..len],
        };
        loop {
            match tun::write(fd, bytes) {
                Ok(_) => self.stats.writes += 1,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.stats.tx_dropped += segs;
                    log::debug!("tun: dropped a {len}-byte packet: {e}");
                }
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 TCP segment from smoltcp's side, checksums not filled in.
    fn segment(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 77, 0, 2]);
        p[16..20].copy_from_slice(&[10, 77, 0, 1]);
        p[20..22].copy_from_slice(&7007u16.to_be_bytes());
        p[22..24].copy_from_slice(&40000u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&99u32.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        p[34..36].copy_from_slice(&512u16.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn tcp_checksum_ok(ip: &[u8]) -> bool {
        let tcp_len = ip.len() - 20;
        let sum = sum_words(6 + tcp_len as u32, &ip[12..20]);
        fold(sum_words(sum, &ip[20..])) == 0xffff
    }

    #[test]
    fn parses_and_matches_segments() {
        let a = segment(1000, TCP_ACK, &[1; 100]);
        let b = segment(1100, TCP_ACK | TCP_PSH, &[2; 50]);
        let (sa, sb) = (parse(&a, 0).unwrap(), parse(&b, 0).unwrap());
        assert_eq!((sa.iphl, sa.tcphl, sa.payload, sa.seq), (20, 20, 100, 1000));
        assert!(sa.coalescable() && sb.coalescable());
        assert!(same_flow(&a, &sa, &b, &sb));
        assert!(same_headers(&a, &sa, &b, &sb));
        let mut c = segment(1100, TCP_ACK, &[2; 50]);
        c[28..32].copy_from_slice(&100u32.to_be_bytes());
        assert!(!same_headers(&a, &sa, &c, &parse(&c, 0).unwrap()));
        const TCP_FIN: u8 = 0x01;
        let fin = segment(1, TCP_ACK | TCP_FIN, &[1]);
        assert!(!parse(&fin, 0).unwrap().coalescable());
        assert!(!parse(&segment(1, TCP_ACK, &[]), 0).unwrap().coalescable());
        let mut udp = a.clone();
        udp[9] = 17;
        assert!(parse(&udp, 0).is_none());
    }

    #[test]
    fn finish_leaves_a_checksum_the_kernel_completes() {
        let mut hdr = [0u8; VNET_HDR_LEN];
        let mut p = segment(5, TCP_ACK, &[7; 33]);
        let seg = parse(&p, 0).unwrap();
        finish(&mut hdr, &mut p, &seg, 1, 0);
        assert_eq!(hdr[0], VNET_F_NEEDS_CSUM);
        assert_eq!(hdr[1], VNET_GSO_NONE);
        // What the kernel does with NEEDS_CSUM: sum from csum_start, store the complement.
        let start = usize::from(u16::from_ne_bytes([hdr[6], hdr[7]]));
        let off = usize::from(u16::from_ne_bytes([hdr[8], hdr[9]]));
        assert_eq!((start, off), (20, 16));
        let csum = !fold(sum_words(0, &p[start..]));
        p[start + off..start + off + 2].copy_from_slice(&csum.to_be_bytes());
        assert!(tcp_checksum_ok(&p));
    }

    #[test]
    fn consecutive_segments_coalesce() {
        let mut out = Out {
            vnet_hdr: true,
            l2: 0,
            staging: vec![0; VNET_HDR_LEN + MAX_PACKET],
            batches: (0..FLOWS)
                .map(|_| Batch::new(VNET_HDR_LEN + MAX_PACKET))
                .collect(),
            started: 0,
            stats: DevStats::default(),
        };
        // Feed without a descriptor: check the batch before it is flushed.
        let put = |out: &mut Out, p: &[u8]| {
            out.staging[VNET_HDR_LEN..VNET_HDR_LEN + p.len()].copy_from_slice(p);
            VNET_HDR_LEN + p.len()
        };
        let end = put(&mut out, &segment(1000, TCP_ACK, &[1; 100]));
        let fd = std::fs::File::open("/dev/null").unwrap();
        out.send(fd.as_fd(), end);
        assert_eq!(out.batches.iter().filter(|b| b.len > 0).count(), 1);
        let end = put(&mut out, &segment(1100, TCP_ACK, &[2; 100]));
        out.send(fd.as_fd(), end);
        let b = out.batches.iter().find(|b| b.len > 0).unwrap();
        assert_eq!((b.segs, b.next_seq, b.open), (2, 1200, true));
        let mut frame = b.buf[VNET_HDR_LEN..b.len].to_vec();
        let mut hdr = [0u8; VNET_HDR_LEN];
        finish(&mut hdr, &mut frame, &b.seg, b.segs, b.seg.payload);
        assert_eq!(hdr[1], VNET_GSO_TCPV4);
        assert_eq!(u16::from_ne_bytes([hdr[4], hdr[5]]), 100);
        assert_eq!(be16(&frame, 2), 240);
        assert_eq!(fold(sum_words(0, &frame[..20])), 0xffff);
        assert_eq!(&frame[40..140], &[1; 100]);
        assert_eq!(&frame[140..240], &[2; 100]);
        // A gap: the batch goes out (to /dev/null, read-only: counted as
        // dropped) and the new segment starts another.
        let end = put(&mut out, &segment(5000, TCP_ACK, &[3; 100]));
        out.send(fd.as_fd(), end);
        assert_eq!(out.stats.tx_dropped, 2);
        let b = out.batches.iter().find(|b| b.len > 0).unwrap();
        assert_eq!((b.segs, b.seg.seq), (1, 5000));
    }
}
