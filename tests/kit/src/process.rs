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
    /// Lines printed on stdout after the `listening on` ones.
    lines: mpsc::Receiver<String>,
    /// Lines printed on stderr (the log), also passed on to the test's
    /// stderr, where the harness shows them if the test fails.
    log: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts `cmd` and waits up to `within` for `listeners` lines
    /// `listening on ADDR` (anything after the address is ignored). On
    /// failure the process is killed and the error says why.
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
            lines: forward_lines(stdout, false),
            log: forward_lines(stderr, true),
        };
        let deadline = Instant::now() + within;
        while server.addrs.len() < listeners {
            let Some(line) = server.next_line(deadline) else {
                return Err(format!(
                    "{cmd:?} exited or was silent before `listening on` (status {:?})",
                    server.exited()
                ));
            };
            let Some(rest) = line.strip_prefix("listening on ") else {
                continue;
            };
            let addr = rest.split_whitespace().next().unwrap_or_default();
            let addr = addr
                .parse()
                .map_err(|_| format!("{cmd:?} printed {line:?}: no address"))?;
            server.addrs.push(addr);
        }
        Ok(server)
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
        let pid = self.pid() as libc::pid_t;
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
        if self.exited().is_some() {
            return;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(5));
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

/// Waits for `child` to exit, until `deadline` (std has no timed wait on a
/// child: it polls); panics if it has not by then.
pub fn reap(child: &mut Child, deadline: Instant) -> ExitStatus {
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return status;
        }
        assert!(Instant::now() < deadline, "{child:?} did not exit in time");
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
