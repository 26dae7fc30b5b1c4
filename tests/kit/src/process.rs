//! A server binary as a child process: started, waited for until it says
//! `listening on ADDR`, signalled, and reaped, whatever happens to the test.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::procstat;

/// How long a server may take to print its `listening on` lines.
pub const STARTUP: Duration = Duration::from_secs(20);

/// A running server. Dropping it kills it (SIGKILL) and reaps it.
pub struct ServerProcess {
    child: Option<Child>,
    /// The addresses from its `listening on ADDR` lines, in order.
    pub addrs: Vec<SocketAddr>,
    /// The protocol of each of `addrs`: the word in `listening on ADDR
    /// (udp)`, or `tcp` for a line without one (the format from before
    /// selecho served UDP).
    pub protocols: Vec<String>,
    /// Lines printed on stdout after the `listening on` ones.
    lines: mpsc::Receiver<String>,
    /// Lines printed on stderr (the log), also passed on to the test's
    /// stderr, where the harness shows them if the test fails.
    log: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts `cmd` and waits up to `within` for `listeners` lines
    /// `listening on ADDR` or `listening on ADDR (PROTOCOL)`. On failure
    /// the process is killed and the error says why.
    pub fn spawn(mut cmd: Command, listeners: usize, within: Duration) -> Result<Self, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
        let stdout = child.stdout.take().ok_or("stdout is not piped")?;
        let stderr = child.stderr.take().ok_or("stderr is not piped")?;
        let mut server = ServerProcess {
            child: Some(child),
            addrs: Vec::new(),
            protocols: Vec::new(),
            lines: forward_lines(stdout, false),
            log: forward_lines(stderr, true),
        };
        let deadline = Instant::now() + within;
        while server.addrs.len() < listeners {
            if !server.next_listener(deadline)? {
                return Err(format!(
                    "{cmd:?} exited or was silent before `listening on` (status {:?})",
                    server.exited()
                ));
            }
        }
        Ok(server)
    }

    /// Reads stdout up to the next `listening on` line, waiting until
    /// `deadline`, and adds its address to [`addrs`](Self::addrs); `false`
    /// on exit or time-out, `Err` if the line has no address.
    pub fn next_listener(&mut self, deadline: Instant) -> Result<bool, String> {
        loop {
            let Some(line) = self.next_line(deadline) else {
                return Ok(false);
            };
            if !line.starts_with("listening on ") {
                continue;
            }
            let (addr, protocol) = parse_listening(&line)
                .ok_or_else(|| format!("server printed {line:?}: no address"))?;
            self.addrs.push(addr);
            self.protocols.push(protocol.to_owned());
            return Ok(true);
        }
    }

    /// [`spawn`](Self::spawn) within [`STARTUP`], for tests: panics with
    /// the reason if the server does not come up.
    pub fn start(cmd: Command, listeners: usize) -> Self {
        Self::spawn(cmd, listeners, STARTUP).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The first listening address of `protocol` (`tcp`, `udp`) announced
    /// so far.
    pub fn addr_of(&self, protocol: &str) -> Option<SocketAddr> {
        let i = self.protocols.iter().position(|p| p == protocol)?;
        Some(self.addrs[i])
    }

    /// The addresses announced for `protocol` (`tcp`, `udp`), in order.
    pub fn addrs_of(&self, protocol: &str) -> Vec<SocketAddr> {
        self.addrs
            .iter()
            .zip(&self.protocols)
            .filter(|(_, p)| *p == protocol)
            .map(|(&addr, _)| addr)
            .collect()
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

    /// The next log line (stderr) that contains `what`, waiting until
    /// `deadline`; `None` on exit or time-out.
    pub fn log_line(&mut self, what: &str, deadline: Instant) -> Option<String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.log.recv_timeout(left).ok()?;
            if line.contains(what) {
                return Some(line);
            }
        }
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) {
        // Not `pid()`: its 0 for a reaped process would signal our own group.
        let pid = self.child.as_ref().expect("not yet reaped").id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; it is not reaped before
        // drop, so the pid is ours.
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
        // stdout closed: the process is exiting; reap it.
        let child = self.child.as_mut().expect("not yet reaped");
        (reap(child, deadline), out)
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

    /// SIGTERM, then up to `limit` for a clean exit, then SIGKILL.
    pub fn stop(&mut self, limit: Duration) {
        if self.child.is_none() || self.exited().is_some() {
            return;
        }
        self.signal(libc::SIGTERM);
        let child = self.child.as_mut().expect("checked above");
        if exit_status_by(child, Instant::now() + limit).is_some() {
            return;
        }
        eprintln!("server {} ignored SIGTERM; killing it", self.pid());
        self.kill();
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// User plus system CPU time the process has used.
    pub fn cpu_time(&self) -> Duration {
        procstat::cpu_time(&self.pid().to_string()).expect("read /proc/PID/stat")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child the test started by hand: killed and reaped when dropped, so a
/// failing test leaves no server behind.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The address of a `listening on ADDR [(PROTO)]` line.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    parse_listening(line).map(|(addr, _)| addr)
}

/// The address and protocol of a `listening on ADDR [(PROTO)]` line; a
/// line without a protocol is TCP's (the older format).
fn parse_listening(line: &str) -> Option<(SocketAddr, &str)> {
    let mut words = line
        .trim()
        .strip_prefix("listening on ")?
        .split_whitespace();
    let addr = words.next()?.parse().ok()?;
    let protocol = words.next().unwrap_or("(tcp)");
    Some((addr, protocol.trim_start_matches('(').trim_end_matches(')')))
}

/// Waits for `child` to exit, until `deadline`; panics if it has not by then.
pub fn reap(child: &mut Child, deadline: Instant) -> ExitStatus {
    exit_status_by(child, deadline).unwrap_or_else(|| panic!("{child:?} did not exit in time"))
}

/// The exit status of `child` once it exits, waiting until `deadline`
/// (std has no timed wait on a child, and nothing else announces the exit:
/// it polls); `None` if it is still running then.
fn exit_status_by(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The `key=N` field of a `stopped: ...` (or stats) line.
pub fn counter(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(key)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// Runs `cmd` to completion: (exit code, stdout, stderr).
pub fn run_to_end(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `cmd`; asserts exit status `code`, nothing on stdout, and that
/// stderr mentions `what`. Returns stderr.
#[track_caller]
pub fn assert_exit(cmd: &mut Command, code: i32, what: &str) -> String {
    let (status, stdout, stderr) = run_to_end(cmd);
    assert_eq!(status, Some(code), "{cmd:?}: exit status; stderr: {stderr}");
    assert!(
        stdout.is_empty(),
        "{cmd:?}: nothing on stdout, got {stdout:?}"
    );
    assert!(
        stderr.contains(what),
        "{cmd:?}: stderr should mention {what:?}: {stderr}"
    );
    stderr
}

/// [`assert_exit`] with status 2, and the problem named on the first line
/// of stderr, after `error:`.
#[track_caller]
pub fn assert_usage_error(cmd: &mut Command, what: &str) {
    let stderr = assert_exit(cmd, 2, what);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error:") && first.contains(what),
        "{cmd:?}: the first line of stderr names the problem: {stderr:?}"
    );
}

/// A copy of a binary in a directory of its own that every user can enter
/// and run: a checkout (and its `target/`) may sit where only root can
/// (mode 0700, as root's home or `mktemp -d` gives). Removed on drop.
pub struct SharedCopy {
    dir: PathBuf,
    /// The copy.
    pub path: PathBuf,
}

impl SharedCopy {
    /// Copies `program` into a fresh directory under the system's temporary
    /// directory, both readable and executable by all; then checks that user
    /// `uid` can run it (`--version`). `Err` says why not.
    pub fn new(program: &Path, uid: u32) -> Result<Self, String> {
        let base = std::env::temp_dir();
        let dir = base.join(format!("selecho-shared-{}-{uid}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let copy = SharedCopy {
            path: dir.join(program.file_name().unwrap_or("program".as_ref())),
            dir,
        };
        let everyone = fs::Permissions::from_mode(0o755);
        fs::set_permissions(&copy.dir, everyone.clone())
            .and_then(|()| fs::copy(program, &copy.path).map(drop))
            .and_then(|()| fs::set_permissions(&copy.path, everyone))
            .map_err(|e| format!("copy {} to {}: {e}", program.display(), copy.dir.display()))?;
        let runs = Command::new(&copy.path)
            .arg("--version")
            .uid(uid)
            .gid(uid)
            .output()
            .is_ok_and(|out| out.status.success());
        if !runs {
            return Err(format!(
                "user {uid} cannot run {} (is {} reachable by all?)",
                copy.path.display(),
                base.display()
            ));
        }
        Ok(copy)
    }
}

impl Drop for SharedCopy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether the tests run as root (for network namespaces and TUN devices).
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Lines of `out` as they come, on a channel (and on this process's
/// stderr too if `echo`); drains `out` to its end so the child never blocks
/// on a full pipe.
fn forward_lines(out: impl Read + Send + 'static, echo: bool) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            let trimmed = line.trim_end();
            if echo {
                eprintln!("{trimmed}");
            }
            // A receiver gone (the test is done with the lines) is fine.
            let _ = tx.send(trimmed.to_owned());
            line.clear();
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printing(lines: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("printf '{lines}'; exec sleep 5")]);
        cmd
    }

    #[test]
    fn protocols_of_labelled_and_unlabelled_lines() {
        let lines = "hello\\nlistening on 127.0.0.1:5 (tcp)\\nlistening on [::1]:6 (udp)\\n";
        let server = ServerProcess::start(printing(lines), 2);
        assert_eq!(server.protocols, ["tcp", "udp"]);
        assert_eq!(server.addr_of("udp"), Some("[::1]:6".parse().unwrap()));
        assert_eq!(server.addr_of("sctp"), None);

        let mut old = ServerProcess::start(printing("listening on 127.0.0.1:7\\n"), 1);
        assert_eq!(old.addr_of("tcp"), Some("127.0.0.1:7".parse().unwrap()));
        let soon = Instant::now() + Duration::from_millis(100);
        assert_eq!(old.next_listener(soon), Ok(false));
    }
}
