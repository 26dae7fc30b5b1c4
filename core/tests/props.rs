//! Property tests: random event sequences run against both `Echo` and a
//! plain reference model, checked against each other after every event.
//!
//! The model keeps, per connection, every byte received and every byte sent,
//! so "what was echoed is a prefix of what came in, in order" is checked on
//! each send, and `send_buf` must always be the next unsent bytes. It also
//! predicts every close order, counter, interest and deadline exactly.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use selecho_core::{
    AcceptError, ByteQueue, Close, CloseHow, CloseReason, Config, ConnId, Counters, Duration, Echo,
    Instant, Interest, ReportError, StaleId,
};

const N: usize = 4;
const Q: usize = 16;
const IDLE: Duration = Duration::from_millis(100);
const QUIET: Duration = Duration::from_millis(30);

type Machine = Echo<u32, N, Q>;

/// One thing that can happen to the machine.
#[derive(Clone, Debug)]
enum Op {
    Accept,
    Refused,
    /// Read up to `data.len()` bytes; `over`: first report one byte more
    /// than offered, which must fail and change nothing.
    Recv {
        pick: usize,
        data: Vec<u8>,
        over: bool,
    },
    /// Report `n` bytes sent, possibly more than offered.
    Send {
        pick: usize,
        n: usize,
    },
    PeerClosed(usize),
    /// A read found nothing waiting.
    WouldBlock(usize),
    Reset(usize),
    Close(usize),
    Advance(u64),
    Timeout,
    PollClose,
    BeginShutdown,
    AbortAll,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Open,
    Draining,
    Closing(CloseHow, CloseReason),
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    handle: u32,
    received: Vec<u8>,
    sent: Vec<u8>,
    state: State,
    last: Instant,
    /// The last read found nothing waiting.
    read_idle: bool,
}

impl Conn {
    fn queued(&self) -> usize {
        self.received.len() - self.sent.len()
    }

    fn live(&self) -> bool {
        matches!(self.state, State::Open | State::Draining)
    }

    /// Would close if still for the quiet period while shutting down.
    fn finishing(&self) -> bool {
        self.state == State::Open && self.read_idle && self.queued() == 0
    }

    fn interest(&self, shutting_down: bool) -> Interest {
        let open = self.state == State::Open;
        Interest {
            read: open && self.queued() < Q,
            write: self.queued() > 0,
            probe: shutting_down && open && !self.read_idle && self.queued() == 0,
        }
    }
}

/// The machine and its model, side by side.
struct Run {
    echo: Box<Machine>,
    idle: Option<Duration>,
    capacity: usize,
    now: Instant,
    shutting_down: bool,
    /// Open, draining and closing connections by slot.
    conns: BTreeMap<usize, Conn>,
    closing: VecDeque<usize>,
    /// Every id ever given out, live or stale, to pick from.
    ids: Vec<ConnId>,
    next_handle: u32,
    counters: Counters,
    /// Bytes received and sent over all connections, closed ones too.
    total_in: u64,
    total_out: u64,
}

impl Run {
    fn new(idle: Option<Duration>, max: usize) -> Self {
        let config = Config::new()
            .with_idle_timeout(idle)
            .with_max_connections(max)
            .with_quiet_period(QUIET);
        Run {
            echo: Box::new(Echo::new(config)),
            idle,
            capacity: max.min(N),
            now: Instant::ZERO,
            shutting_down: false,
            conns: BTreeMap::new(),
            closing: VecDeque::new(),
            ids: Vec::new(),
            next_handle: 0,
            counters: Counters::default(),
            total_in: 0,
            total_out: 0,
        }
    }

    fn pick(&self, pick: usize) -> Option<ConnId> {
        if self.ids.is_empty() {
            return None;
        }
        Some(self.ids[pick % self.ids.len()])
    }

    /// The model's live connection for `id`, by slot.
    fn live(&self, id: ConnId) -> Option<usize> {
        let conn = self.conns.get(&id.slot())?;
        (conn.id == id && conn.live()).then_some(id.slot())
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Accept => self.accept(),
            Op::Refused => {
                self.echo.handle_refused();
                self.counters.refused += 1;
            }
            Op::Recv { pick, data, over } => self.recv(pick, &data, over),
            Op::Send { pick, n } => self.send(pick, n),
            Op::PeerClosed(pick) => self.peer_closed(pick),
            Op::WouldBlock(pick) => self.would_block(pick),
            Op::Reset(pick) => {
                let Some(id) = self.pick(pick) else { return };
                let result = self.echo.handle_reset(id);
                let Some(slot) = self.live(id) else {
                    return assert_eq!(result, Err(StaleId));
                };
                assert_eq!(result, Ok(()));
                self.schedule(slot, CloseHow::Abort, CloseReason::Reset);
            }
            Op::Close(pick) => {
                let Some(id) = self.pick(pick) else { return };
                let result = self.echo.close(id);
                let Some(slot) = self.live(id) else {
                    return assert_eq!(result, Err(StaleId));
                };
                assert_eq!(result, Ok(()));
                self.schedule(slot, CloseHow::Abort, CloseReason::Shutdown);
            }
            Op::Advance(micros) => self.now = self.now + Duration::from_micros(micros),
            Op::Timeout => self.timeout(),
            Op::PollClose => self.poll_close(),
            Op::BeginShutdown => {
                self.echo.begin_shutdown();
                self.shutting_down = true;
                assert!(self.echo.shutting_down());
            }
            Op::AbortAll => {
                self.echo.abort_all();
                for slot in self.slots() {
                    if self.conns[&slot].live() {
                        self.schedule(slot, CloseHow::Abort, CloseReason::Shutdown);
                    }
                }
            }
        }
    }

    fn slots(&self) -> Vec<usize> {
        self.conns.keys().copied().collect()
    }

    fn accept(&mut self) {
        let handle = self.next_handle;
        self.next_handle += 1;
        let expect_accepting = !self.shutting_down && self.conns.len() < self.capacity;
        assert_eq!(self.echo.accepting(), expect_accepting);
        let result = self.echo.handle_accept(handle, self.now);
        if self.shutting_down {
            self.counters.refused += 1;
            return assert_eq!(result, Err(AcceptError::ShuttingDown));
        }
        if self.conns.len() >= self.capacity {
            self.counters.refused += 1;
            return assert_eq!(result, Err(AcceptError::Full));
        }
        let id = result.expect("accept with room");
        assert!(id.slot() < N);
        assert!(!self.conns.contains_key(&id.slot()), "slot {id} in use");
        assert!(!self.ids.contains(&id), "id {id} given out twice");
        self.counters.accepted += 1;
        self.ids.push(id);
        self.conns.insert(
            id.slot(),
            Conn {
                id,
                handle,
                received: Vec::new(),
                sent: Vec::new(),
                state: State::Open,
                last: self.now,
                read_idle: false,
            },
        );
    }

    fn recv(&mut self, pick: usize, data: &[u8], over: bool) {
        let Some(id) = self.pick(pick) else { return };
        let now = self.now;
        let Some(slot) = self.live(id) else {
            assert_eq!(self.echo.recv_buf(id).map(|b| b.len()), Err(StaleId));
            let n = data.len();
            return assert_eq!(
                self.echo.handle_received(id, n, now),
                Err(ReportError::Stale)
            );
        };
        let conn = self.conns.get_mut(&slot).unwrap();
        let buf = self.echo.recv_buf(id).unwrap();
        let room = Q - conn.queued();
        assert!(buf.len() <= room, "recv_buf larger than the free space");
        assert_eq!(
            buf.is_empty(),
            !conn.interest(self.shutting_down).read,
            "recv_buf empty exactly without read interest"
        );
        let offered = buf.len();
        let n = offered.min(data.len());
        buf[..n].copy_from_slice(&data[..n]);
        if over {
            // Nothing changes, as the checks after this event confirm.
            let result = self.echo.handle_received(id, offered + 1, now);
            assert_eq!(result, Err(ReportError::Overflow));
        }
        assert_eq!(self.echo.handle_received(id, n, now), Ok(()));
        if n == 0 {
            return;
        }
        conn.received.extend_from_slice(&data[..n]);
        conn.last = now;
        conn.read_idle = false;
        self.counters.bytes_in += n as u64;
        self.total_in += n as u64;
    }

    fn send(&mut self, pick: usize, n: usize) {
        let Some(id) = self.pick(pick) else { return };
        let now = self.now;
        let Some(slot) = self.live(id) else {
            assert_eq!(self.echo.send_buf(id).map(<[u8]>::len), Err(StaleId));
            return assert_eq!(self.echo.handle_sent(id, n, now), Err(ReportError::Stale));
        };
        let conn = self.conns.get_mut(&slot).unwrap();
        let data = self.echo.send_buf(id).unwrap().to_vec();
        let unsent = &conn.received[conn.sent.len()..];
        assert!(
            unsent.starts_with(&data),
            "send_buf is not the next unsent bytes"
        );
        assert_eq!(data.is_empty(), unsent.is_empty());
        let result = self.echo.handle_sent(id, n, now);
        if n > data.len() {
            return assert_eq!(result, Err(ReportError::Overflow));
        }
        assert_eq!(result, Ok(()));
        if n == 0 {
            return;
        }
        conn.sent.extend_from_slice(&data[..n]);
        assert!(conn.received.starts_with(&conn.sent));
        conn.last = now;
        self.counters.bytes_out += n as u64;
        self.total_out += n as u64;
        if conn.state == State::Draining && conn.queued() == 0 {
            self.schedule(slot, CloseHow::Graceful, CloseReason::Done);
        }
    }

    fn peer_closed(&mut self, pick: usize) {
        let Some(id) = self.pick(pick) else { return };
        let result = self.echo.handle_end_of_stream(id, self.now);
        let Some(slot) = self.live(id) else {
            return assert_eq!(result, Err(StaleId));
        };
        assert_eq!(result, Ok(()));
        let conn = self.conns.get_mut(&slot).unwrap();
        if conn.state != State::Open {
            return;
        }
        conn.last = self.now;
        conn.state = State::Draining;
        if conn.queued() == 0 {
            self.schedule(slot, CloseHow::Graceful, CloseReason::Done);
        }
    }

    fn would_block(&mut self, pick: usize) {
        let Some(id) = self.pick(pick) else { return };
        let result = self.echo.handle_would_block(id, self.now);
        let Some(slot) = self.live(id) else {
            return assert_eq!(result, Err(StaleId));
        };
        assert_eq!(result, Ok(()));
        self.conns.get_mut(&slot).unwrap().read_idle = true;
        self.finish_if_quiet(slot);
    }

    fn finish_if_quiet(&mut self, slot: usize) {
        let conn = &self.conns[&slot];
        if self.shutting_down && conn.finishing() && self.now - conn.last >= QUIET {
            self.schedule(slot, CloseHow::Graceful, CloseReason::Shutdown);
        }
    }

    fn timeout(&mut self) {
        self.echo.handle_timeout(self.now);
        for slot in self.slots() {
            if !self.conns[&slot].live() {
                continue;
            }
            self.finish_if_quiet(slot);
            let Some(idle) = self.idle else { continue };
            let conn = &self.conns[&slot];
            if !conn.live() || self.now - conn.last < idle {
                continue;
            }
            let how = if conn.queued() == 0 {
                CloseHow::Graceful
            } else {
                CloseHow::Abort
            };
            self.schedule(slot, how, CloseReason::TimedOut);
        }
    }

    fn poll_close(&mut self) {
        let got = self.echo.poll_close();
        let Some(slot) = self.closing.pop_front() else {
            return assert_eq!(got, None);
        };
        let conn = self.conns.remove(&slot).unwrap();
        let State::Closing(how, reason) = conn.state else {
            panic!("slot {slot} queued while {:?}", conn.state)
        };
        let expected = Close {
            id: conn.id,
            handle: conn.handle,
            how,
            reason,
        };
        assert_eq!(got, Some(expected));
        if how == CloseHow::Graceful {
            assert_eq!(conn.sent, conn.received, "graceful close lost bytes");
        }
    }

    fn schedule(&mut self, slot: usize, how: CloseHow, reason: CloseReason) {
        let conn = self.conns.get_mut(&slot).unwrap();
        conn.state = State::Closing(how, reason);
        self.closing.push_back(slot);
        let counter = match reason {
            CloseReason::Done => &mut self.counters.closed,
            CloseReason::Reset => &mut self.counters.reset,
            CloseReason::TimedOut => &mut self.counters.timed_out,
            CloseReason::Shutdown => &mut self.counters.shut_down,
        };
        *counter += 1;
    }

    /// Everything observable about the machine matches the model.
    fn check(&self) {
        let echo = &self.echo;
        assert_eq!(*echo.counters(), self.counters);
        assert_eq!(echo.counters().bytes_in, self.total_in);
        assert_eq!(echo.counters().bytes_out, self.total_out);
        assert_eq!(echo.len(), self.conns.len());
        assert_eq!(echo.is_empty(), self.conns.is_empty());
        assert_eq!(
            echo.accepting(),
            !self.shutting_down && self.conns.len() < self.capacity
        );

        let live: Vec<(ConnId, u32, Interest)> = self
            .conns
            .values()
            .filter(|conn| conn.live())
            .map(|conn| (conn.id, conn.handle, conn.interest(self.shutting_down)))
            .collect();
        assert_eq!(echo.connections().collect::<Vec<_>>(), live);

        for conn in self.conns.values() {
            assert!(conn.queued() <= Q, "more than Q bytes queued");
            assert!(conn.received.starts_with(&conn.sent));
            if !conn.live() {
                assert_eq!(echo.interest(conn.id), Err(StaleId));
                continue;
            }
            assert_eq!(
                echo.interest(conn.id),
                Ok(conn.interest(self.shutting_down))
            );
            assert_eq!(echo.handle(conn.id), Ok(conn.handle));
            let data = echo.send_buf(conn.id).unwrap();
            assert!(conn.received[conn.sent.len()..].starts_with(data));
            assert_eq!(data.is_empty(), conn.queued() == 0);
        }
        for &id in &self.ids {
            if self.live(id).is_none() {
                assert_eq!(echo.interest(id), Err(StaleId));
                assert_eq!(echo.handle(id), Err(StaleId));
            }
        }

        let deadline = self
            .conns
            .values()
            .filter(|conn| conn.live())
            .flat_map(|conn| {
                let quiet = (self.shutting_down && conn.finishing()).then_some(QUIET);
                [self.idle, quiet].map(|after| after.map(|after| conn.last + after))
            })
            .flatten()
            .min();
        assert_eq!(echo.poll_timeout(), deadline);
    }

    fn run(ops: Vec<Op>, idle: Option<Duration>, max: usize) {
        let mut run = Run::new(idle, max);
        run.check();
        for op in ops {
            run.apply(op);
            run.check();
        }
        // Draining the close queue at the end settles every scheduled close.
        while !run.closing.is_empty() {
            run.poll_close();
            run.check();
        }
        run.poll_close();
    }
}

fn op() -> impl Strategy<Value = Op> {
    // Shutdown ends accepting for good, so it comes in about one run in three.
    prop_oneof![
        40 => Just(Op::Accept),
        10 => Just(Op::Refused),
        80 => (any::<usize>(), prop::collection::vec(any::<u8>(), 0..2 * Q), any::<bool>())
            .prop_map(|(pick, data, over)| {
                let over = over && data.len() % 4 == 0;
                Op::Recv { pick, data, over }
            }),
        80 => (any::<usize>(), 0..Q + 4).prop_map(|(pick, n)| Op::Send { pick, n }),
        20 => any::<usize>().prop_map(Op::PeerClosed),
        20 => any::<usize>().prop_map(Op::WouldBlock),
        10 => any::<usize>().prop_map(Op::Reset),
        10 => any::<usize>().prop_map(Op::Close),
        30 => prop_oneof![Just(0u64), 1..200_000u64].prop_map(Op::Advance),
        20 => Just(Op::Timeout),
        40 => Just(Op::PollClose),
        1 => Just(Op::BeginShutdown),
        1 => Just(Op::AbortAll),
    ]
}

fn config() -> impl Strategy<Value = (Option<Duration>, usize)> {
    (
        prop_oneof![Just(None), Just(Some(IDLE)), Just(Some(Duration::ZERO))],
        prop_oneof![Just(usize::MAX), 0..=N + 1],
    )
}

/// Turns arbitrary bytes into events, as a fuzzer would.
fn decode(bytes: &[u8]) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut it = bytes.iter().copied();
    let index = usize::from;
    while let Some(tag) = it.next() {
        let a = it.next().unwrap_or(0);
        let op = match tag % 13 {
            0 | 1 => Op::Accept,
            2 => Op::Refused,
            3 | 4 => {
                let len = usize::from(a) % (2 * Q);
                let data: Vec<u8> = it.by_ref().take(len).collect();
                Op::Recv {
                    pick: index(tag),
                    data,
                    over: a & 0x80 != 0,
                }
            }
            5 | 6 => Op::Send {
                pick: index(tag),
                n: usize::from(a) % (Q + 4),
            },
            7 => Op::PeerClosed(index(a)),
            8 => Op::Reset(index(a)),
            9 => Op::Advance(u64::from(a) * 1_000),
            10 => Op::Timeout,
            11 => Op::PollClose,
            _ => match a % 5 {
                0 => Op::BeginShutdown,
                1 => Op::AbortAll,
                2 => Op::WouldBlock(index(a)),
                _ => Op::Close(index(a)),
            },
        };
        ops.push(op);
    }
    ops
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn machine_matches_model((idle, max) in config(), ops in prop::collection::vec(op(), 0..200)) {
        Run::run(ops, idle, max);
    }

    #[test]
    fn fuzzed_bytes_match_model(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let idle = if bytes.first().is_some_and(|b| b % 2 == 0) { Some(IDLE) } else { None };
        Run::run(decode(&bytes), idle, usize::MAX);
    }

    /// The ring against `VecDeque`, with reads and sends of every size.
    #[test]
    fn byte_queue_matches_vecdeque(ops in prop::collection::vec((any::<bool>(), 0usize..12, any::<u8>()), 0..200)) {
        let mut queue = ByteQueue::<8>::new();
        let mut model = VecDeque::new();
        for (push, n, seed) in ops {
            if push {
                let room = queue.free_mut();
                prop_assert!(room.len() <= 8 - model.len());
                prop_assert_eq!(room.is_empty(), model.len() == 8);
                let k = n.min(room.len());
                for (i, b) in room[..k].iter_mut().enumerate() {
                    *b = seed.wrapping_add(i as u8);
                }
                if n > room.len() {
                    prop_assert!(queue.commit(n).is_err());
                }
                queue.commit(k).unwrap();
                model.extend((0..k).map(|i| seed.wrapping_add(i as u8)));
            } else {
                let data = queue.data().to_vec();
                prop_assert_eq!(data.is_empty(), model.is_empty());
                prop_assert!(model.iter().copied().take(data.len()).eq(data.iter().copied()));
                if n > data.len() {
                    prop_assert!(queue.consume(n).is_err());
                }
                let k = n.min(data.len());
                queue.consume(k).unwrap();
                model.drain(..k);
            }
            prop_assert_eq!(queue.len(), model.len());
            prop_assert_eq!(queue.free(), 8 - model.len());
        }
        let mut out = [0; 8];
        let n = queue.pop_slice(&mut out);
        prop_assert!(model.iter().copied().eq(out[..n].iter().copied()));
    }
}
