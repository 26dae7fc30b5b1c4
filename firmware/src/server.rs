//! The echo server on any board: smoltcp over the board's device, one TCP
//! socket per connection slot, the core's machine through its smoltcp
//! adapter ([`SmolEcho`]), all in statics the binary provides.
//!
//! A board provides three things ([`Board`]): a smoltcp [`Device`], a
//! monotonic clock, and a sleep that an interrupt of the device or a timer
//! ends. [`run`] turns the loop: the host's TUN shell's turn
//! (`host/src/tun/serve.rs`: frames in one at a time, re-listening between
//! them; the adapter's poll; smoltcp's timers and sends), with each part
//! bounded, then sleep until the next deadline.
//!
//! Room for more: a UDP echo (issue 12) is one more socket in the same
//! [`SocketSet`] (one more [`SocketStorage`] in [`Statics`]) and its own
//! machine, polled in [`Server::turn`] next to the TCP adapter.

use core::mem::{MaybeUninit, size_of};

use selecho_core::smoltcp::{AddError, SmolEcho, from_smoltcp, to_smoltcp};
use selecho_core::{Config, Duration, Instant};
use smoltcp::iface::{
    Config as IfaceConfig, Interface, PollIngressSingleResult, PollResult, SocketSet, SocketStorage,
};
use smoltcp::phy::Device;
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr};
use static_cell::{ConstStaticCell, StaticCell};

use crate::args::Settings;

/// A peer that acknowledges nothing for this long while we have data for
/// it (or never completes a handshake) is dropped by smoltcp, as on the host.
const TCP_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(60);

/// Frames taken in per turn before the machine gets its share; more wait
/// in the device for the next turn (which comes at once).
const INGRESS_PER_TURN: usize = 16;

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
/// and `TX` bytes. Put it in a static (it starts zeroed or uninitialised,
/// so the static costs no flash).
pub struct Statics<const N: usize, const Q: usize, const RX: usize, const TX: usize> {
    buffers: ConstStaticCell<SocketBuffers<N, RX, TX>>,
    /// Filled in place at set-up: a `[SocketStorage::EMPTY; N]` built
    /// whole would take the stack (or, as an initialiser, flash).
    sockets: StaticCell<[MaybeUninit<SocketStorage<'static>>; N]>,
    echo: StaticCell<SmolEcho<N, Q>>,
    iface: StaticCell<Interface>,
}

/// Each socket's receive and send buffer.
struct SocketBuffers<const N: usize, const RX: usize, const TX: usize> {
    rx: [[u8; RX]; N],
    tx: [[u8; TX]; N],
}

impl<const N: usize, const Q: usize, const RX: usize, const TX: usize> Statics<N, Q, RX, TX> {
    /// Empty storage, for a static's initialiser.
    pub const fn new() -> Self {
        Statics {
            buffers: ConstStaticCell::new(SocketBuffers {
                rx: [[0; RX]; N],
                tx: [[0; TX]; N],
            }),
            sockets: StaticCell::new(),
            echo: StaticCell::new(),
            iface: StaticCell::new(),
        }
    }
}

impl<const N: usize, const Q: usize, const RX: usize, const TX: usize> Default
    for Statics<N, Q, RX, TX>
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
}

/// The interface, its sockets and the machine.
pub struct Server<const N: usize, const Q: usize> {
    iface: &'static mut Interface,
    sockets: SocketSet<'static>,
    echo: &'static mut SmolEcho<N, Q>,
}

impl<const N: usize, const Q: usize> Server<N, Q> {
    /// Sets up smoltcp on `device` (Ethernet address `mac`, smoltcp's
    /// random `seed`) with the settings' address and route, and one socket
    /// per connection slot listening on the settings' ports.
    pub fn new<D: Device, const RX: usize, const TX: usize>(
        settings: &Settings,
        device: &mut D,
        mac: [u8; 6],
        seed: u64,
        now: Instant,
        statics: &'static Statics<N, Q, RX, TX>,
    ) -> Result<Self, SetupError> {
        let SocketBuffers { rx, tx } = statics.buffers.try_take().ok_or(SetupError::Taken)?;
        let storage = statics
            .sockets
            .try_init_with(|| [const { MaybeUninit::uninit() }; N])
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
        Ok(Server {
            iface,
            sockets,
            echo,
        })
    }

    /// The machine, for its counters.
    pub fn echo(&self) -> &SmolEcho<N, Q> {
        self.echo
    }

    /// One turn: frames in, bytes through the machine, frames out. Returns
    /// whether there is more to do at once (do not sleep).
    pub fn turn<D: Device>(&mut self, device: &mut D, now: Instant) -> bool {
        let Server {
            iface,
            sockets,
            echo,
        } = self;
        let stamp = to_smoltcp(now);
        // Frames one at a time, so a socket whose connection just finished
        // closing listens again before a SYN behind that last ACK is seen.
        echo.relisten(sockets, now);
        let mut more_frames = true;
        for _ in 0..INGRESS_PER_TURN {
            match iface.poll_ingress_single(stamp, device, sockets) {
                PollIngressSingleResult::None => {
                    more_frames = false;
                    break;
                }
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => {
                    echo.relisten(sockets, now);
                }
            }
        }
        let busy = echo.poll(sockets, now);
        // Timers, then send what the adapter queued (and anything else
        // due). Not `iface.poll`, which would also take in every frame
        // that arrived meanwhile, without bound; those wait for the next
        // turn. Each pass sends at least one segment of what the sockets'
        // buffers hold, so the passes are bounded by those buffers.
        iface.poll_maintenance(stamp);
        while iface.poll_egress(stamp, device, sockets) != PollResult::None {}
        // Sockets aborted this turn sent their RST: they may listen again.
        echo.relisten(sockets, now);
        busy || more_frames
    }

    /// When the next turn is due at the latest (`None`: only the network
    /// can make work).
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let smoltcp = self
            .iface
            .poll_at(to_smoltcp(now), &self.sockets)
            .map(from_smoltcp);
        match (smoltcp, self.echo.poll_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Serves for ever: a turn, then sleep until a frame, or the next
/// deadline, or at once if the turn left work.
pub fn run<B: Board, const N: usize, const Q: usize>(
    board: &mut B,
    server: &mut Server<N, Q>,
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
