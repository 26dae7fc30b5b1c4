//! IP reassembly for the device, IPv4 and IPv6 alike, in buffers allocated
//! at start-up: smoltcp 0.14 reassembles only IPv4 (and neither fragments
//! IPv6 nor lets a shell check the transport checksum of what it
//! reassembled), so the device hands it whole packets instead, as a NIC
//! with receive offloads would. Headers are read and written through
//! `smoltcp::wire` views.
//!
//! A datagram is kept in one of [`SLOTS`] buffers until every byte of it
//! has come (tracked in 8-byte blocks, the unit of fragment offsets), for
//! at most [`TIMEOUT`]. Dropped, and counted: fragments that overlap
//! another (RFC 5722), a datagram that would exceed 65535 bytes, a
//! non-final fragment whose length is not a multiple of 8, a second final
//! fragment, an IPv6 fragment behind other extension headers, and a
//! datagram that times out or loses its buffer to a newer one (the oldest
//! goes when all are taken).

use selecho_core::{Duration, Instant};
use smoltcp::wire::{
    IPV6_HEADER_LEN, IpProtocol, IpVersion, Ipv4Packet, Ipv6ExtHeader, Ipv6FragmentHeader,
    Ipv6Packet,
};

/// Datagrams reassembled at once.
pub const SLOTS: usize = 4;

/// How long a datagram may take to arrive whole.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The largest IP header kept (IPv4 with options; IPv6's fixed header).
const HEADER_ROOM: usize = 60;

/// The most payload bytes a reassembled datagram may hold.
const MAX_PAYLOAD: usize = 65_535;

/// Blocks of 8 bytes in [`MAX_PAYLOAD`], rounded up.
const BLOCKS: usize = MAX_PAYLOAD.div_ceil(8);

/// Which datagram a fragment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    V4 {
        src: [u8; 4],
        dst: [u8; 4],
        protocol: u8,
        ident: u16,
    },
    V6 {
        src: [u8; 16],
        dst: [u8; 16],
        ident: u32,
    },
}

/// One fragment, as read from its headers.
struct Fragment<'a> {
    key: Key,
    /// Offset of `data` in the datagram's payload, in bytes.
    offset: usize,
    more: bool,
    data: &'a [u8],
    /// The link-layer header it came with.
    link: &'a [u8],
    /// The IP header to give the whole datagram (from the first fragment).
    header: &'a [u8],
    /// IPv6: the protocol after the fragment header.
    next: Option<IpProtocol>,
}

/// One datagram in the making.
struct Slot {
    /// Link-layer header, then room for the IP header, then the payload.
    buf: Vec<u8>,
    /// Which 8-byte blocks of the payload have come.
    have: Vec<u64>,
    current: Option<InProgress>,
}

#[derive(Clone, Copy)]
struct InProgress {
    key: Key,
    started: Instant,
    /// Fragments taken.
    fragments: u64,
    /// Blocks taken.
    blocks: usize,
    /// One past the last block taken.
    reach: usize,
    /// The payload's length, once the final fragment came.
    total: Option<usize>,
    /// The IP header's length, once the first fragment came.
    header: Option<usize>,
}

/// The datagrams in the making, and what was dropped.
pub struct Reassembler {
    /// Bytes of link-layer header before the IP header (14 on TAP).
    l2: usize,
    slots: Vec<Slot>,
    /// Fragments dropped so far.
    pub dropped: u64,
}

impl Reassembler {
    /// Buffers for [`SLOTS`] datagrams, for frames with `l2` bytes of
    /// link-layer header.
    pub fn new(l2: usize) -> Self {
        Reassembler {
            l2,
            slots: (0..SLOTS)
                .map(|_| Slot {
                    buf: vec![0; l2 + HEADER_ROOM + MAX_PAYLOAD],
                    have: vec![0; BLOCKS.div_ceil(64)],
                    current: None,
                })
                .collect(),
            dropped: 0,
        }
    }

    /// Takes the fragment in `frame` (link-layer header first; its IP
    /// header checked by the guard). When it completes a datagram, returns
    /// the whole frame; it stays valid until the next call.
    pub fn add(&mut self, frame: &[u8], now: Instant) -> Option<&[u8]> {
        self.expire(now);
        let Some(fragment) = parse(frame, self.l2) else {
            self.dropped += 1;
            return None;
        };
        let i = self.slot_for(fragment.key, now);
        match self.take(i, &fragment) {
            Ok(true) => self.finish(i),
            Ok(false) => None,
            Err(()) => {
                self.drop_slot(i);
                self.dropped += 1;
                None
            }
        }
    }

    /// Drops datagrams older than [`TIMEOUT`].
    fn expire(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            if self.slots[i]
                .current
                .is_some_and(|c| now - c.started >= TIMEOUT)
            {
                self.drop_slot(i);
            }
        }
    }

    /// The slot of `key`'s datagram, or a fresh one (the oldest datagram's,
    /// dropped, if every slot is taken).
    fn slot_for(&mut self, key: Key, now: Instant) -> usize {
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| s.current.is_some_and(|c| c.key == key))
        {
            return i;
        }
        let i = match self.slots.iter().position(|s| s.current.is_none()) {
            Some(i) => i,
            None => {
                let oldest = (0..self.slots.len())
                    .min_by_key(|&i| self.slots[i].current.map(|c| c.started))
                    .unwrap_or(0);
                self.drop_slot(oldest);
                oldest
            }
        };
        let slot = &mut self.slots[i];
        slot.have.fill(0);
        slot.current = Some(InProgress {
            key,
            started: now,
            fragments: 0,
            blocks: 0,
            reach: 0,
            total: None,
            header: None,
        });
        i
    }

    /// Copies `fragment` into slot `i`; whether the datagram is whole, or
    /// `Err` if it must be dropped.
    fn take(&mut self, i: usize, fragment: &Fragment<'_>) -> Result<bool, ()> {
        let l2 = self.l2;
        let slot = &mut self.slots[i];
        let Some(c) = slot.current.as_mut() else {
            return Err(());
        };
        let end = fragment.offset + fragment.data.len();
        let header_len = fragment.header.len();
        let misaligned = fragment.more && !fragment.data.len().is_multiple_of(8);
        let past_end = c.total.is_some_and(|total| end > total);
        let second_final = !fragment.more && c.total.is_some();
        if end > MAX_PAYLOAD || misaligned || past_end || second_final || header_len > HEADER_ROOM {
            return Err(());
        }
        let (first, last) = (fragment.offset / 8, end.div_ceil(8));
        let overlaps = (first..last).any(|b| slot.have[b / 64] & (1 << (b % 64)) != 0);
        let beyond_final = !fragment.more && c.reach > last;
        if overlaps || beyond_final {
            return Err(());
        }
        for b in first..last {
            slot.have[b / 64] |= 1 << (b % 64);
        }
        let data = l2 + HEADER_ROOM;
        slot.buf[data + fragment.offset..data + end].copy_from_slice(fragment.data);
        if fragment.offset == 0 {
            let at = data - header_len;
            slot.buf[at..data].copy_from_slice(fragment.header);
            slot.buf[at - l2..at].copy_from_slice(fragment.link);
            if let Some(next) = fragment.next {
                Ipv6Packet::new_unchecked(&mut slot.buf[at..data]).set_next_header(next);
            }
            c.header = Some(header_len);
        }
        if !fragment.more {
            c.total = Some(end);
        }
        c.fragments += 1;
        c.blocks += last - first;
        c.reach = c.reach.max(last);
        let whole = c.header.is_some() && c.total.is_some_and(|t| c.blocks == t.div_ceil(8));
        Ok(whole)
    }

    /// Frees slot `i`, whose datagram is whole, and returns its frame with
    /// the IP header made that of an unfragmented packet; drops it if it
    /// is longer than an IP packet can say.
    fn finish(&mut self, i: usize) -> Option<&[u8]> {
        let l2 = self.l2;
        let slot = &mut self.slots[i];
        let c = slot.current.take()?;
        let (header_len, total) = (c.header?, c.total?);
        let data = l2 + HEADER_ROOM;
        let ip = &mut slot.buf[data - header_len..data + total];
        let length = match c.key {
            Key::V4 { .. } => u16::try_from(header_len + total),
            Key::V6 { .. } => u16::try_from(total),
        };
        let Ok(length) = length else {
            self.dropped += c.fragments;
            return None;
        };
        match c.key {
            Key::V4 { .. } => {
                let mut p = Ipv4Packet::new_unchecked(ip);
                p.set_total_len(length);
                p.set_more_frags(false);
                p.set_frag_offset(0);
                p.fill_checksum();
            }
            Key::V6 { .. } => Ipv6Packet::new_unchecked(ip).set_payload_len(length),
        }
        Some(&slot.buf[data - header_len - l2..data + total])
    }

    /// Drops slot `i`'s datagram, counting its fragments.
    fn drop_slot(&mut self, i: usize) {
        if let Some(c) = self.slots[i].current.take() {
            self.dropped += c.fragments;
        }
    }
}

/// The fragment in `frame`; `None` if it is not one this reassembler takes.
fn parse(frame: &[u8], l2: usize) -> Option<Fragment<'_>> {
    let (link, ip) = frame.split_at_checked(l2)?;
    if ip.is_empty() {
        return None;
    }
    match IpVersion::of_packet(ip).ok()? {
        IpVersion::Ipv4 => {
            let p = Ipv4Packet::new_checked(ip).ok()?;
            let header_len = usize::from(p.header_len());
            Some(Fragment {
                key: Key::V4 {
                    src: p.src_addr().octets(),
                    dst: p.dst_addr().octets(),
                    protocol: p.next_header().into(),
                    ident: p.ident(),
                },
                offset: usize::from(p.frag_offset()),
                more: p.more_frags(),
                data: p.payload(),
                link,
                header: &ip[..header_len],
                next: None,
            })
        }
        IpVersion::Ipv6 => {
            let p = Ipv6Packet::new_checked(ip).ok()?;
            if p.next_header() != IpProtocol::Ipv6Frag {
                return None;
            }
            let ext = Ipv6ExtHeader::new_checked(p.payload()).ok()?;
            let frag = Ipv6FragmentHeader::new_checked(ext.payload()).ok()?;
            Some(Fragment {
                key: Key::V6 {
                    src: p.src_addr().octets(),
                    dst: p.dst_addr().octets(),
                    ident: frag.ident(),
                },
                offset: usize::from(frag.frag_offset()) * 8,
                more: frag.more_frags(),
                data: p.payload().get(2 + ext.payload().len()..)?,
                link,
                header: &ip[..IPV6_HEADER_LEN],
                next: Some(ext.next_header()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tun::testing::net;
    use smoltcp::wire::Ipv4Packet;

    /// The IPv4 fragments of a UDP datagram of `len` bytes, `chunk` bytes
    /// of IP payload each.
    fn fragments(len: usize, chunk: usize, ident: u16) -> Vec<Vec<u8>> {
        let data = vec![9u8; len];
        let packet = net::udp((net::v4(10, 0, 0, 1), 1), (net::v4(10, 0, 0, 2), 2), &data);
        let payload = &packet[20..];
        payload
            .chunks(chunk)
            .enumerate()
            .map(|(i, piece)| {
                let mut f = packet[..20].to_vec();
                f.extend_from_slice(piece);
                let mut ip = Ipv4Packet::new_unchecked(&mut f[..]);
                ip.set_total_len((20 + piece.len()) as u16);
                ip.set_ident(ident);
                ip.set_frag_offset((i * chunk) as u16);
                ip.set_more_frags((i + 1) * chunk < payload.len());
                ip.fill_checksum();
                f
            })
            .collect()
    }

    #[test]
    fn overlapping_fragments_drop_the_datagram() {
        let mut r = Reassembler::new(0);
        let frags = fragments(3000, 1480, 1);
        assert!(r.add(&frags[0], Instant::ZERO).is_none());
        // The first again: every block of it overlaps.
        assert!(r.add(&frags[0], Instant::ZERO).is_none());
        assert_eq!(r.dropped, 2);
        // The rest alone never completes it.
        for f in &frags[1..] {
            assert!(r.add(f, Instant::ZERO).is_none());
        }
    }

    #[test]
    fn misaligned_and_oversized_fragments_are_dropped() {
        let mut r = Reassembler::new(0);
        let frags = fragments(3000, 1001, 2); // 1001 is no multiple of 8
        assert!(r.add(&frags[0], Instant::ZERO).is_none());
        assert_eq!(r.dropped, 1);
        // A last fragment reaching past 65535 bytes (ping of death).
        let mut last = fragments(100, 1480, 3).remove(0);
        Ipv4Packet::new_unchecked(&mut last[..]).set_frag_offset(65_528);
        Ipv4Packet::new_unchecked(&mut last[..]).fill_checksum();
        assert!(r.add(&last, Instant::ZERO).is_none());
        assert_eq!(r.dropped, 2);
    }

    #[test]
    fn unfinished_datagrams_time_out_or_make_room() {
        let mut r = Reassembler::new(0);
        for ident in 0..SLOTS as u16 + 1 {
            assert!(
                r.add(&fragments(3000, 1480, ident)[0], Instant::ZERO)
                    .is_none()
            );
        }
        assert_eq!(r.dropped, 1, "the oldest made room");
        let later = Instant::ZERO + TIMEOUT;
        let frags = fragments(3000, 1480, 100);
        assert!(r.add(&frags[0], later).is_none());
        assert_eq!(r.dropped, 1 + SLOTS as u64, "the rest timed out");
        assert!(r.add(&frags[1], later).is_none());
        assert!(r.add(&frags[2], later).is_some());
    }
}
