//! How the TUN shell shares its connection slots: every slot serves every
//! port, and the defaults serve hundreds of clients at once.
//!
//! Like `tun.rs`, they need root and `/dev/net/tun`, and skip without.

mod tun_support;

use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use selecho_testkit::netns;
use selecho_testkit::pattern::bytes as pattern;
use selecho_testkit::process::{ServerProcess, assert_usage_error};
use selecho_testkit::scenarios::{Server, assert_bytes};
use selecho_testkit::selecho;
use selecho_testkit::tcp::{BOUND, TcpServer, try_connect};

use tun_support::tun_cmd;

/// A server with `args`, announcing `ports` ports.
fn start(args: &[&str], ports: usize) -> TcpServer {
    TcpServer::new(ServerProcess::start(tun_cmd(args), ports))
}

/// Connects to `addr` and echoes once.
fn echoing(server: &mut TcpServer, addr: SocketAddr, seed: u64) -> TcpStream {
    let mut conn = try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let msg = pattern(seed, 300);
    assert_bytes(
        &server.exchange(&mut conn, &msg),
        &msg,
        &format!("echo on {addr}"),
    );
    conn
}

#[test]
fn one_slot_serves_either_port() {
    netns::test(|| {
        let mut server = start(&["--max-conns", "1", "--port", "7", "--port", "8"], 2);
        let [seven, eight] = [server.process.addrs[0], server.process.addrs[1]];
        let mut conn = echoing(&mut server, eight, 1);
        // Closed cleanly, the slot is free again a moment later (once the
        // server has our last ACK): then port 7 gets it. Nothing announces
        // that moment, so port 7 is tried again until the deadline.
        let (rest, _) = server.stream_and_close(&mut conn, b"");
        assert!(rest.is_empty());
        let deadline = Instant::now() + BOUND;
        let mut conn = loop {
            match try_connect(seven) {
                Ok(conn) => break conn,
                Err(e) => assert!(Instant::now() < deadline, "port 7 never served: {e}"),
            }
        };
        let msg = pattern(2, 300);
        assert_bytes(&server.exchange(&mut conn, &msg), &msg, "port 7");
    });
}

#[test]
fn every_slot_serves_one_port() {
    netns::test(|| {
        let mut server = start(&["--max-conns", "4", "--port", "7", "--port", "8"], 2);
        let seven = server.process.addrs[0];
        let conns: Vec<_> = (0..4).map(|i| echoing(&mut server, seven, i)).collect();
        let err = try_connect(server.process.addrs[1]).expect_err("a fifth client");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        drop(conns);
    });
}

#[test]
fn the_defaults_serve_256_clients_at_once() {
    netns::test(|| {
        let mut server = start(&[], 1);
        let addr = server.addr;
        let mut conns: Vec<_> = (0..256).map(|i| echoing(&mut server, addr, i)).collect();
        // All of them still served, together.
        for (i, conn) in conns.iter_mut().enumerate() {
            let msg = pattern(1000 + i as u64, 100);
            assert_bytes(&server.exchange(conn, &msg), &msg, &format!("client {i}"));
        }
    });
}

#[test]
fn too_many_ports_exit_2() {
    let mut cmd = selecho!();
    cmd.args(["tun", "--address", "10.7.0.2/24"]);
    for port in 1..=17 {
        cmd.args(["--port", &port.to_string()]);
    }
    assert_usage_error(&mut cmd, "too many ports");
}
