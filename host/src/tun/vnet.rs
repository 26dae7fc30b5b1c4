//! `struct virtio_net_hdr`: what a TUN/TAP descriptor opened with
//! `IFF_VNET_HDR` puts before every packet, read and written as a typed
//! value rather than at raw offsets. The legacy layout, in the host's byte
//! order: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset.

pub use crate::sys::tuntap::VNET_HDR_LEN as LEN;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the transport checksum is partial (only
/// the pseudo-header sum is in place); sum from `csum_start` and store the
/// complement at `csum_start + csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;

/// `gso_type`: one packet.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: a TCP/IPv4 segment larger than the MTU, split at `gso_size`.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: the same over IPv6.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type` flag: the segment carries ECN's CWR.
pub const GSO_ECN: u8 = 0x80;

/// The header's fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// The header at the front of `buf`, and the packet after it; `None` if
    /// `buf` is shorter than a header.
    pub fn split(buf: &[u8]) -> Option<(VnetHdr, &[u8])> {
        let (hdr, packet) = buf.split_at_checked(LEN)?;
        let u16_at = |at: usize| u16::from_ne_bytes([hdr[at], hdr[at + 1]]);
        let parsed = VnetHdr {
            flags: hdr[0],
            gso_type: hdr[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        };
        Some((parsed, packet))
    }

    /// Writes the header into `buf`, which is [`LEN`] bytes.
    pub fn write(&self, buf: &mut [u8]) {
        buf[0] = self.flags;
        buf[1] = self.gso_type;
        let words = [
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
        ];
        for (i, word) in words.into_iter().enumerate() {
            buf[2 + 2 * i..4 + 2 * i].copy_from_slice(&word.to_ne_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            hdr_len: 74,
            gso_size: 1428,
            csum_start: 54,
            csum_offset: 16,
        };
        let mut buf = [0u8; LEN + 3];
        hdr.write(&mut buf[..LEN]);
        let (back, rest) = VnetHdr::split(&buf).unwrap();
        assert_eq!(back, hdr);
        assert_eq!(rest.len(), 3);
        assert!(VnetHdr::split(&buf[..LEN - 1]).is_none());
    }
}
