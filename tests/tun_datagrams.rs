//! The TUN shell's datagrams, from the kernel's side of the device in the
//! test's own network namespace: pings (ICMP echo, small and fragmented),
//! and UDP echo (the shared UDP scenarios, and datagrams up to the largest
//! over an MTU of 1500, fragmented both ways).
//!
//! Like `tun.rs`, they need root and `/dev/net/tun`, and skip without.

mod tun_support;

use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};

use selecho_testkit::netns;
use selecho_testkit::pattern::bytes as pattern;
use selecho_testkit::process::ServerProcess;
use selecho_testkit::scenarios::assert_bytes;
use selecho_testkit::tcp::BOUND;
use socket2::{Domain, Protocol, Socket, Type};

use tun_support::{ADDRESS6, HOST_ADDRESS6, tun_cmd};

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
        let v4 = ServerProcess::start(tun_cmd(&["--ifname", "tun4"]), 1);
        let v6 = ServerProcess::start(
            tun_cmd(&[
                "--ifname",
                "tun6",
                "--address",
                ADDRESS6,
                "--host-address",
                HOST_ADDRESS6,
            ]),
            1,
        );
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
