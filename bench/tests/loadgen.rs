//! `selecho-load` against the `tokio-echo` binary and against a
//! deliberately broken echo server.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

use selecho_bench::result::LoadResult;
use selecho_testkit::process::ServerProcess;

const LOAD: &str = env!("CARGO_BIN_EXE_selecho-load");
const TOKIO_ECHO: &str = env!("CARGO_BIN_EXE_tokio-echo");

#[test]
fn pingpong_against_tokio_echo_verifies_without_errors() {
    let server = tokio_echo("current");
    let (out, result) = run_load(
        &server.addr().to_string(),
        Some(server.pid()),
        &["--mode", "pingpong", "--conns", "8", "--size", "100"],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(result.messages > 0, "{result:?}");
    assert_eq!(result.errors.total(), 0, "{result:?}");
    assert_eq!(result.connected, 8);
    assert!(result.p50_us.is_some_and(|p| p > 0.0), "{result:?}");
    assert!(result.server_cpu_s.is_some(), "{result:?}");
}

#[test]
fn stream_against_tokio_echo_verifies_without_errors() {
    let server = tokio_echo("multi");
    let (out, result) = run_load(
        &server.addr().to_string(),
        Some(server.pid()),
        &["--mode", "stream", "--conns", "2", "--size", "16384"],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(result.messages > 0, "{result:?}");
    assert!(
        result.rx_mbit_s > 0.0 && result.tx_mbit_s > 0.0,
        "{result:?}"
    );
    assert_eq!(result.errors.total(), 0, "{result:?}");
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

/// A `tokio-echo` child on loopback, killed on drop.
fn tokio_echo(runtime: &str) -> ServerProcess {
    let mut cmd = Command::new(TOKIO_ECHO);
    cmd.args(["--listen", "127.0.0.1:0", "--runtime", runtime]);
    ServerProcess::start(cmd, 1)
}
