//! A smoltcp [`Device`] over a TUN/TAP descriptor that never allocates per
//! packet: it reads each packet into one receive buffer and builds each
//! outgoing one in one transmit buffer, both owned by the device and lent to
//! smoltcp through the tokens. (smoltcp's own `TunTapInterface` allocates a
//! `Vec` for every packet in each direction.)

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::EthernetFrame;

use crate::sys::tun;

/// The largest packet a TUN/TAP device can hand over: an IP packet of
/// 65535 bytes, plus an Ethernet header on TAP.
const MAX_PACKET: usize = 65_535 + 14;

/// Packet counts, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct DevStats {
    /// Packets read from the device.
    pub rx: u64,
    /// Packets written to the device.
    pub tx: u64,
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
    tx: Vec<u8>,
    /// A read failed with something other than "nothing to read".
    error: Option<io::Error>,
    stats: DevStats,
}

impl TunDevice {
    /// A device over `fd` (non-blocking, attached by [`tun::open`]) whose
    /// interface has IP MTU `ip_mtu`.
    pub fn new(fd: OwnedFd, mode: tun::Mode, ip_mtu: usize) -> Self {
        let (medium, mtu) = match mode {
            tun::Mode::Tun => (Medium::Ip, ip_mtu),
            tun::Mode::Tap => (
                Medium::Ethernet,
                ip_mtu + EthernetFrame::<&[u8]>::header_len(),
            ),
        };
        TunDevice {
            fd,
            medium,
            mtu,
            // Larger than any MTU, so a packet is never truncated even if
            // someone raises the interface's MTU while we run.
            rx: vec![0; MAX_PACKET],
            tx: vec![0; mtu],
            error: None,
            stats: DevStats::default(),
        }
    }

    /// The first read error since the last call, if any: the device is gone
    /// or broken, and the shell should stop.
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }

    /// Packet counts so far.
    pub fn stats(&self) -> DevStats {
        self.stats
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
                    self.stats.rx += 1;
                    let rx = RxToken {
                        packet: &self.rx[..n],
                    };
                    let tx = TxToken {
                        fd: self.fd.as_fd(),
                        buf: &mut self.tx,
                        stats: &mut self.stats,
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
            buf: &mut self.tx,
            stats: &mut self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = self.medium;
        caps.max_transmission_unit = self.mtu;
        // The peer is the local kernel, which hands over packets with
        // correct checksums (the device offers no checksum offload): compute
        // them on send, skip verifying them on receive.
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        checksum.tcp = Checksum::Tx;
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
    buf: &'a mut Vec<u8>,
    stats: &'a mut DevStats,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // smoltcp never asks for more than the MTU, which the buffer holds;
        // should it, grow once rather than fail.
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let packet = &mut self.buf[..len];
        let result = f(packet);
        loop {
            match tun::write(self.fd, packet) {
                Ok(_) => self.stats.tx += 1,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.stats.tx_dropped += 1;
                    log::debug!("tun: dropped a {len}-byte packet: {e}");
                }
            }
            return result;
        }
    }
}
