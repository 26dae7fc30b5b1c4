//! Property tests of the datagram machine: random event sequences run
//! against `DatagramEcho` and a plain reference model, checked against each
//! other after every event.
//!
//! The model places datagrams in a byte map of the store (each byte owned by
//! at most one queued datagram or its padding), so it predicts every
//! `recv_buf` length and every "full" exactly from the documented placement
//! rule. Its rate limit is the window rule itself — a source may be
//! answered `k` times within a span `t` only if `k <= burst + t / interval`
//! — not the machine's bucket arithmetic. At the end, the answers to each
//! source are checked against that rule over every window, and the echoes
//! against the datagrams accepted, source by source.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use proptest::prelude::*;
use selecho_core::{
    DatagramConfig, DatagramCounters, DatagramEcho, Dropped, Duration, Instant, QueueEmpty,
    RateLimit, ReceiveError,
};

const D: usize = 4;
const B: usize = 32;
const S: usize = 2;
/// The machine's longest datagram: all of `B`.
const MAX: usize = B;
const OWN_PORT: u16 = 7007;

type Machine = DatagramEcho<SocketAddr, D, B, S>;

/// The source ports the docs promise never to answer.
const LOOP_PORTS: [u16; 17] = [
    0, 7, 9, 11, 13, 15, 17, 19, 37, 53, 123, 137, 138, 161, 1900, 5353, 11211,
];

/// The senders a run picks from: address, rate-limit key, never answered.
fn peers() -> Vec<(SocketAddr, u8, bool)> {
    let p = |s: &str| s.parse::<SocketAddr>().unwrap();
    vec![
        (p("10.0.0.1:40000"), 1, false),
        (p("10.0.0.1:40001"), 1, false),
        (p("10.0.0.2:40000"), 2, false),
        (p("[::ffff:10.0.0.2]:40002"), 2, false),
        (p("[2001:db8::3]:40000"), 3, false),
        (p("10.0.0.4:50000"), 4, false),
        (p("10.0.0.1:7"), 1, true),
        (p("10.0.0.5:19"), 5, true),
        (p("10.0.0.5:0"), 5, true),
        (p("224.0.0.1:40000"), 6, true),
        (p("255.255.255.255:40000"), 7, true),
        (p(&format!("10.0.0.6:{OWN_PORT}")), 8, true),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    /// `handle_datagram` with `len` bytes.
    Copy {
        peer: usize,
        len: usize,
        seed: u8,
    },
    /// `handle_datagram` with a byte from one more host, from this port.
    FromPort(u16),
    /// `recv_buf`, write what fits of `len` bytes, `handle_received(len)`.
    Lend {
        peer: usize,
        len: usize,
        seed: u8,
    },
    /// `recv_buf` and nothing more (the socket would block).
    LendOnly,
    /// `handle_received` without lending first, when nothing is lent.
    Report {
        peer: usize,
        len: usize,
    },
    Truncated {
        peer: usize,
    },
    Sent,
    SendFailed,
    Advance(u64),
}

/// One queued datagram in the model.
#[derive(Clone, Debug)]
struct Queued {
    peer: usize,
    bytes: Vec<u8>,
    /// Store bytes it owns, padding included.
    claim: Vec<usize>,
    /// Where its bytes end (the next datagram goes from there).
    end: usize,
}

/// The machine and its model, side by side.
struct Run {
    echo: Box<Machine>,
    peers: Vec<(SocketAddr, u8, bool)>,
    limit: Option<RateLimit>,
    now: Instant,
    queue: VecDeque<Queued>,
    /// Which store byte each queued datagram owns.
    owner: [bool; B],
    /// What `recv_buf` lent: (at, len).
    lent: Option<(usize, usize)>,
    /// Per rate-limit key: times answered since its bucket was last full.
    recent: BTreeMap<u8, Vec<Instant>>,
    /// Per key: every time a datagram was accepted.
    accepted_at: BTreeMap<u8, Vec<Instant>>,
    /// Every datagram accepted, and every one taken off the queue (echoed
    /// or failed to send), in order.
    accepted: Vec<(usize, Vec<u8>)>,
    dequeued: Vec<(usize, Vec<u8>)>,
    counters: DatagramCounters,
}

impl Run {
    fn new(limit: Option<RateLimit>) -> Self {
        let config = DatagramConfig::new()
            .with_rate_limit(limit)
            .with_own_ports([OWN_PORT, 0, 0, 0]);
        Run {
            echo: Box::new(Machine::new(config)),
            peers: peers(),
            limit,
            now: Instant::ZERO,
            queue: VecDeque::new(),
            owner: [false; B],
            lent: None,
            recent: BTreeMap::new(),
            accepted_at: BTreeMap::new(),
            accepted: Vec::new(),
            dequeued: Vec::new(),
            counters: DatagramCounters::default(),
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Copy { peer, len, seed } => {
                let peer = peer % self.peers.len();
                let data = pattern(seed, len);
                let fits = self.fit(len);
                let got = self
                    .echo
                    .handle_datagram(self.peers[peer].0, &data, self.now);
                let want = self.decide(peer, len, fits);
                assert_eq!(got, want.map(|_| ()), "copy of {len} bytes from {peer}");
                if let Ok(at) = want {
                    self.queue_at(peer, data, at);
                }
                self.lent = None;
            }
            Op::FromPort(port) => {
                let addr = SocketAddr::from(([10, 0, 1, 9], port));
                let refused = LOOP_PORTS.contains(&port) || port == OWN_PORT;
                let peer = match self.peers.iter().position(|p| p.0 == addr) {
                    Some(peer) => peer,
                    None => {
                        self.peers.push((addr, 9, refused));
                        self.peers.len() - 1
                    }
                };
                self.apply(Op::Copy {
                    peer,
                    len: 1,
                    seed: 0,
                });
            }
            Op::Lend { peer, len, seed } => {
                let peer = peer % self.peers.len();
                let data = pattern(seed, len);
                let (at, room) = self.space();
                let buf = self.echo.recv_buf();
                assert_eq!(buf.len(), room, "recv_buf length");
                let n = len.min(room);
                buf[..n].copy_from_slice(&data[..n]);
                let got = self.echo.handle_received(self.peers[peer].0, len, self.now);
                let fits = (self.queue.len() < D && len <= room).then_some(at);
                let want = self.decide(peer, len, fits);
                assert_eq!(got, want.map(|_| ()).map_err(ReceiveError::Dropped));
                if let Ok(at) = want {
                    self.queue_at(peer, data, at);
                }
                self.lent = None;
            }
            Op::LendOnly => {
                let space = self.space();
                assert_eq!(self.echo.recv_buf().len(), space.1);
                self.lent = Some(space);
            }
            Op::Report { peer, len } => {
                if self.lent.is_some() {
                    return;
                }
                let peer = self.peers[peer % self.peers.len()].0;
                let got = self.echo.handle_received(peer, len, self.now);
                assert_eq!(got, Err(ReceiveError::NoBuffer));
            }
            Op::Truncated { peer } => {
                let peer = peer % self.peers.len();
                let got = self.echo.handle_truncated(self.peers[peer].0);
                self.counters.received += 1;
                let want = if self.peers[peer].2 {
                    self.counters.dropped_loop += 1;
                    Dropped::Loop
                } else {
                    self.counters.dropped_truncated += 1;
                    Dropped::Truncated
                };
                assert_eq!(got, want);
            }
            Op::Sent | Op::SendFailed => {
                let sent = matches!(op, Op::Sent);
                let got = if sent {
                    self.echo.handle_sent()
                } else {
                    self.echo.handle_send_failed()
                };
                let Some(front) = self.queue.pop_front() else {
                    return assert_eq!(got, Err(QueueEmpty));
                };
                assert_eq!(got, Ok(()));
                for &i in &front.claim {
                    self.owner[i] = false;
                }
                if sent {
                    self.counters.echoed += 1;
                } else {
                    self.counters.send_failed += 1;
                }
                self.dequeued.push((front.peer, front.bytes));
            }
            Op::Advance(micros) => self.now = self.now + Duration::from_micros(micros),
        }
    }

    /// Applies the documented order of reasons to a datagram of `len` bytes
    /// from `peer` that fits at `fits`, if anywhere: where it goes, or why not.
    fn decide(&mut self, peer: usize, len: usize, fits: Option<usize>) -> Result<usize, Dropped> {
        self.counters.received += 1;
        let (_, key, refused) = self.peers[peer];
        let reason = if refused {
            Dropped::Loop
        } else if len > MAX {
            Dropped::Truncated
        } else if let Some(at) = fits {
            if self.rate_admits(key) {
                self.accepted_at.entry(key).or_default().push(self.now);
                return Ok(at);
            }
            Dropped::Rate
        } else {
            Dropped::Full
        };
        match reason {
            Dropped::Loop => self.counters.dropped_loop += 1,
            Dropped::Truncated => self.counters.dropped_truncated += 1,
            Dropped::Full => self.counters.dropped_full += 1,
            Dropped::Rate => self.counters.dropped_rate += 1,
        }
        Err(reason)
    }

    /// The window rule: one more answer at `now` must keep every window
    /// since the key's bucket was last full within `burst + span / interval`;
    /// a key whose bucket is full needs a free table entry (fewer than `S`
    /// keys with buckets still refilling).
    fn rate_admits(&mut self, key: u8) -> bool {
        let Some(limit) = self.limit else {
            return true;
        };
        if limit.burst == 0 {
            return false;
        }
        let interval = limit.interval.min(RateLimit::MAX_INTERVAL).total_micros();
        let now = self.now;
        let refilling = |times: &Vec<Instant>| {
            let k = times.len() as u64;
            times
                .iter()
                .enumerate()
                .any(|(i, t)| t.total_micros() + (k - i as u64) * interval > now.total_micros())
        };
        let busy = self
            .recent
            .values()
            .filter(|times| refilling(times))
            .count();
        let times = self.recent.entry(key).or_default();
        if !refilling(times) {
            if busy >= S {
                return false;
            }
            times.clear();
        }
        let k = times.len() as u64;
        let fits_every_window = times.iter().enumerate().all(|(i, t)| {
            let in_window = k - i as u64 + 1;
            let span = (now - *t).total_micros();
            in_window
                <= u64::from(limit.burst)
                    .saturating_add(span.checked_div(interval).unwrap_or(u64::MAX))
        });
        if fits_every_window {
            times.push(now);
        }
        fits_every_window
    }

    /// Where the next datagram's bytes may start, and the free run from
    /// there to the end of the store (`None`: no byte in use).
    fn next(&self) -> Option<(usize, usize)> {
        let newest = self.queue.iter().rev().find(|q| !q.claim.is_empty());
        let next = newest?.end;
        let run = (next..B).take_while(|&i| !self.owner[i]).count();
        Some((next, run))
    }

    /// The free run from the start of the store, when the store is not
    /// wrapped (the run after the newest reaches the end).
    fn front_run(&self, next: usize, tail: usize) -> usize {
        if next + tail < B {
            return 0;
        }
        (0..B).take_while(|&i| !self.owner[i]).count()
    }

    /// What `recv_buf` lends: (at, len).
    fn space(&self) -> (usize, usize) {
        let Some((next, tail)) = self.next() else {
            return (0, if self.queue.len() < D { B.min(MAX) } else { 0 });
        };
        if self.queue.len() == D {
            return (next, 0);
        }
        let front = self.front_run(next, tail);
        if tail >= MAX || tail >= front {
            (next, tail.min(MAX))
        } else {
            (0, front.min(MAX))
        }
    }

    /// Where `handle_datagram` puts `len` bytes, if anywhere.
    fn fit(&self, len: usize) -> Option<usize> {
        if self.queue.len() == D || len > MAX {
            return None;
        }
        let Some((next, tail)) = self.next() else {
            return Some(0);
        };
        if len <= tail {
            return Some(next);
        }
        (len <= self.front_run(next, tail)).then_some(0)
    }

    fn queue_at(&mut self, peer: usize, bytes: Vec<u8>, at: usize) {
        let mut claim: Vec<usize> = (at..at + bytes.len()).collect();
        if let Some((next, _)) = self.next()
            && at != next
        {
            // Skipped the end of the store: it stays taken until this one goes.
            claim.extend(next..B);
        }
        for &i in &claim {
            assert!(!self.owner[i], "byte {i} taken twice");
            self.owner[i] = true;
        }
        self.accepted.push((peer, bytes.clone()));
        let end = at + bytes.len();
        self.queue.push_back(Queued {
            peer,
            bytes,
            claim,
            end,
        });
    }

    /// Everything observable about the machine matches the model.
    fn check(&self) {
        let echo = &self.echo;
        assert_eq!(*echo.counters(), self.counters);
        let c = echo.counters();
        assert_eq!(
            c.received,
            c.echoed + c.dropped() + c.send_failed + echo.len() as u64,
            "counters add up"
        );
        assert_eq!(echo.len(), self.queue.len());
        assert!(echo.len() <= D);
        let bytes: usize = self.queue.iter().map(|q| q.bytes.len()).sum();
        assert_eq!(echo.queued_bytes(), bytes);
        assert!(bytes <= B);
        let front = echo.poll_transmit().map(|t| (t.peer, t.payload.to_vec()));
        let want = self
            .queue
            .front()
            .map(|q| (self.peers[q.peer].0, q.bytes.clone()));
        assert_eq!(front, want, "the next datagram to send");
    }

    /// After the run: what left the queue (echoed or failed) and what is
    /// still queued is what was accepted, per source in order (the bytes are
    /// the machine's: `check` compared its next datagram with the model's
    /// after every event); never to a refused peer; no source over its limit
    /// in any window.
    fn finish(&self) {
        let queued: Vec<_> = self
            .queue
            .iter()
            .map(|q| (q.peer, q.bytes.clone()))
            .collect();
        for peer in 0..self.peers.len() {
            let of = |list: &[(usize, Vec<u8>)]| -> Vec<Vec<u8>> {
                list.iter()
                    .filter(|(p, _)| *p == peer)
                    .map(|(_, b)| b.clone())
                    .collect()
            };
            let accepted = of(&self.accepted);
            let mut delivered = of(&self.dequeued);
            delivered.extend(of(&queued));
            assert_eq!(
                delivered, accepted,
                "peer {peer}: echoes and accepted differ"
            );
            if self.peers[peer].2 {
                assert!(accepted.is_empty(), "refused peer {peer} answered");
            }
        }
        let Some(limit) = self.limit else { return };
        let interval = limit.interval.min(RateLimit::MAX_INTERVAL).total_micros();
        for (key, times) in &self.accepted_at {
            for a in 0..times.len() {
                for b in a..times.len() {
                    let span = (times[b] - times[a]).total_micros();
                    let allowed = u64::from(limit.burst)
                        .saturating_add(span.checked_div(interval).unwrap_or(u64::MAX));
                    assert!(
                        (b - a + 1) as u64 <= allowed,
                        "key {key}: {} answers within {span} µs",
                        b - a + 1
                    );
                }
            }
        }
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i as u8).wrapping_mul(31)))
        .collect()
}

fn op() -> impl Strategy<Value = Op> {
    let peer = prop_oneof![6 => 0usize..6, 1 => 6usize..12];
    let len = prop_oneof![8 => 0..=MAX, 1 => Just(MAX), 1 => MAX + 1..MAX + 4];
    prop_oneof![
        30 => (peer.clone(), len.clone(), any::<u8>())
            .prop_map(|(peer, len, seed)| Op::Copy { peer, len, seed }),
        30 => (peer.clone(), len.clone(), any::<u8>())
            .prop_map(|(peer, len, seed)| Op::Lend { peer, len, seed }),
        5 => prop_oneof![0u16..200, Just(1900), Just(5353), Just(11211), any::<u16>()]
            .prop_map(Op::FromPort),
        3 => Just(Op::LendOnly),
        3 => (peer.clone(), len).prop_map(|(peer, len)| Op::Report { peer, len }),
        3 => peer.prop_map(|peer| Op::Truncated { peer }),
        40 => Just(Op::Sent),
        3 => Just(Op::SendFailed),
        15 => prop_oneof![Just(0u64), 1..3_000u64, Just(10_000u64)].prop_map(Op::Advance),
    ]
}

fn limit() -> impl Strategy<Value = Option<RateLimit>> {
    prop_oneof![
        1 => Just(None),
        4 => (0u32..4, prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::from_millis(1)),
            Just(Duration::from_millis(10)),
            Just(Duration::from_secs(7_200)),
        ])
            .prop_map(|(burst, interval)| Some(RateLimit::new(burst, interval))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn machine_matches_model(limit in limit(), ops in prop::collection::vec(op(), 0..300)) {
        let mut run = Run::new(limit);
        run.check();
        for op in ops {
            run.apply(op);
            run.check();
        }
        run.finish();
    }
}
