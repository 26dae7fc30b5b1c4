//! The datagram machine driven by hand: each rule of its contract.

use std::net::SocketAddr;

use selecho_core::{
    DatagramConfig, DatagramEcho, Dropped, Duration, Instant, LOOP_PORTS, QueueEmpty, RateLimit,
    ReceiveError, Transmit,
};

type Machine = DatagramEcho<SocketAddr, 4, 64, 4>;

const T0: Instant = Instant::ZERO;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn unlimited() -> DatagramConfig {
    DatagramConfig::new().with_rate_limit(None)
}

/// Sends everything queued; returns (destination, bytes) in order.
fn flush<const D: usize, const B: usize, const S: usize>(
    echo: &mut DatagramEcho<SocketAddr, D, B, S>,
) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(Transmit { peer, payload }) = echo.poll_transmit() {
        out.push((peer, payload.to_vec()));
        echo.handle_sent().unwrap();
    }
    out
}

#[test]
fn echoes_to_the_sender_in_order() {
    let mut echo = Machine::new(unlimited());
    let (a, b) = (addr("10.0.0.1:40000"), addr("[2001:db8::2]:40001"));
    echo.handle_datagram(a, b"one", T0).unwrap();
    echo.handle_datagram(b, b"", T0).unwrap();
    echo.handle_datagram(a, b"three", T0).unwrap();
    assert_eq!(echo.len(), 3);
    assert_eq!(echo.queued_bytes(), 8);
    assert_eq!(
        flush(&mut echo),
        [
            (a, b"one".to_vec()),
            (b, Vec::new()),
            (a, b"three".to_vec())
        ]
    );
    assert!(echo.is_empty());
    let c = echo.counters();
    assert_eq!((c.received, c.echoed, c.dropped()), (3, 3, 0));
}

#[test]
fn zero_copy_receive_reports_the_real_length() {
    let mut echo = Machine::new(unlimited());
    let peer = addr("10.0.0.1:40000");
    let buf = echo.recv_buf();
    assert_eq!(buf.len(), 64);
    buf[..5].copy_from_slice(b"hello");
    echo.handle_received(peer, 5, T0).unwrap();
    assert_eq!(
        echo.handle_received(peer, 5, T0),
        Err(ReceiveError::NoBuffer),
        "the buffer was used up"
    );
    // A datagram longer than the buffer: MSG_TRUNC told its real length.
    let room = echo.recv_buf().len();
    assert_eq!(room, 59);
    assert_eq!(
        echo.handle_received(peer, 60, T0),
        Err(ReceiveError::Dropped(Dropped::Full)),
        "would fit an emptier queue"
    );
    echo.recv_buf();
    assert_eq!(
        echo.handle_received(peer, 65, T0),
        Err(ReceiveError::Dropped(Dropped::Truncated)),
        "longer than any datagram the machine holds"
    );
    assert_eq!(flush(&mut echo), [(peer, b"hello".to_vec())]);
    let c = echo.counters();
    assert_eq!(
        (c.received, c.echoed, c.dropped_full, c.dropped_truncated),
        (3, 1, 1, 1)
    );
}

#[test]
fn sends_between_lending_and_reporting_are_fine() {
    let mut echo = Machine::new(unlimited());
    let peer = addr("10.0.0.1:40000");
    echo.handle_datagram(peer, &[1; 40], T0).unwrap();
    let buf = echo.recv_buf();
    assert_eq!(buf.len(), 24);
    buf[..3].copy_from_slice(b"abc");
    assert_eq!(flush(&mut echo).len(), 1);
    echo.handle_received(peer, 3, T0).unwrap();
    assert_eq!(flush(&mut echo), [(peer, b"abc".to_vec())]);
}

#[test]
fn full_queue_drops_the_newest() {
    let mut echo = Machine::new(unlimited());
    let peer = addr("10.0.0.1:40000");
    for i in 0..4u8 {
        echo.handle_datagram(peer, &[i; 10], T0).unwrap();
    }
    assert_eq!(echo.handle_datagram(peer, b"", T0), Err(Dropped::Full));
    assert!(echo.recv_buf().is_empty(), "no record left");
    let sent = flush(&mut echo);
    assert_eq!(
        sent.iter().map(|(_, d)| d[0]).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    // Bytes: 64 of them; a 40-byte datagram then a 30-byte one.
    echo.handle_datagram(peer, &[7; 40], T0).unwrap();
    assert_eq!(echo.handle_datagram(peer, &[8; 30], T0), Err(Dropped::Full));
    echo.handle_datagram(peer, &[9; 24], T0).unwrap();
    assert_eq!(echo.counters().dropped_full, 2);
}

#[test]
fn loop_ports_own_ports_and_broadcasts_are_never_answered() {
    let mut echo = Machine::new(unlimited().with_own_ports([7007, 0, 0, 0]));
    for port in LOOP_PORTS.into_iter().chain([7007]) {
        let peer = SocketAddr::from(([10, 0, 0, 1], port));
        assert_eq!(echo.handle_datagram(peer, b"x", T0), Err(Dropped::Loop));
        assert_eq!(echo.handle_truncated(peer), Dropped::Loop);
    }
    for peer in ["255.255.255.255:4000", "224.0.0.1:4000", "[ff02::1]:4000"] {
        assert_eq!(
            echo.handle_datagram(addr(peer), b"x", T0),
            Err(Dropped::Loop)
        );
    }
    assert!(echo.is_empty());
    assert_eq!(echo.counters().dropped_loop, 2 * 18 + 3);
    echo.handle_datagram(addr("10.0.0.1:20"), b"x", T0).unwrap();
}

#[test]
fn truncated_datagrams_are_never_echoed() {
    let mut echo = Machine::new(unlimited());
    let peer = addr("10.0.0.1:40000");
    assert_eq!(echo.handle_truncated(peer), Dropped::Truncated);
    assert_eq!(
        echo.handle_datagram(peer, &[0; 65], T0),
        Err(Dropped::Truncated)
    );
    assert!(echo.is_empty());
    assert_eq!(echo.counters().dropped_truncated, 2);
    assert_eq!(echo.counters().received, 2);
}

#[test]
fn rate_limit_per_source_address() {
    let limit = RateLimit::new(2, Duration::from_millis(100));
    let mut echo = Machine::new(DatagramConfig::new().with_rate_limit(Some(limit)));
    let (a1, a2, b) = (
        addr("10.0.0.1:40000"),
        addr("10.0.0.1:40001"),
        addr("10.0.0.2:40000"),
    );
    echo.handle_datagram(a1, b"1", T0).unwrap();
    echo.handle_datagram(a2, b"2", T0).unwrap();
    assert_eq!(
        echo.handle_datagram(a1, b"3", T0),
        Err(Dropped::Rate),
        "same address"
    );
    echo.handle_datagram(b, b"4", T0).unwrap();
    assert_eq!(flush(&mut echo).len(), 3);
    let later = Instant::from_millis(100);
    echo.handle_datagram(a1, b"5", later).unwrap();
    assert_eq!(echo.handle_datagram(a2, b"6", later), Err(Dropped::Rate));
    assert_eq!(echo.counters().dropped_rate, 2);
    assert_eq!(flush(&mut echo), [(a1, b"5".to_vec())]);
}

#[test]
fn default_rate_limit_is_on_and_generous() {
    let config = DatagramConfig::default();
    assert_eq!(config.rate_limit, Some(RateLimit::DEFAULT));
    let mut echo: DatagramEcho<SocketAddr, 2, 16, 4> = DatagramEcho::new(config);
    let peer = addr("10.0.0.1:40000");
    let mut answered = 0;
    for _ in 0..2000 {
        if echo.handle_datagram(peer, b"x", T0).is_ok() {
            answered += 1;
        }
        while echo.handle_sent().is_ok() {}
    }
    assert_eq!(answered, 1000, "a burst of 1000 at one instant");
    let one_second_later = Instant::from_secs(1);
    for _ in 0..2000 {
        let _ = echo.handle_datagram(peer, b"x", one_second_later);
        while echo.handle_sent().is_ok() {}
    }
    assert_eq!(echo.counters().echoed, 2000, "then 1000 a second");
}

#[test]
fn misuse_changes_nothing() {
    let mut echo = Machine::new(unlimited());
    assert_eq!(echo.handle_sent(), Err(QueueEmpty));
    assert_eq!(echo.handle_send_failed(), Err(QueueEmpty));
    assert_eq!(
        echo.handle_received(addr("10.0.0.1:4000"), 1, T0),
        Err(ReceiveError::NoBuffer)
    );
    assert_eq!(*echo.counters(), Default::default());
    echo.handle_datagram(addr("10.0.0.1:4000"), b"x", T0)
        .unwrap();
    echo.handle_send_failed().unwrap();
    assert_eq!(echo.counters().send_failed, 1);
    assert!(echo.poll_transmit().is_none());
}

#[test]
fn tiny_and_degenerate_capacities() {
    let peer = addr("10.0.0.1:40000");
    let mut empty_only: DatagramEcho<SocketAddr, 2, 0, 1> = DatagramEcho::new(unlimited());
    empty_only.handle_datagram(peer, b"", T0).unwrap();
    assert_eq!(
        empty_only.handle_datagram(peer, b"x", T0),
        Err(Dropped::Truncated)
    );
    let mut no_sources: DatagramEcho<SocketAddr, 2, 16, 0> =
        DatagramEcho::new(DatagramConfig::new());
    assert_eq!(
        no_sources.handle_datagram(peer, b"", T0),
        Err(Dropped::Rate)
    );
}

#[test]
fn counters_display() {
    let mut echo = Machine::new(unlimited());
    echo.handle_datagram(addr("10.0.0.1:7"), b"x", T0)
        .unwrap_err();
    assert_eq!(
        echo.counters().to_string(),
        "received=1 echoed=0 dropped_full=0 dropped_loop=1 dropped_rate=0 dropped_truncated=0 send_failed=0"
    );
    assert_eq!(
        ReceiveError::from(Dropped::Full).to_string(),
        "datagram dropped: queue full"
    );
}
