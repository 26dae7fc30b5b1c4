//! The echo server on any board: smoltcp over the board's device, one TCP
//! socket per connection slot and one UDP socket per port, the core's
//! machines through their smoltcp adapters ([`SmolEcho`] for TCP, a
//! [`SmolUdpEcho`] per port), all in statics the binary provides.
//!
//! A board provides three things ([`Board`]): a smoltcp [`Device`], a
//! monotonic clock, and a sleep that an interrupt of the device or a timer
//! ends. [`run`] turns the loop: the host's TUN shell's turn
//! (`host/src/tun/serve.rs`: frames in one at a time, re-listening between
//! them; the adapters' polls; smoltcp's timers and sends), with each part
//! bounded, then sleep until the next deadline.
//!
//! UDP: smoltcp's receive buffer of a port holds one datagram of the
//! largest size; the port's adapter takes it into its machine after every
//! frame, so smoltcp never drops a datagram uncounted, and the machine is
//! the queue (it counts what it drops). IPv4 fragments never reach smoltcp
//! ([`fragments`](crate::fragments)): the largest datagram echoed is
//! [`MAX_DATAGRAM`].

use core::mem::{MaybeUninit, size_of};

use selecho_core::smoltcp::{AddError, BindError, SmolEcho, SmolUdpEcho, from_smoltcp, to_smoltcp};
use selecho_core::{Config, DatagramConfig, Duration, Instant};
use smoltcp::iface::{
    Config as IfaceConfig, Interface, PollIngressSingleResult, PollResult, SocketSet, SocketStorage,
};
use smoltcp::phy::Device;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr};
use static_cell::{ConstStaticCell, StaticCell};

use crate::args::{MAX_PORTS, Settings};
use crate::fragments::{Counts, MAX_DATAGRAM, Screen, Screened};

/// A peer that acknowledges nothing for this long while we have data for
/// it (or never completes a handshake) is dropped by smoltcp, as on the host.
const TCP_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(60);

/// Frames taken in per turn before the machine gets its share; more wait
/// in the device for the next turn (which comes at once).
const INGRESS_PER_TURN: usize = 16;

/// Datagrams a port's UDP machine queues, and its smoltcp transmit buffer
/// holds: together, a turn's ingress of small datagrams.
pub const UDP_RECORDS: usize = 8;

/// Source addresses a port's UDP rate limit follows at once; more, each
/// still busy, and newcomers wait until one has been quiet long enough.
const UDP_SOURCES: usize = 8;

/// The UDP counters are logged when they change, at most this often.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// A port's UDP echo: the machine, with a `U`-byte store, through its
/// smoltcp adapter.
pub type UdpEcho<const U: usize> = SmolUdpEcho<UDP_RECORDS, U, UDP_SOURCES>;

/// Bytes one more connection slot adds to the machine's table and the
/// adapter's slots, its `Q`-byte queue left out: what a connection costs
/// besides its queue and its smoltcp socket.
pub const fn table_bytes_per_connection<const Q: usize>() -> usize {
    (size_of::<SmolEcho<16, Q>>() - size_of::<SmolEcho<8, Q>>()) / 8 - Q
}

/// What the server needs of a board.
pub trait Board {
    /// The network device.
    type Device: Device;

    /// The device, for smoltcp.
    fn device(&mut self) -> &mut Self::Device;

    /// Starts a turn: the device's upkeep (status FIFOs, counters), and
    /// the time now, from a monotonic clock.
    fn begin_turn(&mut self) -> Instant;

    /// Sleeps until the device or a timer interrupts, or `timeout` passes
    /// (`None`: as long as the board can), unless an interrupt came since
    /// [`begin_turn`](Self::begin_turn): then it returns at once.
    fn sleep(&mut self, timeout: Option<Duration>);
}

/// Every byte the server uses besides the device's frame buffers, for
/// `N` connections with `Q`-byte queues and smoltcp socket buffers of `RX`
/// and `TX` bytes, and a UDP echo on each of up to [`MAX_PORTS`] ports with
/// a `U`-byte queue and transmit buffer; `M` is the sockets in all, `N +
/// MAX_PORTS` (a compile error otherwise). Put it in a static (it starts
/// zeroed or uninitialised, so the static costs no flash).
pub struct Statics<
    const N: usize,
    const Q: usize,
    const RX: usize,
    const TX: usize,
    const U: usize,
    const M: usize,
> {
    buffers: ConstStaticCell<SocketBuffers<N, RX, TX, U>>,
    /// Filled in place at set-up: a `[SocketStorage::EMPTY; M]` built
    /// whole would take the stack (or, as an initialiser, flash).
    sockets: StaticCell<[MaybeUninit<SocketStorage<'static>>; M]>,
    echo: StaticCell<SmolEcho<N, Q>>,
    /// One per port served, filled in place at set-up.
    udp: [StaticCell<UdpEcho<U>>; MAX_PORTS],
    /// Each UDP socket's packet records (not all-zero when empty, so not
    /// in [`SocketBuffers`], which must be).
    udp_records: StaticCell<[UdpRecords; MAX_PORTS]>,
    iface: StaticCell<Interface>,
}

/// Each socket's receive and send buffer.
struct SocketBuffers<const N: usize, const RX: usize, const TX: usize, const U: usize> {
    rx: [[u8; RX]; N],
    tx: [[u8; TX]; N],
    /// One datagram of the largest size: the adapter empties it after
    /// every frame.
    udp_rx: [[u8; MAX_DATAGRAM]; MAX_PORTS],
    udp_tx: [[u8; U]; MAX_PORTS],
}

/// A UDP socket's packet records: one datagram received, up to
/// [`UDP_RECORDS`] to send.
struct UdpRecords {
    rx: [udp::PacketMetadata; 1],
    tx: [udp::PacketMetadata; UDP_RECORDS],
}

impl<
    const N: usize,
    const Q: usize,
    const RX: usize,
    const TX: usize,
    const U: usize,
    const M: usize,
> Statics<N, Q, RX, TX, U, M>
{
    /// Empty storage, for a static's initialiser.
    pub const fn new() -> Self {
        const { assert!(M == N + MAX_PORTS, "M must be N + MAX_PORTS") };
        Statics {
            buffers: ConstStaticCell::new(SocketBuffers {
                rx: [[0; RX]; N],
                tx: [[0; TX]; N],
                udp_rx: [[0; MAX_DATAGRAM]; MAX_PORTS],
                udp_tx: [[0; U]; MAX_PORTS],
            }),
            sockets: StaticCell::new(),
            echo: StaticCell::new(),
            udp: [const { StaticCell::new() }; MAX_PORTS],
            udp_records: StaticCell::new(),
            iface: StaticCell::new(),
        }
    }
}

impl<
    const N: usize,
    const Q: usize,
    const RX: usize,
    const TX: usize,
    const U: usize,
    const M: usize,
> Default for Statics<N, Q, RX, TX, U, M>
{
    fn default() -> Self {
        Self::new()
    }
}

/// Why the server could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum SetupError {
    /// The statics were used already: a server was set up before.
    Taken,
    /// The adapter refused a socket.
    Socket(AddError),
    /// A UDP socket could not be bound.
    Udp(BindError),
}

/// The interface, its sockets and the machines.
pub struct Server<const N: usize, const Q: usize, const U: usize> {
    iface: &'static mut Interface,
    sockets: SocketSet<'static>,
    echo: &'static mut SmolEcho<N, Q>,
    /// One per port.
    udp: heapless::Vec<&'static mut UdpEcho<U>, MAX_PORTS>,
    screen: Screen,
    log: CounterLog,
}

impl<const N: usize, const Q: usize, const U: usize> Server<N, Q, U> {
    /// Sets up smoltcp on `device` (Ethernet address `mac`, smoltcp's
    /// random `seed`) with the settings' address and route, one TCP socket
    /// per connection slot listening on the settings' ports, and a UDP
    /// socket on each port.
    pub fn new<D: Device, const RX: usize, const TX: usize, const M: usize>(
        settings: &Settings,
        device: &mut D,
        mac: [u8; 6],
        seed: u64,
        now: Instant,
        statics: &'static Statics<N, Q, RX, TX, U, M>,
    ) -> Result<Self, SetupError> {
        let SocketBuffers {
            rx,
            tx,
            udp_rx,
            udp_tx,
        } = statics.buffers.try_take().ok_or(SetupError::Taken)?;
        let storage = statics
            .sockets
            .try_init_with(|| [const { MaybeUninit::uninit() }; M])
            .ok_or(SetupError::Taken)?;
        for slot in storage.iter_mut() {
            slot.write(SocketStorage::EMPTY);
        }
        // SAFETY: every element was written just above.
        let storage = unsafe { storage.assume_init_mut() };
        let mut config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = seed;
        let iface = statics
            .iface
            .try_init_with(|| Interface::new(config, device, to_smoltcp(now)))
            .ok_or(SetupError::Taken)?;
        let cidr = Ipv4Cidr::new(settings.address, settings.prefix);
        iface.update_ip_addrs(|addrs| {
            // The list holds at least one address, and it was empty.
            let _ = addrs.push(IpCidr::Ipv4(cidr));
        });
        if let Some(gateway) = settings.gateway {
            // The table holds at least one route, and it was empty.
            let _ = iface.routes_mut().add_default_ipv4_route(gateway);
        }

        let machine = Config::new()
            .with_idle_timeout(settings.idle_timeout)
            .with_max_connections(settings.max_conns);
        let echo = statics
            .echo
            .try_init_with(|| SmolEcho::new(machine))
            .ok_or(SetupError::Taken)?;
        let mut sockets = SocketSet::new(&mut storage[..]);
        let mut handles = heapless::Vec::<_, N>::new();
        for (rx, tx) in rx.iter_mut().zip(tx.iter_mut()).take(settings.max_conns) {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(&mut rx[..]),
                tcp::SocketBuffer::new(&mut tx[..]),
            );
            // Echo small writes at once, like the host shells.
            socket.set_nagle_enabled(false);
            socket.set_timeout(Some(TCP_TIMEOUT));
            // Cannot fail: at most N sockets, and `handles` holds N.
            let _ = handles.push(sockets.add(socket));
        }
        echo.add_sockets(&mut sockets, handles, &settings.ports)
            .map_err(SetupError::Socket)?;

        // The ports are the UDP machines' own: a datagram from one of them
        // (another echo server, most likely) is never answered.
        let mut own = [0; MAX_PORTS];
        for (place, &port) in own.iter_mut().zip(&settings.ports) {
            *place = port;
        }
        let datagrams = DatagramConfig::new()
            .with_rate_limit(settings.udp_limit)
            .with_own_ports(own);
        let records = statics
            .udp_records
            .try_init_with(|| {
                [const {
                    UdpRecords {
                        rx: [udp::PacketMetadata::EMPTY],
                        tx: [udp::PacketMetadata::EMPTY; UDP_RECORDS],
                    }
                }; MAX_PORTS]
            })
            .ok_or(SetupError::Taken)?;
        let mut udp = heapless::Vec::new();
        let buffers = udp_rx.iter_mut().zip(udp_tx.iter_mut()).zip(records);
        for ((&port, echo), ((rx, tx), records)) in
            settings.ports.iter().zip(&statics.udp).zip(buffers)
        {
            let echo = udp_echo(echo, datagrams).ok_or(SetupError::Taken)?;
            let socket = udp::Socket::new(
                udp::PacketBuffer::new(&mut records.rx[..], &mut rx[..]),
                udp::PacketBuffer::new(&mut records.tx[..], &mut tx[..]),
            );
            let handle = sockets.add(socket);
            echo.bind(&mut sockets, handle, (settings.address, port))
                .map_err(SetupError::Udp)?;
            // Cannot fail: at most MAX_PORTS ports.
            let _ = udp.push(echo);
        }
        Ok(Server {
            iface,
            sockets,
            echo,
            udp,
            screen: Screen::new(settings.address, datagrams),
            log: CounterLog::new(now),
        })
    }

    /// The TCP machine, for its counters.
    pub fn echo(&self) -> &SmolEcho<N, Q> {
        self.echo
    }

    /// What the UDP echo has done on every port, and the fragments dropped.
    pub fn counts(&self) -> Counts {
        let mut counts = *self.screen.counts();
        for echo in &self.udp {
            counts.udp += *echo.counters();
        }
        counts
    }

    /// One turn: frames in, bytes and datagrams through the machines,
    /// frames out. Returns whether there is more to do at once (do not
    /// sleep).
    pub fn turn<D: Device>(&mut self, device: &mut D, now: Instant) -> bool {
        let Server {
            iface,
            sockets,
            echo,
            udp,
            screen,
            ..
        } = self;
        let stamp = to_smoltcp(now);
        // Frames one at a time, so a socket whose connection just finished
        // closing listens again before a SYN behind that last ACK is seen,
        // and a datagram leaves smoltcp's receive buffer (room for one)
        // for its machine before the next frame.
        echo.relisten(sockets, now);
        let mut more_frames = true;
        let mut screened = Screened::new(device, screen);
        for _ in 0..INGRESS_PER_TURN {
            match iface.poll_ingress_single(stamp, &mut screened, sockets) {
                PollIngressSingleResult::None => {
                    more_frames = false;
                    break;
                }
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => {
                    echo.relisten(sockets, now);
                }
            }
            if screened.screen().take_udp() {
                for port in udp.iter_mut() {
                    port.poll(sockets, now);
                }
            }
        }
        let mut busy = echo.poll(sockets, now);
        // Timers, then send what the adapters queued (and anything else
        // due). Not `iface.poll`, which would also take in every frame
        // that arrived meanwhile, without bound; those wait for the next
        // turn. Each pass sends at least one segment or datagram of what
        // the sockets' buffers hold, so the passes are bounded by those
        // buffers.
        iface.poll_maintenance(stamp);
        while iface.poll_egress(stamp, device, sockets) != PollResult::None {}
        // Datagrams that waited in a machine for room in the transmit
        // buffer move there now; the next turn, at once, sends them.
        for port in udp.iter_mut() {
            busy |= port.poll(sockets, now);
        }
        // Sockets aborted this turn sent their RST: they may listen again.
        echo.relisten(sockets, now);
        let counts = self.counts();
        self.log.tick(now, counts);
        busy || more_frames
    }

    /// When the next turn is due at the latest (`None`: only the network
    /// can make work).
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let smoltcp = self
            .iface
            .poll_at(to_smoltcp(now), &self.sockets)
            .map(from_smoltcp);
        [smoltcp, self.echo.poll_at(), self.log.due()]
            .into_iter()
            .flatten()
            .min()
    }
}

/// A port's UDP echo, made in its static; `None` if it was made before.
/// Not inlined: the machine is built on the stack first (its `U`-byte
/// store too), and this frame is gone before the server runs.
#[inline(never)]
fn udp_echo<const U: usize>(
    cell: &'static StaticCell<UdpEcho<U>>,
    config: DatagramConfig,
) -> Option<&'static mut UdpEcho<U>> {
    cell.try_init_with(|| SmolUdpEcho::new(config))
}

/// Logs the UDP counters and the fragments dropped when they change, at
/// most once per [`LOG_EVERY`], the last change included.
struct CounterLog {
    logged: Counts,
    /// When the next line may go out.
    next: Instant,
    /// The counts at the last [`tick`](Self::tick) differ from those
    /// logged: a line is due at `next`. The counts change only in a turn,
    /// which ticks at its end, so this holds until the next turn.
    pending: bool,
}

impl CounterLog {
    fn new(now: Instant) -> Self {
        CounterLog {
            logged: Counts::default(),
            next: now,
            pending: false,
        }
    }

    /// Logs `counts` if they changed and the last line is old enough.
    fn tick(&mut self, now: Instant, counts: Counts) {
        self.pending = counts != self.logged;
        if !self.pending || now < self.next {
            return;
        }
        let udp = &counts.udp;
        defmt::info!(
            "stats: udp_received={=u64} udp_echoed={=u64} udp_dropped_full={=u64} udp_dropped_loop={=u64} udp_dropped_rate={=u64} udp_dropped_truncated={=u64} udp_send_failed={=u64} pkt_fragments_dropped={=u64}",
            udp.received,
            udp.echoed,
            udp.dropped_full,
            udp.dropped_loop,
            udp.dropped_rate,
            udp.dropped_truncated,
            udp.send_failed,
            counts.fragments
        );
        self.logged = counts;
        self.next = now + LOG_EVERY;
        self.pending = false;
    }

    /// When a line is due: `None` while nothing changed.
    fn due(&self) -> Option<Instant> {
        self.pending.then_some(self.next)
    }
}

/// Serves for ever: a turn, then sleep until a frame, or the next
/// deadline, or at once if the turn left work.
pub fn run<B: Board, const N: usize, const Q: usize, const U: usize>(
    board: &mut B,
    server: &mut Server<N, Q, U>,
) -> ! {
    loop {
        let now = board.begin_turn();
        if server.turn(board.device(), now) {
            continue;
        }
        match server.poll_at(now) {
            Some(at) if at <= now => {}
            at => board.sleep(at.map(|at| at - now)),
        }
    }
}
