//! The guard against packets built with `smoltcp::wire`: every checksum it
//! must verify, every martian source, shapes that do not parse, and SYNs.

mod net;

use selecho_core::smoltcp::{Checksums, Guard, Inbound, Rejected, Syn};
use smoltcp::wire::{
    IpAddress, IpCidr, IpEndpoint, IpProtocol, Ipv4Packet, Ipv6ExtHeader, Ipv6FragmentHeader,
    Ipv6FragmentRepr, Ipv6Packet, TcpControl, UdpPacket,
};

use net::{ping, syn, tcp, udp, v4, v6};

const PORT: u16 = 7007;

fn ours4() -> IpAddress {
    v4(10, 0, 0, 2)
}

fn ours6() -> IpAddress {
    v6(2)
}

fn guard() -> Guard {
    Guard::new(&[IpCidr::new(ours4(), 24), IpCidr::new(ours6(), 64)])
}

/// One packet of each kind the guard verifies, from `peer` to `ours`.
fn every_kind(peer: IpAddress, ours: IpAddress) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "tcp data",
            tcp(
                (peer, 40000),
                (ours, PORT),
                TcpControl::Psh,
                5,
                Some(9),
                b"hello",
            ),
        ),
        ("tcp syn", syn((peer, 40000), (ours, PORT))),
        ("udp", udp((peer, 40000), (ours, PORT), b"datagram")),
        ("ping", ping(peer, ours, b"are you there")),
    ]
}

fn families() -> [(IpAddress, IpAddress); 2] {
    [(v4(10, 0, 0, 1), ours4()), (v6(1), ours6())]
}

#[test]
fn good_packets_pass() {
    let mut g = guard();
    for (peer, ours) in families() {
        for (what, packet) in every_kind(peer, ours) {
            for trust in [Checksums::Verify, Checksums::Vouched] {
                let got = g.inspect(&packet, trust);
                assert!(
                    matches!(got, Ok(Inbound::Packet { .. })),
                    "{what} from {peer}: {got:?}"
                );
            }
        }
    }
    assert_eq!(g.counters().dropped(), 0);
}

#[test]
fn any_flipped_bit_of_a_transport_segment_is_caught() {
    let mut g = guard();
    for (peer, ours) in families() {
        let header = if peer.version() == smoltcp::wire::IpVersion::Ipv4 {
            20
        } else {
            40
        };
        for (what, packet) in every_kind(peer, ours) {
            if what == "udp" && header == 20 {
                continue; // see udp_checksum_zero_means_none_only_over_ipv4
            }
            for bit in header * 8..packet.len() * 8 {
                let mut bad = packet.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                let got = g.inspect(&bad, Checksums::Verify);
                assert!(
                    matches!(got, Err(Rejected::Checksum | Rejected::Malformed)),
                    "{what} from {peer}, bit {bit} flipped: {got:?}"
                );
                // With the device vouching for it, only the shape is checked.
                let vouched = g.inspect(&bad, Checksums::Vouched);
                assert_ne!(vouched, Err(Rejected::Checksum), "{what}, bit {bit}");
            }
        }
    }
}

#[test]
fn a_bad_ipv4_header_checksum_is_caught_even_when_vouched() {
    let mut g = guard();
    for (what, packet) in every_kind(v4(10, 0, 0, 1), ours4()) {
        let mut bad = packet.clone();
        let mut ip = Ipv4Packet::new_unchecked(&mut bad[..]);
        ip.set_hop_limit(ip.hop_limit() - 1); // a router that forgot the checksum
        for trust in [Checksums::Verify, Checksums::Vouched] {
            assert_eq!(g.inspect(&bad, trust), Err(Rejected::Checksum), "{what}");
        }
    }
    assert_eq!(g.counters().bad_checksum, 8);
}

#[test]
fn udp_checksum_zero_means_none_only_over_ipv4() {
    let mut g = guard();
    for (peer, ours) in families() {
        let mut packet = udp((peer, 40000), (ours, PORT), b"no checksum");
        let at = if matches!(peer, IpAddress::Ipv4(_)) {
            20
        } else {
            40
        };
        UdpPacket::new_unchecked(&mut packet[at..]).set_checksum(0);
        let got = g.inspect(&packet, Checksums::Verify);
        match peer {
            IpAddress::Ipv4(_) => assert!(matches!(got, Ok(Inbound::Packet { syn: None }))),
            IpAddress::Ipv6(_) => assert_eq!(got, Err(Rejected::Checksum)),
        }
    }
}

#[test]
fn martian_sources_are_dropped() {
    let mut g = guard();
    let martians = [
        (ours4(), ours4()), // LAND: from our own address
        (v4(127, 0, 0, 1), ours4()),
        (v4(127, 1, 2, 3), ours4()),
        (v4(224, 0, 0, 1), ours4()),
        (v4(239, 255, 255, 250), ours4()),
        (v4(255, 255, 255, 255), ours4()),
        (v4(10, 0, 0, 255), ours4()), // our subnet's broadcast
        (v4(0, 0, 0, 0), ours4()),
        (ours6(), ours6()),
        (
            IpAddress::Ipv6(smoltcp::wire::Ipv6Address::LOCALHOST),
            ours6(),
        ),
        (
            IpAddress::Ipv6(smoltcp::wire::Ipv6Address::new(0xff02, 0, 0, 0, 0, 0, 0, 1)),
            ours6(),
        ),
        (
            IpAddress::Ipv6(smoltcp::wire::Ipv6Address::UNSPECIFIED),
            ours6(),
        ),
    ];
    for (src, dst) in martians {
        for (what, packet) in every_kind(src, dst) {
            let got = g.inspect(&packet, Checksums::Vouched);
            assert_eq!(got, Err(Rejected::Martian), "{what} from {src}");
        }
    }
    assert_eq!(g.counters().martian, 4 * martians.len() as u64);
    // A neighbour of the subnet is no martian.
    let fine = syn((v4(10, 0, 0, 254), 1), (ours4(), PORT));
    assert!(g.inspect(&fine, Checksums::Verify).is_ok());
}

#[test]
fn syns_to_our_addresses_are_reported() {
    let mut g = guard();
    for (peer, ours) in families() {
        let got = g.inspect(&syn((peer, 40000), (ours, PORT)), Checksums::Verify);
        let want = Syn {
            remote: IpEndpoint::new(peer, 40000),
            local: IpEndpoint::new(ours, PORT),
        };
        assert_eq!(got, Ok(Inbound::Packet { syn: Some(want) }));
        // A SYN-ACK, a SYN with RST, and a SYN to someone else are not.
        let others = [
            tcp(
                (peer, 40000),
                (ours, PORT),
                TcpControl::Syn,
                1,
                Some(2),
                &[],
            ),
            tcp((peer, 40000), (ours, PORT), TcpControl::Rst, 1, None, &[]),
        ];
        for packet in others {
            let got = g.inspect(&packet, Checksums::Verify);
            assert!(matches!(got, Ok(Inbound::Packet { syn: None })), "{got:?}");
        }
    }
    let elsewhere = syn((v4(10, 0, 0, 1), 40000), (v4(10, 0, 0, 9), PORT));
    assert!(matches!(
        g.inspect(&elsewhere, Checksums::Verify),
        Ok(Inbound::Packet { syn: None })
    ));
}

#[test]
fn fragments_pass_with_their_header_checked() {
    let mut g = guard();
    // IPv4: more fragments to come; and the last one, at an offset.
    let mut first = udp((v4(10, 0, 0, 1), 40000), (ours4(), PORT), &[1; 64]);
    let mut ip = Ipv4Packet::new_unchecked(&mut first[..]);
    ip.set_more_frags(true);
    ip.fill_checksum();
    assert_eq!(g.inspect(&first, Checksums::Verify), Ok(Inbound::Fragment));
    let mut last = first.clone();
    let mut ip = Ipv4Packet::new_unchecked(&mut last[..]);
    ip.set_more_frags(false);
    ip.set_frag_offset(1480);
    ip.fill_checksum();
    assert_eq!(g.inspect(&last, Checksums::Verify), Ok(Inbound::Fragment));
    Ipv4Packet::new_unchecked(&mut last[..]).set_hop_limit(1);
    assert_eq!(
        g.inspect(&last, Checksums::Verify),
        Err(Rejected::Checksum),
        "a fragment's header is checked"
    );
    // IPv6: a fragment header after the fixed one.
    let body = [7u8; 24];
    let mut packet = net::ip(
        v6(1),
        ours6(),
        IpProtocol::Ipv6Frag,
        8 + body.len(),
        |buf, _, _| {
            let mut ext = Ipv6ExtHeader::new_unchecked(&mut buf[..8]);
            ext.set_next_header(IpProtocol::Udp);
            ext.set_header_len(0);
            let repr = Ipv6FragmentRepr {
                frag_offset: 0,
                more_frags: true,
                ident: 42,
            };
            repr.emit(&mut Ipv6FragmentHeader::new_unchecked(&mut buf[2..8]));
            buf[8..].copy_from_slice(&body);
        },
    );
    assert_eq!(g.inspect(&packet, Checksums::Verify), Ok(Inbound::Fragment));
    Ipv6Packet::new_unchecked(&mut packet[..]).set_src_addr(smoltcp::wire::Ipv6Address::LOCALHOST);
    assert_eq!(
        g.inspect(&packet, Checksums::Verify),
        Err(Rejected::Martian)
    );
}

#[test]
fn shapes_that_do_not_parse_are_dropped() {
    let mut g = guard();
    let good = tcp(
        (v4(10, 0, 0, 1), 40000),
        (ours4(), PORT),
        TcpControl::Psh,
        5,
        Some(9),
        b"hello",
    );
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x45],
        vec![0x00; 40],      // version 0
        good[..30].to_vec(), // shorter than its total length
        good[..20].to_vec(), // no room for the TCP header
    ];
    let mut bad_offset = good.clone();
    bad_offset[32] = 0xf0; // TCP data offset 60 bytes, past the end
    cases.push(bad_offset);
    for (i, packet) in cases.iter().enumerate() {
        assert!(
            matches!(
                g.inspect(packet, Checksums::Vouched),
                Err(Rejected::Malformed)
            ),
            "case {i}"
        );
    }
    assert_eq!(g.counters().malformed, cases.len() as u64);
}

/// Random bytes, cut packets and random damage to good packets: never a
/// panic.
#[test]
fn fuzzed_input_never_panics() {
    let mut g = guard();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let samples: Vec<Vec<u8>> = families()
        .into_iter()
        .flat_map(|(peer, ours)| every_kind(peer, ours).into_iter().map(|(_, p)| p))
        .collect();
    for _ in 0..20_000 {
        let mut packet = samples[next() as usize % samples.len()].clone();
        match next() % 3 {
            0 => packet = (0..next() % 80).map(|_| next() as u8).collect(),
            1 => {
                let cut = next() as usize % (packet.len() + 1);
                packet.truncate(cut);
            }
            _ => {
                for _ in 0..1 + next() % 4 {
                    let at = next() as usize % packet.len();
                    packet[at] = next() as u8;
                }
            }
        }
        let trust = if next() % 2 == 0 {
            Checksums::Verify
        } else {
            Checksums::Vouched
        };
        let _ = g.inspect(&packet, trust);
    }
}
