//! Scenario tests straight against `Echo`, with `u32` handles: every
//! transition, with exact bytes, interests, close orders and counters.

use selecho_core::{
    AcceptError, Close, CloseHow, CloseReason, Config, ConnId, Counters, Duration, Echo, Instant,
    Interest, ReportError, StaleId,
};

const T0: Instant = Instant::ZERO;

const READ: Interest = Interest {
    read: true,
    write: false,
    probe: false,
};
const BOTH: Interest = Interest {
    read: true,
    write: true,
    probe: false,
};
const WRITE: Interest = Interest {
    read: false,
    write: true,
    probe: false,
};

/// Reads as much of `bytes` as `recv_buf` offers; returns how many.
fn recv<const N: usize, const Q: usize>(
    echo: &mut Echo<u32, N, Q>,
    id: ConnId,
    bytes: &[u8],
    now: Instant,
) -> usize {
    let buf = echo.recv_buf(id).unwrap();
    let n = buf.len().min(bytes.len());
    buf[..n].copy_from_slice(&bytes[..n]);
    echo.handle_received(id, n, now).unwrap();
    n
}

/// Sends at most `max` bytes of `send_buf`; returns them.
fn send<const N: usize, const Q: usize>(
    echo: &mut Echo<u32, N, Q>,
    id: ConnId,
    max: usize,
    now: Instant,
) -> Vec<u8> {
    let data = echo.send_buf(id).unwrap();
    let out = data[..data.len().min(max)].to_vec();
    echo.handle_sent(id, out.len(), now).unwrap();
    out
}

fn closes<H: Copy, const N: usize, const Q: usize>(echo: &mut Echo<H, N, Q>) -> Vec<Close<H>> {
    core::iter::from_fn(|| echo.poll_close()).collect()
}

/// A deterministic byte stream that does not repeat with a short period.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

#[test]
fn partial_sends_deliver_every_byte_in_order() {
    let mut echo: Echo<u32, 2, 16> = Echo::new(Config::new());
    let id = echo.handle_accept(7, T0).unwrap();
    let input = pattern(1000, 3);
    let (mut fed, mut out) = (0, Vec::new());
    // Reads of 5 and sends of 3 make the ring wrap at every offset.
    while out.len() < input.len() {
        let end = (fed + 5).min(input.len());
        fed += recv(&mut echo, id, &input[fed..end], T0);
        out.extend(send(&mut echo, id, 3, T0));
        assert!(echo.send_buf(id).unwrap().len() <= 16);
    }
    assert_eq!(out, input);
    assert_eq!(echo.interest(id), Ok(READ));
    assert_eq!(echo.counters().bytes_in, 1000);
    assert_eq!(echo.counters().bytes_out, 1000);
}

#[test]
fn a_wrapped_queue_is_sent_in_two_pieces() {
    let mut echo: Echo<u32, 1, 8> = Echo::new(Config::new());
    let id = echo.handle_accept(1, T0).unwrap();
    assert_eq!(recv(&mut echo, id, b"abcdef", T0), 6);
    assert_eq!(send(&mut echo, id, 4, T0), b"abcd");
    // Free space is the tail first, then the wrapped head.
    assert_eq!(echo.recv_buf(id).unwrap().len(), 2);
    assert_eq!(recv(&mut echo, id, b"ghij", T0), 2);
    assert_eq!(echo.recv_buf(id).unwrap().len(), 4);
    assert_eq!(recv(&mut echo, id, b"ijkl", T0), 4);
    assert_eq!(echo.interest(id), Ok(WRITE));
    assert_eq!(echo.send_buf(id).unwrap(), b"efgh");
    assert_eq!(send(&mut echo, id, 99, T0), b"efgh");
    assert_eq!(send(&mut echo, id, 99, T0), b"ijkl");
    assert_eq!(echo.interest(id), Ok(READ));
}

#[test]
fn half_close_echoes_every_queued_byte_then_closes_gracefully() {
    let mut echo: Echo<u32, 2, 16> = Echo::new(Config::new());
    let id = echo.handle_accept(9, T0).unwrap();
    recv(&mut echo, id, b"abc", T0);
    echo.handle_end_of_stream(id, T0).unwrap();

    assert_eq!(echo.interest(id), Ok(WRITE));
    assert!(echo.recv_buf(id).unwrap().is_empty());
    assert_eq!(echo.handle_received(id, 1, T0), Err(ReportError::Overflow));
    // A second end of stream changes nothing.
    echo.handle_end_of_stream(id, T0).unwrap();
    assert_eq!(echo.poll_close(), None);

    assert_eq!(send(&mut echo, id, 2, T0), b"ab");
    assert_eq!(echo.poll_close(), None);
    assert_eq!(echo.len(), 1);
    assert_eq!(send(&mut echo, id, 2, T0), b"c");
    assert_eq!(
        closes(&mut echo),
        [Close {
            id,
            handle: 9,
            how: CloseHow::Graceful,
            reason: CloseReason::Done,
        }]
    );
    assert!(echo.is_empty());
    assert_eq!(
        *echo.counters(),
        Counters {
            accepted: 1,
            bytes_in: 3,
            bytes_out: 3,
            closed: 1,
            ..Counters::default()
        }
    );
}

#[test]
fn half_close_with_nothing_queued_closes_at_once() {
    let mut echo: Echo<u32, 1, 4> = Echo::new(Config::new());
    let id = echo.handle_accept(1, T0).unwrap();
    echo.handle_end_of_stream(id, T0).unwrap();
    let [close] = closes(&mut echo)[..] else {
        panic!("one close expected")
    };
    assert_eq!(
        (close.how, close.reason),
        (CloseHow::Graceful, CloseReason::Done)
    );
}

#[test]
fn a_full_queue_turns_read_interest_off_until_a_send() {
    let mut echo: Echo<u32, 1, 8> = Echo::new(Config::new());
    let id = echo.handle_accept(1, T0).unwrap();
    assert_eq!(echo.interest(id), Ok(READ));
    assert_eq!(recv(&mut echo, id, b"0123456789", T0), 8);
    assert_eq!(echo.interest(id), Ok(WRITE));
    assert!(echo.recv_buf(id).unwrap().is_empty());
    assert_eq!(echo.handle_received(id, 1, T0), Err(ReportError::Overflow));

    assert_eq!(send(&mut echo, id, 3, T0), b"012");
    assert_eq!(echo.interest(id), Ok(BOTH));
    assert_eq!(echo.recv_buf(id).unwrap().len(), 3);
    assert_eq!(recv(&mut echo, id, b"89a", T0), 3);
    assert_eq!(echo.interest(id), Ok(WRITE));
    assert_eq!(send(&mut echo, id, 99, T0), b"34567");
    assert_eq!(send(&mut echo, id, 99, T0), b"89a");
    assert_eq!(echo.interest(id), Ok(READ));
}

#[test]
fn a_full_table_refuses_then_recovers_after_a_close() {
    let mut echo: Echo<u32, 2, 8> = Echo::new(Config::new());
    let a = echo.handle_accept(1, T0).unwrap();
    let b = echo.handle_accept(2, T0).unwrap();
    assert_ne!(a.slot(), b.slot());
    assert!(!echo.accepting());
    assert_eq!(echo.handle_accept(3, T0), Err(AcceptError::Full));
    assert_eq!(echo.counters().refused, 1);
    assert_eq!(echo.counters().accepted, 2);

    // A scheduled close still holds the slot until it is polled.
    echo.handle_reset(a).unwrap();
    assert!(!echo.accepting());
    assert_eq!(echo.handle_accept(3, T0), Err(AcceptError::Full));
    assert_eq!(closes(&mut echo).len(), 1);

    assert!(echo.accepting());
    let c = echo.handle_accept(3, T0).unwrap();
    assert_eq!(c.slot(), a.slot());
    assert_ne!(c, a);
    assert_eq!(echo.handle(c), Ok(3));
    assert_eq!(echo.counters().accepted, 3);
    assert_eq!(echo.counters().refused, 2);

    echo.handle_refused();
    assert_eq!(echo.counters().refused, 3);
}

#[test]
fn max_connections_caps_the_table_below_its_size() {
    let mut echo: Echo<u32, 4, 8> = Echo::new(Config::new().with_max_connections(1));
    assert_eq!(echo.capacity(), 1);
    echo.handle_accept(1, T0).unwrap();
    assert!(!echo.accepting());
    assert_eq!(echo.handle_accept(2, T0), Err(AcceptError::Full));
}

/// Every call that takes an id, made with `id`, must say it is stale.
fn assert_stale<const N: usize, const Q: usize>(echo: &mut Echo<u32, N, Q>, id: ConnId) {
    let before = *echo.counters();
    assert_eq!(echo.recv_buf(id).map(|b| b.len()), Err(StaleId));
    assert_eq!(echo.handle_received(id, 0, T0), Err(ReportError::Stale));
    assert_eq!(echo.handle_received(id, 1, T0), Err(ReportError::Stale));
    assert_eq!(echo.send_buf(id).map(<[u8]>::len), Err(StaleId));
    assert_eq!(echo.handle_sent(id, 0, T0), Err(ReportError::Stale));
    assert_eq!(echo.handle_sent(id, 1, T0), Err(ReportError::Stale));
    assert_eq!(echo.handle_end_of_stream(id, T0), Err(StaleId));
    assert_eq!(echo.handle_reset(id), Err(StaleId));
    assert_eq!(echo.close(id), Err(StaleId));
    assert_eq!(echo.interest(id), Err(StaleId));
    assert_eq!(echo.handle(id), Err(StaleId));
    assert_eq!(*echo.counters(), before);
}

#[test]
fn ids_go_stale_at_close_and_stay_stale_after_slot_reuse() {
    let mut echo: Echo<u32, 1, 8> = Echo::new(Config::new());
    let old = echo.handle_accept(1, T0).unwrap();
    recv(&mut echo, old, b"old", T0);
    echo.close(old).unwrap();
    // Stale from the moment its close is queued, not only once polled.
    assert_stale(&mut echo, old);
    assert_eq!(closes(&mut echo)[0].handle, 1);
    assert_stale(&mut echo, old);

    let new = echo.handle_accept(2, T0).unwrap();
    assert_eq!(new.slot(), old.slot());
    assert!(echo.send_buf(new).unwrap().is_empty());
    recv(&mut echo, new, b"new", T0);
    assert_stale(&mut echo, old);
    assert_eq!(echo.send_buf(new).unwrap(), b"new");
    assert_eq!(echo.interest(new), Ok(BOTH));
    assert_eq!(echo.handle(new), Ok(2));
    assert_eq!(
        echo.connections().collect::<Vec<_>>(),
        [(new, 2, BOTH)],
        "only the new connection is listed"
    );
}

#[test]
fn an_id_from_a_bigger_table_is_stale() {
    let mut big: Echo<u32, 4, 8> = Echo::new(Config::new());
    let mut small: Echo<u32, 1, 8> = Echo::new(Config::new());
    for h in 0..4 {
        big.handle_accept(h, T0).unwrap();
    }
    let far = big.connections().last().unwrap().0;
    assert_eq!(far.slot(), 3);
    assert_stale(&mut small, far);
}

#[test]
fn reset_drops_the_queue_and_frees_the_slot() {
    let mut echo: Echo<u32, 1, 8> = Echo::new(Config::new());
    let id = echo.handle_accept(5, T0).unwrap();
    recv(&mut echo, id, b"12345", T0);
    echo.handle_reset(id).unwrap();
    assert_eq!(echo.connections().count(), 0);
    assert_eq!(echo.len(), 1);
    assert_eq!(
        closes(&mut echo),
        [Close {
            id,
            handle: 5,
            how: CloseHow::Abort,
            reason: CloseReason::Reset,
        }]
    );
    assert!(echo.is_empty());
    let next = echo.handle_accept(6, T0).unwrap();
    assert!(echo.send_buf(next).unwrap().is_empty());
    assert_eq!(echo.recv_buf(next).unwrap().len(), 8);
    assert_eq!(
        *echo.counters(),
        Counters {
            accepted: 2,
            bytes_in: 5,
            reset: 1,
            ..Counters::default()
        }
    );
}

#[test]
fn reset_while_draining_aborts() {
    let mut echo: Echo<u32, 1, 8> = Echo::new(Config::new());
    let id = echo.handle_accept(5, T0).unwrap();
    recv(&mut echo, id, b"12", T0);
    echo.handle_end_of_stream(id, T0).unwrap();
    echo.handle_reset(id).unwrap();
    let close = echo.poll_close().unwrap();
    assert_eq!(
        (close.how, close.reason),
        (CloseHow::Abort, CloseReason::Reset)
    );
    assert_eq!(echo.counters().closed, 0);
    assert_eq!(echo.counters().reset, 1);
}

#[test]
fn shell_close_aborts_with_reason_shutdown() {
    let mut echo: Echo<u32, 2, 8> = Echo::new(Config::new());
    let id = echo.handle_accept(5, T0).unwrap();
    recv(&mut echo, id, b"xy", T0);
    echo.close(id).unwrap();
    let close = echo.poll_close().unwrap();
    assert_eq!(
        (close.handle, close.how, close.reason),
        (5, CloseHow::Abort, CloseReason::Shutdown)
    );
    assert_eq!(echo.counters().shut_down, 1);
}

#[test]
fn idle_timeout_fires_exactly_at_the_deadline() {
    let idle = Duration::from_secs(10);
    let mut echo: Echo<u32, 4, 8> = Echo::new(Config::new().with_idle_timeout(Some(idle)));
    assert_eq!(echo.poll_timeout(), None);
    let quiet = echo.handle_accept(1, Instant::from_secs(0)).unwrap();
    let busy = echo.handle_accept(2, Instant::from_secs(1)).unwrap();
    assert_eq!(echo.poll_timeout(), Some(Instant::from_secs(10)));

    // Activity in either direction pushes the deadline.
    recv(&mut echo, quiet, b"abc", Instant::from_secs(3));
    assert_eq!(echo.poll_timeout(), Some(Instant::from_secs(11)));
    recv(&mut echo, busy, b"xyz", Instant::from_secs(4));
    send(&mut echo, busy, 99, Instant::from_secs(5));
    assert_eq!(echo.poll_timeout(), Some(Instant::from_secs(13)));
    // Zero-byte reports are not activity.
    echo.handle_received(quiet, 0, Instant::from_secs(6))
        .unwrap();
    echo.handle_sent(quiet, 0, Instant::from_secs(6)).unwrap();
    assert_eq!(echo.poll_timeout(), Some(Instant::from_secs(13)));

    let just_before = Instant::from_micros(Instant::from_secs(13).total_micros() - 1);
    echo.handle_timeout(just_before);
    assert_eq!(echo.poll_close(), None);
    assert_eq!(echo.connections().count(), 2);

    // `quiet` still holds "abc": its timeout drops bytes, so it aborts.
    echo.handle_timeout(Instant::from_secs(13));
    assert_eq!(
        closes(&mut echo),
        [Close {
            id: quiet,
            handle: 1,
            how: CloseHow::Abort,
            reason: CloseReason::TimedOut,
        }]
    );
    assert_eq!(echo.poll_timeout(), Some(Instant::from_secs(15)));
    // `busy` has an empty queue: graceful.
    echo.handle_timeout(Instant::from_secs(100));
    assert_eq!(
        closes(&mut echo),
        [Close {
            id: busy,
            handle: 2,
            how: CloseHow::Graceful,
            reason: CloseReason::TimedOut,
        }]
    );
    assert_eq!(echo.poll_timeout(), None);
    assert_eq!(echo.counters().timed_out, 2);
}

#[test]
fn a_draining_connection_times_out_too() {
    let idle = Duration::from_millis(500);
    let mut echo: Echo<u32, 1, 8> = Echo::new(Config::new().with_idle_timeout(Some(idle)));
    let id = echo.handle_accept(1, T0).unwrap();
    recv(&mut echo, id, b"stuck", T0);
    echo.handle_end_of_stream(id, Instant::from_millis(100))
        .unwrap();
    assert_eq!(echo.poll_timeout(), Some(Instant::from_millis(600)));
    echo.handle_timeout(Instant::from_millis(600));
    let close = echo.poll_close().unwrap();
    assert_eq!(
        (close.how, close.reason),
        (CloseHow::Abort, CloseReason::TimedOut)
    );
    assert_eq!(echo.counters().closed, 0);
}

#[test]
fn without_idle_timeout_nothing_ever_times_out() {
    let mut echo: Echo<u32, 1, 8> = Echo::new(Config::new());
    echo.handle_accept(1, T0).unwrap();
    assert_eq!(echo.poll_timeout(), None);
    echo.handle_timeout(Instant::from_micros(u64::MAX));
    assert_eq!(echo.poll_close(), None);
}

#[test]
fn many_interleaved_connections_keep_their_own_bytes() {
    const N: usize = 8;
    let mut echo: Echo<u32, N, 32> = Echo::new(Config::new());
    let ids: Vec<ConnId> = (0..N as u32)
        .map(|h| echo.handle_accept(h, T0).unwrap())
        .collect();
    let inputs: Vec<Vec<u8>> = (0..N).map(|i| pattern(300 + 17 * i, i as u8)).collect();
    let mut fed = [0; N];
    let mut outs: Vec<Vec<u8>> = vec![Vec::new(); N];
    let mut round = 0;
    while (0..N).any(|i| outs[i].len() < inputs[i].len()) {
        round += 1;
        for i in 0..N {
            let (id, input) = (ids[i], &inputs[i]);
            let chunk = 1 + (round * 7 + i * 3) % 13;
            let end = (fed[i] + chunk).min(input.len());
            fed[i] += recv(&mut echo, id, &input[fed[i]..end], T0);
            outs[i].extend(send(&mut echo, id, 1 + (round + i) % 11, T0));
        }
        assert!(round < 10_000);
    }
    assert_eq!(outs, inputs);
    let total: u64 = inputs.iter().map(|v| v.len() as u64).sum();
    assert_eq!(echo.counters().bytes_in, total);
    assert_eq!(echo.counters().bytes_out, total);
    for (i, &id) in ids.iter().enumerate() {
        echo.handle_end_of_stream(id, T0).unwrap();
        assert_eq!(echo.poll_close().map(|c| c.handle), Some(i as u32));
    }
    assert_eq!(echo.counters().closed, N as u64);
}

#[test]
fn begin_shutdown_closes_each_connection_once_quiet_and_abort_all_ends_the_rest() {
    let quiet = Duration::from_millis(100);
    let mut echo: Echo<u32, 4, 8> = Echo::new(Config::new().with_quiet_period(quiet));
    let idle = echo.handle_accept(1, T0).unwrap();
    let busy = echo.handle_accept(2, T0).unwrap();
    let stuck = echo.handle_accept(3, T0).unwrap();
    recv(&mut echo, busy, b"bye", T0);
    recv(&mut echo, stuck, b"zzz", T0);
    // Outside a shutdown, a read that finds nothing changes nothing.
    let t1 = Instant::from_secs(1);
    echo.handle_would_block(idle, t1).unwrap();
    assert_eq!(echo.poll_close(), None);
    assert_eq!(echo.poll_timeout(), None);

    echo.begin_shutdown();
    assert!(echo.shutting_down());
    assert!(!echo.accepting());
    assert_eq!(echo.handle_accept(4, t1), Err(AcceptError::ShuttingDown));
    assert_eq!(echo.counters().refused, 1);
    // Every connection is still served.
    assert_eq!(
        echo.connections().collect::<Vec<_>>(),
        [(idle, 1, READ), (busy, 2, BOTH), (stuck, 3, BOTH)]
    );

    // The idle one has been still since T0: a read that finds nothing
    // finishes it at once.
    echo.handle_would_block(idle, t1).unwrap();
    let done = |id, handle| Close {
        id,
        handle,
        how: CloseHow::Graceful,
        reason: CloseReason::Shutdown,
    };
    assert_eq!(closes(&mut echo), [done(idle, 1)]);

    // The busy one has bytes queued: not finished, and still reads.
    echo.handle_would_block(busy, t1).unwrap();
    assert_eq!(echo.poll_close(), None);
    recv(&mut echo, busy, b"!", t1);
    assert_eq!(send(&mut echo, busy, 99, t1), b"bye!");
    // Sent all, and a read finds nothing; but bytes may still be on their
    // way: finished only after the quiet period.
    echo.handle_would_block(busy, t1).unwrap();
    assert_eq!(echo.poll_close(), None);
    assert_eq!(echo.poll_timeout(), Some(t1 + quiet));
    echo.handle_timeout(t1 + Duration::from_micros(99_999));
    assert_eq!(echo.poll_close(), None);
    echo.handle_timeout(t1 + quiet);
    assert_eq!(closes(&mut echo), [done(busy, 2)]);

    // The stuck one never drains: the end of the grace cuts it.
    assert_eq!(echo.poll_timeout(), None);
    echo.abort_all();
    assert_eq!(
        closes(&mut echo),
        [Close {
            id: stuck,
            handle: 3,
            how: CloseHow::Abort,
            reason: CloseReason::Shutdown,
        }]
    );
    assert!(echo.is_empty());
    assert_eq!(echo.counters().shut_down, 3);
    assert_eq!(echo.counters().bytes_out, 4);
    assert_eq!(echo.handle_would_block(stuck, t1), Err(StaleId));
}

#[test]
fn a_byte_during_the_quiet_period_keeps_a_connection_open() {
    let quiet = Duration::from_millis(100);
    let mut echo: Echo<u32, 1, 8> = Echo::new(Config::new().with_quiet_period(quiet));
    let id = echo.handle_accept(1, T0).unwrap();
    echo.begin_shutdown();
    echo.handle_would_block(id, T0).unwrap();
    assert_eq!(echo.poll_timeout(), Some(T0 + quiet));
    let t1 = Instant::from_millis(50);
    recv(&mut echo, id, b"late", t1);
    assert_eq!(echo.poll_timeout(), None, "not quiet: a byte came");
    echo.handle_timeout(T0 + quiet);
    assert_eq!(echo.poll_close(), None);
    assert_eq!(send(&mut echo, id, 99, t1), b"late");
    echo.handle_would_block(id, t1).unwrap();
    echo.handle_timeout(t1 + quiet);
    assert_eq!(echo.poll_close().map(|c| c.how), Some(CloseHow::Graceful));
}

#[test]
fn begin_shutdown_keeps_the_reason_of_a_connection_already_draining() {
    let mut echo: Echo<u32, 1, 8> = Echo::new(Config::new());
    let id = echo.handle_accept(1, T0).unwrap();
    recv(&mut echo, id, b"ab", T0);
    echo.handle_end_of_stream(id, T0).unwrap();
    echo.begin_shutdown();
    send(&mut echo, id, 99, T0);
    assert_eq!(echo.poll_close().unwrap().reason, CloseReason::Done);
}

#[test]
fn overflow_reports_change_nothing() {
    let mut echo: Echo<u32, 1, 8> =
        Echo::new(Config::new().with_idle_timeout(Some(Duration::from_secs(1))));
    let id = echo.handle_accept(1, T0).unwrap();
    recv(&mut echo, id, b"abcdef", T0);
    send(&mut echo, id, 4, T0);
    assert_eq!(recv(&mut echo, id, b"ghijkl", T0), 2);
    assert_eq!(recv(&mut echo, id, b"ijkl", T0), 4);
    // Queue: "efgh" at the end of the ring, "ijkl" wrapped to the front.
    assert_eq!(echo.send_buf(id).unwrap(), b"efgh");
    let counters = *echo.counters();
    let deadline = echo.poll_timeout();
    let later = Instant::from_millis(500);

    let offered = echo.recv_buf(id).unwrap().len();
    assert_eq!(
        echo.handle_received(id, offered + 1, later),
        Err(ReportError::Overflow)
    );
    // More than the contiguous piece, though no more than the queue holds.
    assert_eq!(echo.handle_sent(id, 5, later), Err(ReportError::Overflow));
    assert_eq!(
        echo.handle_sent(id, usize::MAX, later),
        Err(ReportError::Overflow)
    );
    assert_eq!(
        echo.handle_received(id, usize::MAX, later),
        Err(ReportError::Overflow)
    );

    assert_eq!(*echo.counters(), counters);
    assert_eq!(echo.poll_timeout(), deadline);
    assert_eq!(echo.recv_buf(id).unwrap().len(), offered);
    assert_eq!(send(&mut echo, id, 99, T0), b"efgh");
    assert_eq!(send(&mut echo, id, 99, T0), b"ijkl");
}

#[test]
fn connections_lists_exactly_the_live_ones_with_their_interest() {
    let mut echo: Echo<u32, 8, 4> = Echo::new(Config::new());
    let idle = echo.handle_accept(10, T0).unwrap();
    let some = echo.handle_accept(11, T0).unwrap();
    let full = echo.handle_accept(12, T0).unwrap();
    let draining = echo.handle_accept(13, T0).unwrap();
    let reset = echo.handle_accept(14, T0).unwrap();
    let closed = echo.handle_accept(15, T0).unwrap();
    recv(&mut echo, some, b"s", T0);
    recv(&mut echo, full, b"ffff", T0);
    recv(&mut echo, draining, b"dd", T0);
    echo.handle_end_of_stream(draining, T0).unwrap();
    echo.handle_reset(reset).unwrap();
    echo.handle_end_of_stream(closed, T0).unwrap();

    let expected = [
        (idle, 10, READ),
        (some, 11, BOTH),
        (full, 12, WRITE),
        (draining, 13, WRITE),
    ];
    assert_eq!(echo.connections().collect::<Vec<_>>(), expected);
    assert_eq!(echo.len(), 6);
    assert_eq!(closes(&mut echo).len(), 2);
    assert_eq!(echo.connections().collect::<Vec<_>>(), expected);
    assert_eq!(echo.len(), 4);
    for (id, handle, interest) in expected {
        assert_eq!(echo.interest(id), Ok(interest));
        assert_eq!(echo.handle(id), Ok(handle));
    }
}

#[test]
fn an_empty_machine_is_quiet() {
    let mut echo: Echo<u32, 2, 8> = Echo::new(Config::default());
    assert!(echo.is_empty());
    assert!(echo.accepting());
    assert_eq!(echo.capacity(), 2);
    assert_eq!(echo.connections().count(), 0);
    assert_eq!(echo.poll_close(), None);
    assert_eq!(echo.poll_timeout(), None);
    echo.begin_shutdown();
    echo.abort_all();
    echo.handle_timeout(Instant::from_secs(1));
    assert_eq!(echo.poll_close(), None);
    assert_eq!(*echo.counters(), Counters::default());
}

#[test]
fn the_machine_fits_in_a_static() {
    static ECHO: Echo<u32, 4, 64> = Echo::new(Config::new());
    assert_eq!(ECHO.capacity(), 4);
}
