//! What both shells do the same way, whatever moves their bytes: the clock,
//! signals, the graceful stop and its grace period, the stats log, the
//! `listening on` / `stopped:` lines, the thread a shell runs on, the
//! earliest of the deadlines a loop sleeps until, and waiting a bounded
//! time for other threads' answers.

pub mod announce;
pub mod clock;
pub mod signals;
pub mod stats;
pub mod stop;
pub mod thread;

use std::sync::mpsc;
use std::time::Duration;

use selecho_core::Instant;

/// The earliest of `deadlines`; `None` if there is none (sleep until I/O).
pub fn earliest(deadlines: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    deadlines.into_iter().flatten().min()
}

/// Up to `n` messages from `from`, all within `within` from now; ends at
/// the first that does not come in time (or once every sender is gone).
pub fn receive_within<T>(
    from: &mpsc::Receiver<T>,
    n: usize,
    within: Duration,
) -> impl Iterator<Item = T> + '_ {
    let deadline = std::time::Instant::now() + within;
    (0..n).map_while(move |_| {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        from.recv_timeout(left).ok()
    })
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

    #[test]
    fn receive_within_stops_at_the_first_missing() {
        let (send, receive) = mpsc::channel();
        send.send(1).unwrap();
        send.send(2).unwrap();
        let got: Vec<i32> = receive_within(&receive, 3, Duration::ZERO).collect();
        assert_eq!(got, [1, 2], "the third never comes");
        send.send(3).unwrap();
        assert_eq!(receive_within(&receive, 0, Duration::ZERO).count(), 0);
        drop(send);
        let got: Vec<i32> = receive_within(&receive, 5, Duration::from_secs(60)).collect();
        assert_eq!(got, [3], "no sender left: no waiting");
    }
}
