//! Deterministic pseudo-random byte stream, addressed by position.
//!
//! Byte `p` of stream `seed` is byte `p % 8` (little endian) of
//! `splitmix64(seed ^ (p / 8))`. Because it is a pure function of the
//! position, a writer and a reader can each generate the same bytes
//! independently, and any chunk can be produced or checked without state.

/// Size of the scratch buffer [`verify`] compares against.
const SCRATCH: usize = 4096;

/// The first `len` bytes of stream `seed`.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    fill(seed, 0, &mut buf);
    buf
}

/// Fills `buf` with the bytes of stream `seed` starting at position `pos`.
pub fn fill(seed: u64, pos: u64, buf: &mut [u8]) {
    let mut pos = pos;
    let mut rest = buf;
    // Unaligned head: bytes up to the next multiple of 8.
    let head = ((8 - (pos % 8)) % 8) as usize;
    let head = head.min(rest.len());
    if head > 0 {
        let (h, tail) = rest.split_at_mut(head);
        for b in h.iter_mut() {
            *b = byte_at(seed, pos);
            pos += 1;
        }
        rest = tail;
    }
    let mut words = rest.chunks_exact_mut(8);
    for w in &mut words {
        w.copy_from_slice(&word(seed, pos / 8).to_le_bytes());
        pos += 8;
    }
    for b in words.into_remainder() {
        *b = byte_at(seed, pos);
        pos += 1;
    }
}

/// Checks that `data` equals stream `seed` at position `pos`.
///
/// Returns `Err(p)` with the absolute stream position of the first
/// differing byte.
pub fn verify(seed: u64, pos: u64, data: &[u8]) -> Result<(), u64> {
    let mut scratch = [0u8; SCRATCH];
    let mut pos = pos;
    for chunk in data.chunks(SCRATCH) {
        let expected = &mut scratch[..chunk.len()];
        fill(seed, pos, expected);
        if chunk != &expected[..] {
            // The slices differ, so `position` finds an index.
            let at = chunk
                .iter()
                .zip(expected.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(pos + at as u64);
        }
        pos += chunk.len() as u64;
    }
    Ok(())
}

/// The byte of stream `seed` at position `pos`.
pub fn byte_at(seed: u64, pos: u64) -> u8 {
    word(seed, pos / 8).to_le_bytes()[(pos % 8) as usize]
}

/// The 8-byte block `index` of stream `seed`.
fn word(seed: u64, index: u64) -> u64 {
    splitmix64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// SplitMix64 finaliser: a cheap, well-mixing 64-bit hash.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        let mut a = vec![0u8; 1000];
        let mut b = vec![0u8; 1000];
        let mut c = vec![0u8; 1000];
        fill(7, 0, &mut a);
        fill(7, 0, &mut b);
        fill(8, 0, &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn fill_at_any_offset_matches_whole_stream() {
        let mut whole = vec![0u8; 300];
        fill(42, 0, &mut whole);
        for start in 0..20 {
            for len in [0, 1, 5, 8, 13, 64, 200] {
                let mut part = vec![0u8; len];
                fill(42, start as u64, &mut part);
                assert_eq!(part, whole[start..start + len]);
                assert_eq!(byte_at(42, start as u64), whole[start]);
            }
        }
    }

    #[test]
    fn verify_accepts_the_stream_and_finds_a_flipped_byte() {
        let mut data = vec![0u8; 10_000];
        fill(3, 123, &mut data);
        assert_eq!(verify(3, 123, &data), Ok(()));
        for at in [0, 1, 4095, 4096, 9999] {
            let mut bad = data.clone();
            bad[at] ^= 0x01;
            assert_eq!(verify(3, 123, &bad), Err(123 + at as u64));
        }
        assert!(verify(4, 123, &data).is_err());
    }
}
