//! End-to-end tests of the firmware: the echo machines built for the
//! Cortex-M3, booted on QEMU's mps2-an385 by `firmware/run`, reached over
//! a TAP device by the kernel's TCP and UDP — the shared scenarios (TCP
//! and UDP) as a fourth driver, plus what only the firmware has (the
//! largest datagram, idle cost, footprint, the on-target tests,
//! `firmware/run` itself).
//!
//! Each test that boots the firmware creates a network namespace of its
//! own (`ip netns add`), moves its thread into it (`setns`) and runs
//! `firmware/run --netns NS` (which makes the TAP there and runs QEMU
//! there), so `firmware/run`, QEMU, the clients and their threads all live
//! in it and talk only to each other. A guard undoes it all, on success or
//! panic: SIGTERM to `firmware/run` (which stops QEMU and deletes the
//! TAP), then SIGKILL to any process still in the namespace (QEMU, by
//! PID), then `ip netns del`.
//!
//! Without root, `/dev/net/tun`, QEMU, `defmt-print`, the thumbv7m target
//! or llvm-tools, a test prints what is missing (and the fix) on stderr and
//! returns early: a skip said out loud (CI sets `SELECHO_FIRMWARE_REQUIRED=1`,
//! which turns a skip into a failure). The usage checks of `firmware/run`
//! need none of it and always run.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use selecho_testkit::netns::{self, ip};
use selecho_testkit::pattern::bytes as pattern;
use selecho_testkit::process::{ServerProcess, assert_usage_error, counter, run_to_end};
use selecho_testkit::procstat;
use selecho_testkit::scenarios::udp::DatagramSetup;
use selecho_testkit::scenarios::{self, End, Server, assert_bytes};
use selecho_testkit::tcp::{BOUND, TcpServer, try_connect};
use selecho_testkit::udp::{KernelUdp, rate_args};
use selecho_testkit::{scenario_tests, udp_scenario_tests};

/// How long `firmware/run` may take to say `listening on` (the firmware is
/// built before the first test starts it).
const STARTUP: Duration = Duration::from_secs(60);

/// The flash the firmware must fit in (text + data), and what it aims for.
const FLASH_FLOOR: u64 = 64 * 1024;

/// The largest datagram the firmware echoes: one Ethernet frame's worth
/// (it reassembles no IPv4 fragments).
const MAX_DATAGRAM: usize = 1472;

/// The addresses of the host's side of the TAP: `firmware/run`'s default
/// `--host-address`, and one more for scenarios that want two source hosts.
const HOSTS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 88, 0, 1), Ipv4Addr::new(10, 88, 0, 3)];

/// The firmware's workspace.
fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware")
}

/// The ELF `firmware/run` boots.
fn elf() -> PathBuf {
    firmware_dir().join("target/thumbv7m-none-eabi/release/selecho-firmware")
}

/// What the firmware's build and run need that this machine lacks, with
/// the command that installs it; `None` if nothing is missing.
fn missing_tools() -> Option<String> {
    for (tool, fix) in [
        ("qemu-system-arm", "apt-get install -y qemu-system-arm"),
        ("defmt-print", "cargo install defmt-print --locked"),
    ] {
        if !on_path(tool) {
            return Some(format!("{tool} not found (install it: {fix})"));
        }
    }
    let Some(sysroot) = sysroot() else {
        return Some("rustc not found".into());
    };
    if !sysroot.join("lib/rustlib/thumbv7m-none-eabi").is_dir() {
        return Some(
            "the thumbv7m-none-eabi target is not installed \
             (rustup target add --toolchain 1.95.0 thumbv7m-none-eabi)"
                .into(),
        );
    }
    if llvm_size(&sysroot).is_none() {
        return Some(
            "llvm-size not found (rustup component add --toolchain 1.95.0 llvm-tools)".into(),
        );
    }
    None
}

/// Skips the calling test saying why, on stderr; or fails it, where the
/// firmware tests must run (`SELECHO_FIRMWARE_REQUIRED=1`, as in CI).
fn skip(reason: &str) {
    if std::env::var_os("SELECHO_FIRMWARE_REQUIRED").is_some_and(|v| v == "1") {
        panic!("the firmware tests must run here (SELECHO_FIRMWARE_REQUIRED=1), but: {reason}");
    }
    selecho_testkit::skip(reason);
}

/// Why the firmware cannot be booted on a TAP here, if it cannot.
fn unsupported() -> Option<String> {
    netns::unsupported().or_else(missing_tools)
}

/// Says `line` on the real stderr, past the harness's capture: a figure
/// the test measured.
fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// The sysroot of the toolchain the firmware builds with.
fn sysroot() -> Option<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(firmware_dir())
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?;
    out.status.success().then(|| PathBuf::from(path.trim_end()))
}

/// llvm-tools' `llvm-size` in `sysroot`.
fn llvm_size(sysroot: &Path) -> Option<PathBuf> {
    std::fs::read_dir(sysroot.join("lib/rustlib"))
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin/llvm-size"))
        .find(|path| path.is_file())
}

/// Builds the firmware once per test run (release); panics with cargo's
/// status if that fails. `firmware/run` builds again, which is then a no-op.
fn build() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let status = Command::new("cargo")
            .args(["build", "--release"])
            .current_dir(firmware_dir())
            .env("CARGO_TARGET_DIR", firmware_dir().join("target"))
            .status()
            .map_err(|e| format!("run cargo: {e}"))?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("building the firmware: {status}"))
    });
    if let Err(e) = built {
        panic!("{e}");
    }
}

/// A named network namespace of this test's, which this thread has entered.
/// Dropping it kills what still runs in it and deletes it.
struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace with a name no other test uses, and moves this
    /// thread (and the threads it starts from now on) into it.
    fn enter() -> Netns {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "selecho-fw-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        let file = File::open(format!("/run/netns/{}", ns.name)).expect("open the namespace");
        // SAFETY: setns(2) with a descriptor we own; CLONE_NEWNET moves
        // only the calling thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Waits up to [`BOUND`] for every process in the namespace to end;
    /// whether they did. A bounded poll: they are not this test's
    /// children (QEMU is `firmware/run`'s), so no event announces it.
    fn emptied(&self) -> bool {
        let deadline = Instant::now() + BOUND;
        while !self.pids().is_empty() {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// The processes in the namespace, with their command lines.
    fn ps(&self) -> String {
        let mut list = String::new();
        for pid in self.pids() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            list.push_str(&format!("[{pid}: {}] ", cmdline.trim_end()));
        }
        list
    }

    /// The processes running in the namespace.
    fn pids(&self) -> Vec<libc::pid_t> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .expect("run ip netns pids");
        // `ip` ran in the namespace too (this thread is in it) and lists
        // itself; it has exited by now.
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                // SAFETY: kill(2) takes no pointers; the pid was listed in
                // this test's own namespace just now.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The firmware running under `firmware/run` in a namespace of its own.
struct Firmware {
    tcp: TcpServer,
    /// Dropped after `tcp`: kills what is left in it, then deletes it.
    ns: Netns,
}

impl Firmware {
    /// Boots the firmware with `args` for `firmware/run`, serving `ports`
    /// ports (a `listening on` line each for TCP and for UDP); `None`
    /// (after saying why) where it cannot run.
    fn start(args: &[&str], ports: usize) -> Option<Firmware> {
        if let Some(reason) = unsupported() {
            skip(&reason);
            return None;
        }
        build();
        let ns = Netns::enter();
        let mut cmd = Command::new(firmware_dir().join("run"));
        cmd.args(["--netns", &ns.name]).args(args);
        let process =
            ServerProcess::spawn(cmd, 2 * ports, STARTUP).unwrap_or_else(|e| panic!("{e}"));
        let mut tcp = TcpServer::new(process);
        tcp.addr = tcp.process.addr_of("tcp").expect("a TCP listener");
        Some(Firmware { tcp, ns })
    }

    /// The first UDP address.
    fn udp_addr(&self) -> SocketAddr {
        self.tcp.process.addr_of("udp").expect("a UDP listener")
    }

    /// The firmware's next `stats:` log line for which `done` holds;
    /// panics if none comes within [`BOUND`].
    fn stats_until(&mut self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + BOUND;
        loop {
            let line = self.tcp.process.log_line("stats: ", deadline);
            match line {
                Some(line) if done(&line) => return line,
                Some(_) => {}
                None => panic!("no such stats line within {BOUND:?}"),
            }
        }
    }

    /// QEMU's process id (`firmware/run` and the log decoder run in the
    /// namespace too).
    fn qemu_pid(&self) -> libc::pid_t {
        let qemu = self.ns.pids().into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "qemu-system-arm")
        });
        qemu.expect("QEMU runs in the namespace")
    }
}

impl Drop for Firmware {
    fn drop(&mut self) {
        // firmware/run stops QEMU and deletes the TAP on SIGTERM.
        self.tcp.process.stop(Duration::from_secs(10));
    }
}

impl Server for Firmware {
    type Conn = TcpStream;

    fn connect(&mut self) -> TcpStream {
        self.tcp.connect()
    }

    fn connect_when_full(&mut self) -> Option<TcpStream> {
        self.tcp.connect_when_full()
    }

    fn exchange(&mut self, conn: &mut TcpStream, data: &[u8]) -> Vec<u8> {
        self.tcp.exchange(conn, data)
    }

    fn write_until_blocked(&mut self, conn: &mut TcpStream, data: &[u8]) -> usize {
        self.tcp.write_until_blocked(conn, data)
    }

    fn read_exact(&mut self, conn: &mut TcpStream, n: usize) -> Vec<u8> {
        self.tcp.read_exact(conn, n)
    }

    fn stream_and_close(&mut self, conn: &mut TcpStream, data: &[u8]) -> (Vec<u8>, End) {
        self.tcp.stream_and_close(conn, data)
    }

    fn shutdown_write(&mut self, conn: &mut TcpStream) {
        self.tcp.shutdown_write(conn)
    }

    fn read_to_end(&mut self, conn: &mut TcpStream) -> (Vec<u8>, End) {
        self.tcp.read_to_end(conn)
    }

    fn abort(&mut self, conn: TcpStream) {
        self.tcp.abort(conn)
    }
}

/// The firmware with the scenario's settings.
fn start(setup: scenarios::Setup) -> Option<Firmware> {
    let mut args = vec!["--max-conns".to_owned(), setup.max_conns.to_string()];
    if let Some(idle) = setup.idle_timeout {
        args.extend(["--idle-timeout".to_owned(), idle.as_secs_f64().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Firmware::start(&args, 1)
}

scenario_tests!(start, big = 1 << 20);

/// The firmware's UDP echo, reached from the host's side of the TAP.
type FirmwareUdp = KernelUdp<Firmware>;

/// The firmware with the scenario's rate limit, and a second host address
/// on the TAP.
fn start_udp(setup: DatagramSetup) -> Option<FirmwareUdp> {
    let args = rate_args(setup);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let fw = Firmware::start(&args, 1)?;
    ip(&["addr", "add", &format!("{}/24", HOSTS[1]), "dev", "fwtap0"]);
    Some(KernelUdp {
        addr: fw.udp_addr(),
        guard: fw,
        hosts: HOSTS.map(IpAddr::V4).to_vec(),
        max_datagram: MAX_DATAGRAM,
    })
}

udp_scenario_tests!(start_udp);

/// A UDP client on the host's side of the TAP (`HOSTS[0]`), its reads
/// bounded by [`BOUND`].
fn udp_client() -> UdpSocket {
    let client = UdpSocket::bind(SocketAddr::new(IpAddr::V4(HOSTS[0]), 0)).expect("a client");
    client.set_read_timeout(Some(BOUND)).expect("a time-out");
    client
}

/// Sends `tag` from `client` until its echo comes back (QEMU's LAN9118
/// drops frames past its FIFO, about six full ones: a datagram right after
/// many fragments may be lost), each try marked; every echo read must be
/// one of them. Returns the tries.
fn sentinel(client: &UdpSocket, to: SocketAddr, tag: &str) -> usize {
    let mut buf = vec![0; 70_000];
    let deadline = Instant::now() + BOUND;
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("a time-out");
    for tries in 1.. {
        assert!(
            Instant::now() < deadline,
            "no echo of {tag} within {BOUND:?}"
        );
        client
            .send_to(format!("{tag} #{tries}").as_bytes(), to)
            .expect("send");
        match client.recv(&mut buf) {
            Ok(n) => {
                let got = String::from_utf8_lossy(&buf[..n]);
                assert!(got.starts_with(tag), "an echo other than {tag}: {n} bytes");
                client.set_read_timeout(Some(BOUND)).expect("a time-out");
                return tries;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    unreachable!("the loop returns or fails")
}

/// 1472 bytes (one Ethernet frame's worth) is the largest datagram echoed;
/// one byte more, and the largest there is, arrive as IPv4 fragments,
/// which the firmware drops and counts, never echoing a part of one.
#[test]
fn udp_the_largest_datagram_is_1472_bytes_and_larger_are_dropped_and_counted() {
    let Some(mut fw) = Firmware::start(&["--udp-rate", "0"], 1) else {
        return;
    };
    let to = fw.udp_addr();
    let client = udp_client();
    let mut buf = vec![0; 70_000];
    for size in [MAX_DATAGRAM - 1, MAX_DATAGRAM] {
        let data = pattern(size as u64, size);
        client.send_to(&data, to).expect("send");
        let n = client.recv(&mut buf).expect("the echo");
        assert_bytes(&buf[..n], &data, &format!("echo of {size} bytes"));
    }
    let over = [MAX_DATAGRAM + 1, 2000, 8972, 65_507];
    let mut sentinels = 0;
    for size in over {
        client
            .send_to(&pattern(size as u64, size), to)
            .expect("send");
        sentinels += sentinel(&client, to, &format!("after {size}"));
    }
    let stats = fw.stats_until(|line| counter(line, "udp_dropped_truncated") == over.len() as u64);
    note(&format!("firmware {stats}"));
    let echoed = counter(&stats, "udp_echoed");
    assert!(
        (2 + over.len() as u64..=2 + sentinels as u64).contains(&echoed),
        "{stats}"
    );
    assert_eq!(
        counter(&stats, "udp_received"),
        echoed + over.len() as u64,
        "{stats}"
    );
    // Each was 2, 2, 7 and 45 fragments; QEMU's LAN9118 may have dropped
    // some of the later ones before the firmware saw them.
    let fragments = counter(&stats, "pkt_fragments_dropped");
    assert!((over.len() as u64..=56).contains(&fragments), "{stats}");
}

#[test]
fn two_ports_each_echo() {
    let Some(mut fw) = Firmware::start(&["--port", "7", "--port", "7007"], 2) else {
        return;
    };
    let listening: Vec<String> = fw
        .tcp
        .process
        .addrs
        .iter()
        .zip(&fw.tcp.process.protocols)
        .map(|(addr, protocol)| format!("{addr} ({protocol})"))
        .collect();
    assert_eq!(
        listening,
        [
            "10.88.0.2:7 (tcp)",
            "10.88.0.2:7007 (tcp)",
            "10.88.0.2:7 (udp)",
            "10.88.0.2:7007 (udp)"
        ]
    );
    let client = udp_client();
    for to in fw.tcp.process.addrs_of("udp") {
        let data = pattern(u64::from(to.port()), 1000);
        client.send_to(&data, to).expect("send");
        let mut buf = [0; 2000];
        let (n, from) = client.recv_from(&mut buf).expect("the echo");
        assert_eq!(from, to);
        assert_bytes(&buf[..n], &data, &format!("UDP echo on {to}"));
    }
    for addr in fw.tcp.process.addrs_of("tcp") {
        fw.tcp.addr = addr;
        let mut conn = fw.connect();
        let data = pattern(u64::from(addr.port()), 100_000);
        let (got, end) = fw.stream_and_close(&mut conn, &data);
        assert_bytes(&got, &data, &format!("echo on {addr}"));
        assert_eq!(end, End::Eof);
    }
}

#[test]
fn refuses_beyond_its_slots_with_rst() {
    let Some(mut fw) = Firmware::start(&["--max-conns", "2"], 1) else {
        return;
    };
    let mut conns: Vec<TcpStream> = (0..2).map(|_| fw.connect()).collect();
    for conn in &mut conns {
        let msg = pattern(1, 500);
        assert_bytes(&fw.exchange(conn, &msg), &msg, "while filling the slots");
    }
    let err = try_connect(fw.tcp.addr).expect_err("a third connection");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn idle_firmware_costs_qemu_almost_no_cpu() {
    let Some(mut fw) = Firmware::start(&[], 1) else {
        return;
    };
    let mut conn = fw.connect();
    let msg = pattern(4, 1000);
    assert_bytes(&fw.exchange(&mut conn, &msg), &msg, "one echo");
    let udp = udp_client();
    udp.send_to(&msg, fw.udp_addr()).expect("send");
    let mut buf = [0; 2000];
    let n = udp.recv(&mut buf).expect("the UDP echo");
    assert_bytes(&buf[..n], &msg, "one UDP echo");
    // Its stats line, so that no line is still to come in the window.
    fw.stats_until(|line| counter(line, "udp_echoed") == 1);
    let qemu = fw.qemu_pid().to_string();
    let before = procstat::cpu_time(&qemu).expect("QEMU's CPU time");
    // An observation window, not a wait for an event.
    let window = Duration::from_secs(3);
    thread::sleep(window);
    let used = procstat::cpu_time(&qemu).expect("QEMU's CPU time") - before;
    note(&format!(
        "idle QEMU used {used:?} of CPU in {window:?}, one connection open, after a UDP echo"
    ));
    assert!(
        used < Duration::from_millis(150),
        "an idle firmware cost QEMU {used:?} of CPU in {window:?}"
    );
    assert_bytes(
        &fw.exchange(&mut conn, &msg),
        &msg,
        "still serving after idling",
    );
}

#[test]
fn sigterm_stops_qemu_and_removes_the_tap() {
    let Some(mut fw) = Firmware::start(&["--ifname", "fwtap9"], 1) else {
        return;
    };
    let mut conn = fw.connect();
    let msg = pattern(5, 100);
    assert_bytes(&fw.exchange(&mut conn, &msg), &msg, "before the signal");
    fw.tcp.process.signal(libc::SIGTERM);
    let (status, _) = fw.tcp.process.wait_exit(BOUND);
    assert!(
        status.success(),
        "firmware/run exits 0 on SIGTERM: {status}"
    );
    assert!(fw.ns.emptied(), "QEMU is gone: {}", fw.ns.ps());
    let tap = Command::new("ip")
        .args(["link", "show", "fwtap9"])
        .output()
        .expect("run ip");
    assert!(!tap.status.success(), "the TAP is gone");
}

#[test]
fn a_command_line_the_firmware_refuses_exits_2() {
    if let Some(reason) = unsupported() {
        skip(&reason);
        return;
    }
    build();
    let ns = Netns::enter();
    let mut cmd = Command::new(firmware_dir().join("run"));
    cmd.args(["--netns", &ns.name, "--max-conns", "9"]);
    let (status, stdout, stderr) = run_to_end(&mut cmd);
    assert_eq!(status, Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("invalid value for --max-conns"),
        "the firmware's error, decoded: {stderr}"
    );
    assert!(!stdout.contains("listening on"), "{stdout}");
    assert!(ns.emptied(), "QEMU is gone: {}", ns.ps());
}

#[test]
fn bad_usage_exits_2() {
    // Checked before anything is built or created: no privilege needed.
    let run = || Command::new(firmware_dir().join("run"));
    assert_usage_error(run().arg("--verbose"), "unknown argument '--verbose'");
    assert_usage_error(run().arg("--port"), "--port needs a value");
    assert_usage_error(run().args(["--port", "x"]), "'--port'");
    assert_usage_error(run().args(["--udp-rate", "-1"]), "'--udp-rate'");
    assert_usage_error(run().args(["--address", "10.88.0.2"]), "ADDRESS/PREFIX");
    assert_usage_error(
        run().args(["--ifname", "a-name-far-too-long"]),
        "'--ifname'",
    );
    assert_usage_error(
        run().args(["--address", "10.1.0.1/24", "--host-address", "10.1.0.1/24"]),
        "the firmware's own address",
    );
}

#[test]
fn on_target_tests_pass() {
    if let Some(reason) = missing_tools() {
        skip(&reason);
        return;
    }
    let mut cmd = Command::new("cargo");
    cmd.args([
        "run",
        "--release",
        "--features",
        "selftest",
        "--bin",
        "selftest",
    ])
    .current_dir(firmware_dir())
    .env("CARGO_TARGET_DIR", firmware_dir().join("target"));
    let (status, stdout, stderr) = run_to_end(&mut cmd);
    assert_eq!(status, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

#[test]
fn footprint_fits_in_64_kib_of_flash() {
    if let Some(reason) = missing_tools() {
        skip(&reason);
        return;
    }
    build();
    let size = sysroot().as_deref().and_then(llvm_size).expect("llvm-size");
    let (status, stdout, stderr) = run_to_end(Command::new(size).arg(elf()));
    assert_eq!(status, Some(0), "{stderr}");
    // "   text    data     bss     dec     hex filename" and one row.
    let row: Vec<u64> = stdout
        .lines()
        .nth(1)
        .expect("a row")
        .split_whitespace()
        .take(3)
        .map(|n| n.parse().expect("a number"))
        .collect();
    let (text, data, bss) = (row[0], row[1], row[2]);
    note(&format!("firmware: text {text} data {data} bss {bss}"));
    assert!(
        text + data <= FLASH_FLOOR,
        "text {text} + data {data} over {FLASH_FLOOR}"
    );
}
