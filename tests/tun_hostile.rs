//! The TUN shell against packets no healthy peer sends, written from the
//! kernel's side of the device in the test's own network namespace (an
//! `AF_PACKET` socket, see `tun_support`): corrupted segments, martian
//! sources, and floods of spoofed SYNs. Each test checks what the server
//! did with an event it can wait for (an echo, a handshake) rather than
//! waiting to see nothing: a later, healthy exchange proves the server has
//! dealt with what came before.
//!
//! Like `tun.rs`, they need root and `/dev/net/tun`, and skip without.

mod tun_support;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use selecho_testkit::netns;
use selecho_testkit::pattern::bytes as pattern;
use selecho_testkit::process::{ServerProcess, counter};
use selecho_testkit::scenarios::{Server, assert_bytes};
use selecho_testkit::tcp::{BOUND, TcpServer, try_connect};
use smoltcp::wire::{IpAddress, TcpControl};

use tun_support::link::Link;
use tun_support::net::{syn, v4};
use tun_support::peer::{Damage, Peer};
use tun_support::{mac_of, start_family, tun_cmd};

const PORT: u16 = 7007;
/// SYNs in a flood.
const FLOOD: usize = 10_000;

/// A device kind and an address family.
#[derive(Debug, Clone, Copy)]
struct Case {
    tap: bool,
    v6: bool,
}

const EVERY_LINK: [Case; 4] = [
    Case {
        tap: false,
        v6: false,
    },
    Case {
        tap: false,
        v6: true,
    },
    Case {
        tap: true,
        v6: false,
    },
    Case {
        tap: true,
        v6: true,
    },
];

impl Case {
    fn ifname(self) -> &'static str {
        match (self.tap, self.v6) {
            (false, false) => "tun4",
            (false, true) => "tun6",
            (true, false) => "tap4",
            (true, true) => "tap6",
        }
    }

    fn server(self) -> IpAddress {
        if self.v6 {
            IpAddress::Ipv6("fd00:77::2".parse().unwrap())
        } else {
            v4(10, 77, 0, 2)
        }
    }

    /// An address of the subnet the kernel does not own: the raw peer's.
    fn peer(self) -> IpAddress {
        if self.v6 {
            IpAddress::Ipv6("fd00:77::9".parse().unwrap())
        } else {
            v4(10, 77, 0, 9)
        }
    }
}

/// A server on `link` with a short grace (the raw peer never finishes its
/// connections), and a raw peer on its device, introduced on TAP.
fn start(link: Case, extra: &[&str]) -> (ServerProcess, Peer) {
    let mut args = vec!["--grace", "0.2"];
    if link.tap {
        args.extend(["--tap", "--ifname", link.ifname()]);
    }
    args.extend(extra);
    let server = start_family(link.v6, &args, 1);
    let raw = Link::open(link.ifname(), link.tap);
    let mut peer = Peer::new(raw, (link.peer(), 40000), (link.server(), PORT));
    if link.tap {
        peer.introduce(mac_of(link.ifname()));
    }
    (server, peer)
}

/// SIGTERM, then the `stopped:` line.
fn stop(mut server: ServerProcess) -> String {
    server.signal(libc::SIGTERM);
    server.wait_stopped(BOUND)
}

#[test]
fn a_corrupted_segment_is_dropped_and_its_retransmission_echoed() {
    netns::test(|| {
        for link in EVERY_LINK {
            damaged_then_resent(link, Damage::TcpChecksum);
        }
    });
}

#[test]
fn a_bad_ipv4_header_checksum_is_dropped() {
    netns::test(|| damaged_then_resent(EVERY_LINK[0], Damage::HeaderChecksum));
}

/// A segment with `damage` is dropped (counted, never echoed); the
/// sender's retransmission of the same bytes, intact, is echoed.
fn damaged_then_resent(link: Case, damage: Damage) {
    let (server, mut peer) = start(link, &[]);
    peer.handshake();
    let (seq, ack) = (peer.seq, Some(peer.ack));
    peer.send(TcpControl::Psh, seq, ack, b"CORRUPT!", damage);
    peer.send(TcpControl::Psh, seq, ack, b"correct!", Damage::None);
    let echo = peer.expect("the echo", |s| !s.payload.is_empty() || s.rst);
    assert_eq!(echo.payload, b"correct!", "{link:?}: what was echoed");
    let stopped = stop(server);
    assert_eq!(
        counter(&stopped, "pkt_bad_checksum"),
        1,
        "{link:?}: {stopped}"
    );
}

#[test]
fn a_reset_with_a_bad_checksum_does_not_kill_the_connection() {
    netns::test(|| {
        for link in [EVERY_LINK[0], EVERY_LINK[1]] {
            let (server, mut peer) = start(link, &[]);
            peer.handshake();
            peer.send(TcpControl::Rst, peer.seq, None, &[], Damage::TcpChecksum);
            peer.echo(b"still connected");
            let stopped = stop(server);
            assert_eq!(counter(&stopped, "reset"), 0, "{link:?}: {stopped}");
        }
    });
}

#[test]
fn a_syn_with_a_bad_checksum_is_not_answered() {
    netns::test(|| {
        let (server, mut peer) = start(EVERY_LINK[0], &[]);
        peer.send(TcpControl::Syn, 1, None, &[], Damage::TcpChecksum);
        // From another port: a sentinel the server deals with afterwards.
        peer.me.1 = 40001;
        peer.handshake();
        peer.echo(b"after the bad SYN");
        let answered: Vec<_> = peer.seen.iter().filter(|s| s.to.1 == 40000).collect();
        assert!(
            answered.is_empty(),
            "the bad SYN was answered: {answered:?}"
        );
        let stopped = stop(server);
        assert_eq!(counter(&stopped, "pkt_bad_checksum"), 1, "{stopped}");
    });
}

#[test]
fn martian_sources_are_not_answered() {
    netns::test(|| {
        for link in [EVERY_LINK[0], EVERY_LINK[1]] {
            let martians: Vec<IpAddress> = if link.v6 {
                ["fd00:77::2", "::1", "ff02::1", "::"]
                    .iter()
                    .map(|a| IpAddress::Ipv6(a.parse().unwrap()))
                    .collect()
            } else {
                vec![
                    v4(10, 77, 0, 2), // LAND: the server's own address
                    v4(127, 0, 0, 1),
                    v4(224, 0, 0, 1),
                    v4(255, 255, 255, 255),
                    v4(10, 77, 0, 255),
                    v4(0, 0, 0, 0),
                ]
            };
            let (server, mut peer) = start(link, &[]);
            for &martian in &martians {
                // LAND's classic form: from the very port it is sent to.
                peer.link
                    .send_ip(&syn((martian, PORT), (link.server(), PORT)));
            }
            peer.handshake();
            peer.echo(b"after the martians");
            let answered: Vec<_> = peer
                .seen
                .iter()
                .filter(|s| martians.contains(&s.to.0))
                .collect();
            assert!(
                answered.is_empty(),
                "{link:?}: martians answered: {answered:?}"
            );
            let stopped = stop(server);
            assert_eq!(
                counter(&stopped, "pkt_martian"),
                martians.len() as u64,
                "{link:?}: {stopped}"
            );
        }
    });
}

/// Sends `count` SYNs to the server from random 10.x sources that will
/// never answer; says on `under_way` once the first thousand are out (and
/// drops it at the end, so a listener never waits on a flood that is over).
fn flood(ifname: &str, server: IpAddress, count: usize, under_way: mpsc::Sender<()>) {
    let link = Link::open(ifname, false);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let [a, b, c, p0, p1, ..] = state.to_le_bytes();
        let source = v4(10, a, b, c.max(1));
        let port = u16::from_le_bytes([p0, p1]).max(1024);
        link.send_ip(&syn((source, port), (server, PORT)));
        if i + 1 == 1_000 {
            // Nobody listening (the flood is all there is) is fine.
            let _ = under_way.send(());
        }
    }
}

/// Connects to `addr` and echoes, again until one attempt works, for at
/// most `limit`; how long it took.
fn served_within(addr: SocketAddr, limit: Duration) -> Duration {
    let start = Instant::now();
    let msg = pattern(11, 2000);
    loop {
        let left = limit.saturating_sub(start.elapsed());
        assert!(!left.is_zero(), "no echo within {limit:?}");
        if let Ok(got) = echo_once(addr, &msg, left) {
            assert_bytes(&got, &msg, "the echo");
            return start.elapsed();
        }
    }
}

/// One connection, one echo of `msg`, every step within `limit`.
fn echo_once(addr: SocketAddr, msg: &[u8], limit: Duration) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut conn = TcpStream::connect_timeout(&addr, limit)?;
    conn.set_read_timeout(Some(limit))?;
    conn.set_write_timeout(Some(limit))?;
    conn.write_all(msg)?;
    let mut got = vec![0; msg.len()];
    conn.read_exact(&mut got)?;
    Ok(got)
}

#[test]
fn sixteen_spoofed_syns_lock_nobody_out() {
    netns::test(|| {
        let mut server = TcpServer::new(ServerProcess::start(tun_cmd(&["--max-conns", "16"]), 1));
        flood("tun0", v4(10, 77, 0, 2), 16, mpsc::channel().0);
        // A SYN from the kernel after them finds a slot at once.
        let mut conn = try_connect(server.addr).unwrap_or_else(|e| {
            assert_ne!(e.kind(), ErrorKind::ConnectionRefused, "locked out");
            panic!("connect: {e}")
        });
        let msg = pattern(12, 1000);
        assert_bytes(
            &server.exchange(&mut conn, &msg),
            &msg,
            "after 16 spoofed SYNs",
        );
    });
}

#[test]
fn a_flood_of_spoofed_syns_delays_a_real_client_by_seconds_at_most() {
    netns::test(|| {
        let server = ServerProcess::start(tun_cmd(&[]), 1);
        let addr = server.addr();
        let (under_way, started) = mpsc::channel();
        let during = thread::scope(|s| {
            s.spawn(|| flood("tun0", v4(10, 77, 0, 2), FLOOD, under_way));
            // Err: the flood ended (or failed) first; the scope reports how.
            let _ = started.recv();
            served_within(addr, Duration::from_secs(5))
        });
        let after = served_within(addr, Duration::from_secs(5));
        eprintln!(
            "10,000 spoofed SYNs: a real client was served in {during:?} during the flood, {after:?} after"
        );
        let mut server = server;
        server.signal(libc::SIGTERM);
        let stopped = server.wait_stopped(BOUND);
        assert!(counter(&stopped, "pkt_syn_evicted") > 0, "{stopped}");
    });
}
