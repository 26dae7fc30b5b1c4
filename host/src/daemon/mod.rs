//! What both shells do the same way, whatever moves their bytes: the clock,
//! signals, the graceful stop and its grace period, the stats log, the
//! `listening on` / `stopped:` lines, the thread a shell runs on, and the
//! earliest of the deadlines a loop sleeps until.

pub mod announce;
pub mod clock;
pub mod signals;
pub mod stats;
pub mod stop;
pub mod thread;

use selecho_core::Instant;

/// The earliest of `deadlines`; `None` if there is none (sleep until I/O).
pub fn earliest(deadlines: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    deadlines.into_iter().flatten().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_skips_the_missing() {
        let t = Instant::from_millis;
        assert_eq!(earliest([None, Some(t(5)), None, Some(t(3))]), Some(t(3)));
        assert_eq!(earliest([None, None]), None);
    }
}
