//! A smoltcp [`Device`] over a TUN/TAP descriptor that never allocates per
//! packet: it reads each packet into one receive buffer and builds each
//! outgoing one in one transmit buffer, both owned by the device and lent to
//! smoltcp through the tokens. (smoltcp's own `TunTapInterface` allocates a
//! `Vec` for every packet in each direction.)
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
//!   like any other (it does not check received lengths against its MTU), and
//!   it never verifies received checksums on this device: the peer is the
//!   local kernel.
//! - Send: smoltcp leaves TCP checksums to the device, and the
//!   [`Coalescer`] merges consecutive full-size segments of a connection
//!   into one large segment whose checksum the kernel completes. The shell
//!   calls [`TunDevice::flush`] before it sleeps.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::EthernetFrame;

use super::coalesce::{Coalescer, Sink};
use super::vnet::{self, VnetHdr};
use crate::sys::tuntap;

/// The largest packet a TUN/TAP device can hand over: an IP packet of
/// 65535 bytes, plus an Ethernet header on TAP.
const MAX_PACKET: usize = 65_535 + 14;

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
    tx: Tx,
    /// A read failed with something other than "nothing to read".
    error: Option<io::Error>,
}

/// The sending half: where smoltcp builds packets, and the coalescer.
struct Tx {
    /// Where smoltcp builds each packet, after room for the virtio-net
    /// header when there is one.
    staging: Vec<u8>,
    /// With a virtio-net header only.
    coalescer: Option<Coalescer>,
    stats: DevStats,
}

/// The descriptor, as the place finished frames are written to.
struct FdSink<'a> {
    fd: BorrowedFd<'a>,
    stats: &'a mut DevStats,
}

impl TunDevice {
    /// A device over the descriptor [`tuntap::open`] attached, whose
    /// interface has IP MTU `ip_mtu`. With a virtio-net header, asks the
    /// kernel for checksum and TCP segmentation offload (and does without
    /// if refused).
    pub fn new(attached: tuntap::Attached, mode: tuntap::Mode, ip_mtu: usize) -> Self {
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
        // Larger than any MTU, so a packet is never truncated even if
        // someone raises the interface's MTU while we run.
        let room = hdr + MAX_PACKET;
        TunDevice {
            fd,
            medium,
            mtu: ip_mtu + l2,
            rx: vec![0; room],
            tx: Tx {
                staging: vec![0; if vnet_hdr { room } else { ip_mtu + l2 }],
                coalescer: vnet_hdr.then(|| Coalescer::new(l2, room)),
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
        self.tx.stats
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
        if self.error.is_some() {
            return None;
        }
        let n = match tuntap::read(self.fd.as_fd(), &mut self.rx) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) => {
                self.error = Some(e);
                return None;
            }
        };
        self.tx.stats.rx += 1;
        let packet = if self.vnet_hdr() {
            received(&self.rx[..n])
        } else {
            &self.rx[..n]
        };
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
        caps.max_transmission_unit = self.mtu;
        // The peer is the local kernel, which hands over packets with
        // correct checksums (or, with offloads, none it expects checked):
        // compute them on send, skip verifying them on receive. With a
        // virtio-net header TCP's are the device's (see the module docs).
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

/// The packet after the virtio-net header of what a read returned; empty
/// (smoltcp skips it) if the header is cut short or announces a kind of
/// large segment other than TCP's, which the device did not ask for.
fn received(read: &[u8]) -> &[u8] {
    let Some((hdr, packet)) = VnetHdr::split(read) else {
        return &[];
    };
    match hdr.gso_type & !vnet::GSO_ECN {
        vnet::GSO_NONE | vnet::GSO_TCPV4 | vnet::GSO_TCPV6 => packet,
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
            stats,
        } = self.tx;
        let start = if coalescer.is_some() { vnet::LEN } else { 0 };
        // smoltcp never asks for more than the MTU, which the buffer holds;
        // should it, grow once rather than fail.
        if staging.len() < start + len {
            staging.resize(start + len, 0);
        }
        let result = f(&mut staging[start..start + len]);
        stats.tx += 1;
        let mut sink = FdSink { fd: self.fd, stats };
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
