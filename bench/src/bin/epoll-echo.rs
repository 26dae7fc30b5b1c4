//! `epoll-echo`: a bare single-thread epoll echo server, used only as a
//! benchmark reference: how fast a hand-written readiness loop is. One
//! 16 KiB buffer per connection; while an echo is not fully sent the
//! connection is not read (as a select loop does). Edge-triggered by
//! default (`--level` for level-triggered). Prints `listening on ADDR`.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::Result;
use clap::Parser;

/// Buffer per connection (selecho's select shell uses the same).
const BUF: usize = 16 * 1024;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;
/// Events that mean the peer is gone or the socket failed: read to the end
/// (edge-triggered, no other event may come).
const HANGUP: u32 = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;

/// Bare epoll TCP echo server.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Level-triggered: watch either input or output, switching with
    /// `epoll_ctl`, instead of both edge-triggered.
    #[arg(long)]
    level: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(&args.listen)?;
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new()?;
    let lfd = listener.as_raw_fd();
    epoll.ctl(libc::EPOLL_CTL_ADD, lfd, libc::EPOLLIN as u32)?;
    // Stdout is line-buffered: the line goes out at once, even to a pipe.
    println!("listening on {}", listener.local_addr()?);

    let interest = |pending: bool| match (args.level, pending) {
        (false, _) => (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
        (true, false) => libc::EPOLLIN as u32,
        (true, true) => libc::EPOLLOUT as u32,
    };
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    loop {
        let n = epoll.wait(&mut events)?;
        for ev in &events[..n] {
            let (fd, flags) = (ev.u64 as RawFd, ev.events);
            if fd == lfd {
                while let Some(stream) = accept(&listener) {
                    let fd = stream.as_raw_fd();
                    if let Err(e) = epoll.ctl(libc::EPOLL_CTL_ADD, fd, interest(false)) {
                        eprintln!("epoll_ctl: {e}");
                        continue;
                    }
                    let slot = fd as usize;
                    if conns.len() <= slot {
                        conns.resize_with(slot + 1, || None);
                    }
                    conns[slot] = Some(Conn::new(stream));
                }
                continue;
            }
            let Some(conn) = conns.get_mut(fd as usize).and_then(Option::as_mut) else {
                continue;
            };
            let was_pending = conn.pending();
            let alive = match conn.serve(flags & HANGUP != 0) {
                Ok(pending) if args.level && pending != was_pending => epoll
                    .ctl(libc::EPOLL_CTL_MOD, fd, interest(pending))
                    .is_ok(),
                Ok(_) => true,
                Err(_) => false,
            };
            if !alive {
                // Dropping the stream closes it, which also unregisters it.
                conns[fd as usize] = None;
            }
        }
    }
}

/// The next accepted connection, non-blocking and with TCP_NODELAY; `None`
/// when there is none waiting (or accept failed, which is logged).
fn accept(listener: &TcpListener) -> Option<TcpStream> {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(e) => {
                eprintln!("accept: {e}");
                return None;
            }
        };
        match stream.set_nonblocking(true).and(stream.set_nodelay(true)) {
            Ok(()) => return Some(stream),
            Err(e) => eprintln!("setting up a connection: {e}"),
        }
    }
}

/// One connection and the part of its buffer still to be echoed.
struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: vec![0; BUF].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Whether bytes wait to be sent.
    fn pending(&self) -> bool {
        self.start < self.end
    }

    /// Sends what waits, then reads and echoes until the socket would block
    /// either way. A short read means the receive queue was empty, which
    /// ends the round once its echo is sent (new bytes bring a new event),
    /// unless `drain` (a hang-up seen) asks for the read that sees the end.
    /// `Ok(pending)`, or `Err` when the connection is over.
    fn serve(&mut self, drain: bool) -> io::Result<bool> {
        let mut emptied = false;
        loop {
            while self.pending() {
                match self.stream.write(&self.buf[self.start..self.end]) {
                    Ok(n) => self.start += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if emptied {
                return Ok(false);
            }
            let n = match self.stream.read(&mut self.buf) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            (self.start, self.end) = (0, n);
            emptied = n < BUF && !drain;
        }
    }
}

/// An epoll instance; each registered descriptor's event data is the
/// descriptor itself.
struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events,
            u64: fd as u64,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for events; how many were written to the front of `events`.
    fn wait(&self, events: &mut [libc::epoll_event]) -> io::Result<usize> {
        let len = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: the kernel writes at most `len` events into `events`.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), len, -1) };
        match n {
            -1 if io::Error::last_os_error().kind() == ErrorKind::Interrupted => Ok(0),
            -1 => Err(io::Error::last_os_error()),
            n => Ok(n as usize),
        }
    }
}
