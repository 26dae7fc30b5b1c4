//! Room for a SYN: ports that share every slot, and half-open connections
//! that cannot hold a slot for long (see the [module docs](super), "Ports"
//! and "Half-open connections").

use ::smoltcp::iface::SocketSet;
use ::smoltcp::socket::tcp::{self, State};

use super::{AddError, PacketCounters, Phase, SmolEcho, Syn, listen};
use crate::{Duration, Instant};

/// How long a half-open connection may hold a slot, unless
/// [`SmolEcho::set_half_open_timeout`] says otherwise: a few round trips
/// of the slowest path, and two of smoltcp's SYN-ACK retransmissions.
pub const DEFAULT_HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(3);

/// What [`SmolEcho::make_room`] did for a SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Room {
    /// Nothing was needed: a socket listens on the port, or the SYN belongs
    /// to a connection a socket already carries (a retransmission).
    Ready,
    /// An idle socket now listens on the SYN's port.
    Moved,
    /// The oldest half-open connection was dropped and its socket listens
    /// on the SYN's port.
    Evicted,
    /// Every slot carries a connection: smoltcp refuses the SYN with RST.
    Full,
    /// Not a port of ours, or shutting down: smoltcp refuses it.
    NotServed,
}

impl<const N: usize, const Q: usize> SmolEcho<N, Q> {
    /// Drops a half-open connection that has not completed its handshake
    /// after `timeout` (default [`DEFAULT_HALF_OPEN_TIMEOUT`]).
    pub fn set_half_open_timeout(&mut self, timeout: Duration) {
        self.half_open_timeout = timeout;
    }

    /// Half-open connections dropped so far (the `syn_evicted` and
    /// `syn_expired` fields).
    pub const fn packet_counters(&self) -> &PacketCounters {
        &self.packets
    }

    /// Call with each TCP SYN the [`Guard`](super::Guard) reports, before
    /// smoltcp processes it: makes sure a socket listens on its port if any
    /// slot can take it, moving an idle listener of another port over or,
    /// with every slot taken, dropping the oldest half-open connection.
    /// Costs a look at every socket.
    pub fn make_room(&mut self, sockets: &mut SocketSet<'_>, syn: &Syn, now: Instant) -> Room {
        let port = syn.local.port;
        if self.echo.shutting_down() || !self.ports.contains(&port) {
            return Room::NotServed;
        }
        let mut spare = None;
        let mut oldest: Option<(usize, Instant)> = None;
        for i in 0..self.slots.len() {
            let socket = sockets.get_mut::<tcp::Socket>(self.slots[i].handle);
            let ours = socket.remote_endpoint() == Some(syn.remote)
                && socket.local_endpoint() == Some(syn.local);
            if ours {
                return Room::Ready;
            }
            if !self.slots[i].phase.is_idle() {
                continue;
            }
            match socket.state() {
                State::Listen if socket.listen_endpoint().port == port => return Room::Ready,
                State::Listen | State::Closed | State::TimeWait => {
                    spare.get_or_insert(i);
                }
                State::SynReceived => {
                    // Ties (SYNs of one turn) go to the lower slot.
                    let since = self.stamp(i, now);
                    if oldest.is_none_or(|(_, o)| since < o) {
                        oldest = Some((i, since));
                    }
                }
                _ => {}
            }
        }
        let (i, room) = match (spare, oldest) {
            (Some(i), _) => (i, Room::Moved),
            (None, Some((i, _))) => {
                self.packets.syn_evicted += 1;
                (i, Room::Evicted)
            }
            (None, None) => return Room::Full,
        };
        let socket = sockets.get_mut::<tcp::Socket>(self.slots[i].handle);
        // Closed first: listening again then forgets the connection, and
        // no RST goes to a source that may be forged.
        socket.abort();
        listen(socket, port);
        let slot = &mut self.slots[i];
        slot.port = port;
        slot.phase = Phase::Idle;
        debug!("socket moved to port {} ({})", port, room);
        room
    }

    /// An idle socket in `SynReceived`: notes when it was first seen so,
    /// and drops its connection once that is the half-open timeout ago.
    pub(super) fn tend_half_open(
        &mut self,
        i: usize,
        socket: &mut tcp::Socket<'_>,
        now: Instant,
    ) -> bool {
        let since = self.stamp(i, now);
        if now - since < self.half_open_timeout {
            return false;
        }
        debug!(
            "half-open connection on port {} expired",
            self.slots[i].port
        );
        socket.abort();
        listen(socket, self.slots[i].port);
        self.slots[i].phase = Phase::Idle;
        self.packets.syn_expired += 1;
        true
    }

    /// Adds `port` to the ports served, once.
    pub(super) fn add_port(&mut self, port: u16) -> Result<(), AddError> {
        if port == 0 {
            return Err(AddError::PortZero);
        }
        if self.ports.contains(&port) {
            return Ok(());
        }
        self.ports.push(port).map_err(|_| AddError::TooManyPorts)
    }

    /// Since when slot `i` (idle, its socket in `SynReceived`) has been
    /// half-open: noted now if it was not yet.
    fn stamp(&mut self, i: usize, now: Instant) -> Instant {
        let slot = &mut self.slots[i];
        if let Phase::HalfOpen(since) = slot.phase {
            return since;
        }
        slot.phase = Phase::HalfOpen(now);
        now
    }
}

impl core::fmt::Display for Room {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Room::Ready => "a socket was ready",
            Room::Moved => "an idle socket moved over",
            Room::Evicted => "the oldest half-open connection was dropped",
            Room::Full => "every slot is taken",
            Room::NotServed => "not served",
        })
    }
}
