//! UDP echo on one socket of the select shell: the core's datagram machine
//! fed by `recvfrom` (with `MSG_TRUNC`, so a datagram too long for the room
//! left is known for what it is and dropped, never echoed shortened) and
//! drained by `sendto`, in its worker's select loop. A full send buffer
//! leaves the datagram first in line for the next round; it never blocks.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use log::debug;
use selecho_core::{DatagramConfig, DatagramCounters, DatagramEcho, Instant};

use crate::sys::net;

/// Datagrams waiting to be echoed, at most.
const RECORDS: usize = 128;

/// Bytes they may take: room for two of the largest (65,507 bytes).
const STORE: usize = 128 * 1024;

/// Sources whose rate limit is tracked at once.
const SOURCES: usize = 256;

type Machine = DatagramEcho<SocketAddr, RECORDS, STORE, SOURCES>;

/// A UDP socket and its machine.
pub struct Udp {
    socket: UdpSocket,
    echo: Box<Machine>,
    /// Where a second datagram lands when two are received at once (see
    /// [`Udp::receive`]): room for the largest.
    second: Box<[u8]>,
}

impl Udp {
    /// Echo on `socket` with `config`, its own port never answered.
    pub fn new(socket: UdpSocket, config: DatagramConfig) -> Self {
        let port = socket.local_addr().map_or(0, |addr| addr.port());
        let config = config.with_own_ports([port, 0, 0, 0]);
        Udp {
            socket,
            echo: Box::write(Box::new_uninit(), Machine::new(config)),
            second: vec![0; 65_536].into_boxed_slice(),
        }
    }

    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Datagrams waiting to be sent: watch for writability while any.
    pub fn queued(&self) -> usize {
        self.echo.len()
    }

    pub fn counters(&self) -> DatagramCounters {
        *self.echo.counters()
    }

    /// Receives (if readable) up to a queueful, then sends what is queued
    /// until the socket would block.
    pub fn serve(&mut self, readable: bool, writable: bool, now: Instant) {
        if readable {
            self.receive(now);
        }
        if readable || writable {
            self.send();
        }
    }

    /// Up to [`RECORDS`] datagrams into the machine, two per call: the
    /// first straight into it, the second (if one waits) copied in. A call
    /// that brings fewer than two says the socket is empty, so a ping-pong
    /// costs no read that finds nothing. The machine drops and counts what
    /// it cannot take, so a full queue still drains the socket.
    fn receive(&mut self, now: Instant) {
        let fd = self.socket.as_raw_fd();
        for _ in 0..RECORDS / 2 {
            let got = match net::recv_two(fd, self.echo.recv_buf(), &mut self.second) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // An error queued on the socket (an ICMP report of an
                    // earlier send): taken; look again next round.
                    debug!("udp recv: {e}");
                    return;
                }
            };
            let [first, second] = got;
            // A refusal is counted by the machine: nothing to do.
            if let Some((len, from)) = first {
                let _ = self.echo.handle_received(from, len, now);
            }
            let Some((len, from)) = second else {
                return;
            };
            match self.second.get(..len) {
                Some(bytes) => {
                    let _ = self.echo.handle_datagram(from, bytes, now);
                }
                // Longer than any UDP datagram: cannot happen; counted if it did.
                None => {
                    let _ = self.echo.handle_truncated(from);
                }
            }
        }
    }

    /// Sends the queued datagrams in order until the socket would block.
    fn send(&mut self) {
        while let Some(transmit) = self.echo.poll_transmit() {
            let result = net::send_to(self.socket.as_raw_fd(), transmit.payload, transmit.peer);
            let reported = match result {
                Ok(_) => self.echo.handle_sent(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!("udp send to {}: {e}", transmit.peer);
                    self.echo.handle_send_failed()
                }
            };
            // poll_transmit just named a datagram, so the queue is not empty.
            debug_assert!(reported.is_ok());
        }
    }
}
