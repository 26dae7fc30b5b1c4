//! `selecho-load`: verifying TCP and UDP echo load generator.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use selecho_bench::load::{self, Config, Mode};
use selecho_bench::report::fmt;
use selecho_bench::result::LoadResult;

/// Exit code when an echoed byte did not match what was sent.
const EXIT_MISMATCH: u8 = 2;

/// Drives many connections (or UDP sockets) against an echo server and
/// verifies every byte.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Server address, HOST:PORT.
    #[arg(long)]
    addr: String,
    /// Number of connections (udp-pingpong: sockets).
    #[arg(long, default_value_t = 10)]
    conns: usize,
    /// Message or datagram size (pingpong) or write chunk size (stream), in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Traffic pattern.
    #[arg(long, value_enum, default_value_t = Mode::Pingpong)]
    mode: Mode,
    /// Server process id, to report its CPU time per message.
    #[arg(long)]
    pid: Option<u32>,
    /// Warm-up before the measured window, in seconds.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Event-loop threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<ExitCode> {
    let args = Args::parse();
    let cfg = Config {
        addr: resolve(&args.addr)?,
        conns: args.conns,
        size: args.size,
        secs: args.secs,
        warmup: args.warmup,
        mode: args.mode,
        threads: args.threads,
        pid: args.pid,
    };
    let result = load::run(&cfg)?;
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        print_human(&result);
    }
    if result.errors.mismatches > 0 {
        eprintln!(
            "verification failed: {} mismatching connection(s)",
            result.errors.mismatches
        );
        return Ok(ExitCode::from(EXIT_MISMATCH));
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves HOST:PORT to its first address.
fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))
}

/// Prints the result for a person.
fn print_human(r: &LoadResult) {
    println!(
        "{} {}/{} conns x {} B for {:.2} s",
        r.mode, r.connected, r.conns, r.size, r.secs
    );
    println!(
        "  messages/s  {:.0} ({} messages)",
        r.msgs_per_sec, r.messages
    );
    println!("  Mbit/s      tx {:.1}, rx {:.1}", r.tx_mbit_s, r.rx_mbit_s);
    println!(
        "  latency µs  p50 {}, p99 {}, p999 {}",
        fmt(r.p50_us, 1),
        fmt(r.p99_us, 1),
        fmt(r.p999_us, 1)
    );
    println!(
        "  errors      mismatches {}, connect failures {}, resets {}, lost {}",
        r.errors.mismatches, r.errors.connect_failures, r.errors.resets, r.errors.lost
    );
    println!(
        "  server CPU  {} s, {} µs/msg; load generator CPU {} s",
        fmt(r.server_cpu_s, 3),
        fmt(r.server_cpu_us_per_msg, 3),
        fmt(r.client_cpu_s, 3)
    );
}
