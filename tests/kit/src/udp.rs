//! The UDP scenarios over the kernel's UDP: [`KernelUdp`], a server reached
//! through real sockets from one or more addresses of this host (or of the
//! test's network namespace), and [`rate_args`], the `--udp-rate` and
//! `--udp-burst` flags for a scenario's rate limit.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use crate::process::ServerProcess;
use crate::scenarios::udp::{DatagramServer, DatagramSetup};
use crate::tcp::BOUND;

/// A UDP echo server at `addr`, as clients on this host see it.
pub struct KernelUdp<G> {
    /// What keeps the server running (its process, its namespace):
    /// dropped with this.
    pub guard: G,
    /// Where datagrams go: the server's `(udp)` address.
    pub addr: SocketAddr,
    /// The clients' source address for each scenario host (0, 1, …).
    pub hosts: Vec<IpAddr>,
    /// The longest datagram the server echoes on this path.
    pub max_datagram: usize,
}

impl KernelUdp<ServerProcess> {
    /// A server process's first `(udp)` listener, reached from `hosts`,
    /// echoing datagrams up to the largest UDP payload over IPv4 (65,507).
    pub fn of_process(process: ServerProcess, hosts: Vec<IpAddr>) -> Self {
        KernelUdp {
            addr: process.addrs_of("udp")[0],
            guard: process,
            hosts,
            max_datagram: 65_507,
        }
    }
}

impl<G> DatagramServer for KernelUdp<G> {
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
        self.max_datagram
    }

    /// A server's sends cannot be held back from outside.
    fn block_sends(&mut self) -> Option<usize> {
        None
    }

    fn unblock_sends(&mut self) {}
}

/// `--udp-rate`/`--udp-burst` for a scenario's rate limit (the rate
/// rounded to whole answers per second, at least one; `--udp-rate 0` for
/// none).
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
