//! The descriptor bitmaps `select(2)` takes, sized once at start-up.
//!
//! glibc's `fd_set` is a fixed type of `FD_SETSIZE` (1024) bits, but the
//! Linux system call takes bitmaps of any length: it reads and writes the
//! first `nfds` bits of each set it is given. So a set here is as long as
//! the process needs (its descriptor limit, see the select shell's plan),
//! allocated before the first round: one loop can watch descriptors beyond
//! 1023, and several loops in one process (whose descriptor numbers are
//! shared) can each watch their own.

use std::os::fd::RawFd;

/// glibc's `FD_SETSIZE`: the most a fixed `fd_set` holds, and the smallest
/// capacity of an [`FdSet`].
pub const FD_SETSIZE: usize = libc::FD_SETSIZE;

const WORD_BITS: usize = libc::c_ulong::BITS as usize;

/// A set of descriptors below its capacity, laid out as the kernel reads a
/// select set: a bitmap of `unsigned long`s, descriptor `fd` at bit
/// `fd % BITS` of word `fd / BITS`. Plain bit operations (no `FD_SET`
/// call) and a word-at-a-time scan of what is set.
#[derive(Clone, Debug)]
pub struct FdSet {
    words: Box<[libc::c_ulong]>,
    /// One more than the highest descriptor inserted since the last
    /// [`clear`](Self::clear): no bit at or above it is set. `select`
    /// only clears bits, so it stays an upper bound after one.
    end: usize,
}

impl FdSet {
    /// An empty set that can hold descriptors `0..capacity` (rounded up to
    /// a whole word, and at least [`FD_SETSIZE`]).
    pub fn with_capacity(capacity: usize) -> Self {
        let words = capacity.max(FD_SETSIZE).div_ceil(WORD_BITS);
        FdSet {
            words: vec![0; words].into_boxed_slice(),
            end: 0,
        }
    }

    /// Descriptors `0..capacity` fit.
    pub fn capacity(&self) -> usize {
        self.words.len() * WORD_BITS
    }

    /// One more than the highest descriptor the set may hold; 0 when
    /// nothing was inserted since the last [`clear`](Self::clear).
    pub fn end(&self) -> usize {
        self.end
    }

    /// Empties the set: only the words below [`end`](Self::end), so a
    /// round costs what it watched, not the capacity.
    pub fn clear(&mut self) {
        self.words[..self.end.div_ceil(WORD_BITS)].fill(0);
        self.end = 0;
    }

    /// Adds `fd`; false (and nothing changes) if it is outside the capacity.
    pub fn insert(&mut self, fd: RawFd) -> bool {
        let Some((word, bit)) = self.position(fd) else {
            return false;
        };
        self.words[word] |= bit;
        // Non-negative: `position` took it.
        self.end = self.end.max(fd as usize + 1);
        true
    }

    /// Whether `fd` is in the set.
    pub fn contains(&self, fd: RawFd) -> bool {
        self.position(fd)
            .is_some_and(|(word, bit)| self.words[word] & bit != 0)
    }

    /// Adds every descriptor of `other` (of the same capacity).
    pub fn union_with(&mut self, other: &FdSet) {
        let words = other.end.div_ceil(WORD_BITS);
        for (mine, theirs) in self.words.iter_mut().zip(&other.words[..words]) {
            *mine |= theirs;
        }
        self.end = self.end.max(other.end.min(self.capacity()));
    }

    /// Every descriptor below `end` in `self` or in `other`, in ascending
    /// order: O(words + descriptors found), not O(descriptors watched).
    pub fn iter_union<'a>(
        &'a self,
        other: &'a FdSet,
        end: usize,
    ) -> impl Iterator<Item = RawFd> + 'a {
        let words = end
            .div_ceil(WORD_BITS)
            .min(self.words.len())
            .min(other.words.len());
        (0..words).flat_map(move |i| {
            let mut bits = self.words[i] | other.words[i];
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                // Below the capacity, which came from a descriptor limit.
                Some((i * WORD_BITS + bit) as RawFd)
            })
        })
    }

    /// The bitmap, for `select(2)`, which may only clear bits in it (so
    /// [`end`](Self::end) stays true).
    pub(super) fn as_mut_ptr(&mut self) -> *mut libc::c_ulong {
        self.words.as_mut_ptr()
    }

    /// The word and the bit of `fd`, if it is below the capacity.
    fn position(&self, fd: RawFd) -> Option<(usize, libc::c_ulong)> {
        let fd = usize::try_from(fd).ok()?;
        let word = fd / WORD_BITS;
        (word < self.words.len()).then(|| (word, 1 << (fd % WORD_BITS)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_set_bits() {
        let mut a = FdSet::with_capacity(10);
        assert_eq!(a.capacity(), FD_SETSIZE, "at least a glibc fd_set");
        assert!(a.insert(0));
        assert!(a.insert(63));
        assert!(a.insert(64));
        assert!(a.insert(1023));
        assert!(!a.insert(1024));
        assert!(!a.insert(-1));
        assert!(a.contains(63) && a.contains(1023) && !a.contains(1) && !a.contains(5000));
        assert_eq!(a.end(), 1024, "one past the highest");
        let mut b = FdSet::with_capacity(10);
        b.insert(5);
        b.insert(64);
        let all: Vec<_> = a.iter_union(&b, 1024).collect();
        assert_eq!(all, [0, 5, 63, 64, 1023]);
        let low: Vec<_> = a.iter_union(&b, 64).collect();
        assert_eq!(low, [0, 5, 63]);
        a.union_with(&b);
        let empty = FdSet::with_capacity(10);
        assert_eq!(a.iter_union(&empty, 70).collect::<Vec<_>>(), [0, 5, 63, 64]);
        a.clear();
        assert_eq!(a.iter_union(&empty, 1024).count(), 0);
        assert_eq!(a.end(), 0);
        let mut c = FdSet::with_capacity(10);
        c.union_with(&b);
        assert_eq!(c.end(), 65, "a union reaches as far as the other set");
        c.clear();
        assert!(!c.contains(5) && !c.contains(64));
    }

    #[test]
    fn beyond_fd_setsize() {
        let mut big = FdSet::with_capacity(5000);
        assert_eq!(big.capacity(), 5056, "rounded up to a word");
        assert!(big.insert(4999) && big.insert(1024));
        assert!(!big.insert(5056));
        let other = FdSet::with_capacity(5000);
        assert_eq!(
            big.iter_union(&other, 5000).collect::<Vec<_>>(),
            [1024, 4999]
        );
    }
}
