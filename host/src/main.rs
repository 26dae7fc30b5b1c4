//! `selecho`: the RFC 862 echo daemon. Both shells drive the same
//! `selecho-core` machine: `select` over the kernel's sockets (default), or
//! smoltcp over a TUN/TAP device (`selecho tun`).

mod cli;
mod clock;
mod select;
mod signals;
mod sys;
mod tun;
mod tundev;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::signals::Signals;

/// A bad value that clap could not check by itself: reported like clap's own
/// errors, with exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbosity = match &cli.command {
        None => cli.select.verbosity,
        Some(Command::Tun(args)) => args.verbosity,
    };
    env_logger::Builder::new()
        .filter_level(verbosity.level())
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
    match result {
        Ok(counters) => {
            println!("stopped: {counters}");
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
    }
}
