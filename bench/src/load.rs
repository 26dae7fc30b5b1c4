//! The verifying load generator: connections driven by `mio` event loops on
//! a few OS threads, every echoed byte checked against what was sent.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use selecho_testkit::{pattern, procstat};

use crate::result::{ErrorCounts, LoadResult};

/// Connect attempts per connection before it counts as a failure.
const CONNECT_ATTEMPTS: u32 = 6;
/// Back-off before the first connect retry; doubled after each.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// Upper bound of one connect attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Read/write rounds one connection may do per wake-up before yielding to
/// the others (it is then driven again without waiting for an event).
const DRIVE_BUDGET: u32 = 16;
/// Size of each thread's receive buffer.
const READ_BUF: usize = 64 * 1024;
/// Mismatches reported in detail on stderr per thread.
const MISMATCH_REPORTS: u64 = 3;

/// Traffic pattern of each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "runner", derive(clap::ValueEnum))]
pub enum Mode {
    /// Write one message, read its echo, repeat.
    Pingpong,
    /// Write continuously while reading the echo concurrently.
    Stream,
}

impl Mode {
    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pingpong => "pingpong",
            Mode::Stream => "stream",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server address.
    pub addr: SocketAddr,
    /// Number of connections.
    pub conns: usize,
    /// Message size (pingpong) or write chunk size (stream), bytes.
    pub size: usize,
    /// Measured window, seconds.
    pub secs: f64,
    /// Warm-up before the measured window, seconds.
    pub warmup: f64,
    /// Traffic pattern.
    pub mode: Mode,
    /// Event-loop threads.
    pub threads: usize,
    /// Server process whose CPU time is measured.
    pub pid: Option<u32>,
}

/// Connects all connections, runs the warm-up and the measured window, and
/// returns the measurements. Fails if no connection could be established.
pub fn run(cfg: &Config) -> Result<LoadResult> {
    if cfg.size == 0 || cfg.conns == 0 || cfg.threads == 0 {
        bail!("--size, --conns and --threads must be at least 1");
    }
    let pid = cfg.pid.map(|p| p.to_string());
    if let Some(pid) = &pid {
        procstat::cpu_time(pid).context("server --pid")?;
    }
    let mut errors = ErrorCounts::default();
    let mut per_thread: Vec<Vec<(usize, StdTcpStream)>> =
        (0..cfg.threads).map(|_| Vec::new()).collect();
    let mut connected = 0;
    for id in 0..cfg.conns {
        match connect(cfg.addr) {
            Ok(s) => {
                per_thread[id % cfg.threads].push((id, s));
                connected += 1;
            }
            Err(e) => {
                if errors.connect_failures == 0 {
                    eprintln!("connect to {} failed: {e}", cfg.addr);
                }
                errors.connect_failures += 1;
            }
        }
    }
    if connected == 0 {
        bail!("no connection to {} could be established", cfg.addr);
    }

    let start = Instant::now();
    let window = Window {
        from: start + Duration::from_secs_f64(cfg.warmup),
        to: start + Duration::from_secs_f64(cfg.warmup + cfg.secs),
    };
    let (stats, server_cpu, client_cpu) = std::thread::scope(|scope| {
        let workers: Vec<_> = per_thread
            .into_iter()
            .filter(|c| !c.is_empty())
            .map(|conns| scope.spawn(move || worker(conns, cfg.mode, cfg.size, window)))
            .collect();
        let (server_cpu, client_cpu) = measure_cpu(pid.as_deref(), window);
        let mut total = Stats::new()?;
        for w in workers {
            let stats = w
                .join()
                .map_err(|_| anyhow::anyhow!("worker thread panicked"))??;
            total.merge(&stats)?;
        }
        anyhow::Ok((total, server_cpu, client_cpu))
    })?;
    errors.add(&stats.errors);
    Ok(summarize(
        cfg, connected, &stats, errors, server_cpu, client_cpu,
    ))
}

/// Connects to `addr` with TCP_NODELAY, retrying refused or timed-out
/// attempts with a bounded exponential back-off; returns a non-blocking
/// stream.
fn connect(addr: SocketAddr) -> io::Result<StdTcpStream> {
    let mut backoff = CONNECT_BACKOFF;
    let mut attempt = 1;
    loop {
        match StdTcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                return Ok(s);
            }
            Err(e) if attempt < CONNECT_ATTEMPTS && retryable(&e) => {
                std::thread::sleep(backoff);
                backoff *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether a failed connect is worth retrying.
fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused
            | ErrorKind::WouldBlock
            | ErrorKind::TimedOut
            | ErrorKind::Interrupted
    )
}

/// Sleeps through the warm-up and the window, reading the server's and our
/// own CPU time at both edges; returns the CPU seconds spent in the window.
fn measure_cpu(pid: Option<&str>, window: Window) -> (Option<f64>, Option<f64>) {
    std::thread::sleep(window.from.saturating_duration_since(Instant::now()));
    let cpu = |pid: &str| procstat::cpu_time(pid).ok().map(|t| t.as_secs_f64());
    let server0 = pid.and_then(cpu);
    let client0 = cpu("self");
    std::thread::sleep(window.to.saturating_duration_since(Instant::now()));
    let server1 = pid.and_then(cpu);
    let client1 = cpu("self");
    if pid.is_some() && server1.is_none() {
        eprintln!("warning: could not read the server's CPU time at the end of the window");
    }
    let delta = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
    (delta(server0, server1), delta(client0, client1))
}

/// Turns merged counters into the reported result.
fn summarize(
    cfg: &Config,
    connected: usize,
    stats: &Stats,
    errors: ErrorCounts,
    server_cpu_s: Option<f64>,
    client_cpu_s: Option<f64>,
) -> LoadResult {
    let messages = match cfg.mode {
        Mode::Pingpong => stats.messages,
        Mode::Stream => stats.rx_bytes / cfg.size as u64,
    };
    let mbit = |bytes: u64| bytes as f64 * 8.0 / cfg.secs / 1e6;
    let pingpong = cfg.mode == Mode::Pingpong && !stats.latency.is_empty();
    let quantile_us = |q: f64| pingpong.then(|| stats.latency.value_at_quantile(q) as f64 / 1000.0);
    LoadResult {
        mode: cfg.mode.name().to_string(),
        conns: cfg.conns,
        connected,
        size: cfg.size,
        secs: cfg.secs,
        messages,
        msgs_per_sec: messages as f64 / cfg.secs,
        tx_mbit_s: mbit(stats.tx_bytes),
        rx_mbit_s: mbit(stats.rx_bytes),
        p50_us: quantile_us(0.5),
        p99_us: quantile_us(0.99),
        p999_us: quantile_us(0.999),
        errors,
        server_cpu_s,
        server_cpu_us_per_msg: server_cpu_s
            .filter(|_| messages > 0)
            .map(|s| s * 1e6 / messages as f64),
        client_cpu_s,
    }
}

/// The measured window; traffic before `from` is warm-up.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Instant,
    to: Instant,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        t >= self.from && t < self.to
    }
}

/// Counters of one worker thread.
struct Stats {
    messages: u64,
    tx_bytes: u64,
    rx_bytes: u64,
    /// Round-trip times in nanoseconds.
    latency: Histogram<u64>,
    errors: ErrorCounts,
}

impl Stats {
    fn new() -> Result<Stats> {
        Ok(Stats {
            messages: 0,
            tx_bytes: 0,
            rx_bytes: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
            errors: ErrorCounts::default(),
        })
    }

    fn merge(&mut self, other: &Stats) -> Result<()> {
        self.messages += other.messages;
        self.tx_bytes += other.tx_bytes;
        self.rx_bytes += other.rx_bytes;
        self.latency.add(&other.latency)?;
        self.errors.add(&other.errors);
        Ok(())
    }
}

/// Runs one thread's connections until the window closes.
fn worker(
    conns: Vec<(usize, StdTcpStream)>,
    mode: Mode,
    size: usize,
    window: Window,
) -> Result<Stats> {
    let mut poll = Poll::new()?;
    let mut ctx = Ctx {
        mode,
        window,
        now: Instant::now(),
        rbuf: vec![0; READ_BUF],
        stats: Stats::new()?,
    };
    let mut slots: Vec<Option<Conn>> = Vec::with_capacity(conns.len());
    for (idx, (id, s)) in conns.into_iter().enumerate() {
        let mut stream = TcpStream::from_std(s);
        poll.registry().register(
            &mut stream,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        slots.push(Some(Conn::new(id, stream, size, ctx.now)));
    }
    let mut events = Events::with_capacity(1024);
    let mut pending: Vec<usize> = (0..slots.len()).collect();
    let mut todo = Vec::new();
    let mut live = slots.len();
    loop {
        let now = Instant::now();
        if now >= window.to || live == 0 {
            return Ok(ctx.stats);
        }
        let timeout = if pending.is_empty() {
            window.to - now
        } else {
            Duration::ZERO
        };
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        ctx.now = Instant::now();
        todo.clear();
        todo.append(&mut pending);
        todo.extend(events.iter().map(|ev| ev.token().0));
        for &idx in &todo {
            let Some(conn) = slots[idx].as_mut() else {
                continue;
            };
            match conn.drive(&mut ctx) {
                Ok(Drive::Idle) => {}
                Ok(Drive::Busy) => pending.push(idx),
                Err(fault) => {
                    ctx.record_fault(conn.id, fault);
                    slots[idx] = None;
                    live -= 1;
                }
            }
        }
    }
}

/// Per-thread state shared by its connections.
struct Ctx {
    mode: Mode,
    window: Window,
    /// Time of the latest wake-up.
    now: Instant,
    rbuf: Vec<u8>,
    stats: Stats,
}

impl Ctx {
    fn record_fault(&mut self, id: usize, fault: Fault) {
        match fault {
            Fault::Mismatch { pos, got } => {
                if self.stats.errors.mismatches < MISMATCH_REPORTS {
                    eprintln!(
                        "conn {id}: echoed byte at stream offset {pos} is {got:#04x}, expected different"
                    );
                }
                self.stats.errors.mismatches += 1;
            }
            Fault::Excess { pos } => {
                eprintln!("conn {id}: received more bytes than were sent (at stream offset {pos})");
                self.stats.errors.mismatches += 1;
            }
            Fault::Closed => {
                eprintln!("conn {id}: closed by the server");
                self.stats.errors.resets += 1;
            }
            Fault::Io(e) => {
                eprintln!("conn {id}: {e}");
                self.stats.errors.resets += 1;
            }
        }
    }
}

/// Why a connection was dropped.
enum Fault {
    /// An echoed byte differed from the byte sent at that stream offset.
    Mismatch { pos: u64, got: u8 },
    /// The server sent bytes that were never sent to it.
    Excess { pos: u64 },
    /// The server closed the connection.
    Closed,
    /// Reset or other I/O error.
    Io(io::Error),
}

/// Outcome of driving a connection.
enum Drive {
    /// Every wanted operation hit `WouldBlock`: wait for the next event.
    Idle,
    /// Out of budget with work left: drive again soon.
    Busy,
}

/// One connection. Its sent and received bytes are positions in the
/// connection's pattern stream.
struct Conn {
    id: usize,
    stream: TcpStream,
    seed: u64,
    /// Bytes sent.
    tx_pos: u64,
    /// Bytes received and verified.
    rx_pos: u64,
    /// Pingpong: stream offset where the current message ends.
    msg_end: u64,
    /// Pingpong: when the current message was started.
    sent_at: Instant,
    /// Pattern bytes `chunk_start..chunk_start + chunk.len()`.
    chunk: Vec<u8>,
    chunk_start: u64,
}

impl Conn {
    fn new(id: usize, stream: TcpStream, size: usize, now: Instant) -> Conn {
        let seed = (id as u64 + 1).wrapping_mul(0x0100_0000_01B3) ^ 0x5E1E_C400;
        let mut chunk = vec![0; size];
        pattern::fill(seed, 0, &mut chunk);
        Conn {
            id,
            stream,
            seed,
            tx_pos: 0,
            rx_pos: 0,
            msg_end: size as u64,
            sent_at: now,
            chunk,
            chunk_start: 0,
        }
    }

    /// Writes and reads until both would block or the budget is spent.
    fn drive(&mut self, ctx: &mut Ctx) -> Result<Drive, Fault> {
        for _ in 0..DRIVE_BUDGET {
            let wrote = self.write_some(ctx)?;
            let read = self.read_some(ctx)?;
            if !wrote && !read {
                return Ok(Drive::Idle);
            }
        }
        Ok(Drive::Busy)
    }

    /// One write; `true` if it made progress.
    fn write_some(&mut self, ctx: &mut Ctx) -> Result<bool, Fault> {
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        match ctx.mode {
            Mode::Pingpong if self.tx_pos >= self.msg_end => return Ok(false),
            Mode::Pingpong => {}
            Mode::Stream if ctx.now >= ctx.window.to => return Ok(false),
            Mode::Stream if self.tx_pos == chunk_end => {
                self.chunk_start = self.tx_pos;
                pattern::fill(self.seed, self.chunk_start, &mut self.chunk);
            }
            Mode::Stream => {}
        }
        let from = (self.tx_pos - self.chunk_start) as usize;
        let n = match self.stream.write(&self.chunk[from..]) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(true),
            Err(e) => return Err(Fault::Io(e)),
        };
        self.tx_pos += n as u64;
        if ctx.window.contains(ctx.now) {
            ctx.stats.tx_bytes += n as u64;
        }
        Ok(n > 0)
    }

    /// One read, verified; `true` if it made progress.
    fn read_some(&mut self, ctx: &mut Ctx) -> Result<bool, Fault> {
        let n = match self.stream.read(&mut ctx.rbuf) {
            Ok(0) => return Err(Fault::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(true),
            Err(e) => return Err(Fault::Io(e)),
        };
        let data = &ctx.rbuf[..n];
        let end = self.rx_pos + n as u64;
        if let Err(pos) = pattern::verify(self.seed, self.rx_pos, data) {
            let got = data[(pos - self.rx_pos) as usize];
            if pos >= self.tx_pos {
                return Err(Fault::Excess { pos });
            }
            return Err(Fault::Mismatch { pos, got });
        }
        if end > self.tx_pos {
            return Err(Fault::Excess { pos: self.tx_pos });
        }
        self.rx_pos = end;
        if ctx.window.contains(ctx.now) {
            ctx.stats.rx_bytes += n as u64;
        }
        if ctx.mode == Mode::Pingpong && self.rx_pos == self.msg_end {
            self.next_message(ctx);
        }
        Ok(true)
    }

    /// Pingpong: records the finished round trip and starts the next one.
    fn next_message(&mut self, ctx: &mut Ctx) {
        let now = Instant::now();
        if ctx.window.contains(now) {
            ctx.stats.messages += 1;
            let rtt = now.duration_since(self.sent_at).as_nanos();
            ctx.stats
                .latency
                .saturating_record(u64::try_from(rtt).unwrap_or(u64::MAX));
        }
        if now >= ctx.window.to {
            return;
        }
        self.chunk_start = self.tx_pos;
        self.msg_end = self.tx_pos + self.chunk.len() as u64;
        pattern::fill(self.seed, self.chunk_start, &mut self.chunk);
        self.sent_at = now;
    }
}
