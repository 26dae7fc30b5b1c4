//! One set of behaviour scenarios, run against the bare core (through its
//! simulator), the select shell and the TUN shell alike: the proof that the
//! same machine behaves the same in every place it runs.
//!
//! A driver implements [`Server`] for its way of reaching the machine and
//! calls [`scenario_tests!`](crate::scenario_tests) with a function that
//! starts a server for a [`Setup`]; every scenario becomes a `#[test]` of
//! that driver.

pub mod udp;

use std::time::Duration;

use crate::pattern::bytes as pattern;

/// How a scenario wants the server configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// `--max-conns`.
    pub max_conns: usize,
    /// `--idle-timeout`; `None` for never.
    pub idle_timeout: Option<Duration>,
}

impl Setup {
    /// Room for a few clients, no timeout.
    pub const DEFAULT: Setup = Setup {
        max_conns: 8,
        idle_timeout: None,
    };
}

/// How a connection's byte stream from the server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A FIN after every byte.
    Eof,
    /// A reset.
    Reset,
}

/// A running echo server as its clients see it. Every call blocks until it
/// is done (a real socket) or drives the simulation until it is (the core);
/// a call that cannot complete within the driver's bound panics, failing
/// the test rather than hanging it.
pub trait Server {
    /// A client connection.
    type Conn;

    /// A new connection, established.
    fn connect(&mut self) -> Self::Conn;

    /// A connection attempt while every slot is taken: `Some` if the stack
    /// holds it until a slot frees (the kernel's backlog), `None` if it
    /// refuses it (smoltcp answers RST when no socket listens).
    fn connect_when_full(&mut self) -> Option<Self::Conn>;

    /// Sends `data` while reading its echo, and returns the `data.len()`
    /// bytes read back.
    fn exchange(&mut self, conn: &mut Self::Conn, data: &[u8]) -> Vec<u8>;

    /// Writes without reading until the write would block (the server's
    /// queue and every buffer on the way are full); returns what was written.
    fn write_until_blocked(&mut self, conn: &mut Self::Conn, data: &[u8]) -> usize;

    /// Reads exactly `n` bytes.
    fn read_exact(&mut self, conn: &mut Self::Conn, n: usize) -> Vec<u8>;

    /// Sends `data` while reading, then half-closes, and reads to the end.
    fn stream_and_close(&mut self, conn: &mut Self::Conn, data: &[u8]) -> (Vec<u8>, End);

    /// Half-closes (FIN) the client's side.
    fn shutdown_write(&mut self, conn: &mut Self::Conn);

    /// Reads until the server ends the stream (waiting up to the driver's
    /// bound, which is well above any idle timeout a scenario sets).
    fn read_to_end(&mut self, conn: &mut Self::Conn) -> (Vec<u8>, End);

    /// Closes with a reset (SO_LINGER 0).
    fn abort(&mut self, conn: Self::Conn);
}

/// Asserts equality of byte strings without printing megabytes.
#[track_caller]
pub fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    panic!(
        "{what}: got {} bytes, want {}; first difference at {:?}",
        got.len(),
        want.len(),
        first
    );
}

/// Runs `scenario` against the server `start` gives for `setup` (a
/// [`Setup`], or a [`DatagramSetup`](udp::DatagramSetup)); nothing if it
/// gives none (the driver has said why it cannot run here).
pub fn run<T, S>(start: impl FnOnce(T) -> Option<S>, setup: T, scenario: impl FnOnce(&mut S)) {
    if let Some(mut server) = start(setup) {
        scenario(&mut server);
    }
}

/// Opens `count` connections, then echoes a short message on each; `what`
/// names the step if an echo is wrong.
pub fn connect_and_echo<S: Server>(server: &mut S, count: usize, what: &str) -> Vec<S::Conn> {
    let mut conns: Vec<_> = (0..count).map(|_| server.connect()).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        let msg = pattern(i as u64, 10);
        assert_bytes(&server.exchange(conn, &msg), &msg, what);
    }
    conns
}

/// Data of many sizes, each echoed exactly on one connection.
pub fn echo_many_sizes<S: Server>(server: &mut S) {
    let mut conn = server.connect();
    for (seed, len) in [
        1, 2, 7, 63, 64, 65, 1000, 1024, 4096, 10_000, 65_536, 300_000,
    ]
    .into_iter()
    .enumerate()
    {
        let data = pattern(seed as u64, len);
        let got = server.exchange(&mut conn, &data);
        assert_bytes(&got, &data, &format!("echo of {len} bytes"));
    }
    let (rest, end) = server.stream_and_close(&mut conn, b"bye");
    assert_bytes(&rest, b"bye", "last bytes before close");
    assert_eq!(end, End::Eof);
}

/// Every slot busy at once, served in interleaved order.
pub fn many_connections_interleaved<S: Server>(server: &mut S, count: usize) {
    let mut conns: Vec<_> = (0..count).map(|_| server.connect()).collect();
    for round in 0..4u64 {
        for (i, conn) in conns.iter_mut().enumerate() {
            let data = pattern(round * 1000 + i as u64, 100 + i * 37);
            let got = server.exchange(conn, &data);
            assert_bytes(&got, &data, &format!("round {round} connection {i}"));
        }
    }
    for conn in &mut conns {
        let (rest, end) = server.stream_and_close(conn, b"");
        assert!(rest.is_empty());
        assert_eq!(end, End::Eof);
    }
}

/// The peer half-closes with `len` bytes in flight: every byte comes back,
/// then the server's FIN.
pub fn half_close_in_flight<S: Server>(server: &mut S, len: usize) {
    let mut conn = server.connect();
    let data = pattern(42, len);
    let (got, end) = server.stream_and_close(&mut conn, &data);
    assert_bytes(&got, &data, "bytes echoed after half-close");
    assert_eq!(end, End::Eof, "graceful close after the last byte");
}

/// A client that sends and never reads fills its queue and stops being
/// read from; another client is served all the while; when the slow one
/// reads at last, it gets every byte it sent, in order.
pub fn slow_reader_does_not_hurt_others<S: Server>(server: &mut S) {
    let mut slow = server.connect();
    let data = pattern(7, 16 << 20);
    let written = server.write_until_blocked(&mut slow, &data);
    assert!(
        written > 0 && written < data.len(),
        "backpressure stopped the writer at {written}"
    );
    let mut other = server.connect();
    for round in 0..10u64 {
        let msg = pattern(100 + round, 4096);
        let got = server.exchange(&mut other, &msg);
        assert_bytes(&got, &msg, "the other client's echo");
    }
    let got = server.read_exact(&mut slow, written);
    assert_bytes(&got, &data[..written], "the slow reader's bytes");
    let (rest, end) = server.stream_and_close(&mut slow, b"");
    assert!(rest.is_empty());
    assert_eq!(end, End::Eof);
}

/// A reset mid-stream costs only that connection.
pub fn reset_mid_stream<S: Server>(server: &mut S) {
    let mut bystander = server.connect();
    let mut victim = server.connect();
    let data = pattern(9, 1 << 20);
    server.write_until_blocked(&mut victim, &data);
    server.abort(victim);
    let msg = pattern(10, 5000);
    let got = server.exchange(&mut bystander, &msg);
    assert_bytes(&got, &msg, "bystander after a reset");
    let mut fresh = server.connect();
    let got = server.exchange(&mut fresh, &msg);
    assert_bytes(&got, &msg, "a new connection after a reset");
}

/// With every slot taken a further connection is not served (held in a
/// backlog, or refused); once a slot frees, it (or a retry) is.
pub fn full_table_then_recovery<S: Server>(server: &mut S, slots: usize) {
    let mut conns = connect_and_echo(server, slots, "while filling the table");
    let waiting = server.connect_when_full();
    let mut first = conns.remove(0);
    let (rest, end) = server.stream_and_close(&mut first, b"last");
    assert_bytes(&rest, b"last", "closing one to free a slot");
    assert_eq!(end, End::Eof);
    let mut extra = match waiting {
        Some(conn) => conn,
        None => server.connect(),
    };
    let msg = pattern(99, 3000);
    assert_bytes(
        &server.exchange(&mut extra, &msg),
        &msg,
        "served once a slot freed",
    );
    for conn in &mut conns {
        let msg = pattern(5, 20);
        assert_bytes(
            &server.exchange(conn, &msg),
            &msg,
            "the others still served",
        );
    }
}

/// A connection idle for the timeout is closed by the server, gracefully
/// (nothing was queued).
pub fn idle_timeout_closes<S: Server>(server: &mut S) {
    let mut idle = server.connect();
    let msg = pattern(1, 100);
    assert_bytes(&server.exchange(&mut idle, &msg), &msg, "before going idle");
    let (rest, end) = server.read_to_end(&mut idle);
    assert!(rest.is_empty(), "nothing more was queued");
    assert_eq!(
        end,
        End::Eof,
        "an idle connection with nothing queued closes gracefully"
    );
}

/// Expands to one `#[test]` per scenario, each starting its own server with
/// `$start(setup)`, which returns `None` when the driver cannot run here
/// (it prints why: a skip said out loud, never a silent pass). `$big` is the
/// size of the half-close scenario.
#[macro_export]
macro_rules! scenario_tests {
    ($start:path, big = $big:expr) => {
        #[test]
        fn echo_many_sizes() {
            let setup = $crate::scenarios::Setup::DEFAULT;
            $crate::scenarios::run($start, setup, $crate::scenarios::echo_many_sizes);
        }

        #[test]
        fn many_connections_interleaved() {
            let setup = $crate::scenarios::Setup::DEFAULT;
            $crate::scenarios::run($start, setup, |server| {
                $crate::scenarios::many_connections_interleaved(server, setup.max_conns)
            });
        }

        #[test]
        fn half_close_in_flight() {
            let setup = $crate::scenarios::Setup::DEFAULT;
            $crate::scenarios::run($start, setup, |server| {
                $crate::scenarios::half_close_in_flight(server, $big)
            });
        }

        #[test]
        fn slow_reader_does_not_hurt_others() {
            let setup = $crate::scenarios::Setup::DEFAULT;
            $crate::scenarios::run(
                $start,
                setup,
                $crate::scenarios::slow_reader_does_not_hurt_others,
            );
        }

        #[test]
        fn reset_mid_stream() {
            let setup = $crate::scenarios::Setup::DEFAULT;
            $crate::scenarios::run($start, setup, $crate::scenarios::reset_mid_stream);
        }

        #[test]
        fn full_table_then_recovery() {
            let setup = $crate::scenarios::Setup {
                max_conns: 3,
                ..$crate::scenarios::Setup::DEFAULT
            };
            $crate::scenarios::run($start, setup, |server| {
                $crate::scenarios::full_table_then_recovery(server, setup.max_conns)
            });
        }

        #[test]
        fn idle_timeout_closes() {
            let setup = $crate::scenarios::Setup {
                idle_timeout: Some(std::time::Duration::from_millis(300)),
                ..$crate::scenarios::Setup::DEFAULT
            };
            $crate::scenarios::run($start, setup, $crate::scenarios::idle_timeout_closes);
        }
    };
}
