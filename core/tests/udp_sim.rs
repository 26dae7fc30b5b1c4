//! The datagram machine through the UDP simulator: clients, socket buffers
//! and a fake clock in front of the real machine.

use std::net::SocketAddr;

use proptest::prelude::*;
use selecho_core::sim::SimError;
use selecho_core::sim::udp::{RecvMode, UdpSim};
use selecho_core::{DatagramConfig, Duration, RateLimit};

/// 4 datagrams in 256 bytes, 2 sources, 4 clients: small enough to fill.
type Small = UdpSim<4, 256, 2, 4>;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn unlimited() -> DatagramConfig {
    DatagramConfig::new().with_rate_limit(None)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// Every echo waiting at `at`, in order.
fn recv_all<const D: usize, const B: usize, const S: usize, const C: usize>(
    sim: &mut UdpSim<D, B, S, C>,
    at: SocketAddr,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0; 70_000];
    while let Some(len) = sim.recv(at, &mut buf) {
        out.push(buf[..len].to_vec());
    }
    out
}

#[test]
fn every_size_echoes_exactly_in_both_receive_modes() {
    for mode in [RecvMode::Lend, RecvMode::Copy { buf: 256 }] {
        let mut sim = Small::new(unlimited());
        sim.set_recv_mode(mode);
        let client = addr("10.0.0.1:40000");
        sim.bind(client).unwrap();
        for len in 0..=256 {
            let data = pattern(len, len as u8);
            assert!(sim.send(client, &data));
            sim.drive().unwrap();
            assert_eq!(recv_all(&mut sim, client), [data], "{len} bytes, {mode:?}");
        }
        assert_eq!(sim.echo().counters().echoed, 257);
    }
}

#[test]
fn long_datagrams_are_dropped_never_shortened() {
    let client = addr("10.0.0.1:40000");
    for (mode, len) in [
        (RecvMode::Lend, 257),
        (RecvMode::Copy { buf: 100 }, 101),
        (RecvMode::Copy { buf: 1000 }, 257),
    ] {
        let mut sim = Small::new(unlimited());
        sim.set_recv_mode(mode);
        sim.bind(client).unwrap();
        assert!(sim.send(client, &pattern(len, 1)));
        sim.drive().unwrap();
        assert_eq!(sim.pending(client), 0, "{mode:?}");
        assert_eq!(sim.echo().counters().dropped_truncated, 1);
    }
    let mut sim = Small::new(unlimited());
    assert!(!sim.send(client, &[0; 65_508]), "longer than UDP allows");
    assert_eq!(sim.lost(), 1);
}

#[test]
fn a_blocked_socket_keeps_the_oldest_and_drops_the_newest() {
    let mut sim = Small::new(unlimited());
    let client = addr("10.0.0.1:40000");
    sim.bind(client).unwrap();
    sim.set_send_limit(Some(0));
    for i in 0..6u8 {
        assert!(sim.send(client, &[i; 8]));
        sim.drive().unwrap();
    }
    assert_eq!(sim.echo().len(), 4);
    assert_eq!(sim.echo().counters().dropped_full, 2);
    // One datagram a step: the socket drains slowly, in order.
    sim.set_send_limit(Some(1));
    assert!(sim.step());
    assert_eq!(sim.pending(client), 1);
    sim.set_send_limit(None);
    sim.drive().unwrap();
    let got: Vec<u8> = recv_all(&mut sim, client).iter().map(|d| d[0]).collect();
    assert_eq!(got, [0, 1, 2, 3]);
}

#[test]
fn rate_limit_follows_the_fake_clock() {
    let limit = RateLimit::new(3, Duration::from_secs(1));
    let mut sim = Small::new(DatagramConfig::new().with_rate_limit(Some(limit)));
    let client = addr("10.0.0.1:40000");
    sim.bind(client).unwrap();
    for _ in 0..5 {
        assert!(sim.send(client, b"x"));
        sim.drive().unwrap();
    }
    assert_eq!(recv_all(&mut sim, client).len(), 3);
    sim.advance(Duration::from_millis(999));
    sim.send(client, b"x");
    sim.drive().unwrap();
    assert_eq!(sim.pending(client), 0);
    sim.advance(Duration::from_millis(1));
    sim.send(client, b"x");
    sim.drive().unwrap();
    assert_eq!(sim.pending(client), 1);
    assert_eq!(sim.echo().counters().dropped_rate, 3);
}

#[test]
fn the_network_loses_what_has_nowhere_to_go() {
    let mut sim = Small::new(unlimited());
    let (bound, unbound) = (addr("10.0.0.1:40000"), addr("10.0.0.2:40000"));
    sim.bind(bound).unwrap();
    assert!(sim.send(unbound, b"forged"));
    for _ in 0..5 {
        sim.send(bound, b"y");
        sim.drive().unwrap();
    }
    assert_eq!(sim.echo().counters().echoed, 6, "the server sent them all");
    assert_eq!(sim.pending(bound), 4, "the client's buffer holds 4");
    assert_eq!(sim.lost(), 2, "one to nobody, one to a full buffer");
    assert_eq!(sim.unread_by_server(), 0);
}

#[test]
fn too_many_clients_and_settling() {
    let mut sim = UdpSim::<2, 64, 1, 1>::new(unlimited());
    sim.bind(addr("10.0.0.1:1000")).unwrap();
    sim.bind(addr("10.0.0.1:1000")).unwrap();
    assert_eq!(
        sim.bind(addr("10.0.0.1:1001")),
        Err(SimError::TooManyClients)
    );
    assert_eq!(sim.drive(), Ok(0), "nothing to do");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the sends, send limits and clock: each client gets back a
    /// subsequence of what it sent, in order, every echo whole; counters
    /// add up; loop ports get nothing.
    #[test]
    fn each_client_gets_an_ordered_subsequence(
        ops in prop::collection::vec((0usize..4, 0usize..80, prop::option::of(0usize..3), 0u64..2_000), 1..200),
        lend in any::<bool>(),
    ) {
        let limit = RateLimit::new(4, Duration::from_millis(1));
        let mut sim = UdpSim::<4, 128, 2, 4>::new(DatagramConfig::new().with_rate_limit(Some(limit)));
        if !lend {
            sim.set_recv_mode(RecvMode::Copy { buf: 128 });
        }
        let clients = [
            addr("10.0.0.1:40000"),
            addr("10.0.0.1:40001"),
            addr("[2001:db8::2]:40000"),
            addr("10.0.0.3:19"),
        ];
        let mut sent = vec![Vec::new(); 4];
        let mut got = vec![Vec::new(); 4];
        for &c in &clients {
            sim.bind(c).unwrap();
        }
        for (n, (who, len, send_limit, micros)) in ops.into_iter().enumerate() {
            let data = pattern(len, n as u8);
            if sim.send(clients[who], &data) {
                sent[who].push(data);
            }
            sim.set_send_limit(send_limit);
            sim.step();
            sim.advance(Duration::from_micros(micros));
            for (i, &c) in clients.iter().enumerate() {
                got[i].extend(recv_all(&mut sim, c));
            }
        }
        sim.set_send_limit(None);
        sim.drive().unwrap();
        for (i, &c) in clients.iter().enumerate() {
            got[i].extend(recv_all(&mut sim, c));
            let mut rest = sent[i].iter();
            for echo in &got[i] {
                prop_assert!(rest.any(|s| s == echo), "client {i}: echo out of order or unknown");
            }
        }
        prop_assert!(got[3].is_empty(), "port 19 answered");
        let c = sim.echo().counters();
        prop_assert_eq!(c.received, c.echoed + c.dropped() + c.send_failed + sim.echo().len() as u64);
        prop_assert_eq!(c.echoed, got.iter().map(Vec::len).sum::<usize>() as u64 + sim.lost());
    }
}
