//! Packets and sinks for the TUN shell's unit tests.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

use super::coalesce::Sink;

/// smoltcp's side, in the packets below.
pub const SRC: [u8; 4] = [10, 77, 0, 2];
/// The kernel's side.
pub const DST: [u8; 4] = [10, 77, 0, 1];

/// An IPv4 TCP segment from [`SRC`]:7007 to [`DST`]:40000 as smoltcp
/// would build it, with correct checksums.
pub fn segment(seq: u32, psh: bool, control: TcpControl, payload: &[u8]) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: 7007,
        dst_port: 40000,
        control: if psh { TcpControl::Psh } else { control },
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: Some(TcpSeqNumber(99)),
        window_len: 512,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    let ip = Ipv4Repr {
        src_addr: SRC.into(),
        dst_addr: DST.into(),
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let mut buf = vec![0u8; ip.buffer_len() + tcp.buffer_len()];
    let caps = ChecksumCapabilities::default();
    let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
    ip.emit(&mut p, &caps);
    tcp.emit(
        &mut TcpPacket::new_unchecked(p.payload_mut()),
        &IpAddress::Ipv4(SRC.into()),
        &IpAddress::Ipv4(DST.into()),
        &caps,
    );
    buf
}

/// Frames written, with their segment counts.
#[derive(Default)]
pub struct Frames(pub Vec<(Vec<u8>, u64)>);

impl Sink for Frames {
    fn write(&mut self, frame: &[u8], segs: u64) {
        self.0.push((frame.to_vec(), segs));
    }
}
