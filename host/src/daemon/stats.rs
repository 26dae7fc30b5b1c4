//! What a shell has done (its [`Totals`]), and `--stats-interval`: those
//! totals in the log at a steady pace.

use std::fmt;

use log::info;
use selecho_core::{Counters, DatagramCounters, Duration, Instant};

/// A shell's counts: its TCP machine's, its UDP machine's (when it serves
/// UDP), summed over its threads; and how many connections are open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Connections open now (not in the `stopped:` line).
    pub open: usize,
    pub tcp: Counters,
    pub udp: Option<DatagramCounters>,
}

impl core::ops::AddAssign for Totals {
    fn add_assign(&mut self, other: Totals) {
        self.open += other.open;
        self.tcp += other.tcp;
        self.udp = match (self.udp, other.udp) {
            (Some(mut mine), Some(theirs)) => {
                mine += theirs;
                Some(mine)
            }
            (mine, theirs) => mine.or(theirs),
        };
    }
}

impl fmt::Display for Totals {
    /// The TCP counters as `key=N` fields, then the UDP ones as `udp_key=N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.tcp)?;
        if let Some(udp) = self.udp {
            for field in udp.to_string().split(' ') {
                write!(f, " udp_{field}")?;
            }
        }
        Ok(())
    }
}

/// When the counters are logged next.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    every: Option<Duration>,
    next: Option<Instant>,
}

impl Stats {
    /// Logs every `every` from `now` on; never if `None`.
    pub fn new(every: Option<Duration>, now: Instant) -> Self {
        Stats {
            every,
            next: every.map(|every| now + every),
        }
    }

    /// When the next line is due: a deadline for the loop's sleep.
    pub fn deadline(&self) -> Option<Instant> {
        self.next
    }

    /// Logs the totals if a line is due at `now`.
    pub fn tick(&mut self, now: Instant, totals: &Totals) {
        let (Some(every), Some(next)) = (self.every, self.next) else {
            return;
        };
        if next > now {
            return;
        }
        log_totals(totals);
        self.next = Some(now + every);
    }
}

/// One stats line: connections open, and the counters.
pub fn log_totals(totals: &Totals) {
    info!("stats: {} open, {totals}", totals.open);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_and_print_udp_apart() {
        let tcp = Counters {
            accepted: 2,
            bytes_in: 10,
            ..Counters::default()
        };
        let udp = DatagramCounters {
            received: 3,
            echoed: 3,
            ..DatagramCounters::default()
        };
        let mut sum = Totals {
            open: 1,
            tcp,
            udp: None,
        };
        sum += Totals {
            open: 2,
            tcp,
            udp: Some(udp),
        };
        sum += Totals {
            open: 0,
            tcp,
            udp: Some(udp),
        };
        assert_eq!(sum.open, 3);
        assert_eq!(sum.tcp.bytes_in, 30);
        let line = sum.to_string();
        assert!(
            line.starts_with("accepted=6 refused=0 bytes_in=30 "),
            "{line}"
        );
        assert!(line.ends_with(" udp_received=6 udp_echoed=6 udp_dropped_full=0 udp_dropped_loop=0 udp_dropped_rate=0 udp_dropped_truncated=0 udp_send_failed=0"), "{line}");
    }
}
