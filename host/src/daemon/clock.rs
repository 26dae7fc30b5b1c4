//! The monotonic clock, in the core's own time type.

use std::time::Instant as StdInstant;

use selecho_core::Instant;

/// Microseconds since the clock was made, from `std::time::Instant`
/// (CLOCK_MONOTONIC): never goes backwards.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: StdInstant,
}

impl Clock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Clock {
            origin: StdInstant::now(),
        }
    }

    /// Now, for the core.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.origin.elapsed().as_micros() as u64)
    }

    /// How long from now until `deadline`, for a poll timeout (zero if past).
    pub fn until(&self, deadline: Instant) -> std::time::Duration {
        between(self.now(), deadline)
    }
}

/// How long from `now` until `deadline` (zero if past): a timeout from a
/// time the caller read already, sparing a clock read.
pub fn between(now: Instant, deadline: Instant) -> std::time::Duration {
    std::time::Duration::from_micros((deadline - now).total_micros())
}
