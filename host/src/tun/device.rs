//! A smoltcp [`Device`] over a TUN/TAP descriptor that never allocates per
//! packet: it reads each packet into one receive buffer and builds each
//! outgoing one in one transmit buffer, both owned by the device and lent to
//! smoltcp through the tokens. (smoltcp's own `TunTapInterface` allocates a
//! `Vec` for every packet in each direction.)
//!
//! # Receiving
//!
//! The shell fetches each packet ([`TunDevice::fetch`]) before smoltcp
//! processes it: [`ingress`](super::ingress) checks it (checksums, martian
//! sources) and reassembles fragments, and the shell may act on it (a SYN)
//! before `poll_ingress_single` hands it to smoltcp through
//! [`Device::receive`], which never reads by itself.
//!
//! # Offloads
//!
//! With a virtio-net header on the descriptor (`IFF_VNET_HDR`, see
//! [`tuntap::open`]) the device does what a virtual NIC with checksum and
//! TCP segmentation offload does, which is where the time goes at 1500-byte
//! MTU (the kernel's TCP work for every segment runs in our thread, inside
//! our `write`s):
//!
//! - Receive: the kernel may hand over TCP segments of up to 64 KiB (`TSO`)
//!   whose checksum is not filled in (`CSUM`). smoltcp takes a large segment
//!   like any other (it does not check received lengths against its MTU);
//!   the checks leave alone a checksum the header vouches for.
//! - Send: smoltcp leaves TCP checksums to the device, and the
//!   [`Coalescer`] merges consecutive full-size segments of a connection
//!   into one large segment whose checksum the kernel completes. The shell
//!   calls [`TunDevice::flush`] before it sleeps.
//!
//! # Fragments
//!
//! smoltcp is told the MTU of the largest IP packet: a reply larger than
//! the link's MTU (a big UDP echo, a big ping) leaves through the
//! [`Fragmenter`], and fragments that come in are reassembled first. TCP is
//! unaffected: smoltcp sends segments no larger than the peer's MSS.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use selecho_core::smoltcp::PacketCounters;
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetFrame, IpCidr};

use super::coalesce::{Coalescer, Sink};
use super::fragment::Fragmenter;
use super::ingress::{Fetched, Ingress};
use super::vnet;
use crate::sys::tuntap;

/// The largest IP packet: an IPv6 header and the largest payload (an IPv4
/// packet stops at 65535).
const MAX_IP: usize = 40 + 65_535;

/// Packet counts, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct DevStats {
    /// Packets read from the device.
    pub rx: u64,
    /// Packets smoltcp sent.
    pub tx: u64,
    /// Writes to the device (fewer than `tx` when segments were coalesced,
    /// more when packets were fragmented).
    pub writes: u64,
    /// Packets the device would not take (full queue or an error): TCP
    /// retransmits them.
    pub tx_dropped: u64,
}

/// A TUN (IP packets) or TAP (Ethernet frames) device.
pub struct TunDevice {
    fd: OwnedFd,
    medium: Medium,
    /// Bytes of link-layer header: 14 on TAP.
    l2: usize,
    rx: Ingress,
    tx: Tx,
}

/// The sending half: where smoltcp builds packets, the coalescer and the
/// fragmenter.
struct Tx {
    /// Where smoltcp builds each packet, after room for the virtio-net
    /// header when there is one.
    staging: Vec<u8>,
    /// With a virtio-net header only.
    coalescer: Option<Coalescer>,
    fragmenter: Fragmenter,
    stats: DevStats,
}

/// The descriptor, as the place finished frames are written to.
struct FdSink<'a> {
    fd: BorrowedFd<'a>,
    stats: &'a mut DevStats,
}

impl TunDevice {
    /// A device over the descriptor [`tuntap::open`] attached, whose
    /// interface has IP MTU `ip_mtu` and (smoltcp's side) the addresses
    /// `own`. With a virtio-net header, asks the kernel for checksum and
    /// TCP segmentation offload (and does without if refused).
    pub fn new(
        attached: tuntap::Attached,
        mode: tuntap::Mode,
        ip_mtu: usize,
        own: &[IpCidr],
        seed: u32,
    ) -> Self {
        let tuntap::Attached { fd, vnet_hdr } = attached;
        let (medium, l2) = match mode {
            tuntap::Mode::Tun => (Medium::Ip, 0),
            tuntap::Mode::Tap => (Medium::Ethernet, EthernetFrame::<&[u8]>::header_len()),
        };
        if vnet_hdr {
            let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
            if let Err(e) = tuntap::set_offload(fd.as_fd(), offloads) {
                log::debug!("tun: no receive offloads ({e})");
            }
        }
        let hdr = if vnet_hdr { vnet::LEN } else { 0 };
        let room = hdr + l2 + MAX_IP;
        TunDevice {
            fd,
            medium,
            l2,
            rx: Ingress::new(vnet_hdr, l2, own),
            tx: Tx {
                staging: vec![0; room],
                coalescer: vnet_hdr.then(|| Coalescer::new(l2, room)),
                fragmenter: Fragmenter::new(l2, ip_mtu, vnet_hdr, seed),
                stats: DevStats::default(),
            },
        }
    }

    /// The next packet for smoltcp, checked, if one has come (see the
    /// module docs); smoltcp takes it in its next `poll_ingress_single`.
    /// At most one read a call. A read error means the device is gone or
    /// broken, and the shell should stop.
    pub fn fetch(&mut self, now: selecho_core::Instant) -> io::Result<Fetched> {
        self.rx.fetch(self.fd.as_fd(), now)
    }

    /// Packet counts so far.
    pub fn stats(&self) -> DevStats {
        DevStats {
            rx: self.rx.reads,
            ..self.tx.stats
        }
    }

    /// What the checks and reassembly dropped so far.
    pub fn counters(&self) -> PacketCounters {
        self.rx.counters()
    }

    /// Writes the segments being coalesced. Call before waiting for the
    /// device, so nothing smoltcp sent waits with us.
    pub fn flush(&mut self) {
        let Tx {
            coalescer, stats, ..
        } = &mut self.tx;
        if let Some(coalescer) = coalescer {
            let mut sink = FdSink {
                fd: self.fd.as_fd(),
                stats,
            };
            coalescer.flush_all(&mut sink);
        }
    }

    fn vnet_hdr(&self) -> bool {
        self.tx.coalescer.is_some()
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
        let packet = self.rx.take()?;
        let rx = RxToken { packet };
        let tx = TxToken {
            fd: self.fd.as_fd(),
            tx: &mut self.tx,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            fd: self.fd.as_fd(),
            tx: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = self.medium;
        // Larger packets than the link takes are fragmented (module docs).
        caps.max_transmission_unit = self.l2 + MAX_IP;
        // Checksums are verified before smoltcp sees a packet (`ingress`):
        // smoltcp computes them on send only. With a virtio-net header
        // TCP's are the device's (see the module docs).
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        checksum.tcp = if self.vnet_hdr() {
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
    tx: &'a mut Tx,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let Tx {
            staging,
            coalescer,
            fragmenter,
            stats,
        } = self.tx;
        let start = if coalescer.is_some() { vnet::LEN } else { 0 };
        // smoltcp never asks for more than its MTU, which the buffer holds;
        // should it, grow once rather than fail.
        if staging.len() < start + len {
            staging.resize(start + len, 0);
        }
        let result = f(&mut staging[start..start + len]);
        stats.tx += 1;
        let mut sink = FdSink { fd: self.fd, stats };
        let frame = &mut staging[start..start + len];
        if fragmenter.too_large(frame) {
            fragmenter.send(frame, &mut sink);
            return result;
        }
        match coalescer {
            Some(coalescer) => coalescer.push(staging, start + len, &mut sink),
            None => sink.write(&staging[..len], 1),
        }
        result
    }
}

impl Sink for FdSink<'_> {
    fn write(&mut self, frame: &[u8], segs: u64) {
        match tuntap::write(self.fd, frame) {
            Ok(_) => self.stats.writes += 1,
            Err(e) => {
                self.stats.tx_dropped += segs;
                log::debug!("tun: dropped a {}-byte packet: {e}", frame.len());
            }
        }
    }
}
