//! The TCP adapter's room for SYNs over a real smoltcp interface: any free
//! slot serves any port, half-open connections expire, and the oldest is
//! dropped for a new SYN when every slot is taken. Packets go in as a
//! shell's would: through the guard, SYNs through `make_room` first.

mod net;

use net::{Wire, leak, syn, tcp, v4};
use selecho_core::smoltcp::{Checksums, Guard, Inbound, Room, SmolEcho, to_smoltcp};
use selecho_core::{Config, Duration, Instant};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
use smoltcp::socket::tcp as tcp_socket;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Packet, TcpControl, TcpPacket};

fn ours() -> IpAddress {
    v4(10, 0, 0, 2)
}

/// A TCP segment the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seg {
    to: (IpAddress, u16),
    from_port: u16,
    syn: bool,
    rst: bool,
    seq: u32,
    payload: Vec<u8>,
}

struct Server {
    wire: Wire,
    iface: Interface,
    sockets: SocketSet<'static>,
    adapter: Box<SmolEcho<4, 1024>>,
    guard: Guard,
    now: Instant,
}

impl Server {
    /// `slots` sockets spread over `ports`.
    fn new(slots: usize, ports: &[u16]) -> Server {
        let mut wire = Wire::default();
        let mut iface = Interface::new(
            IfaceConfig::new(HardwareAddress::Ip),
            &mut wire,
            to_smoltcp(Instant::ZERO),
        );
        let cidr = IpCidr::new(ours(), 24);
        iface.update_ip_addrs(|addrs| addrs.push(cidr).unwrap());
        let storage = (0..slots).map(|_| SocketStorage::EMPTY).collect::<Vec<_>>();
        let mut sockets = SocketSet::new(Vec::leak(storage));
        let handles: Vec<_> = (0..slots)
            .map(|_| {
                sockets.add(tcp_socket::Socket::new(
                    tcp_socket::SocketBuffer::new(leak(0, 4096)),
                    tcp_socket::SocketBuffer::new(leak(0, 4096)),
                ))
            })
            .collect();
        let mut adapter = Box::new(SmolEcho::new(Config::new()));
        adapter.add_sockets(&mut sockets, handles, ports).unwrap();
        Server {
            wire,
            iface,
            sockets,
            adapter,
            guard: Guard::new(&[cidr]),
            now: Instant::from_secs(1),
        }
    }

    /// One packet in, as a shell delivers it; what `make_room` did if it
    /// was a SYN.
    fn deliver(&mut self, packet: Vec<u8>) -> Option<Room> {
        let inbound = self.guard.inspect(&packet, Checksums::Verify).unwrap();
        let room = match inbound {
            Inbound::Packet { syn: Some(syn) } => {
                Some(self.adapter.make_room(&mut self.sockets, &syn, self.now))
            }
            _ => None,
        };
        self.wire.inbound.push_back(packet);
        let stamp = to_smoltcp(self.now);
        self.iface
            .poll_ingress_single(stamp, &mut self.wire, &mut self.sockets);
        self.adapter.relisten(&mut self.sockets, self.now);
        room
    }

    /// The adapter's turn and smoltcp's egress; the segments sent.
    fn turn(&mut self) -> Vec<Seg> {
        self.adapter.poll(&mut self.sockets, self.now);
        self.iface
            .poll(to_smoltcp(self.now), &mut self.wire, &mut self.sockets);
        self.wire.outbound.drain(..).map(|p| parse(&p)).collect()
    }

    /// A completed handshake from `from` to `port`.
    fn connect(&mut self, from: (IpAddress, u16), port: u16) {
        self.deliver(syn(from, (ours(), port)));
        let syn_ack = self.syn_ack_to(from);
        self.complete(from, port, syn_ack);
    }

    /// The handshake's last ACK from `from` to `port`, for the SYN-ACK
    /// numbered `syn_ack`, and a turn.
    fn complete(&mut self, from: (IpAddress, u16), port: u16, syn_ack: u32) {
        self.deliver(tcp(
            from,
            (ours(), port),
            TcpControl::None,
            1001,
            Some(syn_ack + 1),
            &[],
        ));
        self.turn();
    }

    /// The sequence number of the SYN-ACK this turn sends to `to`.
    fn syn_ack_to(&mut self, to: (IpAddress, u16)) -> u32 {
        let sent = self.turn();
        let seg = sent
            .iter()
            .find(|s| s.to == to && s.syn)
            .unwrap_or_else(|| panic!("a SYN-ACK to {to:?} in {sent:?}"));
        seg.seq
    }
}

fn parse(bytes: &[u8]) -> Seg {
    let ip = Ipv4Packet::new_checked(bytes).expect("IPv4");
    let t = TcpPacket::new_checked(ip.payload()).expect("TCP");
    Seg {
        to: (IpAddress::Ipv4(ip.dst_addr()), t.dst_port()),
        from_port: t.src_port(),
        syn: t.syn(),
        rst: t.rst(),
        seq: t.seq_number().0 as u32,
        payload: t.payload().to_vec(),
    }
}

fn client(n: u8) -> (IpAddress, u16) {
    (v4(10, 0, 0, 100 + n), 40000 + u16::from(n))
}

#[test]
fn any_free_slot_serves_any_port() {
    // One slot, two ports: the second port is served too.
    let mut server = Server::new(1, &[7, 8]);
    assert_eq!(
        server.deliver(syn(client(1), (ours(), 8))),
        Some(Room::Moved)
    );
    let syn_ack = server.syn_ack_to(client(1));
    server.deliver(tcp(
        client(1),
        (ours(), 8),
        TcpControl::Psh,
        1001,
        Some(syn_ack + 1),
        b"hi",
    ));
    let sent = server.turn();
    assert!(
        sent.iter()
            .any(|s| s.to == client(1) && s.from_port == 8 && s.payload == b"hi"),
        "echoed on port 8: {sent:?}"
    );
    // The only slot is busy: port 7 is refused now.
    assert_eq!(
        server.deliver(syn(client(2), (ours(), 7))),
        Some(Room::Full)
    );
    assert!(server.turn().iter().any(|s| s.to == client(2) && s.rst));

    // Four slots, two ports: all four serve one port.
    let mut server = Server::new(4, &[7, 8]);
    for n in 0..4 {
        server.connect(client(n), 7);
    }
    assert_eq!(server.adapter.echo().len(), 4);
    assert_eq!(
        server.deliver(syn(client(9), (ours(), 8))),
        Some(Room::Full)
    );
}

#[test]
fn the_oldest_half_open_connection_makes_room() {
    let mut server = Server::new(2, &[7]);
    // Two spoofed SYNs take both slots and never complete.
    assert_eq!(
        server.deliver(syn(client(1), (ours(), 7))),
        Some(Room::Ready)
    );
    assert_eq!(
        server.deliver(syn(client(2), (ours(), 7))),
        Some(Room::Ready)
    );
    server.turn();
    // A retransmitted SYN is its connection's: nothing is dropped for it.
    assert_eq!(
        server.deliver(syn(client(2), (ours(), 7))),
        Some(Room::Ready)
    );
    // A real client: the oldest (client 1) goes, silently.
    assert_eq!(
        server.deliver(syn(client(3), (ours(), 7))),
        Some(Room::Evicted)
    );
    let sent = server.turn();
    assert!(sent.iter().all(|s| s.to != client(1)), "{sent:?}");
    let syn_ack = sent
        .iter()
        .find(|s| s.to == client(3) && s.syn)
        .unwrap()
        .seq;
    server.complete(client(3), 7, syn_ack);
    assert_eq!(server.adapter.echo().len(), 1, "the real client got in");
    // Then client 2 goes for the next one.
    assert_eq!(
        server.deliver(syn(client(4), (ours(), 7))),
        Some(Room::Evicted)
    );
    assert_eq!(server.adapter.packet_counters().syn_evicted, 2);
}

#[test]
fn half_open_connections_expire() {
    let mut server = Server::new(1, &[7]);
    server.deliver(syn(client(1), (ours(), 7)));
    server.syn_ack_to(client(1));
    let deadline = server
        .adapter
        .poll_at()
        .expect("a deadline for the half-open connection");
    assert_eq!(deadline, server.now + Duration::from_secs(3));
    server.now = deadline;
    server.turn();
    assert_eq!(server.adapter.packet_counters().syn_expired, 1);
    assert_eq!(server.adapter.poll_at(), None);
    // The slot listens again: a real client is served.
    server.connect(client(2), 7);
    assert_eq!(server.adapter.echo().len(), 1);
    // A late ACK of the expired handshake meets a listener: RST.
    server.deliver(tcp(
        client(1),
        (ours(), 7),
        TcpControl::None,
        1001,
        Some(1),
        &[],
    ));
    assert!(server.turn().iter().any(|s| s.to == client(1) && s.rst));
}

#[test]
fn other_ports_and_shutdown_are_not_served() {
    let mut server = Server::new(2, &[7]);
    assert_eq!(
        server.deliver(syn(client(1), (ours(), 9))),
        Some(Room::NotServed)
    );
    server.adapter.begin_shutdown();
    server.turn();
    assert_eq!(
        server.deliver(syn(client(2), (ours(), 7))),
        Some(Room::NotServed)
    );
    assert!(server.turn().iter().any(|s| s.to == client(2) && s.rst));
}

#[test]
fn a_flood_of_spoofed_syns_never_keeps_a_client_out() {
    let mut server = Server::new(4, &[7]);
    for round in 0..50u8 {
        for n in 0..10u8 {
            let spoofed = (v4(10, 1, round, n), 1000 + u16::from(n));
            server.deliver(syn(spoofed, (ours(), 7)));
        }
        server.turn();
    }
    server.connect(client(1), 7);
    assert_eq!(server.adapter.echo().len(), 1, "served among the flood");
    assert!(server.adapter.packet_counters().syn_evicted >= 496);
}
