//! Datagrams queued in one byte store, each lying contiguous in it.
//!
//! A datagram must be handed to the socket in one piece, so unlike
//! [`ByteQueue`](crate::ByteQueue) this ring never splits one: a datagram
//! goes right after the newest if it fits before the end of the store, and
//! otherwise at the start, the end of the store being left unused (the
//! record's padding) until the oldest datagram before it is gone. With no
//! byte queued, the next datagram starts at the start of the store. The
//! lengths, paddings and senders are records in a `heapless::Deque` beside
//! the bytes.

/// The longest datagram a record can describe.
const MAX_LEN: usize = u16::MAX as usize;

/// One queued datagram.
#[derive(Clone, Copy)]
struct Record<T> {
    meta: T,
    /// Unused bytes before the datagram (the end of the store it skipped).
    pad: u16,
    len: u16,
}

/// Where one datagram can go: `len` bytes at `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Space {
    pub(crate) at: usize,
    pub(crate) len: usize,
}

/// A checked place for a datagram of `len` bytes: queue it with
/// [`DatagramRing::commit`] before anything else changes the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fit {
    at: usize,
    pad: u16,
    len: u16,
}

/// Up to `D` datagrams in a store of `B` bytes.
pub(crate) struct DatagramRing<T, const D: usize, const B: usize> {
    bytes: [u8; B],
    records: heapless::Deque<Record<T>, D>,
    /// The first byte in use: where the oldest record's padding starts.
    head: usize,
    /// Bytes in use, paddings included: `0..=B`.
    used: usize,
    /// Bytes of the queued datagrams themselves.
    payload: usize,
}

/// The free bytes: `tail` of them from `at` on, then `front` from 0 on.
struct Pieces {
    at: usize,
    tail: usize,
    front: usize,
}

impl<T: Copy, const D: usize, const B: usize> DatagramRing<T, D, B> {
    /// The longest datagram the ring can hold.
    pub(crate) const MAX: usize = if B < MAX_LEN { B } else { MAX_LEN };

    pub(crate) const fn new() -> Self {
        DatagramRing {
            bytes: [0; B],
            records: heapless::Deque::new(),
            head: 0,
            used: 0,
            payload: 0,
        }
    }

    /// Datagrams queued.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Bytes of the queued datagrams (padding not counted).
    pub(crate) const fn payload(&self) -> usize {
        self.payload
    }

    /// The space to receive a datagram of unknown length into: after the
    /// newest datagram if a longest one fits there or no more fits at the
    /// start, else at the start; at most [`MAX`](Self::MAX) bytes. Empty
    /// when no record is left.
    pub(crate) fn space(&self) -> Space {
        let p = self.pieces();
        if self.records.is_full() {
            return Space { at: p.at, len: 0 };
        }
        if p.tail >= Self::MAX || p.tail >= p.front {
            return Space {
                at: p.at,
                len: p.tail.min(Self::MAX),
            };
        }
        Space {
            at: 0,
            len: p.front.min(Self::MAX),
        }
    }

    /// Where a datagram of `len` bytes goes, if anywhere: after the newest
    /// if it fits before the end of the store, else at the start.
    pub(crate) fn fit(&self, len: usize) -> Option<Fit> {
        let p = self.pieces();
        let at = if len <= p.tail { p.at } else { 0 };
        self.fit_at(at, len)
    }

    /// Whether a datagram of `len` bytes can be queued at `at`, which must
    /// be where [`space`](Self::space) or [`fit`](Self::fit) put it.
    pub(crate) fn fit_at(&self, at: usize, len: usize) -> Option<Fit> {
        if self.records.is_full() || len > Self::MAX {
            return None;
        }
        let p = self.pieces();
        // With no byte in use the datagram may start anywhere it fits.
        let after_newest = if self.used == 0 {
            at + len <= B
        } else {
            at == p.at && len <= p.tail
        };
        let pad = if after_newest {
            0
        } else if at == 0 && len <= p.front {
            p.tail
        } else {
            return None;
        };
        Some(Fit {
            at,
            pad: u16::try_from(pad).ok()?,
            // Cannot truncate: len <= MAX.
            len: len as u16,
        })
    }

    /// The bytes of `space`, to receive into.
    pub(crate) fn buf_mut(&mut self, space: Space) -> &mut [u8] {
        &mut self.bytes[space.at..space.at + space.len]
    }

    /// The bytes `fit` reserved, to copy a datagram into.
    pub(crate) fn fit_mut(&mut self, fit: Fit) -> &mut [u8] {
        &mut self.bytes[fit.at..fit.at + usize::from(fit.len)]
    }

    /// Queues the datagram in `fit`'s bytes, from `meta`.
    pub(crate) fn commit(&mut self, meta: T, fit: Fit) {
        if self.used == 0 {
            self.head = wrap::<B>(fit.at);
        }
        let record = Record {
            meta,
            pad: fit.pad,
            len: fit.len,
        };
        // Cannot fail: fit_at saw a free record, and nothing has queued one since.
        if self.records.push_back(record).is_err() {
            return;
        }
        self.used += usize::from(fit.pad) + usize::from(fit.len);
        self.payload += usize::from(fit.len);
    }

    /// Copies `payload` in and queues it, from `meta`, if it fits anywhere
    /// ([`fit`](Self::fit)); whether it was queued.
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn push(&mut self, meta: T, payload: &[u8]) -> bool {
        let Some(fit) = self.fit(payload.len()) else {
            return false;
        };
        self.fit_mut(fit).copy_from_slice(payload);
        self.commit(meta, fit);
        true
    }

    /// The oldest datagram and its sender.
    pub(crate) fn front(&self) -> Option<(T, &[u8])> {
        let record = self.records.front()?;
        let start = wrap::<B>(self.head + usize::from(record.pad));
        Some((
            record.meta,
            &self.bytes[start..start + usize::from(record.len)],
        ))
    }

    /// Drops the oldest datagram and returns its sender.
    pub(crate) fn pop(&mut self) -> Option<T> {
        let record = self.records.pop_front()?;
        let taken = usize::from(record.pad) + usize::from(record.len);
        self.used -= taken;
        self.payload -= usize::from(record.len);
        self.head = if self.used == 0 {
            0
        } else {
            wrap::<B>(self.head + taken)
        };
        Some(record.meta)
    }

    fn pieces(&self) -> Pieces {
        if self.used == 0 {
            return Pieces {
                at: 0,
                tail: B,
                front: 0,
            };
        }
        let end = self.head + self.used;
        if end <= B {
            return Pieces {
                at: end,
                tail: B - end,
                front: self.head,
            };
        }
        let at = end - B;
        Pieces {
            at,
            tail: self.head - at,
            front: 0,
        }
    }
}

/// `i` reduced into `0..B`, for `i < 2 * B` (0 stays 0 when `B` is 0).
#[inline]
fn wrap<const B: usize>(i: usize) -> usize {
    if i >= B { i - B } else { i }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Ring = DatagramRing<u8, 4, 10>;

    #[test]
    fn datagrams_skip_the_end_rather_than_wrap() {
        let mut ring = Ring::new();
        assert!(ring.push(1, b"abcd"));
        assert!(ring.push(2, b"efgh"));
        assert!(
            !ring.push(3, b"ijk"),
            "2 bytes at the end, none at the start"
        );
        assert_eq!(ring.pop(), Some(1));
        assert!(ring.push(3, b"ijk"), "at the start now");
        assert_eq!(ring.front(), Some((2, &b"efgh"[..])));
        assert_eq!(ring.pop(), Some(2));
        assert_eq!(ring.front(), Some((3, &b"ijk"[..])));
        assert_eq!(ring.payload(), 3);
        assert_eq!(ring.pop(), Some(3));
        assert_eq!(ring.pop(), None);
        assert_eq!(ring.space(), Space { at: 0, len: 10 });
    }

    #[test]
    fn space_is_the_larger_free_piece() {
        let mut ring = Ring::new();
        assert!(ring.push(1, b"abcdef"));
        assert!(ring.push(2, b"g"));
        assert_eq!(ring.space(), Space { at: 7, len: 3 });
        ring.pop();
        // 3 bytes after the newest, 6 at the start.
        assert_eq!(ring.space(), Space { at: 0, len: 6 });
        let space = ring.space();
        ring.buf_mut(space)[..2].copy_from_slice(b"hi");
        let fit = ring.fit_at(space.at, 2).unwrap();
        ring.commit(3, fit);
        ring.pop();
        assert_eq!(ring.front(), Some((3, &b"hi"[..])));
    }

    #[test]
    fn empty_datagrams_and_record_limit() {
        let mut ring = Ring::new();
        assert!(ring.push(1, b"0123456789"));
        assert!(ring.push(2, b""), "an empty datagram fits a full store");
        assert!(ring.push(3, b""));
        assert!(ring.push(4, b""));
        assert!(!ring.push(5, b""), "no record left");
        assert_eq!(ring.space().len, 0);
        assert_eq!(ring.len(), 4);
        assert_eq!(ring.pop(), Some(1));
        assert_eq!(ring.front(), Some((2, &b""[..])));
    }

    #[test]
    fn stale_places_are_refused() {
        let mut ring = Ring::new();
        assert!(ring.push(1, b"abcd"));
        assert_eq!(ring.fit_at(2, 1), None, "inside a datagram");
        assert_eq!(ring.fit_at(4, 7), None, "past the end");
        assert_eq!(ring.fit_at(0, 1), None, "before the oldest byte");
        assert!(ring.fit_at(4, 6).is_some());
        let zero = DatagramRing::<u8, 2, 0>::new();
        assert!(zero.fit(1).is_none());
        assert!(zero.fit(0).is_some());
    }
}
