//! The shared UDP scenarios over real sockets: a server process reached
//! with blocking `std` UDP sockets, with time-outs so a lost echo fails the
//! test instead of hanging it.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use crate::process::ServerProcess;
use crate::scenarios::udp::{DatagramServer, DatagramSetup};
use crate::tcp::BOUND;

/// A server's UDP echo at `addr`, reached from sockets on `hosts`.
pub struct UdpServer {
    /// Kept for its lifetime: dropping it kills the server.
    pub process: ServerProcess,
    /// Where datagrams go: the server's `(udp)` address.
    pub addr: SocketAddr,
    /// The source addresses clients may bind: host 0, host 1, …
    hosts: Vec<IpAddr>,
    /// The longest datagram the server echoes on this path.
    max: usize,
}

impl UdpServer {
    /// `process`'s first UDP address, clients on `hosts`, datagrams up to
    /// `max` bytes.
    pub fn new(process: ServerProcess, hosts: Vec<IpAddr>, max: usize) -> Self {
        let addr = *process
            .addrs_of("udp")
            .first()
            .expect("a `listening on ADDR (udp)` line");
        UdpServer {
            process,
            addr,
            hosts,
            max,
        }
    }
}

/// `--udp-rate N --udp-burst N` for a scenario's rate limit (the rate
/// rounded to whole answers a second, at least one; 0 turns it off).
pub fn rate_args(setup: DatagramSetup) -> Vec<String> {
    let (rate, burst) = match setup.rate_limit {
        None => (0, 1),
        Some((burst, interval)) => {
            let per_second = (1.0 / interval.as_secs_f64()).round().max(1.0) as u32;
            (per_second, burst)
        }
    };
    vec![
        "--udp-rate".into(),
        rate.to_string(),
        "--udp-burst".into(),
        burst.to_string(),
    ]
}

impl DatagramServer for UdpServer {
    type Client = UdpSocket;

    fn client(&mut self, host: u8, port: Option<u16>) -> Option<UdpSocket> {
        let ip = *self.hosts.get(usize::from(host))?;
        let socket = UdpSocket::bind(SocketAddr::new(ip, port.unwrap_or(0))).ok()?;
        socket.set_read_timeout(Some(BOUND)).expect("a time-out");
        Some(socket)
    }

    fn send(&mut self, client: &mut UdpSocket, data: &[u8]) {
        let sent = client.send_to(data, self.addr).expect("send a datagram");
        assert_eq!(sent, data.len());
    }

    fn recv(&mut self, client: &mut UdpSocket) -> Vec<u8> {
        let mut buf = vec![0; 70_000];
        let (n, from) = client
            .recv_from(&mut buf)
            .expect("an echo within the bound");
        assert_eq!(from, self.addr, "the echo comes from where it was sent");
        buf.truncate(n);
        buf
    }

    fn try_recv(&mut self, client: &mut UdpSocket) -> Option<Vec<u8>> {
        // The scenario's sentinel came back: anything sent before it has.
        client.set_nonblocking(true).expect("non-blocking");
        let mut buf = vec![0; 70_000];
        let got = match client.recv(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => None,
            Err(e) => panic!("recv: {e}"),
        };
        client.set_nonblocking(false).expect("blocking again");
        got
    }

    fn max_datagram(&self) -> usize {
        self.max
    }

    /// A process's sends cannot be held back from outside.
    fn block_sends(&mut self) -> Option<usize> {
        None
    }

    fn unblock_sends(&mut self) {}
}
