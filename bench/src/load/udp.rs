//! UDP ping-pong: each socket (its own source port) sends one datagram,
//! waits for its echo and checks every byte, then sends the next.
//!
//! Datagram `seq` of a socket is bytes `seq * size ..` of the socket's
//! pattern stream with its first [`HEADER`] bytes replaced by `seq` (little
//! endian), so an echo that comes late (after its datagram was given up as
//! lost) or twice is recognised, checked, and not counted again. A datagram
//! not echoed within [`LOSS_TIMEOUT`] counts as lost and the next is sent.

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::time::{Duration, Instant};

use anyhow::Result;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use selecho_testkit::pattern;

use super::{Config, Fault, Stats, Window, seed};

/// Bytes at the start of each datagram that carry its sequence number.
pub const HEADER: usize = 8;
/// How long a datagram may wait for its echo before it counts as lost.
pub const LOSS_TIMEOUT: Duration = Duration::from_millis(200);
/// Receive buffer: larger than any UDP datagram, so none is truncated.
const RECV_BUF: usize = 64 * 1024;

/// A non-blocking UDP socket on a port of its own, connected to `addr` (so
/// it receives only from there).
pub(super) fn open(addr: SocketAddr) -> io::Result<StdUdpSocket> {
    let any: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = StdUdpSocket::bind(any)?;
    socket.connect(addr)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Runs one thread's sockets until the window closes.
pub(super) fn worker(
    sockets: Vec<(usize, StdUdpSocket)>,
    cfg: &Config,
    window: Window,
) -> Result<Stats> {
    let mut poll = Poll::new()?;
    let mut ctx = Ctx {
        window,
        rbuf: vec![0; RECV_BUF],
        stats: Stats::new()?,
        deadlines: VecDeque::new(),
    };
    let mut slots: Vec<Option<Peer>> = Vec::with_capacity(sockets.len());
    for (idx, (id, s)) in sockets.into_iter().enumerate() {
        let mut socket = UdpSocket::from_std(s);
        poll.registry()
            .register(&mut socket, Token(idx), Interest::READABLE)?;
        let mut peer = Peer::new(id, socket, cfg.size);
        peer.send(idx, &mut ctx);
        slots.push(Some(peer));
    }
    let mut live = slots.len();
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        if now >= window.to || live == 0 {
            return Ok(ctx.stats);
        }
        let wake = ctx.deadlines.front().map_or(window.to, |d| d.at);
        let timeout = wake.min(window.to).saturating_duration_since(now);
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for ev in &events {
            let idx = ev.token().0;
            let Some(peer) = slots[idx].as_mut() else {
                continue;
            };
            if let Err(fault) = peer.receive(idx, &mut ctx) {
                ctx.stats.fault(peer.id, fault);
                slots[idx] = None;
                live -= 1;
            }
        }
        ctx.expire(&mut slots);
    }
}

/// Per-thread state shared by its sockets.
struct Ctx {
    window: Window,
    rbuf: Vec<u8>,
    stats: Stats,
    /// Loss deadlines of the datagrams sent, earliest first (all wait the
    /// same time, so the order they were sent in).
    deadlines: VecDeque<Deadline>,
}

impl Ctx {
    /// Counts each datagram whose deadline has passed and that is still
    /// unanswered as lost, and sends its socket's next one.
    fn expire(&mut self, slots: &mut [Option<Peer>]) {
        let now = Instant::now();
        while let Some(d) = self.deadlines.front().copied() {
            if d.at > now {
                return;
            }
            self.deadlines.pop_front();
            let Some(peer) = slots[d.idx].as_mut() else {
                continue;
            };
            if peer.in_flight && peer.seq == d.seq {
                self.stats.errors.lost += 1;
                peer.next();
                peer.send(d.idx, self);
            }
        }
    }
}

/// When datagram `seq` of the socket in slot `idx` is given up.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    idx: usize,
    seq: u64,
}

/// One socket and the datagram it has in flight.
struct Peer {
    id: usize,
    socket: UdpSocket,
    seed: u64,
    /// Sequence number of the datagram in flight, or of the next one.
    seq: u64,
    /// Whether datagram `seq` was sent and is not yet echoed or lost.
    in_flight: bool,
    sent_at: Instant,
    /// Datagram `seq`.
    datagram: Vec<u8>,
}

impl Peer {
    fn new(id: usize, socket: UdpSocket, size: usize) -> Peer {
        let mut peer = Peer {
            id,
            socket,
            seed: seed(id),
            seq: 0,
            in_flight: false,
            sent_at: Instant::now(),
            datagram: vec![0; size],
        };
        peer.fill();
        peer
    }

    /// Writes datagram `seq` into the buffer.
    fn fill(&mut self) {
        let pos = self.seq * self.datagram.len() as u64;
        pattern::fill(self.seed, pos, &mut self.datagram);
        self.datagram[..HEADER].copy_from_slice(&self.seq.to_le_bytes());
    }

    /// Moves on to the next datagram.
    fn next(&mut self) {
        self.seq += 1;
        self.in_flight = false;
        self.fill();
    }

    /// Sends datagram `seq` unless the window is over. A datagram the
    /// kernel will not take (or any send error: ICMP errors are reported on
    /// receive too) is in flight all the same, and lost after the time-out.
    fn send(&mut self, idx: usize, ctx: &mut Ctx) {
        let now = Instant::now();
        if now >= ctx.window.to {
            return;
        }
        let sent = loop {
            match self.socket.send(&self.datagram) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => break other.is_ok(),
            }
        };
        if sent && ctx.window.contains(now) {
            ctx.stats.tx_bytes += self.datagram.len() as u64;
        }
        self.in_flight = true;
        self.sent_at = now;
        ctx.deadlines.push_back(Deadline {
            at: now + LOSS_TIMEOUT,
            idx,
            seq: self.seq,
        });
    }

    /// Receives and checks every datagram waiting; on the echo of the one in
    /// flight, counts the round trip and sends the next.
    fn receive(&mut self, idx: usize, ctx: &mut Ctx) -> Result<(), Fault> {
        loop {
            let n = match self.socket.recv(&mut ctx.rbuf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fault::Io(e)),
            };
            if self.check(&ctx.rbuf[..n])? {
                let now = Instant::now();
                ctx.stats.round_trip(ctx.window, self.sent_at, now);
                if ctx.window.contains(now) {
                    ctx.stats.rx_bytes += n as u64;
                }
                self.next();
                self.send(idx, ctx);
            }
        }
    }

    /// Checks an echoed datagram: `true` if it is the echo of the one in
    /// flight, `false` if a late or repeated echo of an earlier one.
    fn check(&self, echo: &[u8]) -> Result<bool, Fault> {
        let size = self.datagram.len();
        if echo.len() != size {
            return Err(Fault::Length {
                got: echo.len(),
                sent: size,
            });
        }
        let (header, body) = echo.split_at(HEADER);
        let mut seq = [0; HEADER];
        seq.copy_from_slice(header);
        let seq = u64::from_le_bytes(seq);
        if seq > self.seq || (seq == self.seq && !self.in_flight) {
            return Err(Fault::Unsent { seq });
        }
        let start = seq * size as u64 + HEADER as u64;
        if let Err(pos) = pattern::verify(self.seed, start, body) {
            let got = body[(pos - start) as usize];
            return Err(Fault::Mismatch { pos, got });
        }
        Ok(seq == self.seq)
    }
}
