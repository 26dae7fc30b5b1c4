//! End-to-end tests of the TUN shell: the real `selecho tun` binary serving
//! through smoltcp on a TUN or TAP device, reached by the kernel's TCP.
//!
//! They need root (CAP_NET_ADMIN) and `/dev/net/tun`. Each test thread
//! moves into a network namespace of its own (`unshare(CLONE_NEWNET)`):
//! the server it spawns and the client threads it starts inherit it, so the
//! device, its addresses and its routes never touch the host's network, and
//! the namespace (with the device in it) vanishes by itself once the thread
//! and the server are gone — on success, on panic, or if the test binary is
//! killed; there is nothing to clean up. Without root or `/dev/net/tun`, a
//! test prints why and returns early.
//!
//! The argument checks (exit status 2) need no privilege and always run.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use selecho_testkit::netns::{self, ip};
use selecho_testkit::pattern::bytes as pattern;
use selecho_testkit::process::{
    ServerProcess, SharedCopy, assert_exit, assert_usage_error, counter,
};
use selecho_testkit::scenarios::{self, End, Server, assert_bytes};
use selecho_testkit::tcp::{
    BOUND, TcpServer, half_closed_client_at_sigterm, signals_other_than_stop_keep_serving,
    stats_count_an_echo, try_connect, urgent_byte_is_echoed_in_line,
};
use selecho_testkit::{scenario_tests, selecho};

mod tun_support;

use tun_support::{ADDRESS, HOST_ADDRESS, start_family, tun_cmd};

/// A TUN server with the scenario's settings, in a namespace of its own;
/// `None` (after saying why) where TUN tests cannot run.
fn start(setup: scenarios::Setup) -> Option<TcpServer> {
    if !netns::enter_or_skip() {
        return None;
    }
    let mut args = vec!["--max-conns".to_owned(), setup.max_conns.to_string()];
    if let Some(idle) = setup.idle_timeout {
        args.extend(["--idle-timeout".to_owned(), idle.as_secs_f64().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Some(TcpServer::new(ServerProcess::start(tun_cmd(&args), 1)))
}

scenario_tests!(start, big = 1 << 20);

#[test]
fn refuses_beyond_its_slots_then_recovers() {
    netns::test(|| {
        let mut server = TcpServer::new(ServerProcess::start(tun_cmd(&["--max-conns", "2"]), 1));
        let mut conns = scenarios::connect_and_echo(&mut server, 2, "while filling the slots");
        for _ in 0..3 {
            let err =
                try_connect(server.addr).expect_err("a third connection while both slots are busy");
            assert_eq!(
                err.kind(),
                ErrorKind::ConnectionRefused,
                "refused with RST: {err}"
            );
        }
        // Free one slot; the next connection, made at once, is served.
        let (rest, end) = server.stream_and_close(&mut conns[0], b"bye");
        assert_bytes(&rest, b"bye", "the last bytes of the closing connection");
        assert_eq!(end, End::Eof);
        let mut fresh = try_connect(server.addr).expect("a connection once a slot is free");
        let msg = pattern(7, 20_000);
        assert_bytes(
            &server.exchange(&mut fresh, &msg),
            &msg,
            "the new connection",
        );
        assert_bytes(
            &server.exchange(&mut conns[1], &msg),
            &msg,
            "the other one still served",
        );
        // And the slots are full again.
        let err = try_connect(server.addr).expect_err("full again");
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    });
}

#[test]
fn tap_mode_echoes() {
    netns::test(|| {
        let mut server = TcpServer::new(ServerProcess::start(
            tun_cmd(&["--tap", "--ifname", "tap0", "--port", "7", "--port", "7007"]),
            2,
        ));
        assert_eq!(server.process.addrs.len(), 2);
        for addr in server.process.addrs.clone() {
            server.addr = addr;
            let mut conn = server.connect();
            let data = pattern(u64::from(addr.port()), 200_000);
            let (got, end) = server.stream_and_close(&mut conn, &data);
            assert_bytes(&got, &data, &format!("TAP echo on {addr}"));
            assert_eq!(end, End::Eof);
        }
    });
}

#[test]
fn ipv6_address() {
    netns::test(|| {
        let mut server = TcpServer::new(start_family(true, &[], 1));
        assert_eq!(server.addr.to_string(), "[fd00:77::2]:7007");
        // Usable as soon as `listening on` is printed: no DAD wait.
        let mut conn = try_connect(server.addr).expect("connect over IPv6");
        let data = pattern(6, 50_000);
        assert_bytes(&server.exchange(&mut conn, &data), &data, "IPv6 echo");
    });
}

#[test]
fn sigterm_finishes_connections_then_exits_0() {
    netns::test(|| {
        let mut server = TcpServer::new(ServerProcess::start(tun_cmd(&["--grace", "5"]), 1));
        let mut conn = server.connect();
        let msg = pattern(3, 1000);
        assert_bytes(&server.exchange(&mut conn, &msg), &msg, "before the signal");
        server.process.signal(libc::SIGTERM);
        // The server closes its side gracefully: EOF, not a reset.
        let (rest, end) = server.read_to_end(&mut conn);
        assert!(rest.is_empty());
        assert_eq!(end, End::Eof, "a graceful close on shutdown");
        conn.shutdown(Shutdown::Write).ok();
        drop(conn);
        let stopped = server.process.wait_stopped(BOUND);
        assert_eq!(counter(&stopped, "accepted"), 1, "{stopped}");
        assert_eq!(counter(&stopped, "shut_down"), 1, "{stopped}");
    });
}

#[test]
fn stats_interval_logs_the_counters() {
    netns::test(|| {
        let mut cmd = tun_cmd(&["--stats-interval", "0.05"]);
        // Over the -q of tun_cmd: info, where stats lines go.
        cmd.env("SELECHO_LOG", "info");
        let mut server = TcpServer::new(ServerProcess::start(cmd, 1));
        stats_count_an_echo(&mut server, 1234);
    });
}

#[test]
fn sigterm_lets_a_half_closed_client_finish() {
    netns::test(|| {
        let mut server = TcpServer::new(ServerProcess::start(tun_cmd(&["--grace", "20"]), 1));
        let stopped = half_closed_client_at_sigterm(&mut server, 24_000_000, true);
        assert_eq!(counter(&stopped, "bytes_out"), 24_000_000, "{stopped}");
        assert_eq!(counter(&stopped, "reset"), 0, "{stopped}");
    });
}

#[test]
fn sigterm_cuts_an_unfinished_half_close_with_a_reset() {
    netns::test(|| {
        let mut server = TcpServer::new(ServerProcess::start(tun_cmd(&["--grace", "0.3"]), 1));
        let stopped = half_closed_client_at_sigterm(&mut server, 24_000_000, false);
        assert!(counter(&stopped, "shut_down") >= 1, "{stopped}");
    });
}

#[test]
fn usr1_hup_and_usr2_are_handled_not_fatal() {
    netns::test(|| {
        let mut cmd = tun_cmd(&[]);
        cmd.env("SELECHO_LOG", "info");
        let mut server = TcpServer::new(ServerProcess::start(cmd, 1));
        signals_other_than_stop_keep_serving(&mut server);
    });
}

#[test]
fn urgent_data_is_echoed_in_line() {
    netns::test(|| {
        let mut server = TcpServer::new(ServerProcess::start(tun_cmd(&[]), 1));
        urgent_byte_is_echoed_in_line(&mut server);
    });
}

#[test]
fn idle_server_uses_no_cpu() {
    netns::test(|| {
        let mut server = TcpServer::new(ServerProcess::start(tun_cmd(&[]), 1));
        let mut conn = server.connect();
        let msg = pattern(4, 100);
        assert_bytes(&server.exchange(&mut conn, &msg), &msg, "one echo");
        let before = server.process.cpu_time();
        // An observation window, not a wait for an event.
        thread::sleep(Duration::from_secs(1));
        let used = server.process.cpu_time() - before;
        assert!(
            used < Duration::from_millis(50),
            "an idle server used {used:?} of CPU in 1 s"
        );
        // Still serving.
        assert_bytes(&server.exchange(&mut conn, &msg), &msg, "after idling");
    });
}

#[test]
fn device_of_the_other_mode_is_a_clear_error() {
    netns::test(|| {
        ip(&["tuntap", "add", "dev", "tapx", "mode", "tap"]);
        let stderr = assert_exit(
            selecho!().args(["tun", "--ifname", "tapx", "--address", ADDRESS]),
            1,
            "tapx is a TAP device",
        );
        assert!(stderr.contains("--tap"), "{stderr}");
        // And the other way round.
        ip(&["tuntap", "add", "dev", "tunx", "mode", "tun"]);
        assert_exit(
            selecho!().args(["tun", "--tap", "--ifname", "tunx", "--address", ADDRESS]),
            1,
            "tunx is a TUN device",
        );
        // Not a TUN/TAP device at all.
        assert_exit(
            selecho!().args(["tun", "--ifname", "lo", "--address", ADDRESS]),
            1,
            "not a TUN/TAP device",
        );
    });
}

#[test]
fn busy_device_is_a_clear_error() {
    netns::test(|| {
        let _server = ServerProcess::start(tun_cmd(&[]), 1);
        assert_exit(
            selecho!().args(["tun", "--ifname", "tun0", "--address", ADDRESS]),
            1,
            "tun0 is busy",
        );
    });
}

#[test]
fn permission_denied_is_a_clear_error() {
    netns::test(|| {
        use std::os::unix::process::CommandExt;
        // The checkout may be where user nobody cannot reach the binary.
        let nobody = match SharedCopy::new(Path::new(selecho!().get_program()), 65_534) {
            Ok(copy) => copy,
            Err(reason) => return selecho_testkit::skip(&reason),
        };
        // A device owned by root: an unprivileged user may neither attach to it
        // nor (with /dev/net/tun at mode 0600, as here) open the clone device.
        ip(&["tuntap", "add", "dev", "tunr", "mode", "tun", "user", "0"]);
        let out = Command::new(&nobody.path)
            .args(["tun", "--ifname", "tunr", "--address", ADDRESS])
            .uid(65_534)
            .gid(65_534)
            .output()
            .expect("run selecho as nobody");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "exit status; stderr: {stderr}");
        assert!(out.stdout.is_empty(), "nothing served");
        assert!(
            stderr.contains("permission denied") && stderr.contains("tunr"),
            "a message naming the device and the cause: {stderr}"
        );
    });
}

#[test]
fn works_without_host_address_once_configured_by_hand() {
    netns::test(|| {
        ip(&["tuntap", "add", "dev", "tunm", "mode", "tun"]);
        let mut cmd = selecho!();
        cmd.args(["tun", "-q", "--ifname", "tunm", "--address", ADDRESS]);
        let mut server = TcpServer::new(ServerProcess::start(cmd, 1));
        ip(&["addr", "add", HOST_ADDRESS, "dev", "tunm"]);
        ip(&["link", "set", "tunm", "up"]);
        let mut conn = server.connect();
        let msg = pattern(8, 3000);
        assert_bytes(
            &server.exchange(&mut conn, &msg),
            &msg,
            "echo on a device set up by hand",
        );
    });
}

#[test]
fn bad_addresses_exit_2() {
    // Checked before any device is touched: no privilege needed.
    assert_usage_error(
        selecho!().args([
            "tun",
            "--address",
            "10.7.0.2/24",
            "--host-address",
            "10.7.0.2/24",
        ]),
        "smoltcp's own address",
    );
    assert_usage_error(
        selecho!().args([
            "tun",
            "--address",
            "10.7.0.2/24",
            "--host-address",
            "10.8.0.1/24",
        ]),
        "not in the same subnet",
    );
    assert_usage_error(
        selecho!().args([
            "tun",
            "--address",
            "10.7.0.2/24",
            "--host-address",
            "fd00::1/64",
        ]),
        "not in the same subnet",
    );
    assert_usage_error(
        selecho!().args(["tun", "--address", "10.7.0.2"]),
        "ADDRESS/PREFIX",
    );
    assert_usage_error(
        selecho!().args(["tun", "--address", "10.7.0.300/24"]),
        "not an IP address",
    );
    assert_usage_error(
        selecho!().args(["tun", "--address", "10.7.0.2/40"]),
        "prefix length",
    );
    assert_usage_error(
        selecho!().args(["tun", "--address", "10.7.0.2/24", "--max-conns", "100000"]),
        "--max-conns",
    );
    assert_usage_error(
        selecho!().args(["tun", "--address", "10.7.0.2/24", "--port", "0"]),
        "port 0",
    );
    // Not a host's address: nothing is created, no panic.
    for address in [
        "255.255.255.255/24",
        "10.7.0.255/24",
        "10.7.0.0/24",
        "224.0.0.5/24",
    ] {
        assert_usage_error(
            selecho!().args(["tun", "--address", address]),
            "not a usable unicast address",
        );
    }
    // The MTU each medium and family allows.
    assert_usage_error(
        selecho!().args(["tun", "--tap", "--mtu", "65535", "--address", "10.7.0.2/24"]),
        "a TAP device takes at most 65521",
    );
    assert_usage_error(
        selecho!().args(["tun", "--mtu", "1000", "--address", "fd00::2/64"]),
        "IPv6 needs an MTU of at least 1280",
    );
    assert_usage_error(
        selecho!().args([
            "tun",
            "--address",
            "10.7.0.2/24",
            "--stats-interval",
            "0.000001",
        ]),
        "millisecond",
    );
    assert_usage_error(
        selecho!().args([
            "tun",
            "--address",
            "10.7.0.2/24",
            "--ifname",
            "a-name-far-too-long",
        ]),
        "--ifname",
    );
}

/// Reading from the first connection while writing a big burst on a second
/// shows the server moving data both ways on several connections at once.
#[test]
fn concurrent_streams() {
    netns::test(|| {
        let server = TcpServer::new(ServerProcess::start(tun_cmd(&["--max-conns", "8"]), 1));
        let addr = server.addr;
        thread::scope(|s| {
            for i in 0..8u64 {
                s.spawn(move || {
                    let mut conn = try_connect(addr).expect("connect");
                    let data = pattern(100 + i, 1 << 20);
                    let mut writer = conn.try_clone().expect("clone");
                    let sending = thread::spawn(move || {
                        writer.write_all(&data).expect("write");
                        writer.shutdown(Shutdown::Write).expect("shutdown");
                        data
                    });
                    let mut got = Vec::new();
                    conn.read_to_end(&mut got).expect("read to end");
                    let data = sending.join().expect("writer");
                    assert_bytes(&got, &data, &format!("stream {i}"));
                });
            }
        });
    });
}
