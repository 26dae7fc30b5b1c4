//! What every end-to-end test needs: the real `selecho` binary as a child
//! process, and a blocking-socket client for the shared scenarios.

#![allow(dead_code)]

pub mod tcp;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to print its `listening on` lines.
pub const STARTUP: Duration = Duration::from_secs(20);

/// The `selecho` binary built for these tests.
pub fn selecho() -> Command {
    Command::new(env!("CARGO_BIN_EXE_selecho"))
}

/// A running server. Dropping it kills it (SIGKILL) and reaps it.
pub struct ServerProcess {
    child: Option<Child>,
    /// The addresses from its `listening on ADDR` lines, in order.
    pub addrs: Vec<SocketAddr>,
    /// Lines printed on stdout after the `listening on` ones.
    lines: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts `cmd` and waits for `listeners` lines `listening on ADDR`.
    /// Panics with the server's stderr if it exits or takes too long.
    pub fn start(mut cmd: Command, listeners: usize) -> ServerProcess {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn selecho");
        let stdout = child.stdout.take().expect("stdout is piped");
        let lines = forward_lines(stdout);
        let mut server = ServerProcess {
            child: Some(child),
            addrs: Vec::new(),
            lines,
        };
        let deadline = Instant::now() + STARTUP;
        while server.addrs.len() < listeners {
            let line = server.next_line(deadline).unwrap_or_else(|| {
                panic!(
                    "server exited or was silent before `listening on`: {:?}",
                    server.try_wait()
                )
            });
            if let Some(addr) = line.strip_prefix("listening on ") {
                server.addrs.push(
                    addr.trim()
                        .parse()
                        .expect("an address after `listening on`"),
                );
            }
        }
        server
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The next stdout line, waiting until `deadline`; `None` on exit or time-out.
    pub fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines.recv_timeout(left).ok()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; it is not reaped before drop, so the pid is ours.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Waits up to `limit` for the process to exit; its status, and every
    /// stdout line it printed meanwhile.
    pub fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        while let Some(line) = self.next_line(deadline) {
            out.push(line);
        }
        // stdout closed: the process is exiting; reap it (bounded by the same deadline).
        loop {
            if let Some(status) = self.try_wait() {
                return (status, out);
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {limit:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (up to `limit`) for the process to exit with status 0 and
    /// returns its `stopped: <counters>` line.
    pub fn wait_stopped(&mut self, limit: Duration) -> String {
        let (status, lines) = self.wait_exit(limit);
        assert!(status.success(), "exit status {status}; stdout {lines:?}");
        lines
            .into_iter()
            .find(|line| line.starts_with("stopped: "))
            .expect("a `stopped: ` line")
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// User plus system CPU time the process has used, from /proc/PID/stat.
    pub fn cpu_time(&self) -> Duration {
        cpu_time(self.pid())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `key=N` field of a `stopped: ...` line.
pub fn counter(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(key)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// Runs `selecho ARGS`; asserts exit status `code`, nothing on stdout, and
/// that stderr mentions `what`. Returns stderr.
#[track_caller]
pub fn assert_exit(args: &[&str], code: i32, what: &str) -> String {
    let (status, stdout, stderr) = run_to_end(args);
    assert_eq!(
        status,
        Some(code),
        "{args:?}: exit status; stderr: {stderr}"
    );
    assert!(
        stdout.is_empty(),
        "{args:?}: nothing on stdout, got {stdout:?}"
    );
    assert!(
        stderr.contains(what),
        "{args:?}: stderr should mention {what:?}: {stderr}"
    );
    stderr
}

/// [`assert_exit`] with status 2, and the problem named on the first line
/// of stderr, after `error:`.
#[track_caller]
pub fn assert_usage_error(args: &[&str], what: &str) {
    let stderr = assert_exit(args, 2, what);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error:") && first.contains(what),
        "{args:?}: the first line of stderr names the problem: {stderr:?}"
    );
}

/// Runs the binary to completion with `args`: (exit code, stdout, stderr).
pub fn run_to_end(args: &[&str]) -> (Option<i32>, String, String) {
    let out = selecho()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run selecho");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// utime + stime of `pid` (fields 14 and 15 of /proc/PID/stat, in clock ticks).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The command name (field 2) may hold spaces; the fields after it start past the last ')'.
    let rest = &stat[stat.rfind(')').expect("')' in /proc/PID/stat") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Whether the tests run as root (for network namespaces and TUN devices).
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

fn forward_lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if tx.send(line.trim_end().to_owned()).is_err() {
                break;
            }
            line.clear();
        }
        // Drain anything left so the child never blocks on a full pipe.
        let _ = reader.read_to_end(&mut Vec::new());
    });
    rx
}
