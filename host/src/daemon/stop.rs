//! The graceful stop, the same in both shells: on the first SIGINT/SIGTERM
//! a shell stops taking connections and lets the ones it has finish for up
//! to the grace period; what is still open then is reset.

use log::info;
use selecho_core::{Duration, Instant};

/// Where the stop stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep serving (not stopping, or connections still finishing in time).
    Serve,
    /// Every connection has finished: exit.
    Done,
    /// The grace period is over with connections still open: reset them, exit.
    GraceOver,
}

/// The stop's state: not begun, or begun with a deadline.
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    grace: Duration,
    deadline: Option<Instant>,
}

impl Stop {
    /// A stop that will give connections `grace` to finish.
    pub const fn new(grace: Duration) -> Self {
        Stop {
            grace,
            deadline: None,
        }
    }

    /// Begins the stop at `now`, with `open` connections to finish; false
    /// (and nothing changes) if it had begun already.
    pub fn begin(&mut self, now: Instant, open: usize) -> bool {
        if self.deadline.is_some() {
            return false;
        }
        info!(
            "stopping: {open} connections get up to {} to finish",
            self.grace
        );
        self.deadline = Some(now + self.grace);
        true
    }

    /// The end of the grace period, once the stop has begun: a deadline for
    /// the loop's sleep.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// What to do at `now` with `open` connections not yet finished.
    pub fn check(&self, now: Instant, open: usize) -> Verdict {
        let Some(deadline) = self.deadline else {
            return Verdict::Serve;
        };
        if open == 0 {
            info!("stopped");
            return Verdict::Done;
        }
        if now < deadline {
            return Verdict::Serve;
        }
        info!("grace period over: resetting {open} connections");
        Verdict::GraceOver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_until_done_or_the_grace_ends() {
        let t = Instant::from_millis;
        let mut stop = Stop::new(Duration::from_millis(100));
        assert_eq!(stop.check(t(0), 3), Verdict::Serve);
        assert_eq!(stop.deadline(), None);
        assert!(stop.begin(t(10), 3));
        assert!(
            !stop.begin(t(20), 3),
            "a second signal does not move the deadline"
        );
        assert_eq!(stop.deadline(), Some(t(110)));
        assert_eq!(stop.check(t(50), 2), Verdict::Serve);
        assert_eq!(stop.check(t(50), 0), Verdict::Done);
        assert_eq!(stop.check(t(110), 1), Verdict::GraceOver);
    }
}
