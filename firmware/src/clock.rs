//! A monotonic clock in the core's microseconds from a 32-bit hardware
//! counter that wraps (the LAN9118's 25 MHz `FREE_RUN`, every 171.8 s).

use selecho_core::Instant;

/// Counts a wrapping 32-bit counter's ticks into 64 bits. Correct as long
/// as it sees the counter at least once per wrap: the firmware reads it
/// every turn and wakes at least every [`MAX_SLEEP`](crate::board::MAX_SLEEP).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Ticks per microsecond.
    ticks_per_us: u32,
    /// The counter at the last reading.
    last: u32,
    /// Ticks since the first reading.
    ticks: u64,
}

impl Clock {
    /// A clock whose origin is the counter's value `raw` now, counting at
    /// `ticks_per_us` ticks per microsecond (at least 1).
    pub const fn new(raw: u32, ticks_per_us: u32) -> Clock {
        Clock {
            ticks_per_us: if ticks_per_us == 0 { 1 } else { ticks_per_us },
            last: raw,
            ticks: 0,
        }
    }

    /// The time now, given the counter's value `raw` now.
    pub fn now(&mut self, raw: u32) -> Instant {
        self.ticks += u64::from(raw.wrapping_sub(self.last));
        self.last = raw;
        Instant::from_micros(self.ticks / u64::from(self.ticks_per_us))
    }
}
