//! Packets and sinks for the TUN shell's unit tests.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;

use smoltcp::wire::{IpAddress, TcpControl};

use super::coalesce::Sink;

/// smoltcp's side, in the packets below.
pub const SRC: [u8; 4] = [10, 77, 0, 2];
/// The kernel's side.
pub const DST: [u8; 4] = [10, 77, 0, 1];

/// An IPv4 TCP segment from [`SRC`]:7007 to [`DST`]:40000 as smoltcp
/// would build it, with correct checksums.
pub fn segment(seq: u32, psh: bool, control: TcpControl, payload: &[u8]) -> Vec<u8> {
    let control = if psh { TcpControl::Psh } else { control };
    let (src, dst) = (IpAddress::Ipv4(SRC.into()), IpAddress::Ipv4(DST.into()));
    net::tcp((src, 7007), (dst, 40000), control, seq, Some(99), payload)
}

/// Frames written, with their segment counts.
#[derive(Default)]
pub struct Frames(pub Vec<(Vec<u8>, u64)>);

impl Sink for Frames {
    fn write(&mut self, frame: &[u8], segs: u64) {
        self.0.push((frame.to_vec(), segs));
    }
}

/// Packets as a peer builds them, shared with the core's tests.
#[path = "../../../core/tests/net/mod.rs"]
pub mod net;

/// `Frames`' frames with the virtio-net header taken off.
pub fn without_vnet(frames: &Frames) -> Vec<Vec<u8>> {
    frames
        .0
        .iter()
        .map(|(frame, _)| frame[super::vnet::LEN..].to_vec())
        .collect()
}

/// Two ends of a packet pipe (a datagram socket pair): what is written to
/// one is read from the other a packet at a time, as from a TUN/TAP
/// descriptor; reading an empty one fails with `WouldBlock`.
pub fn packet_pipe() -> (OwnedFd, OwnedFd) {
    let (ours, theirs) = UnixDatagram::pair().expect("a socket pair");
    ours.set_nonblocking(true).expect("a non-blocking socket");
    (ours.into(), theirs.into())
}
