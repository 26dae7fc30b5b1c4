//! End-to-end tests of the select shell: the real `selecho` binary on
//! loopback, driven by blocking clients with time-outs. Every server is a
//! `ServerProcess`, killed when the test ends however it ends.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use selecho_testkit::pattern::bytes as pattern;
use selecho_testkit::process::{ServerProcess, assert_usage_error, counter, run_to_end};
use selecho_testkit::scenarios::{self, End, Server, assert_bytes};
use selecho_testkit::tcp::{BOUND, TcpServer, stats_count_an_echo, try_connect};
use selecho_testkit::{scenario_tests, selecho};

/// `selecho --listen 127.0.0.1:0` with the scenario's settings.
/// Loopback works everywhere, so this driver never skips.
fn start(setup: scenarios::Setup) -> Option<TcpServer> {
    let mut cmd = server_cmd(&[
        "--listen",
        "127.0.0.1:0",
        "--max-conns",
        &setup.max_conns.to_string(),
    ]);
    if let Some(idle) = setup.idle_timeout {
        cmd.args(["--idle-timeout", &idle.as_secs_f64().to_string()]);
    }
    Some(TcpServer::new(ServerProcess::start(cmd, 1)))
}

scenario_tests!(start, big = 1 << 20);

/// The binary with `args`, logging warnings only.
fn server_cmd(args: &[&str]) -> Command {
    let mut cmd = selecho!();
    cmd.arg("-q").args(args);
    cmd
}

/// Echoes `data` in ping-pong chunks (write one, read its echo) and checks it.
fn echo_in_chunks(conn: &mut TcpStream, data: &[u8], what: &str) {
    let mut got = vec![0; 4096];
    for chunk in data.chunks(got.len()) {
        conn.write_all(chunk).expect("write");
        conn.read_exact(&mut got[..chunk.len()])
            .expect("read the echo");
        assert_bytes(&got[..chunk.len()], chunk, what);
    }
}

#[test]
fn two_hundred_concurrent_clients() {
    let mut server = TcpServer::new(ServerProcess::start(
        server_cmd(&["--listen", "127.0.0.1:0", "--max-conns", "250"]),
        1,
    ));
    let conns: Vec<TcpStream> = (0..200).map(|_| server.connect()).collect();
    let all_connected = Barrier::new(conns.len());
    thread::scope(|s| {
        for (i, mut conn) in conns.into_iter().enumerate() {
            let all_connected = &all_connected;
            thread::Builder::new()
                .stack_size(256 << 10)
                .spawn_scoped(s, move || {
                    // Unequal lengths, so the connections end at different times.
                    let data = pattern(1000 + i as u64, 20_000 + i * 301);
                    all_connected.wait();
                    echo_in_chunks(&mut conn, &data, &format!("client {i}"));
                    let (rest, end) = read_after_fin(&mut conn);
                    assert!(rest.is_empty() && end == End::Eof, "client {i}: clean end");
                })
                .expect("spawn a client thread");
        }
    });
}

/// Half-closes and reads to the end.
fn read_after_fin(conn: &mut TcpStream) -> (Vec<u8>, End) {
    conn.shutdown(std::net::Shutdown::Write)
        .expect("shutdown(SHUT_WR)");
    let mut got = Vec::new();
    match conn.read_to_end(&mut got) {
        Ok(_) => (got, End::Eof),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => (got, End::Reset),
        Err(e) => panic!("read to end: {e}"),
    }
}

#[test]
fn bad_flags_exit_2() {
    assert_usage_error(selecho!().args(["--max-conns", "0"]), "--max-conns");
    assert_usage_error(selecho!().args(["--listen", "nonsense"]), "nonsense");
    assert_usage_error(selecho!().args(["--grace=-1"]), "--grace");
    // Beyond FD_SETSIZE: refused before anything is bound, in one line.
    let (code, _, stderr) = run_to_end(selecho!().args(["--max-conns", "5000"]));
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.starts_with("error: --max-conns 5000 ") && stderr.contains("FD_SETSIZE"),
        "{stderr:?}"
    );
    // 1024 is one too many as well: the server's own descriptors take room.
    assert_usage_error(selecho!().args(["--max-conns", "1024"]), "--max-conns 1024");
}

#[test]
fn address_in_use_exits_1_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to take");
    let addr = taken.local_addr().expect("local address").to_string();
    let (code, stdout, stderr) = run_to_end(selecho!().args(["-q", "--listen", &addr]));
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(
        stdout.is_empty(),
        "nothing printed as listening: {stdout:?}"
    );
    assert!(
        stderr.contains(&addr) && stderr.to_lowercase().contains("in use"),
        "the message names the address and the cause: {stderr:?}"
    );
}

/// Whether this host can use IPv6 loopback.
fn has_ipv6_loopback() -> bool {
    TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

#[test]
fn ipv6_loopback() {
    if !has_ipv6_loopback() {
        eprintln!("skipped: this host has no [::1]");
        return;
    }
    let mut server = TcpServer::new(ServerProcess::start(
        server_cmd(&["--listen", "[::1]:0"]),
        1,
    ));
    assert!(server.addr.is_ipv6(), "listening on {}", server.addr);
    let mut conn = server.connect();
    let data = pattern(6, 50_000);
    assert_bytes(&server.exchange(&mut conn, &data), &data, "echo over IPv6");
}

#[test]
fn several_listeners_all_serve() {
    let mut args = vec!["--listen", "127.0.0.1:0", "--listen", "127.0.0.2:0"];
    if has_ipv6_loopback() {
        args.extend(["--listen", "[::1]:0"]);
    }
    let process = ServerProcess::start(server_cmd(&args), args.len() / 2);
    let addrs = process.addrs.clone();
    let mut server = TcpServer::new(process);
    for (i, addr) in addrs.into_iter().enumerate() {
        server.addr = addr;
        let mut conn = server.connect();
        let data = pattern(i as u64, 10_000);
        assert_bytes(
            &server.exchange(&mut conn, &data),
            &data,
            &format!("echo via {addr}"),
        );
    }
}

/// Waits until connecting to `addr` is refused (the server closed its
/// listeners): the sign that it has taken the signal.
fn wait_until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + BOUND;
    loop {
        match TcpStream::connect_timeout(&addr, BOUND) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            _ => assert!(
                Instant::now() < deadline,
                "{addr} still accepts connections"
            ),
        }
        thread::yield_now();
    }
}

/// A server with `--grace grace` and a client that wrote until blocked
/// and stopped reading: the server's queue and every buffer are full.
/// Returns the server, the client and what it was writing.
fn client_not_reading(grace: &str) -> (TcpServer, TcpStream, Vec<u8>) {
    let mut server = TcpServer::new(ServerProcess::start(
        server_cmd(&["--listen", "127.0.0.1:0", "--grace", grace]),
        1,
    ));
    let mut conn = server.connect();
    let data = pattern(11, 16 << 20);
    let written = server.write_until_blocked(&mut conn, &data);
    assert!(written > 0 && written < data.len(), "wrote {written}");
    (server, conn, data)
}

#[test]
fn sigterm_flushes_what_is_queued_then_exits_0() {
    let (mut server, mut conn, data) = client_not_reading("20");
    server.process.signal(libc::SIGTERM);
    wait_until_refused(server.addr);
    // Now read: everything the server took in comes back, then its FIN.
    let (got, end) = server.read_to_end(&mut conn);
    assert!(
        !got.is_empty(),
        "queued bytes were flushed after the signal"
    );
    assert_bytes(&got, &data[..got.len()], "the flushed bytes");
    assert_eq!(end, End::Eof, "a graceful close after the flush");
    drop(conn);
    let stopped = &server.process.wait_stopped(BOUND);
    assert_eq!(counter(stopped, "bytes_out"), got.len() as u64, "{stopped}");
    assert_eq!(
        counter(stopped, "bytes_in"),
        got.len() as u64,
        "every byte taken in was echoed: {stopped}"
    );
    // wait_until_refused's probes may have been accepted too (and closed
    // cleanly); none was reset.
    assert!(counter(stopped, "shut_down") >= 1, "{stopped}");
    assert_eq!(counter(stopped, "reset"), 0, "{stopped}");
}

#[test]
fn grace_period_ends_with_a_reset() {
    // The queue cannot drain within the grace period: nobody reads.
    let (mut server, mut conn, data) = client_not_reading("0.3");
    server.process.signal(libc::SIGTERM);
    let stopped = &server.process.wait_stopped(BOUND);
    assert!(
        counter(stopped, "bytes_out") < counter(stopped, "bytes_in"),
        "bytes were still queued: {stopped}"
    );
    assert_eq!(counter(stopped, "shut_down"), 1, "{stopped}");
    let (got, end) = server.read_to_end(&mut conn);
    assert_bytes(&got, &data[..got.len()], "what was echoed before the end");
    assert_eq!(
        end,
        End::Reset,
        "the connection was cut, not closed cleanly"
    );
}

#[test]
fn sigint_on_an_idle_server_exits_0_at_once() {
    let mut process = ServerProcess::start(server_cmd(&["--listen", "127.0.0.1:0"]), 1);
    process.signal(libc::SIGINT);
    let stopped = process.wait_stopped(BOUND);
    assert_eq!(counter(&stopped, "accepted"), 0, "{stopped}");
}

/// A server whose RLIMIT_NOFILE is `nofile`.
fn start_with_nofile(args: &[&str], nofile: u64) -> ServerProcess {
    let mut cmd = server_cmd(args);
    let limit = libc::rlimit {
        rlim_cur: nofile,
        rlim_max: nofile,
    };
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setrlimit, which is async-signal-safe, on a copied struct.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    ServerProcess::start(cmd, 1)
}

/// A connection, or `None` if the server reset it before `connect` returned.
fn connect_or_reset(addr: SocketAddr) -> Option<TcpStream> {
    match try_connect(addr) {
        Ok(conn) => {
            // Short: a connection neither served nor turned away fails fast.
            conn.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("read time-out");
            conn.set_write_timeout(Some(Duration::from_secs(5)))
                .expect("write time-out");
            Some(conn)
        }
        Err(e) if e.kind() == ErrorKind::ConnectionReset => None,
        Err(e) => panic!("connect: {e}"),
    }
}

/// Tries one short echo; false if the server turned the connection away.
fn try_echo(conn: &mut TcpStream, seed: u64) -> bool {
    let msg = pattern(seed, 100);
    let mut got = [0; 100];
    if conn.write_all(&msg).is_err() {
        return false;
    }
    match conn.read_exact(&mut got) {
        Ok(()) => {
            assert_bytes(&got, &msg, "an echo during the flood");
            true
        }
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) =>
        {
            false
        }
        Err(e) => panic!("a turned-away connection ends, it does not hang: {e}"),
    }
}

#[test]
fn descriptor_flood_does_not_spin_and_recovers() {
    const NOFILE: u64 = 40;
    const FLOOD: usize = 150;
    let process = start_with_nofile(&["--listen", "127.0.0.1:0", "--max-conns", "200"], NOFILE);
    let addr = process.addr();
    let cpu_before = process.cpu_time();
    let started = Instant::now();

    let mut conns: Vec<TcpStream> = (0..FLOOD).filter_map(|_| connect_or_reset(addr)).collect();
    let mut served = 0;
    for (i, conn) in conns.iter_mut().enumerate() {
        served += usize::from(try_echo(conn, i as u64));
    }
    assert!(served > 0, "the connections that fit are served");
    assert!(
        served < FLOOD,
        "only {NOFILE} descriptors, yet all {FLOOD} were served"
    );
    // Hold the flood open for a while: a server spinning on a listener it
    // cannot accept from would burn this whole window.
    thread::sleep(Duration::from_millis(500));
    let cpu = process.cpu_time() - cpu_before;
    assert!(
        cpu < Duration::from_millis(500),
        "{cpu:?} of CPU over {:?} of flood",
        started.elapsed()
    );

    // The served ones still work; then everyone leaves and a newcomer is served.
    let mut still = 0;
    for (i, conn) in conns.iter_mut().enumerate() {
        still += usize::from(try_echo(conn, 1000 + i as u64));
    }
    assert_eq!(
        still, served,
        "the connections served during the flood still are"
    );
    drop(conns);
    let deadline = Instant::now() + BOUND;
    loop {
        if connect_or_reset(addr).is_some_and(|mut conn| try_echo(&mut conn, 7)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no newcomer served after the flood"
        );
    }
}

#[test]
fn stats_interval_logs_the_counters() {
    let mut cmd = selecho!();
    cmd.args(["--listen", "127.0.0.1:0", "--stats-interval", "0.05"]);
    let mut server = TcpServer::new(ServerProcess::start(cmd, 1));
    stats_count_an_echo(&mut server, 1234);
}

#[test]
fn idle_server_uses_no_cpu() {
    let server = ServerProcess::start(
        server_cmd(&["--listen", "127.0.0.1:0", "--stats-interval", "0"]),
        1,
    );
    let before = server.cpu_time();
    // An observation window, not a wait for an event.
    thread::sleep(Duration::from_millis(300));
    assert!(server.cpu_time() - before < Duration::from_millis(50));
}
