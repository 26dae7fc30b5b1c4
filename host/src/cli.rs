//! The command line: a contract that scripts and tests rely on. Flags only;
//! each shell's `plan` turns them into checked values.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

/// RFC 862 echo server: a select() loop on Linux sockets, or smoltcp over TUN/TAP.
#[derive(Debug, Parser)]
#[command(
    name = "selecho",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Run on a TUN/TAP device through smoltcp instead of the kernel's sockets.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the select shell (the default command).
    #[command(flatten)]
    pub select: SelectArgs,
}

impl Cli {
    /// The flags both shells share, of whichever shell was chosen.
    pub fn common(&self) -> &CommonArgs {
        match &self.command {
            None => &self.select.common,
            Some(Command::Tun(args)) => &args.common,
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve echo over smoltcp on a TUN (IP) or TAP (Ethernet) device.
    Tun(TunArgs),
}

/// `selecho [--listen ADDR]... [--threads N] [--max-conns N] ...`
#[derive(Debug, Args)]
pub struct SelectArgs {
    // The help as a string: rustdoc would take `[IPv6]` for a link.
    #[arg(
        long = "listen",
        value_name = "ADDR",
        help = "Address to listen on, TCP and UDP on the same port (IPv4, or [IPv6]:port; \
                port 0 picks a free one). Repeat for several [default: 127.0.0.1:7007, or \
                the sockets socket activation hands over]"
    )]
    pub listen: Vec<SocketAddr>,
    /// select() loops, one per thread, each serving up to 1024 connections.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,
    /// Most connections served at once over all threads; more wait in the
    /// kernel's backlog [default: 1000 per thread].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns: Option<u32>,
    /// listen(2) backlog of each listener.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub backlog: u32,
    #[command(flatten)]
    pub udp: UdpArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Which protocols to serve, and the UDP echo's rate limit.
#[derive(Debug, Args)]
pub struct UdpArgs {
    /// Serve TCP only.
    #[arg(long, conflicts_with = "no_tcp")]
    pub no_udp: bool,
    /// Serve UDP only.
    #[arg(long)]
    pub no_tcp: bool,
    /// UDP answers per second to one source address; 0 = no limit (only on
    /// a network of your own: the limit keeps selecho from being a reflector).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub udp_rate: u32,
    /// UDP answers one source address may get at once, beyond the rate.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub udp_burst: u32,
}

impl UdpArgs {
    /// The rate limit these flags ask for; `None` when off.
    pub fn rate_limit(&self) -> Option<selecho_core::RateLimit> {
        (self.udp_rate > 0)
            .then(|| selecho_core::RateLimit::per_second(self.udp_rate, self.udp_burst))
    }
}

/// `selecho tun --address CIDR ...`
#[derive(Debug, Args)]
pub struct TunArgs {
    /// The device to attach to, or create if it does not exist.
    #[arg(long, value_name = "NAME", default_value = "selecho0")]
    pub ifname: String,
    /// A TAP device (Ethernet; smoltcp answers ARP) instead of TUN (IP).
    #[arg(long)]
    pub tap: bool,
    /// smoltcp's own address on the device, e.g. 10.7.0.2/24.
    #[arg(long, value_name = "CIDR")]
    pub address: String,
    /// Give the kernel's side of the device this address and bring it up.
    #[arg(long, value_name = "CIDR")]
    pub host_address: Option<String>,
    /// Port to serve echo on, TCP and UDP. Repeat for several (at most 16).
    #[arg(long = "port", value_name = "PORT", default_value = "7007")]
    pub ports: Vec<u16>,
    /// Device MTU.
    #[arg(long, value_name = "N", default_value_t = 1500, value_parser = clap::value_parser!(u32).range(576..=65535))]
    pub mtu: u32,
    /// Connection slots (one smoltcp socket each), shared by every port; beyond them, connections are refused.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns: u32,
    #[command(flatten)]
    pub udp: UdpArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// What both shells take: timing and verbosity.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Close a connection idle (no byte either way) this long; 0 = never.
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = parse_period)]
    pub idle_timeout: f64,
    /// Log the counters at info level this often; 0 = never.
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = parse_period)]
    pub stats_interval: f64,
    /// On SIGINT/SIGTERM, how long to keep sending what is queued before closing anyway.
    #[arg(long, value_name = "SECS", default_value_t = 2.0, value_parser = parse_secs)]
    pub grace: f64,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

impl CommonArgs {
    /// `--idle-timeout`, for the machine; `None` when off.
    pub fn idle_timeout(&self) -> Option<selecho_core::Duration> {
        duration_or_off(self.idle_timeout)
    }

    /// `--stats-interval`; `None` when off.
    pub fn stats_interval(&self) -> Option<selecho_core::Duration> {
        duration_or_off(self.stats_interval)
    }

    /// `--grace`.
    pub fn grace(&self) -> selecho_core::Duration {
        duration_or_off(self.grace).unwrap_or(selecho_core::Duration::ZERO)
    }
}

/// `-v` (debug, twice: trace) and `-q` (warnings only, twice: errors only).
#[derive(Debug, Args, Clone, Copy)]
pub struct Verbosity {
    /// More log output on stderr (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output on stderr (-q warnings, -qq errors).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
}

impl Verbosity {
    /// The log level these flags ask for; info by default.
    pub fn level(self) -> log::LevelFilter {
        match (self.verbose, self.quiet) {
            (0, 0) => log::LevelFilter::Info,
            (1, _) => log::LevelFilter::Debug,
            (_, 0) => log::LevelFilter::Trace,
            (_, 1) => log::LevelFilter::Warn,
            _ => log::LevelFilter::Error,
        }
    }
}

/// A bad value that clap could not check by itself (it depends on other
/// flags or on the environment): reported like clap's own errors, with exit
/// status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Seconds as a non-negative, finite number, at most a year.
fn parse_secs(s: &str) -> Result<f64, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !secs.is_finite() || !(0.0..=31_536_000.0).contains(&secs) {
        return Err(format!("`{s}` is out of range 0..=31536000 seconds"));
    }
    Ok(secs)
}

/// A period that is either off (0) or at least a millisecond: shorter ones
/// would make a loop spin (stats) or close every connection before it
/// echoes (idle timeout).
fn parse_period(s: &str) -> Result<f64, String> {
    let secs = parse_secs(s)?;
    if secs != 0.0 && secs < 0.001 {
        return Err(format!(
            "`{s}` is under a millisecond: use 0 (off) or at least 0.001"
        ));
    }
    Ok(secs)
}

/// `secs` as an optional core duration: 0 means off.
fn duration_or_off(secs: f64) -> Option<selecho_core::Duration> {
    if secs == 0.0 {
        return None;
    }
    Some(selecho_core::Duration::from_micros((secs * 1e6) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_are_checked() {
        assert_eq!(parse_secs("1.5"), Ok(1.5));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("nan").is_err());
        assert!(parse_secs("x").is_err());
        assert_eq!(parse_period("0"), Ok(0.0));
        assert_eq!(parse_period("0.001"), Ok(0.001));
        assert!(parse_period("0.000001").is_err());
        assert!(parse_period("1e-7").is_err());
        assert_eq!(duration_or_off(0.0), None);
        assert_eq!(
            duration_or_off(2.5),
            Some(selecho_core::Duration::from_millis(2_500))
        );
    }

    #[test]
    fn both_shells_take_the_common_flags() {
        let select = Cli::parse_from(["selecho", "--stats-interval", "3", "--grace", "1"]);
        assert_eq!(select.common().stats_interval, 3.0);
        let tun = Cli::parse_from([
            "selecho",
            "tun",
            "--address",
            "10.0.0.2/24",
            "--stats-interval",
            "4",
            "-q",
        ]);
        assert_eq!(tun.common().stats_interval, 4.0);
        assert_eq!(tun.common().verbosity.level(), log::LevelFilter::Warn);
    }
}
