//! The `fd_set` bitmap that `select(2)` takes, as a plain Rust type.

use std::mem;
use std::os::fd::RawFd;

/// How many descriptors `select(2)` can watch: descriptors `0..FD_SETSIZE`.
/// A descriptor at or above it must never be put in an [`FdSet`].
pub const FD_SETSIZE: usize = libc::FD_SETSIZE;

const WORD_BITS: usize = libc::c_ulong::BITS as usize;
const WORDS: usize = FD_SETSIZE / WORD_BITS;

/// A set of descriptors below [`FD_SETSIZE`], laid out as the kernel's
/// `fd_set`: a bitmap of `unsigned long`s, descriptor `fd` at bit
/// `fd % BITS` of word `fd / BITS`. Plain bit operations (no `FD_SET`
/// call) and a word-at-a-time scan of what is set.
#[repr(C)]
#[derive(Clone)]
pub struct FdSet {
    words: [libc::c_ulong; WORDS],
}

// The cast to `*mut libc::fd_set` in `select` relies on these.
const _: () = assert!(mem::size_of::<FdSet>() == mem::size_of::<libc::fd_set>());
const _: () = assert!(mem::align_of::<FdSet>() == mem::align_of::<libc::fd_set>());

impl FdSet {
    /// The empty set.
    pub const fn new() -> Self {
        FdSet { words: [0; WORDS] }
    }

    /// Empties the set.
    pub fn clear(&mut self) {
        self.words = [0; WORDS];
    }

    /// Adds `fd`; false (and nothing changes) if it is outside `0..FD_SETSIZE`.
    pub fn insert(&mut self, fd: RawFd) -> bool {
        let Some((word, bit)) = position(fd) else {
            return false;
        };
        self.words[word] |= bit;
        true
    }

    /// Whether `fd` is in the set.
    pub fn contains(&self, fd: RawFd) -> bool {
        position(fd).is_some_and(|(word, bit)| self.words[word] & bit != 0)
    }

    /// Adds every descriptor of `other`.
    pub fn union_with(&mut self, other: &FdSet) {
        for (mine, theirs) in self.words.iter_mut().zip(&other.words) {
            *mine |= theirs;
        }
    }

    /// Every descriptor below `end` in `self` or in `other`, in ascending
    /// order: O(words + descriptors found), not O(descriptors watched).
    pub fn iter_union<'a>(
        &'a self,
        other: &'a FdSet,
        end: usize,
    ) -> impl Iterator<Item = RawFd> + 'a {
        let words = end.min(FD_SETSIZE).div_ceil(WORD_BITS);
        (0..words).flat_map(move |i| {
            let mut bits = self.words[i] | other.words[i];
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                // Below FD_SETSIZE, so it fits an i32.
                Some((i * WORD_BITS + bit) as RawFd)
            })
        })
    }
}

impl Default for FdSet {
    fn default() -> Self {
        Self::new()
    }
}

/// The word and the bit of `fd`, if it is in `0..FD_SETSIZE`.
fn position(fd: RawFd) -> Option<(usize, libc::c_ulong)> {
    let fd = usize::try_from(fd).ok().filter(|&fd| fd < FD_SETSIZE)?;
    Some((fd / WORD_BITS, 1 << (fd % WORD_BITS)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_set_bits() {
        let mut a = FdSet::new();
        assert!(a.insert(0));
        assert!(a.insert(63));
        assert!(a.insert(64));
        assert!(a.insert(1023));
        assert!(!a.insert(1024));
        assert!(!a.insert(-1));
        assert!(a.contains(63) && a.contains(1023) && !a.contains(1) && !a.contains(5000));
        let mut b = FdSet::new();
        b.insert(5);
        b.insert(64);
        let all: Vec<_> = a.iter_union(&b, 1024).collect();
        assert_eq!(all, [0, 5, 63, 64, 1023]);
        let low: Vec<_> = a.iter_union(&b, 64).collect();
        assert_eq!(low, [0, 5, 63]);
        a.union_with(&b);
        assert_eq!(
            a.iter_union(&FdSet::new(), 70).collect::<Vec<_>>(),
            [0, 5, 63, 64]
        );
        a.clear();
        assert_eq!(a.iter_union(&FdSet::new(), 1024).count(), 0);
    }
}
