//! The select shell's flags (and a socket activation's environment),
//! checked against each other: what the shell will do, before anything is
//! bound or started.

use std::net::{Ipv4Addr, SocketAddr};

use selecho_core::{Config, DatagramConfig, Duration};
use socket2::Socket;

use super::{PER_THREAD, activation};
use crate::cli::{SelectArgs, UsageError};
use crate::sys::net;

/// Connections served per thread unless `--max-conns` says otherwise.
const DEFAULT_PER_THREAD: usize = 1000;

/// Descriptors kept in hand beyond what the plan counts (the directory
/// read while counting, a spare reopened, a transient socket).
const SLACK: usize = 64;

/// Where the listening sockets come from.
#[derive(Debug)]
pub enum Source {
    /// Bound by the shell, one TCP and one UDP socket per address.
    Bind(Vec<SocketAddr>),
    /// Handed over by socket activation (`LISTEN_FDS`): these sockets.
    Activated(Vec<Socket>),
}

/// What the select shell will do.
#[derive(Debug)]
pub struct Plan {
    pub tcp: bool,
    pub udp: bool,
    pub backlog: i32,
    pub threads: usize,
    /// Connections at once over all threads.
    pub max_conns: usize,
    /// Each thread's machine (`--idle-timeout`; its own table's limit).
    pub machine: Config,
    /// The UDP machine (`--udp-rate`, `--udp-burst`; own ports are added
    /// once the listening sockets are known).
    pub datagram: DatagramConfig,
    pub stats_every: Option<Duration>,
    pub grace: Duration,
    /// Descriptors the process may need at once: the soft limit it raises
    /// itself to, and how far the `select` sets reach.
    pub descriptors: usize,
}

impl Plan {
    /// The plan, and where its sockets come from.
    pub fn new(args: &SelectArgs) -> anyhow::Result<(Plan, Source)> {
        let threads = args.threads as usize;
        let max_conns = match args.max_conns {
            Some(n) if n as usize > threads * PER_THREAD => {
                let needed = (n as usize).div_ceil(PER_THREAD);
                return Err(UsageError(format!(
                    "--max-conns {n} needs --threads {needed} or more: one select() loop serves at most {PER_THREAD} connections"
                ))
                .into());
            }
            Some(n) => n as usize,
            None => threads * DEFAULT_PER_THREAD,
        };
        let source = match activation::inherited()? {
            Some(_) if !args.listen.is_empty() => {
                return Err(UsageError(
                    "--listen cannot be combined with socket activation (LISTEN_FDS): the activator chose the addresses".into(),
                )
                .into());
            }
            Some(sockets) => Source::Activated(sockets),
            None if args.listen.is_empty() => {
                Source::Bind(vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 7007))])
            }
            None => Source::Bind(args.listen.clone()),
        };
        let sockets = match &source {
            Source::Bind(addrs) => addrs.len() * 2,
            Source::Activated(sockets) => sockets.len(),
        };
        // Open now (stdio, the signal pipe, whatever was inherited), the
        // listening sockets, each thread's spare and control pipe, the
        // main thread's wake pipe, the connections.
        let open = net::open_descriptors().map_or(3, |fds| fds.len());
        let descriptors = open + sockets + threads * 3 + 2 + max_conns + SLACK;
        let plan = Plan {
            tcp: !args.udp.no_tcp,
            udp: !args.udp.no_udp,
            backlog: args.backlog.min(i32::MAX as u32) as i32,
            threads,
            max_conns,
            machine: Config::new()
                .with_idle_timeout(args.common.idle_timeout())
                .with_max_connections(max_conns.min(PER_THREAD)),
            datagram: DatagramConfig::new().with_rate_limit(args.udp.rate_limit()),
            stats_every: args.common.stats_interval(),
            grace: args.common.grace(),
            descriptors,
        };
        Ok((plan, source))
    }
}
