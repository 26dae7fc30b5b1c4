//! `--stats-interval`: the counters in the log at a steady pace.

use log::info;
use selecho_core::{Counters, Duration, Instant};

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

    /// Logs the counters if a line is due at `now`.
    pub fn tick(&mut self, now: Instant, open: usize, counters: &Counters) {
        let (Some(every), Some(next)) = (self.every, self.next) else {
            return;
        };
        if next > now {
            return;
        }
        log_counters(open, counters);
        self.next = Some(now + every);
    }
}

/// One stats line: connections open, and the counters.
pub fn log_counters(open: usize, counters: &Counters) {
    info!("stats: {open} open, {counters}");
}
