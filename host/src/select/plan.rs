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

/// Connections served at once unless `--max-conns` says otherwise.
const DEFAULT_MAX_CONNS: usize = 1000;

impl Plan {
    /// Checks `--max-conns` against `FD_SETSIZE` less the descriptors the
    /// server holds (stdio and the signal pipe, open now, and any inherited;
    /// the listeners and the spare, opened later), and warns if
    /// RLIMIT_NOFILE is lower. An explicit value beyond it is a usage error;
    /// the default shrinks to fit, with a warning.
    pub fn new(args: &SelectArgs) -> anyhow::Result<Plan> {
        let reserved = net::open_below_setsize() + args.listen.len() + 1;
        let limit = FD_SETSIZE.saturating_sub(reserved);
        let max_conns = match args.max_conns {
            Some(n) if n as usize > limit => {
                return Err(UsageError(format!(
                    "--max-conns {n} is more than select() can watch here: at most {limit} \
                     (FD_SETSIZE {FD_SETSIZE} less {reserved} descriptors the server holds)"
                ))
                .into());
            }
            Some(n) => n as usize,
            None if limit < DEFAULT_MAX_CONNS => {
                warn!(
                    "serving at most {limit} connections, not {DEFAULT_MAX_CONNS}: \
                     select() watches descriptors below FD_SETSIZE {FD_SETSIZE} and \
                     {reserved} are the server's own (inherited ones among them)"
                );
                limit
            }
            None => DEFAULT_MAX_CONNS,
        };
        if max_conns == 0 {
            anyhow::bail!(
                "select() can watch no connection here: the server holds {reserved} of FD_SETSIZE {FD_SETSIZE} descriptors (too many inherited)"
            );
        }
        if let Some(nofile) = net::nofile_limit()
            && (reserved + max_conns) as u64 > nofile
        {
            warn!(
                "RLIMIT_NOFILE is {nofile}: fewer than {max_conns} connections fit; \
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
