//! The shared scenarios against the bare core: `selecho_core::sim` plays the
//! shell and the clients in memory, with a fake clock that jumps straight to
//! the machine's next deadline instead of waiting for it. The UDP scenarios
//! run the same way through `selecho_core::sim::udp`.

use std::net::SocketAddr;

use selecho_core::sim::udp::UdpSim;
use selecho_core::sim::{ClientId, ClientState, Sim};
use selecho_core::{Config, DatagramConfig, Duration, RateLimit};
use selecho_testkit::scenarios::udp::{DatagramServer, DatagramSetup};
use selecho_testkit::scenarios::{End, Server, Setup};
use selecho_testkit::{scenario_tests, udp_scenario_tests};

/// 8 slots (the most a scenario asks for), 1 KiB queues so that queues wrap
/// and fill often, 4 KiB pipes standing in for the kernel's buffers.
type Machine = Sim<8, 1024, 64, 4096>;

/// A step bound: a call that makes no progress for this many rounds fails.
const STUCK: usize = 1000;

struct SimServer {
    sim: Box<Machine>,
}

/// The simulator always runs: never `None`.
fn start(setup: Setup) -> Option<SimServer> {
    let idle = setup
        .idle_timeout
        .map(|d| Duration::from_micros(d.as_micros() as u64));
    let config = Config::new()
        .with_max_connections(setup.max_conns)
        .with_idle_timeout(idle);
    Some(SimServer {
        sim: Box::new(Sim::new(config)),
    })
}

impl SimServer {
    fn drive(&mut self) {
        self.sim.drive().expect("the simulation settles");
    }

    /// Reads what has arrived into `got`; whether anything did.
    fn read_into(&mut self, conn: ClientId, got: &mut Vec<u8>, want: usize) -> bool {
        let mut buf = [0u8; 4096];
        let mut any = false;
        while got.len() < want {
            let room = (want - got.len()).min(buf.len());
            let n = self.sim.read(conn, &mut buf[..room]);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            any = true;
        }
        any
    }

    /// Writes what fits of `data[*sent..]`; whether anything did.
    fn write_from(&mut self, conn: ClientId, data: &[u8], sent: &mut usize) -> bool {
        let n = self.sim.write(conn, &data[*sent..]);
        *sent += n;
        n > 0
    }
}

impl Server for SimServer {
    type Conn = ClientId;

    fn connect(&mut self) -> ClientId {
        let conn = self.sim.connect().expect("a client slot");
        self.drive();
        assert_eq!(self.sim.state(conn), ClientState::Open, "accepted");
        conn
    }

    fn connect_when_full(&mut self) -> Option<ClientId> {
        let conn = self.sim.connect().expect("a client slot");
        self.drive();
        assert_eq!(
            self.sim.state(conn),
            ClientState::Connecting,
            "held in the backlog"
        );
        Some(conn)
    }

    fn exchange(&mut self, conn: &mut ClientId, data: &[u8]) -> Vec<u8> {
        let conn = *conn;
        let mut got = Vec::with_capacity(data.len());
        let mut sent = 0;
        let mut idle_rounds = 0;
        while got.len() < data.len() {
            let wrote = self.write_from(conn, data, &mut sent);
            self.drive();
            let read = self.read_into(conn, &mut got, data.len());
            idle_rounds = if wrote || read { 0 } else { idle_rounds + 1 };
            assert!(
                idle_rounds < STUCK,
                "exchange stuck at {} of {}",
                got.len(),
                data.len()
            );
        }
        got
    }

    fn write_until_blocked(&mut self, conn: &mut ClientId, data: &[u8]) -> usize {
        let conn = *conn;
        let mut sent = 0;
        while sent < data.len() && self.write_from(conn, data, &mut sent) {
            self.drive();
        }
        sent
    }

    fn read_exact(&mut self, conn: &mut ClientId, n: usize) -> Vec<u8> {
        let conn = *conn;
        let mut got = Vec::with_capacity(n);
        let mut idle_rounds = 0;
        while got.len() < n {
            self.drive();
            idle_rounds = if self.read_into(conn, &mut got, n) {
                0
            } else {
                idle_rounds + 1
            };
            assert!(
                idle_rounds < STUCK,
                "read_exact stuck at {} of {n}",
                got.len()
            );
        }
        got
    }

    fn stream_and_close(&mut self, conn: &mut ClientId, data: &[u8]) -> (Vec<u8>, End) {
        let mut got = self.exchange(conn, data);
        self.shutdown_write(conn);
        let (rest, end) = self.read_to_end(conn);
        got.extend_from_slice(&rest);
        (got, end)
    }

    fn shutdown_write(&mut self, conn: &mut ClientId) {
        self.sim.shutdown_write(*conn);
        self.drive();
    }

    fn read_to_end(&mut self, conn: &mut ClientId) -> (Vec<u8>, End) {
        let conn = *conn;
        let mut got = Vec::new();
        for _ in 0..STUCK {
            self.drive();
            self.read_into(conn, &mut got, usize::MAX);
            match self.sim.state(conn) {
                ClientState::Eof => return (got, End::Eof),
                ClientState::Reset => return (got, End::Reset),
                ClientState::Connecting | ClientState::Open => {}
            }
            // Nothing moves by itself: let the fake clock jump to the next deadline.
            self.sim.step_to_deadline();
        }
        panic!("read_to_end stuck after {} bytes", got.len());
    }

    fn abort(&mut self, conn: ClientId) {
        self.sim.reset(conn);
        self.drive();
    }
}

scenario_tests!(start, big = 1 << 20);

/// 16 datagrams in 64 KiB (every UDP size fits), rate-limit buckets for 8
/// sources, 8 client sockets.
type UdpMachine = UdpSim<16, 65_536, 8, 8>;

/// Datagrams the machine queues: `D` above.
const UDP_RECORDS: usize = 16;

struct SimUdpServer {
    sim: Box<UdpMachine>,
    /// The source port of the next client that asks for any.
    next_port: u16,
}

/// The simulator always runs: never `None`.
fn start_udp(setup: DatagramSetup) -> Option<SimUdpServer> {
    let limit = setup.rate_limit.map(|(burst, interval)| {
        RateLimit::new(burst, Duration::from_micros(interval.as_micros() as u64))
    });
    let config = DatagramConfig::new().with_rate_limit(limit);
    // Built in a thread with stack to spare: the simulator holds ten
    // 64 KiB stores, and passes through the stack on its way into the box.
    let sim = std::thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(move || Box::new(UdpMachine::new(config)))
        .expect("spawn a builder thread")
        .join()
        .expect("build the simulator");
    Some(SimUdpServer {
        sim,
        next_port: 40_000,
    })
}

impl SimUdpServer {
    fn drive(&mut self) {
        self.sim.drive().expect("the simulation settles");
    }
}

impl DatagramServer for SimUdpServer {
    type Client = SocketAddr;

    fn client(&mut self, host: u8, port: Option<u16>) -> Option<SocketAddr> {
        let port = port.unwrap_or_else(|| {
            self.next_port += 1;
            self.next_port
        });
        let addr = SocketAddr::from(([10, 0, 0, 1 + host], port));
        self.sim.bind(addr).expect("a client socket");
        Some(addr)
    }

    fn send(&mut self, client: &mut SocketAddr, data: &[u8]) {
        assert!(
            self.sim.send(*client, data),
            "the server's receive buffer took it"
        );
        self.drive();
    }

    fn recv(&mut self, client: &mut SocketAddr) -> Vec<u8> {
        self.try_recv(client).expect("an echo")
    }

    fn try_recv(&mut self, client: &mut SocketAddr) -> Option<Vec<u8>> {
        self.drive();
        let mut buf = vec![0; 65_536];
        let len = self.sim.recv(*client, &mut buf)?;
        buf.truncate(len);
        Some(buf)
    }

    fn max_datagram(&self) -> usize {
        65_507
    }

    fn block_sends(&mut self) -> Option<usize> {
        self.sim.set_send_limit(Some(0));
        Some(UDP_RECORDS)
    }

    fn unblock_sends(&mut self) {
        self.sim.set_send_limit(None);
        self.drive();
    }
}

udp_scenario_tests!(start_udp);
