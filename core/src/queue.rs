//! A fixed-capacity byte ring with zero-copy access at both ends.
//!
//! The shell reads from the network straight into [`ByteQueue::free_mut`] and
//! then [`ByteQueue::commit`]s what it read; it sends straight from
//! [`ByteQueue::data`] and then [`ByteQueue::consume`]s what was taken. No
//! byte is copied through the machine. The capacity `N` is a hard bound.
//!
//! `heapless::Deque<u8, N>` holds bytes just as well but cannot lend out its
//! free space for a `recv` to fill, which is the one thing an echo queue is
//! for; so this ring is written for the job. The datagram echo
//! ([`DatagramEcho`](crate::DatagramEcho)) keeps a ring of its own beside a
//! `heapless::Deque` of records: a datagram must lie in one piece, so that
//! ring skips the end of its store rather than wrap a datagram around it,
//! and lends whichever free piece is larger.

use core::fmt;

/// `n` was more bytes than [`ByteQueue::free_mut`] or [`ByteQueue::data`] offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OverflowError;

impl fmt::Display for OverflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("more bytes than the queue offered")
    }
}

impl core::error::Error for OverflowError {}

/// A ring of at most `N` bytes.
#[derive(Clone)]
pub struct ByteQueue<const N: usize> {
    buf: [u8; N],
    /// Index of the oldest byte.
    head: usize,
    /// Bytes held, `0..=N`.
    len: usize,
}

impl<const N: usize> ByteQueue<N> {
    /// An empty queue.
    pub const fn new() -> Self {
        ByteQueue {
            buf: [0; N],
            head: 0,
            len: 0,
        }
    }

    /// The hard bound on bytes held.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Bytes held.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is held.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether no more byte fits.
    pub const fn is_full(&self) -> bool {
        self.len == N
    }

    /// Room left, contiguous or not.
    pub const fn free(&self) -> usize {
        N - self.len
    }

    /// The oldest queued bytes that lie contiguous in memory: the whole queue
    /// unless it wraps, in which case the rest follows after [`consume`](Self::consume).
    pub fn data(&self) -> &[u8] {
        let end = self.head + self.len;
        if end <= N {
            return &self.buf[self.head..end];
        }
        &self.buf[self.head..]
    }

    /// Drops the `n` oldest bytes (those just sent).
    pub fn consume(&mut self, n: usize) -> Result<(), OverflowError> {
        if n > self.data().len() {
            return Err(OverflowError);
        }
        self.len -= n;
        self.head = if self.len == 0 {
            // Empty: restart at 0 so the next read gets the whole buffer in one piece.
            0
        } else {
            wrap::<N>(self.head + n)
        };
        Ok(())
    }

    /// The contiguous free space after the newest byte, for a read to fill.
    /// Empty exactly when the queue is full.
    pub fn free_mut(&mut self) -> &mut [u8] {
        let tail = self.head + self.len;
        if tail < N {
            return &mut self.buf[tail..];
        }
        let tail = tail - N;
        &mut self.buf[tail..self.head]
    }

    /// Appends the first `n` bytes of [`free_mut`](Self::free_mut) (those just read).
    pub fn commit(&mut self, n: usize) -> Result<(), OverflowError> {
        let tail = self.head + self.len;
        let room = if tail < N {
            N - tail
        } else {
            self.head - (tail - N)
        };
        if n > room {
            return Err(OverflowError);
        }
        self.len += n;
        Ok(())
    }

    /// Copies as much of `bytes` as fits and returns how much that was.
    pub fn push_slice(&mut self, bytes: &[u8]) -> usize {
        let mut done = 0;
        while done < bytes.len() {
            let room = self.free_mut();
            let n = room.len().min(bytes.len() - done);
            if n == 0 {
                break;
            }
            room[..n].copy_from_slice(&bytes[done..done + n]);
            self.len += n;
            done += n;
        }
        done
    }

    /// Moves as many of the oldest bytes as fit into `out` and returns how many.
    pub fn pop_slice(&mut self, out: &mut [u8]) -> usize {
        let mut done = 0;
        while done < out.len() {
            let data = self.data();
            let n = data.len().min(out.len() - done);
            if n == 0 {
                break;
            }
            out[done..done + n].copy_from_slice(&data[..n]);
            // Cannot fail: n is at most data().len().
            let _ = self.consume(n);
            done += n;
        }
        done
    }

    /// Forgets every byte held.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

impl<const N: usize> Default for ByteQueue<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Debug for ByteQueue<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteQueue")
            .field("capacity", &N)
            .field("len", &self.len)
            .finish()
    }
}

/// `i` reduced into `0..N`, for `i < 2 * N`.
#[inline]
fn wrap<const N: usize>(i: usize) -> usize {
    if i >= N { i - N } else { i }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_into_free_space_and_send_from_data() {
        let mut q = ByteQueue::<8>::new();
        assert_eq!(q.free_mut().len(), 8);
        q.free_mut()[..5].copy_from_slice(b"hello");
        q.commit(5).unwrap();
        assert_eq!(q.data(), b"hello");
        q.consume(3).unwrap();
        assert_eq!(q.data(), b"lo");
        // Tail space first, then the wrapped part.
        assert_eq!(q.free_mut().len(), 3);
        assert_eq!(q.push_slice(b"abcdefgh"), 6);
        assert!(q.is_full());
        assert!(q.free_mut().is_empty());
        let mut out = [0; 8];
        assert_eq!(q.pop_slice(&mut out), 8);
        assert_eq!(&out, b"loabcdef");
        assert!(q.is_empty());
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let mut q = ByteQueue::<4>::new();
        assert_eq!(q.commit(5), Err(OverflowError));
        assert_eq!(q.consume(1), Err(OverflowError));
        q.commit(4).unwrap();
        assert_eq!(q.commit(1), Err(OverflowError));
        assert_eq!(q.len(), 4);
    }

    #[test]
    fn empty_queue_restarts_at_zero() {
        let mut q = ByteQueue::<4>::new();
        q.push_slice(b"abc");
        q.consume(3).unwrap();
        assert_eq!(q.free_mut().len(), 4);
    }

    #[test]
    fn zero_capacity_holds_nothing() {
        let mut q = ByteQueue::<0>::new();
        assert!(q.free_mut().is_empty());
        assert!(q.data().is_empty());
        assert_eq!(q.push_slice(b"x"), 0);
    }
}
