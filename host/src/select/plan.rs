//! The select shell's flags, checked against each other and against what
//! `select` can watch in this process.

use std::net::SocketAddr;

use log::warn;
use selecho_core::{Config, Duration};

use crate::cli::{SelectArgs, UsageError};
use crate::sys::fdset::FD_SETSIZE;
use crate::sys::net;

/// What the select shell will do.
#[derive(Debug)]
pub struct Plan {
    pub listen: Vec<SocketAddr>,
    pub backlog: i32,
    /// The machine's configuration (`--max-conns`, `--idle-timeout`).
    pub machine: Config,
    pub stats_every: Option<Duration>,
    pub grace: Duration,
}

impl Plan {
    /// Checks `--max-conns` against `FD_SETSIZE` less the descriptors the
    /// server holds (stdio and the signal pipe, open now; the listeners and
    /// the spare, opened later), and warns if RLIMIT_NOFILE is lower.
    pub fn new(args: &SelectArgs) -> Result<Plan, UsageError> {
        let max_conns = args.max_conns as usize;
        let reserved = net::open_below_setsize() + args.listen.len() + 1;
        let limit = FD_SETSIZE.saturating_sub(reserved);
        if max_conns > limit {
            return Err(UsageError(format!(
                "--max-conns {max_conns} is more than select() can watch here: at most {limit} \
                 (FD_SETSIZE {FD_SETSIZE} less {reserved} descriptors the server holds)"
            )));
        }
        if let Some(nofile) = net::nofile_limit()
            && (reserved + max_conns) as u64 > nofile
        {
            warn!(
                "RLIMIT_NOFILE is {nofile}: fewer than --max-conns {max_conns} connections fit; \
                 the others are turned away while descriptors run out"
            );
        }
        Ok(Plan {
            listen: args.listen.clone(),
            backlog: args.backlog.min(i32::MAX as u32) as i32,
            machine: Config::new()
                .with_idle_timeout(args.common.idle_timeout())
                .with_max_connections(max_conns),
            stats_every: args.common.stats_interval(),
            grace: args.common.grace(),
        })
    }
}
