//! The TUN shell's datagrams, from the kernel's side of the device in the
//! test's own network namespace: pings (ICMP echo, small and fragmented),
//! and UDP echo (the shared UDP scenarios, and datagrams up to the largest
//! over an MTU of 1500, fragmented both ways).
//!
//! Like `tun.rs`, they need root and `/dev/net/tun`, and skip without.

mod tun_support;

use std::io::ErrorKind;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use selecho_testkit::netns;
use selecho_testkit::pattern::bytes as pattern;
use selecho_testkit::process::{ServerProcess, counter};
use selecho_testkit::scenarios::assert_bytes;
use selecho_testkit::scenarios::udp::DatagramSetup;
use selecho_testkit::tcp::BOUND;
use selecho_testkit::udp::{KernelUdp, rate_args};
use selecho_testkit::udp_scenario_tests;
use socket2::{Domain, Protocol, Socket, Type};

use tun_support::{start_family, tun_cmd};

/// The kernel's addresses on the device: the first is `--host-address`'s,
/// the second added for scenarios that want two source hosts.
const HOSTS: [[u8; 4]; 2] = [[10, 77, 0, 1], [10, 77, 0, 3]];

/// A server for the scenario, in a namespace of this thread's own, with a
/// second kernel address; `None` (after saying why) where it cannot run.
fn start_udp(setup: DatagramSetup) -> Option<KernelUdp<ServerProcess>> {
    if !netns::enter_or_skip() {
        return None;
    }
    let args = rate_args(setup);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let process = ServerProcess::start(tun_cmd(&args), 2);
    netns::ip(&["addr", "add", "10.77.0.3/24", "dev", "tun0"]);
    let hosts = HOSTS.iter().map(|&ip| IpAddr::from(ip)).collect();
    Some(KernelUdp::of_process(process, hosts))
}

udp_scenario_tests!(start_udp);

#[test]
fn udp_the_largest_datagrams_cross_an_mtu_of_1500_both_ways() {
    netns::test(|| {
        let v4 = start_family(false, &["--udp-rate", "0"], 2);
        let v6 = start_family(true, &["--udp-rate", "0"], 2);
        for (server, largest) in [(v4, 65_507), (v6, 65_527)] {
            let to = server.addrs_of("udp")[0];
            let any: SocketAddr = match to {
                SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
                SocketAddr::V6(_) => "[::]:0".parse().unwrap(),
            };
            let client = UdpSocket::bind(any).expect("a client socket");
            client.set_read_timeout(Some(BOUND)).expect("a time-out");
            let sizes = [0, 1, 1452, 1453, 1472, 1473, 8000, largest - 1, largest];
            for size in sizes {
                let data = pattern(size as u64, size);
                client.send_to(&data, to).expect("send");
                let mut buf = vec![0; 70_000];
                let n = client.recv(&mut buf).expect("the echo");
                assert_bytes(&buf[..n], &data, &format!("{size} bytes to {to}"));
            }
            let mut server = server;
            server.signal(libc::SIGTERM);
            let stopped = server.wait_stopped(BOUND);
            assert_eq!(
                counter(&stopped, "udp_echoed"),
                sizes.len() as u64,
                "{stopped}"
            );
            assert_eq!(counter(&stopped, "pkt_fragments_dropped"), 0, "{stopped}");
        }
    });
}

/// Lets every group open ICMP datagram ("ping") sockets in this thread's
/// namespace.
fn allow_ping_sockets() {
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
        .expect("allow ping sockets");
}

/// One echo request of `size` data bytes to `to`; the data of the reply.
fn ping(to: IpAddr, size: usize) -> Vec<u8> {
    let (domain, protocol, request, reply) = match to {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8, 0),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128, 129),
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(protocol)).expect("a ping socket");
    socket.set_read_timeout(Some(BOUND)).expect("a time-out");
    // Type, code, checksum and identifier are the kernel's to fill in.
    let mut message = vec![request, 0, 0, 0, 0, 0, 0, 1];
    message.extend_from_slice(&pattern(size as u64, size));
    socket
        .send_to(&message, &SocketAddr::new(to, 0).into())
        .expect("send the echo request");
    let mut buf = vec![MaybeUninit::new(0u8); 70_000];
    let n = socket.recv(&mut buf).expect("an echo reply");
    // SAFETY: recv initialised the first n bytes.
    let got: Vec<u8> = buf[..n]
        .iter()
        .map(|b| unsafe { b.assume_init() })
        .collect();
    assert_eq!(got[0], reply, "an echo reply");
    got[8..].to_vec()
}

#[test]
fn pings_are_answered_small_and_fragmented() {
    netns::test(|| {
        allow_ping_sockets();
        let v4 = start_family(false, &[], 1);
        let v6 = start_family(true, &[], 1);
        for server in [&v4, &v6] {
            let to = server.addr().ip();
            for size in [0, 56, 1472, 1473, 8000, 65_000] {
                let want = pattern(size as u64, size);
                assert_bytes(
                    &ping(to, size),
                    &want,
                    &format!("ping of {size} bytes to {to}"),
                );
            }
        }
    });
}

/// The sizes [`udp_every_size_to_the_largest`] tries up to `largest`: every
/// one to 3000 (one and two fragments), both sides of each point where
/// another fragment is needed, every 61st, and the last 64; every single
/// one with `SELECHO_UDP_EVERY_SIZE=1` (2 GiB each way: minutes).
fn sizes_to(largest: usize) -> Vec<usize> {
    if std::env::var_os("SELECHO_UDP_EVERY_SIZE").is_some() {
        return (0..=largest).collect();
    }
    // A fragment carries 1480 bytes of IPv4 payload, 1448 of IPv6.
    let fragment = if largest == 65_507 { 1480 } else { 1448 };
    let first = fragment - 8;
    let boundaries = (0..45).flat_map(|k| {
        let b = first + k * fragment;
        [b, b + 1]
    });
    let mut sizes: Vec<usize> = (0..=3000)
        .chain(boundaries)
        .chain((3001..=largest).step_by(61))
        .chain(largest - 63..=largest)
        .filter(|&size| size <= largest)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// Sizes from 0 to the largest, one after another, over IPv4 (65,507
/// bytes) and IPv6 (65,527) at MTU 1500, each echoed exactly.
#[test]
fn udp_every_size_to_the_largest() {
    netns::test(|| {
        for (v6, largest) in [(false, 65_507), (true, 65_527)] {
            let server = start_family(v6, &["--udp-rate", "0"], 2);
            let to = server.addrs_of("udp")[0];
            let client = UdpSocket::bind(if v6 { "[fd00:77::1]:0" } else { "10.77.0.1:0" })
                .expect("a client socket");
            client.set_read_timeout(Some(BOUND)).expect("a time-out");
            let data = pattern(largest as u64, largest);
            let mut buf = vec![0; 70_000];
            for size in sizes_to(largest) {
                client.send_to(&data[..size], to).expect("send");
                let n = client.recv(&mut buf).expect("the echo");
                assert_bytes(&buf[..n], &data[..size], &format!("{size} bytes to {to}"));
            }
        }
    });
}

#[test]
fn no_udp_and_no_tcp_serve_the_other_alone() {
    netns::test(|| {
        let tcp_only = start_family(false, &["--no-udp"], 1);
        assert_eq!(tcp_only.protocols, ["tcp"]);
        let udp_only = start_family(true, &["--no-tcp"], 1);
        assert_eq!(udp_only.protocols, ["udp"]);
        let to = udp_only.addr();
        let refused = std::net::TcpStream::connect(to).expect_err("no TCP on --no-tcp");
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
        let client = UdpSocket::bind("[::]:0").expect("a client socket");
        client.set_read_timeout(Some(BOUND)).expect("a time-out");
        client.send_to(b"udp alone", to).expect("send");
        let mut buf = [0; 64];
        let n = client.recv(&mut buf).expect("the echo");
        assert_eq!(&buf[..n], b"udp alone");
    });
}
