//! The UDP adapter over a real smoltcp interface: IPv4 packets built by
//! hand go in through an in-memory device, and the echoes that come out are
//! parsed back.

use std::collections::VecDeque;

use selecho_core::smoltcp::{BindError, SmolUdpEcho, to_smoltcp};
use selecho_core::{DatagramConfig, Instant};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::socket::udp;
use smoltcp::wire::{
    HardwareAddress, IpAddress, IpCidr, IpListenEndpoint, IpProtocol, Ipv4Address, Ipv4Packet,
    Ipv4Repr, UdpPacket, UdpRepr,
};

const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
const SECOND: Ipv4Address = Ipv4Address::new(10, 0, 0, 3);
const CLIENT: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const PORT: u16 = 7007;

/// Packets in and out, IP medium, MTU 1500.
#[derive(Default)]
struct Wire {
    inbound: VecDeque<Vec<u8>>,
    outbound: Vec<Vec<u8>>,
}

struct Rx(Vec<u8>);

struct Tx<'a>(&'a mut Vec<Vec<u8>>);

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

/// A UDP datagram as an IPv4 packet.
fn packet(from: (Ipv4Address, u16), to: (Ipv4Address, u16), payload: &[u8]) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: from.1,
        dst_port: to.1,
    };
    let ip = Ipv4Repr {
        src_addr: from.0,
        dst_addr: to.0,
        next_header: IpProtocol::Udp,
        payload_len: 8 + payload.len(),
        hop_limit: 64,
    };
    let mut bytes = vec![0; ip.buffer_len() + ip.payload_len];
    let caps = ChecksumCapabilities::default();
    let mut ip_packet = Ipv4Packet::new_unchecked(&mut bytes);
    ip.emit(&mut ip_packet, &caps);
    let mut udp_packet = UdpPacket::new_unchecked(ip_packet.payload_mut());
    udp.emit(
        &mut udp_packet,
        &from.0.into(),
        &to.0.into(),
        payload.len(),
        |buf| buf.copy_from_slice(payload),
        &caps,
    );
    bytes
}

/// (source, destination, payload) of a UDP packet the server sent.
fn parse(bytes: &[u8]) -> ((Ipv4Address, u16), (Ipv4Address, u16), Vec<u8>) {
    let ip = Ipv4Packet::new_checked(bytes).expect("an IPv4 packet");
    assert_eq!(ip.next_header(), IpProtocol::Udp);
    let udp = UdpPacket::new_checked(ip.payload()).expect("a UDP packet");
    (
        (ip.src_addr(), udp.src_port()),
        (ip.dst_addr(), udp.dst_port()),
        udp.payload().to_vec(),
    )
}

/// Buffers that live as long as the test (a few KiB, leaked).
fn leak<T: Clone>(item: T, n: usize) -> &'static mut [T] {
    Box::leak(vec![item; n].into_boxed_slice())
}

/// An interface on 10.0.0.2/24 and 10.0.0.3/24 with one UDP socket (16
/// packets and 8 KiB to receive, as given to send) and an adapter with 8
/// records in 4 KiB.
struct Server {
    wire: Wire,
    iface: Interface,
    sockets: SocketSet<'static>,
    handle: SocketHandle,
    udp: Box<SmolUdpEcho<8, 4096, 4>>,
    now: Instant,
}

impl Server {
    fn new(tx_packets: usize, tx_bytes: usize) -> Server {
        let mut wire = Wire::default();
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ip),
            &mut wire,
            to_smoltcp(Instant::ZERO),
        );
        iface.update_ip_addrs(|addrs| {
            addrs.push(IpCidr::new(SERVER.into(), 24)).unwrap();
            addrs.push(IpCidr::new(SECOND.into(), 24)).unwrap();
        });
        let socket = udp::Socket::new(
            udp::PacketBuffer::new(leak(udp::PacketMetadata::EMPTY, 16), leak(0, 8192)),
            udp::PacketBuffer::new(
                leak(udp::PacketMetadata::EMPTY, tx_packets),
                leak(0, tx_bytes),
            ),
        );
        let storage: &'static mut [SocketStorage<'static>; 1] =
            Box::leak(Box::new([SocketStorage::EMPTY]));
        let mut sockets = SocketSet::new(&mut storage[..]);
        let handle = sockets.add(socket);
        Server {
            wire,
            iface,
            sockets,
            handle,
            udp: Box::new(SmolUdpEcho::new(DatagramConfig::new())),
            now: Instant::from_secs(1),
        }
    }

    fn bind(&mut self, endpoint: impl Into<IpListenEndpoint>) -> Result<(), BindError> {
        self.udp.bind(&mut self.sockets, self.handle, endpoint)
    }

    fn send(&mut self, from: (Ipv4Address, u16), to: (Ipv4Address, u16), payload: &[u8]) {
        self.wire.inbound.push_back(packet(from, to, payload));
    }

    /// One turn of the shell; returns the datagrams sent.
    fn turn(&mut self) -> Vec<Sent> {
        let stamp = to_smoltcp(self.now);
        self.iface.poll(stamp, &mut self.wire, &mut self.sockets);
        self.udp.poll(&mut self.sockets, self.now);
        self.iface.poll(stamp, &mut self.wire, &mut self.sockets);
        self.wire.outbound.drain(..).map(|p| parse(&p)).collect()
    }
}

type Sent = ((Ipv4Address, u16), (Ipv4Address, u16), Vec<u8>);

#[test]
fn echoes_every_size_from_the_address_it_was_sent_to() {
    let mut server = Server::new(4, 4096);
    server.bind(PORT).unwrap();
    for (i, len) in [0, 1, 2, 100, 1471, 1472].into_iter().enumerate() {
        let to = if i % 2 == 0 { SERVER } else { SECOND };
        let data: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
        server.send((CLIENT, 40000), (to, PORT), &data);
        assert_eq!(
            server.turn(),
            [((to, PORT), (CLIENT, 40000), data)],
            "{len} bytes to {to}"
        );
    }
    assert_eq!(server.udp.counters().echoed, 6);
}

#[test]
fn a_full_transmit_buffer_keeps_datagrams_in_order() {
    let mut server = Server::new(1, 4096);
    server.bind(PORT).unwrap();
    for i in 0..5u8 {
        server.send((CLIENT, 40000), (SERVER, PORT), &[i; 10]);
    }
    let mut got = Vec::new();
    for _ in 0..10 {
        got.extend(server.turn().into_iter().map(|(_, _, data)| data[0]));
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);
    let c = server.udp.counters();
    assert_eq!((c.received, c.echoed, c.dropped()), (5, 5, 0));
}

#[test]
fn loops_broadcasts_and_multicasts_are_not_answered() {
    let mut server = Server::new(4, 4096);
    server.bind((IpAddress::from(SERVER), PORT)).unwrap();
    server.send((CLIENT, 19), (SERVER, PORT), b"chargen");
    server.send((CLIENT, PORT), (SERVER, PORT), b"another echo server");
    server.send((CLIENT, 40000), (Ipv4Address::BROADCAST, PORT), b"all");
    server.send(
        (CLIENT, 40000),
        (Ipv4Address::new(10, 0, 0, 255), PORT),
        b"subnet",
    );
    assert_eq!(server.turn(), []);
    assert_eq!(server.udp.counters().dropped_loop, 4);
    server.send((CLIENT, 40000), (SERVER, PORT), b"fine");
    assert_eq!(server.turn().len(), 1);
}

#[test]
fn a_datagram_too_big_for_the_transmit_buffer_fails_once() {
    let mut server = Server::new(4, 512);
    server.bind(PORT).unwrap();
    server.send((CLIENT, 40000), (SERVER, PORT), &[1; 1000]);
    server.send((CLIENT, 40000), (SERVER, PORT), &[2; 100]);
    let sent = server.turn();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2, [2; 100]);
    assert_eq!(server.udp.counters().send_failed, 1);
}

#[test]
fn binds_once() {
    let mut server = Server::new(4, 4096);
    assert_eq!(server.bind(0), Err(BindError::PortZero));
    server.bind(PORT).unwrap();
    assert_eq!(server.bind(PORT), Err(BindError::Bound));
    assert!(server.udp.echo().config().refuses_port(PORT));
}
