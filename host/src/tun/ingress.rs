//! The device's receiving half: every packet is read, checked and (if a
//! fragment) reassembled before smoltcp sees it, so the shell can look at
//! it first (a SYN goes to the adapter's `make_room`).
//!
//! The [`Guard`] checks the IPv4 header checksum of every packet and the
//! transport checksum of every packet the kernel does not vouch for: with
//! a virtio-net header, `DATA_VALID` (checked on the way in) or
//! `NEEDS_CSUM` (built on this host, checksum yet to be filled in); without
//! one, none. A reassembled packet is checked whole. What fails is dropped
//! and counted; smoltcp never verifies a checksum itself (see
//! `TunDevice::capabilities`).

use std::io;
use std::ops::Range;
use std::os::fd::BorrowedFd;

use selecho_core::Instant;
use selecho_core::smoltcp::{Checksums, Guard, Inbound, PacketCounters, Syn};
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpCidr};

use super::reassemble::Reassembler;
use super::vnet::{self, VnetHdr};
use crate::sys::tuntap;

/// Room for anything a read returns or reassembly makes: a virtio-net
/// header, an Ethernet header, the largest IPv4 header and the largest
/// payload.
const ROOM: usize = vnet::LEN + 14 + 60 + 65_535;

/// What [`Ingress::fetch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Nothing to read.
    Empty,
    /// A packet was read, and dropped or kept for reassembly: nothing for
    /// smoltcp yet.
    Taken,
    /// A packet for smoltcp, waiting.
    Packet(Arrival),
}

/// A packet ready for smoltcp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// It opens a TCP connection to us.
    pub syn: Option<Syn>,
}

/// The receive buffer, the checks, and the packet waiting for smoltcp.
pub struct Ingress {
    buf: Vec<u8>,
    /// Reads start with a virtio-net header.
    vnet: bool,
    /// Bytes of link-layer header (14 on TAP).
    l2: usize,
    guard: Guard,
    reassembler: Reassembler,
    /// What `buf` holds for smoltcp, checked.
    pending: Option<(Range<usize>, Arrival)>,
    /// Packets read.
    pub reads: u64,
    /// Reads whose virtio-net header is cut short or announces a kind of
    /// large segment the device did not ask for.
    bad_vnet: u64,
}

impl Ingress {
    /// For frames with `l2` bytes of link-layer header, after a virtio-net
    /// header if `vnet`, to an interface with addresses `own`.
    pub fn new(vnet: bool, l2: usize, own: &[IpCidr]) -> Self {
        Ingress {
            buf: vec![0; ROOM],
            vnet,
            l2,
            guard: Guard::new(own),
            reassembler: Reassembler::new(l2),
            pending: None,
            reads: 0,
            bad_vnet: 0,
        }
    }

    /// The packet waiting for smoltcp, or else the next one read from
    /// `fd` (at most one read a call, so a flood of packets that fail the
    /// checks cannot hold up the loop): checked, dropped if it fails (and
    /// counted), kept if it is a fragment of a packet not yet whole.
    pub fn fetch(&mut self, fd: BorrowedFd<'_>, now: Instant) -> io::Result<Fetched> {
        if let Some((_, arrival)) = &self.pending {
            return Ok(Fetched::Packet(*arrival));
        }
        let n = match tuntap::read(fd, &mut self.buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Fetched::Empty),
            Err(e) => return Err(e),
        };
        self.reads += 1;
        self.pending = self.check(n, now);
        Ok(match &self.pending {
            Some((_, arrival)) => Fetched::Packet(*arrival),
            None => Fetched::Taken,
        })
    }

    /// The packet [`fetch`](Self::fetch) said is waiting, handed over once.
    pub fn take(&mut self) -> Option<&[u8]> {
        let (range, _) = self.pending.take()?;
        Some(&self.buf[range])
    }

    /// What was dropped so far.
    pub fn counters(&self) -> PacketCounters {
        let mut counters = *self.guard.counters();
        counters.malformed += self.bad_vnet;
        counters.fragments_dropped += self.reassembler.dropped;
        counters
    }

    /// The checks on the `n` bytes just read: where the packet for smoltcp
    /// lies, or `None` if there is none (dropped, or a fragment kept).
    fn check(&mut self, n: usize, now: Instant) -> Option<(Range<usize>, Arrival)> {
        let (start, checksums) = if self.vnet {
            let Some(checksums) = vnet_checksums(&self.buf[..n]) else {
                self.bad_vnet += 1;
                return None;
            };
            (vnet::LEN, checksums)
        } else {
            (0, Checksums::Verify)
        };
        let frame = start..n;
        if !self.is_ip(&self.buf[frame.clone()]) {
            // ARP and the like: smoltcp's business.
            return Some((frame, Arrival { syn: None }));
        }
        let ip = start + self.l2..n;
        match self.guard.inspect(&self.buf[ip], checksums).ok()? {
            Inbound::Packet { syn } => Some((frame, Arrival { syn })),
            Inbound::Fragment => self.reassemble(frame, now),
        }
    }

    /// Takes the fragment in `buf[frame]`; once its packet is whole, moves
    /// it to the front of `buf` and checks it.
    fn reassemble(&mut self, frame: Range<usize>, now: Instant) -> Option<(Range<usize>, Arrival)> {
        let Ingress {
            buf, reassembler, ..
        } = self;
        let whole = reassembler.add(&buf[frame], now)?;
        let len = whole.len();
        buf[..len].copy_from_slice(whole);
        match self
            .guard
            .inspect(&self.buf[self.l2..len], Checksums::Verify)
            .ok()?
        {
            Inbound::Packet { syn } => Some((0..len, Arrival { syn })),
            // Reassembly leaves no fragment.
            Inbound::Fragment => None,
        }
    }

    /// Whether `frame` carries an IP packet (always, on TUN).
    fn is_ip(&self, frame: &[u8]) -> bool {
        if self.l2 == 0 {
            return true;
        }
        EthernetFrame::new_checked(frame).is_ok_and(|f| {
            matches!(
                f.ethertype(),
                EthernetProtocol::Ipv4 | EthernetProtocol::Ipv6
            )
        })
    }
}

/// Which checksums the virtio-net header at the front of `read` leaves to
/// check; `None` if it is cut short or announces a kind of large segment
/// other than TCP's, which the device did not ask for.
fn vnet_checksums(read: &[u8]) -> Option<Checksums> {
    let (hdr, _) = VnetHdr::split(read)?;
    match hdr.gso_type & !vnet::GSO_ECN {
        vnet::GSO_NONE | vnet::GSO_TCPV4 | vnet::GSO_TCPV6 => {}
        _ => return None,
    }
    if hdr.flags & (vnet::F_NEEDS_CSUM | vnet::F_DATA_VALID) != 0 {
        Some(Checksums::Vouched)
    } else {
        Some(Checksums::Verify)
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;
    use crate::tun::testing::{net, packet_pipe};
    use smoltcp::wire::TcpControl;

    /// A data segment from a peer to 10.0.0.2, its TCP checksum spoiled if `bad`.
    fn segment(bad: bool) -> Vec<u8> {
        let peer = (net::v4(10, 0, 0, 1), 40000);
        let ours = (net::v4(10, 0, 0, 2), 7007);
        let mut packet = net::tcp(peer, ours, TcpControl::Psh, 1, Some(1), b"data");
        if bad {
            let last = packet.len() - 1;
            packet[last] ^= 0xff;
        }
        packet
    }

    fn with_vnet(hdr: VnetHdr, packet: &[u8]) -> Vec<u8> {
        let mut read = vec![0; vnet::LEN];
        hdr.write(&mut read);
        read.extend_from_slice(packet);
        read
    }

    fn flags(flags: u8) -> VnetHdr {
        VnetHdr {
            flags,
            ..VnetHdr::default()
        }
    }

    #[test]
    fn checksums_are_checked_unless_the_kernel_vouches_for_them() {
        let (ours, theirs) = packet_pipe();
        let own = [IpCidr::new(net::v4(10, 0, 0, 2), 24)];
        let mut ingress = Ingress::new(true, 0, &own);
        let now = Instant::ZERO;
        let write = |read: Vec<u8>| {
            crate::sys::tuntap::write(theirs.as_fd(), &read).expect("write");
        };
        // Without a flag: checked, and a bad one dropped.
        write(with_vnet(flags(0), &segment(true)));
        assert_eq!(ingress.fetch(ours.as_fd(), now).unwrap(), Fetched::Taken);
        assert_eq!(ingress.counters().bad_checksum, 1);
        // DATA_VALID and NEEDS_CSUM: the kernel's word is taken.
        for flag in [vnet::F_DATA_VALID, vnet::F_NEEDS_CSUM] {
            write(with_vnet(flags(flag), &segment(true)));
            assert!(matches!(
                ingress.fetch(ours.as_fd(), now).unwrap(),
                Fetched::Packet(_)
            ));
            assert!(ingress.take().is_some());
        }
        // A good one passes, handed over once.
        write(with_vnet(flags(0), &segment(false)));
        assert!(matches!(
            ingress.fetch(ours.as_fd(), now).unwrap(),
            Fetched::Packet(_)
        ));
        assert_eq!(ingress.take().map(<[u8]>::len), Some(segment(false).len()));
        assert!(ingress.take().is_none());
        // No virtio-net header on the device: always checked.
        let mut plain = Ingress::new(false, 0, &own);
        write(segment(true));
        assert_eq!(plain.fetch(ours.as_fd(), now).unwrap(), Fetched::Taken);
        assert_eq!(plain.counters().bad_checksum, 1);
        // A header announcing a large UDP segment, never asked for: dropped.
        let udp_l4 = VnetHdr {
            gso_type: 5,
            ..VnetHdr::default()
        };
        write(with_vnet(udp_l4, &segment(false)));
        assert_eq!(ingress.fetch(ours.as_fd(), now).unwrap(), Fetched::Taken);
        assert_eq!(ingress.counters().malformed, 1);
    }
}
