//! `selecho-load` against the `tokio-echo` and `tokio-udp-echo` binaries
//! and against deliberately broken echo servers.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Output};

use selecho_bench::result::LoadResult;
use selecho_testkit::process::ServerProcess;

const LOAD: &str = env!("CARGO_BIN_EXE_selecho-load");
const TOKIO_ECHO: &str = env!("CARGO_BIN_EXE_tokio-echo");
const TOKIO_UDP_ECHO: &str = env!("CARGO_BIN_EXE_tokio-udp-echo");
const EPOLL_ECHO: &str = env!("CARGO_BIN_EXE_epoll-echo");

#[test]
fn pingpong_against_tokio_echo_verifies_without_errors() {
    let server = start(TOKIO_ECHO, &["--runtime", "current"]);
    let (out, result) = load_against(
        &server,
        &["--mode", "pingpong", "--conns", "8", "--size", "100"],
    );
    assert_clean(&out, &result);
    assert_eq!(result.connected, 8);
    assert!(result.p50_us.is_some_and(|p| p > 0.0), "{result:?}");
    assert!(result.server_cpu_s.is_some(), "{result:?}");
}

#[test]
fn stream_against_tokio_echo_verifies_without_errors() {
    let server = start(TOKIO_ECHO, &["--runtime", "multi"]);
    let (out, result) = load_against(
        &server,
        &["--mode", "stream", "--conns", "2", "--size", "16384"],
    );
    assert_clean(&out, &result);
    assert!(
        result.rx_mbit_s > 0.0 && result.tx_mbit_s > 0.0,
        "{result:?}"
    );
}

#[test]
fn both_loads_against_epoll_echo_verify_without_errors() {
    for trigger in [&[][..], &["--level"]] {
        let server = start(EPOLL_ECHO, trigger);
        for load in [
            &["--mode", "pingpong", "--conns", "50", "--size", "64"],
            &["--mode", "stream", "--conns", "2", "--size", "65536"],
        ] {
            eprintln!("epoll-echo {trigger:?}, selecho-load {load:?}");
            let (out, result) = load_against(&server, load);
            assert_clean(&out, &result);
        }
    }
}

#[test]
fn udp_pingpong_against_tokio_udp_echo_verifies_without_errors() {
    let server = start(TOKIO_UDP_ECHO, &[]);
    assert_eq!(server.protocols, ["udp"]);
    let (out, result) = load_against(
        &server,
        &["--mode", "udp-pingpong", "--conns", "8", "--size", "100"],
    );
    assert_clean(&out, &result);
    assert_eq!(result.connected, 8);
    assert!(result.p99_us.is_some_and(|p| p > 0.0), "{result:?}");
    assert!(result.server_cpu_us_per_msg.is_some(), "{result:?}");
}

#[test]
fn a_flipped_udp_byte_is_detected_and_fails_the_run() {
    let addr = udp_echo(|n, datagram| {
        if n == 5 {
            datagram[20] ^= 0x20;
        }
        1
    });
    let (out, result) = run_load(&addr, None, UDP_1X64);
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(result.errors.mismatches, 1, "{result:?}");
}

#[test]
fn dropped_datagrams_count_as_lost_not_as_mismatches() {
    let addr = udp_echo(|n, _| usize::from(n % 10 != 9));
    let (out, result) = run_load(
        &addr,
        None,
        &["--mode", "udp-pingpong", "--conns", "4", "--size", "64"],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(result.errors.lost > 0, "{result:?}");
    assert_eq!(result.errors.mismatches, 0, "{result:?}");
    assert!(result.messages > 0, "{result:?}");
}

#[test]
fn an_echo_sent_twice_is_recognised_as_a_repeat() {
    let addr = udp_echo(|_, _| 2);
    let (out, result) = run_load(&addr, None, UDP_1X64);
    assert_clean(&out, &result);
}

#[test]
fn a_flipped_byte_is_detected_and_fails_the_run() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
    let addr = listener
        .local_addr()
        .expect("bound listener has an address")
        .to_string();
    std::thread::spawn(move || flipping_echo(&listener));
    let (out, result) = run_load(
        &addr,
        None,
        &["--mode", "pingpong", "--conns", "1", "--size", "64"],
    );
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(result.errors.mismatches, 1, "{result:?}");
}

/// Echoes the first connection, but flips one bit of byte 100 of the stream.
fn flipping_echo(listener: &TcpListener) {
    let Ok((mut s, _)) = listener.accept() else {
        return;
    };
    let mut buf = [0u8; 4096];
    let mut pos = 0usize;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if (pos..pos + n).contains(&100) {
            buf[100 - pos] ^= 0x20;
        }
        pos += n;
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// One UDP socket, one datagram in flight, 64 bytes.
const UDP_1X64: &[&str] = &["--mode", "udp-pingpong", "--conns", "1", "--size", "64"];

/// A UDP echo server on a thread of its own: datagram number `n` (from 0,
/// over all senders) is passed to `alter`, and echoed as many times as it
/// returns. Returns its address.
fn udp_echo(alter: impl Fn(u64, &mut [u8]) -> usize + Send + 'static) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind on loopback");
    let addr = socket
        .local_addr()
        .expect("bound socket has an address")
        .to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        for n in 0.. {
            let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                return;
            };
            for _ in 0..alter(n, &mut buf[..len]) {
                if socket.send_to(&buf[..len], peer).is_err() {
                    return;
                }
            }
        }
    });
    addr
}

/// Runs `selecho-load --json` for 0.3 s against `addr` (server process
/// `pid`) with `extra` flags.
fn run_load(addr: &str, pid: Option<u32>, extra: &[&str]) -> (Output, LoadResult) {
    let mut cmd = Command::new(LOAD);
    cmd.args([
        "--addr", addr, "--secs", "0.3", "--warmup", "0.05", "--json",
    ])
    .args(extra);
    if let Some(pid) = pid {
        cmd.args(["--pid", &pid.to_string()]);
    }
    let out = cmd.output().expect("selecho-load runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    (out, result)
}

/// Asserts that the run exited 0 and echoed some messages, all without error.
#[track_caller]
fn assert_clean(out: &Output, result: &LoadResult) {
    assert!(out.status.success(), "{out:?}");
    assert!(result.messages > 0, "{result:?}");
    assert_eq!(result.errors.total(), 0, "{result:?}");
}

/// [`run_load`] against `server`, its CPU time measured.
fn load_against(server: &ServerProcess, extra: &[&str]) -> (Output, LoadResult) {
    run_load(&server.addr().to_string(), Some(server.pid()), extra)
}

/// Reference server `program` on loopback with `extra` flags, killed on
/// drop.
fn start(program: &str, extra: &[&str]) -> ServerProcess {
    let mut cmd = Command::new(program);
    cmd.args(["--listen", "127.0.0.1:0"]).args(extra);
    ServerProcess::start(cmd, 1)
}
