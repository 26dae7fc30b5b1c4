//! The shared scenarios over real TCP: blocking `std` sockets with time-outs,
//! so a stuck server fails the test instead of hanging it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use socket2::SockRef;

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
