//! [`PacketCounters`]: what the packet edge dropped or reclaimed.

use core::fmt;

/// What a smoltcp shell's packet edge dropped or reclaimed before (or
/// beside) the machines: packets the [`Guard`](super::Guard) refused,
/// fragments the shell could not reassemble, and half-open connections the
/// [`SmolEcho`](super::SmolEcho) adapter let go. Each part counts its own
/// fields and leaves the others at 0; a shell adds them up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PacketCounters {
    /// Dropped by the guard: a checksum did not verify.
    pub bad_checksum: u64,
    /// Dropped by the guard: from a source no peer can have.
    pub martian: u64,
    /// Dropped by the guard: lengths or headers that do not parse.
    pub malformed: u64,
    /// Fragments dropped unassembled (overlapping, out of room, too long,
    /// or never completed), counted by the shell that reassembles.
    pub fragments_dropped: u64,
    /// Half-open connections (SYN received, handshake not completed) the
    /// adapter dropped to make room for a newer SYN.
    pub syn_evicted: u64,
    /// Half-open connections the adapter dropped because their handshake
    /// did not complete in time.
    pub syn_expired: u64,
}

impl PacketCounters {
    /// Packets dropped for any reason (half-open connections aside).
    pub const fn dropped(&self) -> u64 {
        self.bad_checksum + self.martian + self.malformed + self.fragments_dropped
    }
}

impl core::ops::AddAssign for PacketCounters {
    /// Adds `other`'s counts: the totals of several parts.
    fn add_assign(&mut self, other: PacketCounters) {
        self.bad_checksum += other.bad_checksum;
        self.martian += other.martian;
        self.malformed += other.malformed;
        self.fragments_dropped += other.fragments_dropped;
        self.syn_evicted += other.syn_evicted;
        self.syn_expired += other.syn_expired;
    }
}

impl fmt::Display for PacketCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad_checksum={} martian={} malformed={} fragments_dropped={} syn_evicted={} syn_expired={}",
            self.bad_checksum,
            self.martian,
            self.malformed,
            self.fragments_dropped,
            self.syn_evicted,
            self.syn_expired
        )
    }
}
