//! Scenario and property tests through the simulator: fake clients, fake
//! pipes and a fake clock in front of the real machine.

use proptest::prelude::*;
use selecho_core::sim::{ClientId, ClientState, Sim, SimError};
use selecho_core::{Close, CloseHow, CloseReason, Config, Duration, Instant, Interest};

/// 4 connections, 16-byte queues, 8 clients, 16-byte pipes: small enough
/// that every buffer fills in a few steps.
type Small = Sim<4, 16, 8, 16>;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn read_all<const N: usize, const Q: usize, const C: usize, const P: usize>(
    sim: &mut Sim<N, Q, C, P>,
    client: ClientId,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0; 7];
    loop {
        let n = sim.read(client, &mut buf);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Writes, steps and reads until `input` has come back or nothing moves.
fn echo_through<const N: usize, const Q: usize, const C: usize, const P: usize>(
    sim: &mut Sim<N, Q, C, P>,
    client: ClientId,
    input: &[u8],
) -> Vec<u8> {
    let (mut written, mut out) = (0, Vec::new());
    for _ in 0..100_000 {
        written += sim.write(client, &input[written..]);
        let moved = sim.step();
        out.extend(read_all(sim, client));
        if out.len() == input.len() || (!moved && written == input.len()) {
            break;
        }
    }
    out
}

#[test]
fn partial_sends_and_reads_deliver_every_byte_in_order() {
    for (send, recv) in [(Some(1), None), (Some(3), Some(5)), (None, Some(2))] {
        let mut sim = Small::new(Config::new());
        sim.set_send_limit(send);
        sim.set_recv_limit(recv);
        let client = sim.connect().unwrap();
        let input = pattern(500, 9);
        assert_eq!(echo_through(&mut sim, client, &input), input);
        assert_eq!(sim.echo().counters().bytes_out, 500);
        assert_eq!(sim.state(client), ClientState::Open);
    }
}

#[test]
fn half_close_with_bytes_queued_echoes_all_then_eof() {
    let mut sim = Small::new(Config::new());
    let client = sim.connect().unwrap();
    sim.set_send_limit(Some(0));
    assert_eq!(sim.write(client, b"last words"), 10);
    sim.shutdown_write(client);
    assert_eq!(sim.write(client, b"more"), 0);
    sim.drive().unwrap();
    // Reading stopped at end of stream; sending is stalled.
    let id = sim.conn_id(client).unwrap();
    assert_eq!(
        sim.echo().interest(id),
        Ok(Interest {
            read: false,
            write: true,
            probe: false,
        })
    );
    assert_eq!(sim.close_of(client), None);

    sim.set_send_limit(Some(4));
    sim.drive().unwrap();
    assert_eq!(sim.state(client), ClientState::Open, "bytes still unread");
    assert_eq!(read_all(&mut sim, client), b"last words");
    assert_eq!(sim.state(client), ClientState::Eof);
    assert_eq!(
        sim.close_of(client),
        Some(Close {
            id,
            handle: client,
            how: CloseHow::Graceful,
            reason: CloseReason::Done,
        })
    );
    assert_eq!(sim.conn_id(client), None);
    assert!(sim.echo().is_empty());
}

#[test]
fn a_client_that_does_not_read_is_held_back_then_resumes() {
    let mut sim = Small::new(Config::new());
    let client = sim.connect().unwrap();
    let input = pattern(100, 1);
    let mut written = 0;
    for _ in 0..10 {
        written += sim.write(client, &input[written..]);
        sim.drive().unwrap();
    }
    // Pipe back (16) + machine queue (16) + pipe in (16) are full.
    assert_eq!(written, 48);
    assert_eq!(sim.unread_by_client(client), 16);
    assert_eq!(sim.unread_by_server(client), 16);
    let id = sim.conn_id(client).unwrap();
    assert_eq!(
        sim.echo().interest(id),
        Ok(Interest {
            read: false,
            write: true,
            probe: false,
        })
    );
    assert_eq!(sim.write(client, &input[written..]), 0);
    assert!(!sim.step());

    let mut buf = [0; 5];
    assert_eq!(sim.read(client, &mut buf), 5);
    assert_eq!(buf, input[..5]);
    assert!(sim.step());
    assert_eq!(
        sim.echo().interest(id),
        Ok(Interest {
            read: true,
            write: true,
            probe: false,
        })
    );
    let mut out = buf.to_vec();
    out.extend(echo_through(&mut sim, client, &input[written..]));
    assert_eq!(out.len(), 100);
    assert_eq!(out, input);
}

#[test]
fn a_full_table_leaves_clients_in_the_backlog_until_a_close() {
    let mut sim: Sim<2, 16, 3, 16> = Sim::new(Config::new());
    let a = sim.connect().unwrap();
    let b = sim.connect().unwrap();
    let c = sim.connect().unwrap();
    assert_eq!(sim.connect(), Err(SimError::TooManyClients));
    sim.drive().unwrap();
    assert_eq!(
        [sim.state(a), sim.state(b), sim.state(c)],
        [
            ClientState::Open,
            ClientState::Open,
            ClientState::Connecting
        ]
    );
    assert!(!sim.echo().accepting());
    // The shell stops accepting while full: nothing is refused.
    assert_eq!(sim.echo().counters().refused, 0);
    assert_eq!(sim.write(c, b"early"), 5);

    sim.shutdown_write(a);
    sim.drive().unwrap();
    assert_eq!(sim.state(a), ClientState::Eof);
    assert_eq!(sim.state(c), ClientState::Open);
    assert_eq!(sim.conn_id(c).unwrap().slot(), 0, "a's slot reused");
    assert_eq!(read_all(&mut sim, c), b"early");
    assert_eq!(read_all(&mut sim, b), b"");
    assert_eq!(sim.echo().counters().accepted, 3);
}

#[test]
fn a_client_reset_drops_its_queue_and_frees_the_slot() {
    let mut sim = Small::new(Config::new());
    sim.set_send_limit(Some(0));
    let client = sim.connect().unwrap();
    sim.write(client, b"doomed");
    sim.drive().unwrap();
    let id = sim.conn_id(client).unwrap();
    assert_eq!(sim.echo().send_buf(id).unwrap(), b"doomed");

    sim.reset(client);
    assert_eq!(sim.state(client), ClientState::Reset);
    sim.drive().unwrap();
    assert_eq!(
        sim.close_of(client),
        Some(Close {
            id,
            handle: client,
            how: CloseHow::Abort,
            reason: CloseReason::Reset,
        })
    );
    assert!(sim.echo().is_empty());
    assert_eq!(sim.echo().counters().reset, 1);
    assert_eq!(sim.echo().counters().bytes_out, 0);
    assert_eq!(sim.write(client, b"x"), 0);
}

#[test]
fn idle_timeout_closes_at_the_exact_deadline() {
    let idle = Duration::from_secs(5);
    let mut sim = Small::new(Config::new().with_idle_timeout(Some(idle)));
    let quiet = sim.connect().unwrap();
    sim.drive().unwrap();
    sim.advance(Duration::from_secs(2));
    let stuck = sim.connect().unwrap();
    // `stuck` sends more than its pipe back and the queue hold, and never reads.
    let mut written = 0;
    for _ in 0..5 {
        written += sim.write(stuck, &[7; 64]);
        sim.drive().unwrap();
    }
    assert_eq!(written, 48);
    assert_eq!(sim.echo().poll_timeout(), Some(Instant::from_secs(5)));

    sim.advance(Duration::from_micros(4_999_999 - 2_000_000));
    sim.drive().unwrap();
    assert_eq!(sim.close_of(quiet), None, "not before the deadline");
    assert_eq!(sim.step_to_deadline(), Some(Instant::from_secs(5)));
    assert_eq!(sim.now(), Instant::from_secs(5));
    assert_eq!(sim.state(quiet), ClientState::Eof);
    let close = sim.close_of(quiet).unwrap();
    assert_eq!(
        (close.how, close.reason),
        (CloseHow::Graceful, CloseReason::TimedOut)
    );

    assert_eq!(sim.step_to_deadline(), Some(Instant::from_secs(7)));
    let close = sim.close_of(stuck).unwrap();
    assert_eq!(
        (close.how, close.reason),
        (CloseHow::Abort, CloseReason::TimedOut)
    );
    assert_eq!(sim.state(stuck), ClientState::Reset);
    assert_eq!(sim.step_to_deadline(), None);
    assert_eq!(sim.echo().counters().timed_out, 2);
}

#[test]
fn a_write_after_the_server_closed_is_answered_with_a_reset() {
    let idle = Duration::from_secs(1);
    let mut sim = Small::new(Config::new().with_idle_timeout(Some(idle)));
    let client = sim.connect().unwrap();
    sim.drive().unwrap();
    sim.step_to_deadline();
    assert_eq!(sim.state(client), ClientState::Eof);
    assert_eq!(sim.write(client, b""), 0);
    assert_eq!(sim.state(client), ClientState::Eof);
    assert_eq!(sim.write(client, b"late"), 0);
    assert_eq!(sim.state(client), ClientState::Reset);
}

#[test]
fn many_clients_interleaved_each_get_their_own_bytes() {
    let mut sim: Sim<8, 32, 8, 24> = Sim::new(Config::new());
    sim.set_send_limit(Some(5));
    sim.set_recv_limit(Some(7));
    let clients: Vec<ClientId> = (0..8).map(|_| sim.connect().unwrap()).collect();
    let inputs: Vec<Vec<u8>> = (0..8).map(|i| pattern(400 + 31 * i, i as u8)).collect();
    let mut written = [0; 8];
    let mut outs = vec![Vec::new(); 8];
    for round in 0..10_000 {
        for (i, &client) in clients.iter().enumerate() {
            let end = (written[i] + 1 + (round + i) % 9).min(inputs[i].len());
            written[i] += sim.write(client, &inputs[i][written[i]..end]);
            if (round + i) % 3 != 0 {
                outs[i].extend(read_all(&mut sim, client));
            }
        }
        sim.step();
        if (0..8).all(|i| outs[i].len() == inputs[i].len()) {
            break;
        }
    }
    assert_eq!(outs, inputs);
    for &client in &clients {
        sim.shutdown_write(client);
    }
    sim.drive().unwrap();
    assert!(clients.iter().all(|&c| sim.state(c) == ClientState::Eof));
    assert_eq!(sim.echo().counters().closed, 8);
}

#[test]
fn shutdown_serves_every_client_until_it_is_finished() {
    let mut sim = Small::new(Config::new());
    let idle = sim.connect().unwrap();
    let busy = sim.connect().unwrap();
    let half = sim.connect().unwrap();
    sim.set_send_limit(Some(0));
    sim.write(busy, b"bye");
    sim.write(half, b"zzz");
    sim.drive().unwrap();

    sim.echo_mut().begin_shutdown();
    let late = sim.connect().unwrap();
    sim.drive().unwrap();
    assert_eq!(
        sim.state(idle),
        ClientState::Open,
        "not quiet for long enough yet"
    );
    let quiet = Instant::ZERO + Config::QUIET_PERIOD;
    assert_eq!(sim.step_to_deadline(), Some(quiet));
    sim.drive().unwrap();
    assert_eq!(sim.state(idle), ClientState::Eof, "quiet: closed");
    assert_eq!(sim.state(late), ClientState::Connecting);
    assert_eq!(sim.echo().len(), 2);

    // Still served: what comes in now is echoed too, before the close.
    sim.write(busy, b"!");
    sim.shutdown_write(half);
    sim.set_send_limit(None);
    sim.drive().unwrap();
    assert_eq!(
        sim.state(busy),
        ClientState::Open,
        "just active: not yet quiet"
    );
    assert_eq!(sim.step_to_deadline(), Some(quiet + Config::QUIET_PERIOD));
    sim.drive().unwrap();
    assert_eq!(read_all(&mut sim, busy), b"bye!");
    assert_eq!(sim.state(busy), ClientState::Eof);
    assert_eq!(read_all(&mut sim, half), b"zzz");
    assert_eq!(sim.state(half), ClientState::Eof);
    assert!(sim.echo().is_empty());
    assert_eq!(sim.echo().counters().shut_down, 2);
    assert_eq!(
        sim.echo().counters().closed,
        1,
        "the half-closed one finished"
    );
}

#[test]
fn abort_all_resets_every_client() {
    let mut sim = Small::new(Config::new());
    let a = sim.connect().unwrap();
    let b = sim.connect().unwrap();
    sim.set_send_limit(Some(0));
    sim.write(a, b"aaa");
    sim.drive().unwrap();
    sim.echo_mut().begin_shutdown();
    sim.drive().unwrap();
    sim.step_to_deadline().unwrap();
    sim.drive().unwrap();
    sim.echo_mut().abort_all();
    sim.drive().unwrap();
    assert_eq!(sim.state(a), ClientState::Reset);
    assert_eq!(
        sim.state(b),
        ClientState::Eof,
        "b was quiet and closed first"
    );
    assert_eq!(sim.close_of(a).unwrap().how, CloseHow::Abort);
}

#[test]
fn unread_bytes_at_a_graceful_close_reset_the_client() {
    let idle = Duration::from_millis(10);
    let mut sim = Small::new(Config::new().with_idle_timeout(Some(idle)));
    let client = sim.connect().unwrap();
    sim.drive().unwrap();
    // The shell stops reading; bytes wait unread while the idle timeout
    // (nothing moved either way, nothing queued) closes it gracefully.
    sim.set_recv_limit(Some(0));
    assert_eq!(sim.write(client, b"unheard"), 7);
    sim.step_to_deadline().unwrap();
    sim.drive().unwrap();
    let close = sim.close_of(client).unwrap();
    assert_eq!(close.how, CloseHow::Graceful);
    assert_eq!(sim.state(client), ClientState::Reset);
}

#[test]
fn drive_settles_and_reports_quiet() {
    let mut sim = Small::new(Config::new());
    assert_eq!(sim.drive(), Ok(0));
    let client = sim.connect().unwrap();
    sim.write(client, b"x");
    assert!(sim.drive().unwrap() > 0);
    assert!(!sim.step());
    assert_eq!(sim.state(client), ClientState::Open);
    assert_eq!(client.index(), 0);
}

/// What a test client does next.
#[derive(Clone, Debug)]
enum Move {
    Connect,
    Write(usize, Vec<u8>),
    Read(usize, usize),
    Step,
    SetLimits(Option<usize>, Option<usize>),
}

fn moves() -> impl Strategy<Value = Vec<Move>> {
    let one = prop_oneof![
        1 => Just(Move::Connect),
        4 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..40)).prop_map(|(c, b)| Move::Write(c, b)),
        3 => (any::<usize>(), 1..40usize).prop_map(|(c, n)| Move::Read(c, n)),
        4 => Just(Move::Step),
        1 => (prop::option::of(0..6usize), prop::option::of(0..6usize))
            .prop_map(|(s, r)| Move::SetLimits(s, r)),
    ];
    prop::collection::vec(one, 0..150)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the clients do, each reads back a prefix of what it wrote;
    /// once all shut down and the limits lift, every byte comes back and
    /// every connection ends gracefully.
    #[test]
    fn every_client_gets_its_own_bytes_back(moves in moves()) {
        let mut sim: Sim<3, 8, 6, 8> = Sim::new(Config::new());
        let mut clients: Vec<(ClientId, Vec<u8>, Vec<u8>)> = Vec::new();
        for m in moves {
            match m {
                Move::Connect => {
                    if let Ok(c) = sim.connect() {
                        clients.push((c, Vec::new(), Vec::new()));
                    }
                }
                Move::Write(i, bytes) if !clients.is_empty() => {
                    let i = i % clients.len();
                    let n = sim.write(clients[i].0, &bytes);
                    clients[i].1.extend_from_slice(&bytes[..n]);
                }
                Move::Read(i, n) if !clients.is_empty() => {
                    let i = i % clients.len();
                    let mut buf = vec![0; n];
                    let got = sim.read(clients[i].0, &mut buf);
                    clients[i].2.extend_from_slice(&buf[..got]);
                }
                Move::SetLimits(send, recv) => {
                    sim.set_send_limit(send);
                    sim.set_recv_limit(recv);
                }
                Move::Step | Move::Write(..) | Move::Read(..) => {
                    sim.step();
                }
            }
            for (c, written, read) in &clients {
                prop_assert!(written.starts_with(read), "{c}: echo is not a prefix");
                prop_assert_ne!(sim.state(*c), ClientState::Reset);
            }
            let c = sim.echo().counters();
            let written: usize = clients.iter().map(|c| c.1.len()).sum();
            let read: usize = clients.iter().map(|c| c.2.len()).sum();
            prop_assert!(c.bytes_in as usize <= written);
            prop_assert!(c.bytes_out <= c.bytes_in);
            prop_assert!(read as u64 <= c.bytes_out);
        }

        sim.set_send_limit(None);
        sim.set_recv_limit(None);
        for (c, _, _) in &clients {
            sim.shutdown_write(*c);
        }
        for _ in 0..1_000 {
            sim.drive().unwrap();
            for (c, _, read) in &mut clients {
                read.extend(read_all(&mut sim, *c));
            }
            if sim.echo().is_empty() && clients.iter().all(|c| sim.state(c.0) == ClientState::Eof) {
                break;
            }
        }
        for (c, written, read) in &clients {
            prop_assert_eq!(written, read, "{}", c);
            prop_assert_eq!(sim.state(*c), ClientState::Eof);
            prop_assert_eq!(sim.close_of(*c).map(|c| c.reason), Some(CloseReason::Done));
        }
        let total: usize = clients.iter().map(|c| c.1.len()).sum();
        prop_assert_eq!(sim.echo().counters().bytes_in, total as u64);
        prop_assert_eq!(sim.echo().counters().bytes_out, total as u64);
        prop_assert_eq!(sim.echo().counters().closed, clients.len() as u64);
    }
}
