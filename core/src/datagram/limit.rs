//! The per-source rate limit: a token bucket per source address in a table
//! of fixed size.
//!
//! Each bucket is kept as one instant, the "theoretical arrival time" of the
//! generic cell rate algorithm: the time at which the source's bucket would
//! be full again. A datagram at `now` is admitted when that time is at most
//! `(burst - 1) × interval` ahead of `now`, and pushes it one `interval`
//! further. Over any span of time `t`, a source is so admitted at most
//! `burst + ⌊t / interval⌋` times.

use crate::time::{Duration, Instant};

/// How many answers one source address may get: `burst` at once, then one
/// more per `interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RateLimit {
    /// Answers in a burst (the bucket's size). 0 answers nothing.
    pub burst: u32,
    /// Time to earn one more answer (the bucket's refill), at most
    /// [`MAX_INTERVAL`](Self::MAX_INTERVAL) (a longer one counts as that).
    /// Zero: no limit.
    pub interval: Duration,
}

impl RateLimit {
    /// The default: bursts of 1000 answers, 1000 answers a second
    /// sustained, per source address. Far above what a conformance test or
    /// an interactive client sends; a load test switches the limit off.
    /// A loop with a reflecting service not in
    /// [`LOOP_PORTS`](crate::LOOP_PORTS) burns at most 1000 datagrams a second.
    pub const DEFAULT: RateLimit = RateLimit::per_second(1_000, 1_000);

    /// The longest refill interval honoured: an hour.
    pub const MAX_INTERVAL: Duration = Duration::from_secs(3_600);

    /// `burst` answers at once, then one per `interval`.
    pub const fn new(burst: u32, interval: Duration) -> Self {
        RateLimit { burst, interval }
    }

    /// `rate` answers a second sustained (the interval rounded up to whole
    /// microseconds, so never more), in bursts of up to `burst`. A rate of
    /// 0 refills once an hour.
    pub const fn per_second(rate: u32, burst: u32) -> Self {
        let interval = if rate == 0 {
            Self::MAX_INTERVAL
        } else {
            Duration::from_micros(1_000_000_u64.div_ceil(rate as u64))
        };
        RateLimit { burst, interval }
    }

    /// The interval in microseconds, capped at an hour: with a burst of at
    /// most `u32::MAX`, `burst × interval` then fits a `u64`.
    const fn interval_micros(&self) -> u64 {
        let micros = self.interval.total_micros();
        let max = Self::MAX_INTERVAL.total_micros();
        if micros > max { max } else { micros }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One source's bucket.
#[derive(Clone, Copy)]
struct Bucket<K> {
    key: K,
    /// When the bucket is full again: at or before `now`, the source is as
    /// good as unknown.
    full_at: Instant,
}

/// Buckets for up to `S` source addresses.
///
/// Eviction: a source is forgotten only when its bucket is full again, since
/// a full bucket and no bucket admit the same. With all `S` buckets still
/// refilling, a new source is refused: the limit is never exceeded for any
/// source, at the price that more than `S` sources busy at once lock
/// newcomers out until one of them has been quiet long enough.
pub(crate) struct RateTable<K, const S: usize> {
    buckets: heapless::Vec<Bucket<K>, S>,
}

impl<K: Copy + Eq, const S: usize> RateTable<K, S> {
    pub(crate) const fn new() -> Self {
        RateTable {
            buckets: heapless::Vec::new(),
        }
    }

    /// Whether `key` may have one more answer at `now` under `limit`; if
    /// so, the answer is taken from its bucket.
    pub(crate) fn admit(&mut self, key: K, limit: &RateLimit, now: Instant) -> bool {
        if limit.burst == 0 {
            return false;
        }
        let interval = limit.interval_micros();
        let tolerance = u64::from(limit.burst - 1) * interval;
        let now_micros = now.total_micros();
        if let Some(bucket) = self.buckets.iter_mut().find(|b| b.key == key) {
            let full_at = bucket.full_at.max(now);
            if full_at.total_micros() - now_micros > tolerance {
                return false;
            }
            bucket.full_at = full_at + Duration::from_micros(interval);
            return true;
        }
        let bucket = Bucket {
            key,
            full_at: now + Duration::from_micros(interval),
        };
        let Err(bucket) = self.buckets.push(bucket) else {
            return true;
        };
        match self.buckets.iter_mut().find(|b| b.full_at <= now) {
            Some(full) => {
                *full = bucket;
                true
            }
            None => false,
        }
    }

    /// Sources with a bucket.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn burst_then_one_per_interval() {
        let limit = RateLimit::new(3, Duration::from_millis(10));
        let mut table = RateTable::<u8, 2>::new();
        let admitted = |table: &mut RateTable<u8, 2>, now| table.admit(1, &limit, now);
        assert!((0..3).all(|_| admitted(&mut table, at(0))));
        assert!(!admitted(&mut table, at(0)));
        assert!(!admitted(&mut table, at(9)));
        assert!(admitted(&mut table, at(10)));
        assert!(!admitted(&mut table, at(19)));
        // Quiet for long: a full burst again, never more.
        assert_eq!((0..5).filter(|_| admitted(&mut table, at(1000))).count(), 3);
    }

    #[test]
    fn full_table_refuses_newcomers_until_a_bucket_refills() {
        let limit = RateLimit::new(2, Duration::from_millis(10));
        let mut table = RateTable::<u8, 2>::new();
        assert!(table.admit(1, &limit, at(0)));
        assert!(table.admit(2, &limit, at(0)));
        assert!(table.admit(2, &limit, at(0)));
        assert!(!table.admit(3, &limit, at(5)), "both buckets refilling");
        // Source 1 is full again at 10 ms, source 2 only at 20 ms.
        assert!(table.admit(3, &limit, at(10)));
        assert_eq!(table.len(), 2);
        // Source 2 earned one answer back, not a fresh burst.
        assert!(table.admit(2, &limit, at(10)));
        assert!(!table.admit(2, &limit, at(10)), "source 2 kept its bucket");
    }

    #[test]
    fn zero_burst_interval_and_capacity() {
        let mut table = RateTable::<u8, 1>::new();
        assert!(!table.admit(1, &RateLimit::new(0, MS), at(0)));
        let unlimited = RateLimit::new(1, Duration::ZERO);
        assert!((0..100).all(|i| table.admit(i % 7, &unlimited, at(0))));
        let mut none = RateTable::<u8, 0>::new();
        assert!(!none.admit(1, &RateLimit::DEFAULT, at(0)));
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let limit = RateLimit::new(u32::MAX, Duration::from_micros(u64::MAX));
        let mut table = RateTable::<u8, 1>::new();
        let end = Instant::from_micros(u64::MAX - 1);
        assert!(table.admit(1, &limit, end));
        assert!(table.admit(1, &limit, end));
        assert_eq!(
            RateLimit::per_second(0, 1).interval,
            RateLimit::MAX_INTERVAL
        );
        assert_eq!(
            RateLimit::per_second(3, 1).interval,
            Duration::from_micros(333_334)
        );
    }
}
