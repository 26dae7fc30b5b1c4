//! End-to-end tests of the select shell: the real `selecho` binary on
//! loopback, driven by blocking clients with time-outs. Every server is a
//! `ServerProcess`, killed when the test ends however it ends.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use selecho_testkit::pattern::bytes as pattern;
use selecho_testkit::process::{
    ChildGuard, ServerProcess, assert_usage_error, counter, listening_addr, reap, run_to_end,
};
use selecho_testkit::scenarios::udp::DatagramSetup;
use selecho_testkit::scenarios::{self, End, Server, assert_bytes};
use selecho_testkit::tcp::{
    BOUND, TcpServer, half_closed_client_at_sigterm, signals_other_than_stop_keep_serving,
    stats_count_an_echo, try_connect, urgent_byte_is_echoed_in_line, wait_until_refused,
};
use selecho_testkit::udp::{KernelUdp, rate_args};
use selecho_testkit::{scenario_tests, selecho, udp_scenario_tests};

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

/// `selecho --listen 127.0.0.1:0` with the scenario's UDP rate limit,
/// reached from 127.0.0.1 and 127.0.0.2 (all of 127/8 is loopback).
fn start_udp(setup: DatagramSetup) -> Option<KernelUdp<ServerProcess>> {
    let mut cmd = server_cmd(&["--listen", "127.0.0.1:0"]);
    cmd.args(rate_args(setup));
    let hosts = vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2])];
    Some(KernelUdp::of_process(ServerProcess::start(cmd, 2), hosts))
}

udp_scenario_tests!(start_udp);

/// The binary with `args`, logging warnings only.
fn server_cmd(args: &[&str]) -> Command {
    let mut cmd = selecho!();
    cmd.arg("-q").args(args);
    cmd
}

/// [`server_cmd`] with `args`, reached over TCP once it has announced its
/// first listener.
fn tcp_server(args: &[&str]) -> TcpServer {
    TcpServer::new(ServerProcess::start(server_cmd(args), 1))
}

/// A server on 127.0.0.1 with `--grace grace`.
fn with_grace(grace: &str) -> TcpServer {
    tcp_server(&["--listen", "127.0.0.1:0", "--grace", grace])
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
    let mut server = tcp_server(&["--listen", "127.0.0.1:0", "--max-conns", "250"]);
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

/// Raises this process's soft RLIMIT_NOFILE to `wanted`; the reason if
/// the hard limit does not allow it.
fn raise_own_nofile(wanted: u64) -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the live local.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    if limit.rlim_cur >= wanted {
        return Ok(());
    }
    if limit.rlim_max < wanted {
        return Err(format!(
            "RLIMIT_NOFILE's hard limit is {}, under {wanted}",
            limit.rlim_max
        ));
    }
    limit.rlim_cur = wanted;
    // SAFETY: setrlimit reads one `rlimit` from the live local.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    Ok(())
}

#[test]
fn three_thousand_connections_over_four_threads() {
    const CONNS: usize = 3000;
    const ROUNDS: u64 = 3;
    // The clients' sockets are this process's: room for them.
    if let Err(reason) = raise_own_nofile(2 * CONNS as u64 + 256) {
        return selecho_testkit::skip(&reason);
    }
    let mut server = tcp_server(&[
        "--listen",
        "127.0.0.1:0",
        "--no-udp",
        "--threads",
        "4",
        "--max-conns",
        &CONNS.to_string(),
    ]);
    // All at once: more than one select() loop could watch.
    let mut conns: Vec<TcpStream> = (0..CONNS).map(|_| server.connect()).collect();
    for round in 0..ROUNDS {
        let msgs: Vec<Vec<u8>> = (0..CONNS)
            .map(|i| pattern(round * 10_000 + i as u64, 64))
            .collect();
        for (conn, msg) in conns.iter_mut().zip(&msgs) {
            conn.write_all(msg).expect("write");
        }
        for (i, (conn, msg)) in conns.iter_mut().zip(&msgs).enumerate() {
            let mut got = [0; 64];
            conn.read_exact(&mut got).expect("read the echo");
            assert_bytes(&got, msg, &format!("round {round}, connection {i}"));
        }
    }
    server.process.signal(libc::SIGTERM);
    for conn in &mut conns {
        let (rest, end) = read_after_fin(conn);
        assert!(
            rest.is_empty() && end == End::Eof,
            "a clean end for every client"
        );
    }
    let stopped = server.process.wait_stopped(BOUND);
    let bytes = (CONNS as u64) * ROUNDS * 64;
    assert_eq!(counter(&stopped, "accepted"), CONNS as u64, "{stopped}");
    assert_eq!(counter(&stopped, "bytes_in"), bytes, "{stopped}");
    assert_eq!(counter(&stopped, "bytes_out"), bytes, "{stopped}");
    assert_eq!(counter(&stopped, "refused"), 0, "{stopped}");
}

/// `selecho ARGS` started the way systemd's socket activation starts it:
/// the sockets at descriptors 3 and 4 (bash moves them there from 200 and
/// 201, out of the way of what spawning uses), `LISTEN_FDS=2` and
/// `LISTEN_PID` naming the process (bash's, kept by `exec`).
fn activated(tcp: &TcpListener, udp: &UdpSocket, args: &[&str]) -> Command {
    let (tcp, udp) = (tcp.as_raw_fd(), udp.as_raw_fd());
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(r#"exec 3<&200 4<&201 200<&- 201<&-; LISTEN_PID=$$ LISTEN_FDS=2 exec "$0" "$@""#)
        .arg(selecho!().get_program())
        .args(args);
    // SAFETY: the closure runs in the forked child before exec and only
    // calls dup2, which is async-signal-safe, on descriptors it names.
    unsafe {
        cmd.pre_exec(move || {
            for (from, to) in [(tcp, 200), (udp, 201)] {
                if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
}

#[test]
fn socket_activation_serves_the_sockets_handed_over() {
    let tcp = TcpListener::bind("127.0.0.1:0").expect("a TCP listener");
    let addr = tcp.local_addr().expect("its address");
    let udp = UdpSocket::bind(addr).expect("a UDP socket on the same port");
    let process = ServerProcess::start(activated(&tcp, &udp, &["-q"]), 2);
    assert_eq!(
        process.addrs_of("tcp"),
        [addr],
        "serves the TCP socket given"
    );
    assert_eq!(process.addrs_of("udp"), [addr], "and the UDP one");
    // Only the server holds them now.
    drop((tcp, udp));
    let mut server = TcpServer::new(process);
    let mut conn = server.connect();
    let msg = pattern(12, 3000);
    assert_bytes(&server.exchange(&mut conn, &msg), &msg, "TCP echo");
    let client = UdpSocket::bind("127.0.0.1:0").expect("a client socket");
    client.set_read_timeout(Some(BOUND)).expect("a time-out");
    client.send_to(b"activated", addr).expect("send a datagram");
    let mut got = [0; 64];
    let (n, from) = client.recv_from(&mut got).expect("the echo");
    assert_eq!((&got[..n], from), (&b"activated"[..], addr), "UDP echo");
    // The activator chose the addresses: --listen as well is refused.
    let tcp = TcpListener::bind("127.0.0.1:0").expect("a TCP listener");
    let udp = UdpSocket::bind(tcp.local_addr().expect("its address")).expect("a UDP socket");
    assert_usage_error(
        &mut activated(&tcp, &udp, &["--listen", "127.0.0.1:0"]),
        "socket activation",
    );
}

#[test]
fn the_systemd_units_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        return selecho_testkit::skip("no systemd-analyze here");
    }
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist");
    let dir = std::env::temp_dir().join(format!("selecho-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    for unit in ["selecho.socket", "selecho.service"] {
        let text = std::fs::read_to_string(dist.join(unit)).expect("read a unit");
        // Verify checks that the program exists: point it at this build.
        let text = text.replace(
            "/usr/local/bin/selecho",
            &selecho!().get_program().to_string_lossy(),
        );
        std::fs::write(dir.join(unit), text).expect("write a unit");
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(["selecho.socket", "selecho.service"].map(|u| dir.join(u)))
        .output()
        .expect("run systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}

#[test]
fn bad_flags_exit_2() {
    assert_usage_error(selecho!().args(["--max-conns", "0"]), "--max-conns");
    assert_usage_error(selecho!().args(["--listen", "nonsense"]), "nonsense");
    assert_usage_error(selecho!().args(["--grace=-1"]), "--grace");
    // More than the threads can hold: refused before anything is bound,
    // in one line that says how many threads would.
    let (code, _, stderr) = run_to_end(selecho!().args(["--max-conns", "5000"]));
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.starts_with("error: --max-conns 5000 needs --threads 5 or more"),
        "{stderr:?}"
    );
    assert_usage_error(
        selecho!().args(["--threads", "2", "--max-conns", "2049"]),
        "needs --threads 3",
    );
    assert_usage_error(selecho!().args(["--threads", "0"]), "--threads");
    assert_usage_error(selecho!().args(["--threads", "65"]), "--threads");
    assert_usage_error(selecho!().args(["--no-tcp", "--no-udp"]), "--no-udp");
    // Periods under a millisecond would spin or close everything at once.
    assert_usage_error(
        selecho!().args(["--stats-interval", "0.000001"]),
        "millisecond",
    );
    assert_usage_error(selecho!().args(["--idle-timeout", "1e-7"]), "millisecond");
}

/// `selecho` with `inherited` extra descriptors open (on /dev/null, not
/// close-on-exec), as a careless parent might leave them.
fn with_inherited_descriptors(args: &[&str], inherited: i32) -> Command {
    let mut cmd = server_cmd(args);
    // SAFETY: the closure runs in the forked child before exec and only
    // calls dup2, which is async-signal-safe, on descriptors it names.
    unsafe {
        cmd.pre_exec(move || {
            for fd in 100..100 + inherited {
                if libc::dup2(0, fd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
}

#[test]
fn inherited_descriptors_cost_no_connections() {
    // 30 descriptors inherited, and the most one thread serves asked for:
    // the sets reach past FD_SETSIZE, so nothing is refused.
    let mut server = TcpServer::new(ServerProcess::start(
        with_inherited_descriptors(&["--listen", "127.0.0.1:0", "--max-conns", "1024"], 30),
        1,
    ));
    let mut conn = server.connect();
    let msg = pattern(3, 1000);
    assert_bytes(&server.exchange(&mut conn, &msg), &msg, "served");
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
        return selecho_testkit::skip("this host has no [::1]");
    }
    let mut server = tcp_server(&["--listen", "[::1]:0"]);
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

/// A server with `--grace grace` and a client that wrote until blocked
/// and stopped reading: the server's queue and every buffer are full.
/// Returns the server, the client and what it wrote.
fn client_not_reading(grace: &str) -> (TcpServer, TcpStream, Vec<u8>) {
    let mut server = with_grace(grace);
    let mut conn = server.connect();
    let data = pattern(11, 16 << 20);
    let written = server.write_until_blocked(&mut conn, &data);
    assert!(written > 0 && written < data.len(), "wrote {written}");
    (server, conn, data[..written].to_vec())
}

#[test]
fn sigterm_echoes_everything_a_client_sent_then_exits_0() {
    let (mut server, mut conn, written) = client_not_reading("20");
    server.process.signal(libc::SIGTERM);
    wait_until_refused(server.addr);
    // Now read: every byte the client wrote (most of it still in the
    // kernel's buffers at the signal) comes back, then the server's FIN.
    let (got, end) = server.read_to_end(&mut conn);
    assert_bytes(
        &got,
        &written,
        "everything written, echoed after the signal",
    );
    assert_eq!(end, End::Eof, "a graceful close after the last byte");
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
fn sigterm_lets_a_half_closed_client_finish() {
    let stopped = half_closed_client_at_sigterm(&mut with_grace("20"), 24_000_000, true);
    // wait_until_refused's probes may have been accepted and closed too.
    assert!(counter(&stopped, "closed") >= 1, "{stopped}");
    assert_eq!(counter(&stopped, "bytes_out"), 24_000_000, "{stopped}");
    assert_eq!(counter(&stopped, "reset"), 0, "{stopped}");
}

#[test]
fn sigterm_cuts_an_unfinished_half_close_with_a_reset() {
    let stopped = half_closed_client_at_sigterm(&mut with_grace("0.3"), 24_000_000, false);
    assert!(counter(&stopped, "shut_down") >= 1, "{stopped}");
    let (bytes_in, bytes_out) = (
        counter(&stopped, "bytes_in"),
        counter(&stopped, "bytes_out"),
    );
    assert!(bytes_out < bytes_in, "{stopped}");
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
    // Nothing announces that the server has seen the closes and freed the
    // descriptors: a newcomer retries until the deadline.
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
fn usr1_hup_and_usr2_are_handled_not_fatal() {
    let mut cmd = server_cmd(&["--listen", "127.0.0.1:0"]);
    cmd.env("SELECHO_LOG", "info");
    let mut server = TcpServer::new(ServerProcess::start(cmd, 1));
    signals_other_than_stop_keep_serving(&mut server);
}

#[test]
fn urgent_data_is_echoed_in_line() {
    urgent_byte_is_echoed_in_line(&mut tcp_server(&["--listen", "127.0.0.1:0"]));
}

#[test]
fn a_closed_stdout_is_no_reason_to_panic() {
    // `selecho --listen 127.0.0.1:0 | head -1`: the reader goes after a line.
    let mut child = ChildGuard(
        server_cmd(&["--listen", "127.0.0.1:0", "--no-udp"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn selecho"),
    );
    let mut first = String::new();
    BufReader::new(child.0.stdout.take().expect("piped"))
        .read_line(&mut first)
        .expect("the first line");
    let addr = listening_addr(&first).unwrap_or_else(|| panic!("{first:?}"));
    // The pipe's read end is closed now.
    let mut conn = try_connect(addr).expect("connect");
    let msg = pattern(8, 5000);
    let mut got = vec![0; msg.len()];
    conn.write_all(&msg).expect("write");
    conn.read_exact(&mut got).expect("read the echo");
    assert_bytes(&got, &msg, "served with stdout gone");
    // SAFETY: kill(2) on our own child's pid, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    let status = reap(&mut child.0, Instant::now() + BOUND);
    assert_eq!(status.code(), Some(0), "a clean exit, not a panic (101)");
}

#[test]
fn a_full_stdout_does_not_hold_up_serving_or_stopping() {
    let stdout = full_pipe();
    // Nothing can be announced, so the sockets are handed over (socket
    // activation): the kernel queues the connection until the server
    // serves it, and the echo is the event to wait for.
    let tcp = TcpListener::bind("127.0.0.1:0").expect("a TCP listener");
    let addr = tcp.local_addr().expect("its address");
    let udp = UdpSocket::bind(addr).expect("a UDP socket on the same port");
    let mut child = ChildGuard(
        activated(&tcp, &udp, &["-q"])
            .stdout(Stdio::from(stdout.write))
            .spawn()
            .expect("spawn selecho"),
    );
    drop((tcp, udp));
    // Serving goes on all the same.
    let mut conn = try_connect(addr).expect("connect");
    let msg = pattern(9, 5000);
    let mut got = vec![0; msg.len()];
    conn.write_all(&msg).expect("write");
    conn.read_exact(&mut got).expect("read the echo");
    assert_bytes(&got, &msg, "served with stdout full");
    // The first SIGTERM stops it, within the bounded wait for stdout.
    let signalled = Instant::now();
    // SAFETY: kill(2) on our own child's pid, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
    let status = reap(&mut child.0, Instant::now() + BOUND);
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
    drop(stdout.read);
}

/// Both ends of a pipe whose buffer is full (the write end blocking again).
struct FullPipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// A pipe, filled until its write end would block.
fn full_pipe() -> FullPipe {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just returned these descriptors; nothing else owns them.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let set_nonblocking = |on: bool| {
        let fd = write.as_raw_fd();
        // SAFETY: F_GETFL/F_SETFL on a descriptor we own; no pointers.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            let flags = if on {
                flags | libc::O_NONBLOCK
            } else {
                flags & !libc::O_NONBLOCK
            };
            assert_eq!(libc::fcntl(fd, libc::F_SETFL, flags), 0);
        }
    };
    set_nonblocking(true);
    let mut file = std::fs::File::from(write.try_clone().expect("dup"));
    while file.write(&[b'x'; 4096]).is_ok() {}
    set_nonblocking(false);
    FullPipe { read, write }
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
