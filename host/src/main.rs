//! `selecho`: the RFC 862 echo daemon. Both shells drive the same
//! `selecho-core` machine: `select` over the kernel's sockets (default,
//! [`select`]), or smoltcp over a TUN/TAP device (`selecho tun`, [`tun`]).
//!
//! Each shell goes the same way: flags ([`cli`]) → a checked plan → set-up
//! → the loop; what they share (signals, the graceful stop, stats, the
//! lines on stdout) is in [`daemon`], and every libc call in [`sys`].

mod cli;
mod daemon;
mod select;
mod sys;
mod tun;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, UsageError};
use crate::daemon::announce;
use crate::daemon::signals::Signals;

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::new()
        .filter_level(cli.common().verbosity.level())
        .parse_env("SELECHO_LOG")
        .init();
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("selecho: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match &cli.command {
        None => select::run(&cli.select, &signals),
        Some(Command::Tun(args)) => tun::run(args, &signals),
    };
    let code = match result {
        Ok(totals) => {
            announce::stopped(&totals);
            ExitCode::SUCCESS
        }
        Err(e) if e.is::<UsageError>() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("selecho: {e:#}");
            ExitCode::FAILURE
        }
    };
    announce::finish();
    code
}
