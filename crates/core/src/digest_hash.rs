//! Hashing for map keys that are already uniformly distributed hashes (keyed BLAKE3 digests of
//! credentials and tokens, the upstream pool's peer hashes): their own bytes are the hash.
//!
//! The standard maps and moka hash every key with SipHash, ~200 instructions for a 32-byte
//! digest on every lookup, which only spreads bytes that are spread already. These keys cannot
//! be chosen by a client (the digests are keyed with a secret of the process, the peer hashes
//! come from the config), so hashing them again does not guard against collision flooding.

use std::hash::{BuildHasherDefault, Hasher};

/// Folds what it is given into 64 bits, eight bytes per write: for a digest key, its first
/// eight bytes (after the length the slice hashing writes first).
#[derive(Clone, Copy, Default, Debug)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(29) ^ n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The `BuildHasher` of maps and caches keyed by digests.
pub type DigestHashing = BuildHasherDefault<DigestHasher>;

#[cfg(test)]
mod tests {
    use super::DigestHashing;
    use std::hash::BuildHasher;

    /// Distinct digests get distinct hashes (their leading bytes), and the same digest the
    /// same hash, so a map keyed by them spreads as well as the digests do.
    #[test]
    fn a_digest_hashes_to_its_leading_bytes() {
        let hashing = DigestHashing::default();
        let digests: Vec<[u8; 32]> = (0u8..=255)
            .map(|i| *blake3::hash(&[i]).as_bytes())
            .collect();
        let mut hashes: Vec<u64> = digests.iter().map(|d| hashing.hash_one(d)).collect();
        assert_eq!(hashing.hash_one(digests[7]), hashes[7]);
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), digests.len());
        // The low bits (the buckets of a small map) spread too: 256 digests over 64 buckets.
        let mut buckets = [0u32; 64];
        for d in &digests {
            buckets[(hashing.hash_one(d) % 64) as usize] += 1;
        }
        assert!(buckets.iter().all(|&b| b <= 16), "{buckets:?}");
        assert_ne!(hashing.hash_one(1u64), hashing.hash_one(2u64));
    }
}
