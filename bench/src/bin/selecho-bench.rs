//! `selecho-bench`: runs each server as a child process under a series of
//! loads, interleaving servers round by round, and writes the medians to
//! `results.md` and `results.svg`. Each server is first started once to see
//! which protocols it announces (`listening on ADDR (udp)`); it runs only
//! the loads of those.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use selecho_bench::load::{LOSS_TIMEOUT, Mode};
use selecho_bench::report::{self, BASELINES, Summary, UDP_BASELINES};
use selecho_bench::result::LoadResult;
use selecho_testkit::process::ServerProcess;

/// How long a server may take to print `listening on ADDR`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long, after its last `listening on` line, a server is given to
/// announce one more listener when it is probed.
const PROBE_GAP: Duration = Duration::from_millis(500);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Chunk size of the stream load.
const STREAM_CHUNK: usize = 16 * 1024;
/// Size of the large UDP datagrams: what fits a 1500-byte Ethernet frame
/// with room to spare.
const UDP_LARGE: usize = 1400;

/// Benchmarks echo servers against each other with `selecho-load`.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The selecho binary [default: `selecho` next to this executable].
    #[arg(long)]
    selecho: Option<PathBuf>,
    /// Arguments passed to selecho (split on whitespace).
    #[arg(
        long,
        default_value = "--listen 127.0.0.1:0",
        allow_hyphen_values = true
    )]
    selecho_args: String,
    /// Rounds per load; each round runs every server once.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Warm-up seconds per run.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Smoke run: only pingpong-100x64, the stream and udp-pingpong-100x64,
    /// 1 round of 1 s.
    #[arg(long)]
    quick: bool,
    /// Run only these servers (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// Run only these loads, e.g. `pingpong-100x64`, `stream-4x16384`,
    /// `udp-pingpong-1x64` (repeatable).
    #[arg(long)]
    loads: Vec<String>,
    /// Extra selecho server, `NAME=ARGS`: the selecho binary with
    /// `--selecho-args` and then ARGS (split on whitespace), e.g.
    /// `selecho-t2=--threads 2` (repeatable).
    #[arg(long = "selecho-variant", value_name = "NAME=ARGS")]
    selecho_variants: Vec<String>,
    /// Extra server, `NAME=COMMAND ARGS...` (split on whitespace); it must
    /// print `listening on ADDR` (TCP) or `listening on ADDR (udp)` on
    /// stdout (repeatable).
    #[arg(long = "server", value_name = "NAME=COMMAND")]
    servers: Vec<String>,
    /// Run the load generator for server NAME inside network namespace NS,
    /// via `ip netns exec NS` (repeatable).
    #[arg(long = "server-netns", value_name = "NAME=NS")]
    server_netns: Vec<String>,
    /// Load-generator threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Where results.md and results.svg are written.
    #[arg(long, default_value = env!("CARGO_MANIFEST_DIR"))]
    out_dir: PathBuf,
}

/// A server under test.
#[derive(Debug, Clone)]
struct Server {
    name: String,
    /// Program and arguments.
    command: Vec<String>,
    /// Network namespace to run the load generator in.
    netns: Option<String>,
}

/// One load: a mode, a number of connections and a size.
#[derive(Debug, Clone)]
struct Load {
    mode: Mode,
    conns: usize,
    size: usize,
}

impl Load {
    fn name(&self) -> String {
        format!("{}-{}x{}", self.mode.name(), self.conns, self.size)
    }

    /// The protocol it runs over, as in `listening on ADDR (PROTOCOL)`.
    fn protocol(&self) -> &'static str {
        match self.mode {
            Mode::Pingpong | Mode::Stream => "tcp",
            Mode::UdpPingpong => "udp",
        }
    }
}

fn main() -> Result<ExitCode> {
    let mut args = Args::parse();
    if args.quick {
        args.rounds = 1;
        args.secs = 1.0;
        args.warmup = args.warmup.min(0.2);
    }
    let load_bin = sibling("selecho-load")?;
    if !load_bin.exists() {
        bail!("load generator not found at {}", load_bin.display());
    }
    let servers = servers(&args)?;
    if servers.is_empty() {
        bail!("no server to run");
    }
    let loads = loads(&args);
    if loads.is_empty() {
        bail!("no load selected");
    }

    let mut protocols: Vec<&str> = loads.iter().map(Load::protocol).collect();
    protocols.sort_unstable();
    protocols.dedup();
    let served = probe(&servers, &protocols);
    let (mut rows, mut udp_rows) = (Vec::new(), Vec::new());
    for load in &loads {
        // The servers that serve this load, each with its results and failures.
        let mut runs: Vec<(&Server, Vec<LoadResult>, Vec<String>)> = (servers.iter().zip(&served))
            .filter(|(_, served)| served.iter().any(|p| p == load.protocol()))
            .map(|(server, _)| (server, Vec::new(), Vec::new()))
            .collect();
        for round in 1..=args.rounds {
            for (server, results, failures) in &mut runs {
                eprintln!(
                    "[{}] round {round}/{}: {}",
                    load.name(),
                    args.rounds,
                    server.name
                );
                match run_one(&args, &load_bin, server, load) {
                    Ok(r) => results.push(r),
                    Err(e) => {
                        eprintln!("  failed: {e:#}");
                        failures.push(format!("{e:#}"));
                    }
                }
            }
        }
        let table = if load.protocol() == "udp" {
            &mut udp_rows
        } else {
            &mut rows
        };
        for (server, results, failures) in runs {
            table.push(Summary::new(&load.name(), &server.name, &results, failures));
        }
    }
    let text = tables(&rows, &udp_rows, &not_run(&servers, &served, &protocols));
    println!("{text}");
    rows.append(&mut udp_rows);
    write_outputs(&args, &text, &rows)?;
    // Lost datagrams are measured, not a fault of the run (a server's full
    // receive buffer drops them); they are in the table. Wrong bytes,
    // resets, failed connects and failed rounds fail it.
    if rows
        .iter()
        .any(|r| r.errors > r.lost || !r.failures.is_empty())
    {
        eprintln!("some runs had errors or failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// For each protocol some server does not serve, `PROTOCOL loads on
/// SERVER, ...`.
fn not_run(servers: &[Server], served: &[Vec<String>], protocols: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for p in protocols {
        let lacking: Vec<&str> = (servers.iter().zip(served))
            .filter(|(_, served)| !served.iter().any(|s| s == p))
            .map(|(server, _)| server.name.as_str())
            .collect();
        if !lacking.is_empty() {
            out.push(format!("{p} loads on {}", lacking.join(", ")));
        }
    }
    out
}

/// The TCP table, the UDP table (if any UDP load ran) and what was not
/// run, as Markdown.
fn tables(tcp: &[Summary], udp: &[Summary], skipped: &[String]) -> String {
    let mut out = String::new();
    if !tcp.is_empty() {
        out.push_str(&report::markdown(tcp, BASELINES));
    }
    if !udp.is_empty() {
        out.push_str(&format!(
            "\n**UDP** (one datagram in flight per socket; `lost`: datagrams not echoed within {} ms)\n\n",
            LOSS_TIMEOUT.as_millis()
        ));
        out.push_str(&report::markdown(udp, UDP_BASELINES));
    }
    if !skipped.is_empty() {
        out.push_str(&format!(
            "\nNot run (no `listening on ADDR (protocol)` line): {}.\n",
            skipped.join("; ")
        ));
    }
    out
}

/// The protocols each server announces `listening on` lines for, of those
/// `needed`: each is started once and given [`PROBE_GAP`] after each line
/// for another. A server that does not start is kept for every load (its
/// runs then fail and say why).
fn probe(servers: &[Server], needed: &[&str]) -> Vec<Vec<String>> {
    let all = || needed.iter().map(|p| p.to_string()).collect();
    let mut serves = Vec::new();
    for server in servers {
        let mut child = match start(server) {
            Ok(child) => child,
            Err(e) => {
                eprintln!("probing {}: {e:#}", server.name);
                serves.push(all());
                continue;
            }
        };
        while !needed.iter().all(|p| child.addr_of(p).is_some())
            && child.next_listener(Instant::now() + PROBE_GAP) == Ok(true)
        {}
        child.stop(STOP_TIMEOUT);
        for p in needed.iter().filter(|p| child.addr_of(p).is_none()) {
            eprintln!(
                "skipping {} on {p} loads: it announced no `listening on ADDR ({p})`",
                server.name
            );
        }
        serves.push(child.protocols.clone());
    }
    serves
}

/// The default servers that exist, the selecho variants and the `--server`
/// ones, filtered by `--only`.
fn servers(args: &Args) -> Result<Vec<Server>> {
    let selecho = match &args.selecho {
        Some(p) => p.clone(),
        None => sibling("selecho")?,
    };
    let tokio_echo = sibling("tokio-echo")?;
    let listen = ["--listen", "127.0.0.1:0"];
    let selecho_args: Vec<&str> = args.selecho_args.split_whitespace().collect();
    let mut candidates = vec![
        ("selecho".to_string(), selecho.clone(), selecho_args.clone()),
        (
            "tokio-mt".into(),
            tokio_echo.clone(),
            [&listen[..], &["--runtime", "multi"]].concat(),
        ),
        (
            "tokio-ct".into(),
            tokio_echo,
            [&listen[..], &["--runtime", "current"]].concat(),
        ),
        ("epoll".into(), sibling("epoll-echo")?, listen.to_vec()),
        (
            "tokio-udp".into(),
            sibling("tokio-udp-echo")?,
            listen.to_vec(),
        ),
    ];
    let variants = parse_pairs(&args.selecho_variants, "--selecho-variant")?;
    for (name, extra) in &variants {
        let args = [
            &selecho_args[..],
            &extra.split_whitespace().collect::<Vec<_>>(),
        ]
        .concat();
        candidates.push((name.clone(), selecho.clone(), args));
    }
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let netns: HashMap<String, String> = parse_pairs(&args.server_netns, "--server-netns")?
        .into_iter()
        .collect();
    let mut out = Vec::new();
    for (name, program, program_args) in candidates {
        if !wanted(&name) {
            continue;
        }
        if !program.exists() {
            eprintln!(
                "skipping {name}: binary not found at {} (build it with `cargo build --release`)",
                program.display()
            );
            continue;
        }
        let mut command = vec![program.to_string_lossy().into_owned()];
        command.extend(program_args.iter().map(|a| a.to_string()));
        out.push(Server {
            netns: netns.get(&name).cloned(),
            name,
            command,
        });
    }
    for (name, command) in parse_pairs(&args.servers, "--server")? {
        if !wanted(&name) {
            continue;
        }
        let command: Vec<String> = command.split_whitespace().map(String::from).collect();
        if command.is_empty() {
            bail!("--server {name}= has no command");
        }
        out.push(Server {
            netns: netns.get(&name).cloned(),
            name,
            command,
        });
    }
    Ok(out)
}

/// Parses `NAME=VALUE` arguments of `flag`, in order.
fn parse_pairs(items: &[String], flag: &str) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| {
            let Some((name, value)) = item.split_once('=') else {
                bail!("{flag} expects NAME=VALUE, got {item:?}");
            };
            Ok((name.to_string(), value.to_string()))
        })
        .collect()
}

/// The standard loads (or the quick ones), filtered by `--loads`.
fn loads(args: &Args) -> Vec<Load> {
    let pingpong = |conns, size| Load {
        mode: Mode::Pingpong,
        conns,
        size,
    };
    let stream = Load {
        mode: Mode::Stream,
        conns: 4,
        size: STREAM_CHUNK,
    };
    let udp = |conns, size| Load {
        mode: Mode::UdpPingpong,
        conns,
        size,
    };
    let all = if args.quick {
        vec![pingpong(100, 64), stream, udp(100, 64)]
    } else {
        let mut v: Vec<Load> = [1, 10, 100, 1000]
            .into_iter()
            .flat_map(|c| [pingpong(c, 64), pingpong(c, 4096)])
            .collect();
        v.push(stream);
        v.extend(
            [1, 100]
                .into_iter()
                .flat_map(|c| [udp(c, 64), udp(c, UDP_LARGE)]),
        );
        v
    };
    all.into_iter()
        .filter(|l| args.loads.is_empty() || args.loads.contains(&l.name()))
        .collect()
}

/// Starts `server`, runs one load against it and stops it.
fn run_one(args: &Args, load_bin: &Path, server: &Server, load: &Load) -> Result<LoadResult> {
    let mut child = start(server)?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let addr = loop {
        if let Some(addr) = child.addr_of(load.protocol()) {
            break addr;
        }
        if !child.next_listener(deadline).map_err(|e| anyhow!(e))? {
            bail!("{} announced no {} listener", server.name, load.protocol());
        }
    };
    let mut cmd = match &server.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(load_bin);
            c
        }
        None => Command::new(load_bin),
    };
    cmd.arg("--addr")
        .arg(addr.to_string())
        .args(["--conns", &load.conns.to_string()])
        .args(["--size", &load.size.to_string()])
        .args(["--mode", load.mode.name()])
        .args(["--secs", &args.secs.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--threads", &args.threads.to_string()])
        .args(["--pid", &child.pid().to_string()])
        .arg("--json")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let out = cmd.output().context("running selecho-load")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .map(serde_json::from_str::<LoadResult>);
    let exited = child.exited();
    child.stop(STOP_TIMEOUT);
    if let Some(status) = exited {
        bail!("{} exited during the run: {status}", server.name);
    }
    let result = match parsed {
        Some(r) => r.context("parsing selecho-load output")?,
        None => bail!("selecho-load printed no result ({})", out.status),
    };
    if result.errors.mismatches > 0 {
        bail!(
            "{} echoed wrong bytes ({} mismatches)",
            server.name,
            result.errors.mismatches
        );
    }
    if !out.status.success() {
        bail!("selecho-load failed: {}", out.status);
    }
    Ok(result)
}

/// Starts `server` and waits for its `listening on ADDR` line.
fn start(server: &Server) -> Result<ServerProcess> {
    let (program, rest) = server
        .command
        .split_first()
        .context("server command is empty")?;
    let mut cmd = Command::new(program);
    cmd.args(rest);
    ServerProcess::spawn(cmd, 1, READY_TIMEOUT).map_err(|e| anyhow!("{}: {e}", server.name))
}

/// Writes results.md and results.svg into `--out-dir`.
fn write_outputs(args: &Args, table: &str, rows: &[Summary]) -> Result<()> {
    std::fs::create_dir_all(&args.out_dir)?;
    let md_path = args.out_dir.join("results.md");
    let svg_path = args.out_dir.join("results.svg");
    let md = format!(
        "# selecho benchmark results\n\n\
         Median of {} round(s) of {} s (after {} s warm-up), servers interleaved; \
         measured with `selecho-load` ({} thread(s)) on {} CPU(s). \
         `ratio vs X` compares msgs/s with server X's under the same load.\n\n{table}",
        args.rounds,
        args.secs,
        args.warmup,
        args.threads,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    std::fs::write(&md_path, md).with_context(|| format!("writing {}", md_path.display()))?;
    report::svg_chart(rows, &svg_path)?;
    eprintln!("wrote {} and {}", md_path.display(), svg_path.display());
    Ok(())
}

/// A binary next to this executable.
fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating own executable")?;
    let dir = exe.parent().context("executable has no parent directory")?;
    Ok(dir.join(name))
}
