//! The shared scenarios over real TCP: blocking `std` sockets with time-outs,
//! so a stuck server fails the test instead of hanging it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, SockRef, Socket, Type};

use crate::pattern;
use crate::process::{ServerProcess, counter};
use crate::scenarios::{End, Server};

/// The longest any single wait may take before the test fails.
pub const BOUND: Duration = Duration::from_secs(30);

/// After this long without progress, a writer counts as blocked.
const STALL: Duration = Duration::from_millis(300);

/// A server process reached over TCP at `addr`.
pub struct TcpServer {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The process, killed when this is dropped.
    pub process: ServerProcess,
}

impl TcpServer {
    /// Clients of `process`'s first listener.
    pub fn new(process: ServerProcess) -> Self {
        TcpServer {
            addr: process.addr(),
            process,
        }
    }
}

/// Connects to `addr` with [`BOUND`] time-outs on every call: the stream,
/// or the error (refused, reset, …).
pub fn try_connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, BOUND)?;
    stream.set_read_timeout(Some(BOUND))?;
    stream.set_write_timeout(Some(BOUND))?;
    Ok(stream)
}

impl Server for TcpServer {
    type Conn = TcpStream;

    fn connect(&mut self) -> TcpStream {
        let stream = try_connect(self.addr).expect("connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
    }

    fn connect_when_full(&mut self) -> Option<TcpStream> {
        match try_connect(self.addr) {
            Ok(stream) => Some(stream),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => None,
            Err(e) => panic!("connect while full: {e}"),
        }
    }

    fn exchange(&mut self, conn: &mut TcpStream, data: &[u8]) -> Vec<u8> {
        let mut writer = conn.try_clone().expect("clone socket");
        let mut got = vec![0; data.len()];
        thread::scope(|s| {
            let sending = s.spawn(move || writer.write_all(data));
            conn.read_exact(&mut got).expect("read the echo");
            sending.join().expect("writer thread").expect("write");
        });
        got
    }

    fn write_until_blocked(&mut self, conn: &mut TcpStream, data: &[u8]) -> usize {
        conn.set_nonblocking(true).expect("non-blocking");
        let mut written = 0;
        let mut last_progress = Instant::now();
        while written < data.len() && last_progress.elapsed() < STALL {
            match conn.write(&data[written..(written + 65_536).min(data.len())]) {
                Ok(n) => {
                    written += n;
                    last_progress = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => wait_writable(conn, STALL),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("write: {e}"),
            }
        }
        conn.set_nonblocking(false).expect("blocking again");
        written
    }

    fn read_exact(&mut self, conn: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        conn.read_exact(&mut got).expect("read_exact");
        got
    }

    fn stream_and_close(&mut self, conn: &mut TcpStream, data: &[u8]) -> (Vec<u8>, End) {
        let mut writer = conn.try_clone().expect("clone socket");
        thread::scope(|s| {
            let sending = s.spawn(move || {
                writer.write_all(data)?;
                writer.shutdown(Shutdown::Write)
            });
            let result = read_until_end(conn);
            sending
                .join()
                .expect("writer thread")
                .expect("write and shut down");
            result
        })
    }

    fn shutdown_write(&mut self, conn: &mut TcpStream) {
        conn.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    }

    fn read_to_end(&mut self, conn: &mut TcpStream) -> (Vec<u8>, End) {
        read_until_end(conn)
    }

    fn abort(&mut self, conn: TcpStream) {
        SockRef::from(&conn)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER 0");
        drop(conn);
    }
}

/// For a server started with a short `--stats-interval` and info logging:
/// after one echo of `n` bytes, a stats line in the log counts it.
pub fn stats_count_an_echo(server: &mut TcpServer, n: usize) {
    let mut conn = server.connect();
    let msg = pattern::bytes(77, n);
    let got = server.exchange(&mut conn, &msg);
    crate::scenarios::assert_bytes(&got, &msg, "the echo before the stats");
    let deadline = Instant::now() + BOUND;
    loop {
        let line = server
            .process
            .log_line("stats: ", deadline)
            .expect("a stats line within the bound");
        if counter(&line, "bytes_out") == n as u64 {
            assert!(line.contains("stats: 1 open, "), "{line}");
            assert_eq!(counter(&line, "accepted"), 1, "{line}");
            assert_eq!(counter(&line, "bytes_in"), n as u64, "{line}");
            return;
        }
    }
}

/// For a server logging at info level: SIGUSR1 logs the counters, SIGHUP
/// and SIGUSR2 are logged, and none of them stops it: it serves on, and
/// SIGTERM still ends it cleanly with its `stopped:` line.
pub fn signals_other_than_stop_keep_serving(server: &mut TcpServer) {
    let mut conn = server.connect();
    let msg = pattern::bytes(5, 1000);
    crate::scenarios::assert_bytes(&server.exchange(&mut conn, &msg), &msg, "first echo");
    let deadline = Instant::now() + BOUND;
    server.process.signal(libc::SIGUSR1);
    let stats = server
        .process
        .log_line("stats: ", deadline)
        .expect("SIGUSR1 logs the counters");
    assert_eq!(counter(&stats, "bytes_out"), 1000, "{stats}");
    server.process.signal(libc::SIGHUP);
    server
        .process
        .log_line("SIGHUP", deadline)
        .expect("SIGHUP is logged");
    server.process.signal(libc::SIGUSR2);
    server
        .process
        .log_line("SIGUSR2", deadline)
        .expect("SIGUSR2 is logged");
    crate::scenarios::assert_bytes(&server.exchange(&mut conn, &msg), &msg, "still serving");
    server.process.signal(libc::SIGTERM);
    let (rest, end) = read_until_end(&mut conn);
    assert!(rest.is_empty() && end == End::Eof, "a clean end: {end:?}");
    let stopped = server.process.wait_stopped(BOUND);
    assert_eq!(counter(&stopped, "bytes_out"), 2000, "{stopped}");
}

/// "abc", then an urgent "X" (TCP's out-of-band byte), then "def": every
/// byte comes back in order, the urgent one in its place.
pub fn urgent_byte_is_echoed_in_line(server: &mut TcpServer) {
    let mut conn = server.connect();
    conn.write_all(b"abc").expect("write");
    let sent = SockRef::from(&conn)
        .send_out_of_band(b"X")
        .expect("send urgent data");
    assert_eq!(sent, 1);
    conn.write_all(b"def").expect("write");
    let mut got = [0; 7];
    conn.read_exact(&mut got).expect("read the echo");
    assert_eq!(&got, b"abcXdef", "{:?}", String::from_utf8_lossy(&got));
}

/// Waits until connecting to `addr` is refused (the server closed its
/// listeners): the sign that it has taken the signal.
pub fn wait_until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + BOUND;
    loop {
        match TcpStream::connect_timeout(&addr, BOUND) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            _ => assert!(
                Instant::now() < deadline,
                "{addr} still accepts connections"
            ),
        }
        thread::yield_now();
    }
}

/// SIGTERM while the echo of a stream is in flight. A client with a 4 KiB
/// receive buffer writes `len` bytes and then half-closes; the server is
/// signalled once the writer is blocked (`len` should be more than the
/// kernel's buffers hold, tens of megabytes on loopback, so the echo of most
/// of it is still to come). With
/// `finishes`, the client reads at once and must get every byte and a
/// clean end within the server's grace; otherwise it reads only after the
/// server has exited (a grace too short to finish) and must see a prefix of
/// its bytes cut by a reset, never a clean end. Returns the server's
/// `stopped:` line.
pub fn half_closed_client_at_sigterm(server: &mut TcpServer, len: usize, finishes: bool) -> String {
    let data = pattern::bytes(31, len);
    let socket =
        Socket::new(Domain::for_address(server.addr), Type::STREAM, None).expect("a TCP socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket
        .connect_timeout(&server.addr.into(), BOUND)
        .expect("connect");
    let mut conn = TcpStream::from(socket);
    conn.set_read_timeout(Some(BOUND)).expect("read time-out");
    conn.set_write_timeout(Some(BOUND)).expect("write time-out");
    let mut writer = conn.try_clone().expect("clone socket");
    let written = AtomicUsize::new(0);
    thread::scope(|s| {
        let writing = s.spawn(|| {
            for chunk in data.chunks(65_536) {
                writer.write_all(chunk)?;
                written.fetch_add(chunk.len(), Ordering::Relaxed);
            }
            writer.shutdown(Shutdown::Write)
        });
        wait_stalled(&written);
        server.process.signal(libc::SIGTERM);
        wait_until_refused(server.addr);
        if finishes {
            let (got, end) = read_until_end(&mut conn);
            crate::scenarios::assert_bytes(&got, &data, "the echo finished after SIGTERM");
            assert_eq!(end, End::Eof, "a clean end after the last byte");
            writing
                .join()
                .expect("writer")
                .expect("write and half-close");
            return server.process.wait_stopped(BOUND);
        }
        let stopped = server.process.wait_stopped(BOUND);
        // Linux reports a reset once, to whichever call sees it first: the
        // writer, if it was still blocked, or else the reader.
        let written = writing.join().expect("writer");
        let (got, end) = read_until_end(&mut conn);
        assert!(got.len() < len, "the echo cannot have finished");
        crate::scenarios::assert_bytes(&got, &data[..got.len()], "the echo before the cut");
        let writer_reset = written.is_err_and(|e| e.kind() == ErrorKind::ConnectionReset);
        assert!(
            end == End::Reset || writer_reset,
            "cut short: a reset, not a clean end (read {end:?}, writer saw no reset)"
        );
        stopped
    })
}

/// Waits until `written` stops growing for [`STALL`] (the writer blocked;
/// nothing announces that, so it polls).
fn wait_stalled(written: &AtomicUsize) {
    let deadline = Instant::now() + BOUND;
    let mut last = (written.load(Ordering::Relaxed), Instant::now());
    while last.0 == 0 || last.1.elapsed() < STALL {
        assert!(Instant::now() < deadline, "the writer never stalled");
        thread::sleep(Duration::from_millis(10));
        let now = written.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
}

/// Reads until end of stream or reset; a time-out fails the test.
fn read_until_end(conn: &mut TcpStream) -> (Vec<u8>, End) {
    let mut got = Vec::new();
    let mut buf = vec![0; 65_536];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return (got, End::Eof),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, End::Reset),
            Err(e) => panic!("read to end after {} bytes: {e}", got.len()),
        }
    }
}

/// Waits until `conn` is writable or `limit` passes.
fn wait_writable(conn: &TcpStream, limit: Duration) {
    use std::os::fd::AsRawFd;
    let mut fds = libc::pollfd {
        fd: conn.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut fds, 1, limit.as_millis() as libc::c_int) };
}
