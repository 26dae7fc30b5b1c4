//! For the tests of the smoltcp adapters and the guard: packets built with
//! `smoltcp::wire`, as a peer would send them (correct checksums), and
//! [`Wire`], an in-memory device that carries them.

#![allow(dead_code)]

use std::collections::VecDeque;

use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::wire::{
    Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol, IpRepr, Ipv4Address,
    Ipv6Address, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};

/// An IPv4 or IPv6 header around `payload_len` bytes of `protocol`, with
/// the payload written by `emit` (given the source and destination).
/// Panics on mixed address families.
pub fn ip(
    src: IpAddress,
    dst: IpAddress,
    protocol: IpProtocol,
    payload_len: usize,
    emit: impl FnOnce(&mut [u8], IpAddress, IpAddress),
) -> Vec<u8> {
    let repr = IpRepr::new(src, dst, protocol, payload_len, 64);
    let mut buf = vec![0; repr.buffer_len()];
    repr.emit(&mut buf[..], &ChecksumCapabilities::default());
    emit(&mut buf[repr.header_len()..], src, dst);
    buf
}

/// A TCP segment from `src` to `dst` with `control` (and an ACK number if
/// `ack` is given).
pub fn tcp(
    src: (IpAddress, u16),
    dst: (IpAddress, u16),
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: src.1,
        dst_port: dst.1,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 64_000,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(1400),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    ip(
        src.0,
        dst.0,
        IpProtocol::Tcp,
        repr.buffer_len(),
        |buf, s, d| {
            let caps = ChecksumCapabilities::default();
            repr.emit(&mut TcpPacket::new_unchecked(buf), &s, &d, &caps);
        },
    )
}

/// A SYN from `src` to `dst`.
pub fn syn(src: (IpAddress, u16), dst: (IpAddress, u16)) -> Vec<u8> {
    tcp(src, dst, TcpControl::Syn, 1000, None, &[])
}

/// A UDP datagram.
pub fn udp(src: (IpAddress, u16), dst: (IpAddress, u16), payload: &[u8]) -> Vec<u8> {
    let repr = UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    };
    ip(
        src.0,
        dst.0,
        IpProtocol::Udp,
        8 + payload.len(),
        |buf, s, d| {
            let caps = ChecksumCapabilities::default();
            let mut p = UdpPacket::new_unchecked(buf);
            repr.emit(
                &mut p,
                &s,
                &d,
                payload.len(),
                |b| b.copy_from_slice(payload),
                &caps,
            );
        },
    )
}

/// An ICMP (v4 or v6, after the addresses) echo request.
pub fn ping(src: IpAddress, dst: IpAddress, data: &[u8]) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    match (src, dst) {
        (IpAddress::Ipv4(_), _) => {
            let repr = Icmpv4Repr::EchoRequest {
                ident: 7,
                seq_no: 1,
                data,
            };
            ip(
                src,
                dst,
                IpProtocol::Icmp,
                repr.buffer_len(),
                |buf, _, _| {
                    repr.emit(&mut Icmpv4Packet::new_unchecked(buf), &caps);
                },
            )
        }
        (IpAddress::Ipv6(s), IpAddress::Ipv6(d)) => {
            let repr = Icmpv6Repr::EchoRequest {
                ident: 7,
                seq_no: 1,
                data,
            };
            ip(
                src,
                dst,
                IpProtocol::Icmpv6,
                repr.buffer_len(),
                |buf, _, _| {
                    repr.emit(&s, &d, &mut Icmpv6Packet::new_unchecked(buf), &caps);
                },
            )
        }
        _ => panic!("mixed address families"),
    }
}

/// `a.b.c.d` as an address.
pub fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddress {
    IpAddress::Ipv4(Ipv4Address::new(a, b, c, d))
}

/// `fd00::last` as an address.
pub fn v6(last: u16) -> IpAddress {
    IpAddress::Ipv6(Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, last))
}

/// Packets in and out, IP medium, MTU 1500.
#[derive(Default)]
pub struct Wire {
    pub inbound: VecDeque<Vec<u8>>,
    pub outbound: Vec<Vec<u8>>,
}

pub struct Rx(Vec<u8>);

pub struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let result = f(&mut packet);
        self.0.push(packet);
        result
    }
}

impl Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let packet = self.inbound.pop_front()?;
        Some((Rx(packet), Tx(&mut self.outbound)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.outbound))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// Buffers that live as long as the test (a few KiB, leaked).
pub fn leak<T: Clone>(item: T, n: usize) -> &'static mut [T] {
    Box::leak(vec![item; n].into_boxed_slice())
}
