//! IPv4 fragments, taken out of the frames before smoltcp sees them, and
//! counted: [`Screen`], and [`Screened`], a device that applies it.
//!
//! The firmware's smoltcp reassembles nothing (its `proto-ipv4-fragmentation`
//! is off: it costs 3.9 KiB of flash before its buffers hold more than a
//! frame, and with 8 KiB buffers smoltcp builds its interface on a 25 KiB
//! stack frame; the README has the figures), so the largest datagram echoed
//! is what one frame carries, [`MAX_DATAGRAM`]. Without reassembly smoltcp
//! refuses fragments silently; the screen drops them first, so that they
//! are counted, and so that whatever smoltcp is built with, no fragment
//! reaches a socket.
//!
//! A first fragment of a UDP datagram from a unicast source to one of the
//! echo's ports also counts as that datagram: received, and dropped as too
//! long ([`dropped_truncated`](DatagramCounters::dropped_truncated)), or as
//! never answered ([`dropped_loop`](DatagramCounters::dropped_loop)) if it
//! comes from a port the echo never answers — what the machine counts for
//! a datagram it cannot take whole. And the screen notes each whole UDP
//! packet it lets through ([`Screen::take_udp`]): only after one can a UDP
//! socket have received a datagram.

use core::net::Ipv4Addr;

use selecho_core::{DatagramConfig, DatagramCounters};
use smoltcp::phy::{self, Device, DeviceCapabilities, PacketMeta};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, UdpPacket,
};

/// The largest UDP datagram one Ethernet frame carries over IPv4: an MTU of
/// 1500 less the IPv4 (20) and UDP (8) headers.
pub const MAX_DATAGRAM: usize = 1472;

/// What the screen has taken out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, defmt::Format)]
pub struct Counts {
    /// IPv4 fragments dropped, of any protocol and for any address.
    pub fragments: u64,
    /// The UDP datagrams for the echo among them (one per first
    /// fragment from a unicast source): `received`, and `dropped_truncated`
    /// or `dropped_loop`.
    pub udp: DatagramCounters,
}

/// Drops IPv4 fragments and counts them; see the [module docs](self).
#[derive(Debug)]
pub struct Screen {
    /// The firmware's address: datagrams for it are the echo's.
    address: Ipv4Addr,
    /// The echo's configuration: its ports (its
    /// [`own_ports`](DatagramConfig::own_ports)) and which source ports
    /// it never answers.
    config: DatagramConfig,
    counts: Counts,
    /// A whole UDP packet went through since [`take_udp`](Self::take_udp).
    udp: bool,
}

impl Screen {
    /// A screen for an echo at `address` configured as `config`, on the
    /// ports that are its own ([`DatagramConfig::own_ports`]).
    pub fn new(address: Ipv4Addr, config: DatagramConfig) -> Screen {
        Screen {
            address,
            config,
            counts: Counts::default(),
            udp: false,
        }
    }

    /// What it has taken out so far.
    pub const fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Whether a whole UDP packet went through since the last call: only
    /// then can a UDP socket have received a datagram.
    pub fn take_udp(&mut self) -> bool {
        core::mem::take(&mut self.udp)
    }

    /// Whether smoltcp may see the Ethernet frame `frame`: anything but an
    /// IPv4 fragment. A fragment is counted; what does not parse is
    /// smoltcp's to refuse.
    pub fn admit(&mut self, frame: &[u8]) -> bool {
        let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
            return true;
        };
        if ethernet.ethertype() != EthernetProtocol::Ipv4 {
            return true;
        }
        let Ok(ip) = Ipv4Packet::new_checked(ethernet.payload()) else {
            return true;
        };
        if !ip.more_frags() && ip.frag_offset() == 0 {
            self.udp |= ip.next_header() == IpProtocol::Udp;
            return true;
        }
        self.counts.fragments += 1;
        // smoltcp drops a whole packet from a source that is not unicast
        // before any socket sees it: the machine would not count it either.
        let first_for_us = ip.frag_offset() == 0
            && ip.next_header() == IpProtocol::Udp
            && ip.dst_addr() == self.address
            && IpAddress::Ipv4(ip.src_addr()).is_unicast()
            && ip.verify_checksum();
        if first_for_us {
            self.count_datagram(&ip);
        }
        false
    }

    /// Counts the datagram whose first fragment is `ip`, if it is for one
    /// of the echo's ports.
    fn count_datagram(&mut self, ip: &Ipv4Packet<&[u8]>) {
        let payload = ip.payload();
        // The UDP header's ports (its length field is the whole datagram's,
        // longer than this fragment: `new_checked` would refuse it).
        if payload.len() < 8 {
            return;
        }
        let udp = UdpPacket::new_unchecked(payload);
        // 0 fills the unused places: no port of the echo's.
        let port = udp.dst_port();
        if port == 0 || !self.config.own_ports.contains(&port) {
            return;
        }
        let counters = &mut self.counts.udp;
        counters.received += 1;
        if self.config.refuses_port(udp.src_port()) {
            counters.dropped_loop += 1;
        } else {
            counters.dropped_truncated += 1;
        }
    }
}

/// A device whose received frames pass a [`Screen`] first: a frame it
/// refuses reaches smoltcp as an empty frame, which smoltcp skips.
pub struct Screened<'a, D> {
    device: &'a mut D,
    screen: &'a mut Screen,
}

impl<'a, D: Device> Screened<'a, D> {
    /// `device`'s frames through `screen`.
    pub fn new(device: &'a mut D, screen: &'a mut Screen) -> Self {
        Screened { device, screen }
    }

    /// The screen, for [`Screen::take_udp`].
    pub fn screen(&mut self) -> &mut Screen {
        self.screen
    }
}

impl<D: Device> Device for Screened<'_, D> {
    type RxToken<'t>
        = ScreenedRx<'t, D::RxToken<'t>>
    where
        Self: 't;
    type TxToken<'t>
        = D::TxToken<'t>
    where
        Self: 't;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let Screened { device, screen } = self;
        let (rx, tx) = device.receive(timestamp)?;
        Some((ScreenedRx { token: rx, screen }, tx))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.device.transmit(timestamp)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.device.capabilities()
    }
}

/// A received frame, looked at by the screen before smoltcp gets it.
pub struct ScreenedRx<'t, T> {
    token: T,
    screen: &'t mut Screen,
}

impl<T: phy::RxToken> phy::RxToken for ScreenedRx<'_, T> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let ScreenedRx { token, screen } = self;
        token.consume(|frame| {
            if screen.admit(frame) {
                f(frame)
            } else {
                f(&[])
            }
        })
    }

    fn meta(&self) -> PacketMeta {
        self.token.meta()
    }
}
