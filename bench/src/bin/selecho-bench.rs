//! `selecho-bench`: runs each server as a child process under a series of
//! loads, interleaving servers round by round, and writes the medians to
//! `results.md` and `results.svg`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use selecho_bench::load::Mode;
use selecho_bench::report::{self, Summary};
use selecho_bench::result::LoadResult;
use selecho_testkit::process::ServerProcess;

/// How long a server may take to print `listening on ADDR`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Chunk size of the stream load.
const STREAM_CHUNK: usize = 16 * 1024;

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
    /// Smoke run: only pingpong-100x64 and the stream, 1 round of 1 s.
    #[arg(long)]
    quick: bool,
    /// Run only these servers (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// Run only these loads, e.g. `pingpong-100x64`, `stream-4x16384` (repeatable).
    #[arg(long)]
    loads: Vec<String>,
    /// Extra server, `NAME=COMMAND ARGS...` (split on whitespace); it must
    /// print `listening on ADDR` on stdout (repeatable).
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

    let mut runs: HashMap<(usize, usize), (Vec<LoadResult>, Vec<String>)> = HashMap::new();
    for (li, load) in loads.iter().enumerate() {
        for round in 1..=args.rounds {
            for (si, server) in servers.iter().enumerate() {
                eprintln!(
                    "[{}] round {round}/{}: {}",
                    load.name(),
                    args.rounds,
                    server.name
                );
                let entry = runs.entry((li, si)).or_default();
                match run_one(&args, &load_bin, server, load) {
                    Ok(r) => entry.0.push(r),
                    Err(e) => {
                        eprintln!("  failed: {e:#}");
                        entry.1.push(format!("{e:#}"));
                    }
                }
            }
        }
    }

    let mut rows = Vec::new();
    for (li, load) in loads.iter().enumerate() {
        for (si, server) in servers.iter().enumerate() {
            let (results, failures) = runs.remove(&(li, si)).unwrap_or_default();
            rows.push(Summary::new(&load.name(), &server.name, &results, failures));
        }
    }
    let table = report::markdown(&rows);
    println!("{table}");
    write_outputs(&args, &table, &rows)?;
    if rows.iter().any(|r| r.errors > 0 || !r.failures.is_empty()) {
        eprintln!("some runs had errors or failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The default servers that exist plus the `--server` ones, filtered by
/// `--only`.
fn servers(args: &Args) -> Result<Vec<Server>> {
    let selecho = match &args.selecho {
        Some(p) => p.clone(),
        None => sibling("selecho")?,
    };
    let tokio_echo = sibling("tokio-echo")?;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut selecho_cmd = vec![path(&selecho)];
    selecho_cmd.extend(args.selecho_args.split_whitespace().map(String::from));
    let mut candidates = vec![
        (selecho_cmd, "selecho", selecho),
        (
            tokio_cmd(&tokio_echo, "multi"),
            "tokio-mt",
            tokio_echo.clone(),
        ),
        (tokio_cmd(&tokio_echo, "current"), "tokio-ct", tokio_echo),
    ];
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let netns: HashMap<String, String> = parse_pairs(&args.server_netns, "--server-netns")?
        .into_iter()
        .collect();
    let mut out = Vec::new();
    for (command, name, program) in candidates.drain(..) {
        if !wanted(name) {
            continue;
        }
        if !program.exists() {
            eprintln!(
                "skipping {name}: binary not found at {} (build it with `cargo build --release`)",
                program.display()
            );
            continue;
        }
        out.push(Server {
            name: name.to_string(),
            command,
            netns: netns.get(name).cloned(),
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

/// Command line of the tokio reference server.
fn tokio_cmd(bin: &Path, runtime: &str) -> Vec<String> {
    let bin = bin.to_string_lossy().into_owned();
    vec![
        bin,
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--runtime".into(),
        runtime.into(),
    ]
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
    let all = if args.quick {
        vec![pingpong(100, 64), stream]
    } else {
        let mut v: Vec<Load> = [1, 10, 100, 1000]
            .into_iter()
            .flat_map(|c| [pingpong(c, 64), pingpong(c, 4096)])
            .collect();
        v.push(stream);
        v
    };
    all.into_iter()
        .filter(|l| args.loads.is_empty() || args.loads.contains(&l.name()))
        .collect()
}

/// Starts `server`, runs one load against it and stops it.
fn run_one(args: &Args, load_bin: &Path, server: &Server, load: &Load) -> Result<LoadResult> {
    let mut child = start(server)?;
    let mut cmd = match &server.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(load_bin);
            c
        }
        None => Command::new(load_bin),
    };
    cmd.arg("--addr")
        .arg(child.addr().to_string())
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
         `ratio vs tokio-mt` compares msgs/s.\n\n{table}",
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
