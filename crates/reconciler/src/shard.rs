//! Rule-group placement on ruler shards, identical to Whizard's
//! (`pkg/controllers/resources/ruler/configmap.go`):
//!
//! ```text
//! shard = sum64(md5("<file>/<group>")) % shards
//! ```
//!
//! Whizard's `sum64` ORs `byte[i] << ((15 - i) * 8)` into a `uint64`; in Go a shift by 64 or
//! more yields 0, so bytes 0..8 vanish and the value is the big-endian `u64` of md5 bytes
//! 8..16. Keeping the formula means a migration from Whizard keeps every group on its shard.
//!
//! Rule files are then packed first-fit, in file-name order, into ConfigMaps of at most
//! [`MAX_CONFIGMAP_BYTES`] (Whizard: half of the 1 MiB Secret limit).

use md5::{Digest, Md5};
use std::collections::BTreeMap;

pub const MAX_CONFIGMAP_BYTES: usize = 512 * 1024;

/// Whizard's `sum64(md5.Sum(key))`.
pub fn sum64(key: &str) -> u64 {
    let digest = Md5::digest(key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[8..16]);
    u64::from_be_bytes(b)
}

/// The shard (0-based) of group `group` from rule file `file`.
pub fn shard_of(file: &str, group: &str, shards: u64) -> u64 {
    if shards <= 1 {
        return 0;
    }
    sum64(&format!("{file}/{group}")) % shards
}

/// Packs `files` (name → content) first-fit, in name order, into bins of at most `max` bytes
/// (a file larger than `max` gets a bin of its own). Returns the bins in creation order.
pub fn pack_files(files: &BTreeMap<String, String>, max: usize) -> Vec<BTreeMap<String, String>> {
    let mut bins: Vec<(usize, BTreeMap<String, String>)> = Vec::new();
    for (name, content) in files {
        let size = name.len() + content.len();
        match bins.iter_mut().find(|(used, _)| used + size <= max) {
            Some((used, bin)) => {
                *used += size;
                bin.insert(name.clone(), content.clone());
            }
            None => {
                let mut bin = BTreeMap::new();
                bin.insert(name.clone(), content.clone());
                bins.push((size, bin));
            }
        }
    }
    bins.into_iter().map(|(_, b)| b).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values computed with Python:
    /// `int.from_bytes(hashlib.md5(k.encode()).digest()[8:16], "big")`.
    #[test]
    fn sum64_matches_go_semantics() {
        for (key, want) in KNOWN {
            assert_eq!(sum64(key), *want, "{key}");
        }
    }

    #[test]
    fn shards_known_inputs() {
        for (file, group, shards, want) in KNOWN_SHARDS {
            assert_eq!(
                shard_of(file, group, *shards),
                *want,
                "{file}/{group} % {shards}"
            );
        }
    }

    #[test]
    fn one_shard_is_always_zero() {
        assert_eq!(shard_of("a", "b", 1), 0);
        assert_eq!(shard_of("a", "b", 0), 0);
    }

    #[test]
    fn packing_first_fit() {
        let mut files = BTreeMap::new();
        files.insert("a".to_string(), "x".repeat(5));
        files.insert("b".to_string(), "x".repeat(5));
        files.insert("c".to_string(), "x".repeat(2));
        files.insert("d".to_string(), "x".repeat(20));
        let bins = pack_files(&files, 10);
        let names: Vec<Vec<&str>> = bins
            .iter()
            .map(|b| b.keys().map(|s| s.as_str()).collect())
            .collect();
        assert_eq!(names, vec![vec!["a", "c"], vec!["b"], vec!["d"]]);
    }

    proptest::proptest! {
        #[test]
        fn shard_in_range(file in "[a-z-]{1,20}", group in "[a-z-]{1,20}", shards in 1u64..16) {
            proptest::prop_assert!(shard_of(&file, &group, shards) < shards);
        }

        #[test]
        fn packing_keeps_every_file_once(sizes in proptest::collection::vec(0usize..300, 0..20)) {
            let files: BTreeMap<String, String> = sizes.iter().enumerate()
                .map(|(i, s)| (format!("f{i:02}"), "x".repeat(*s))).collect();
            let bins = pack_files(&files, 256);
            let mut seen = BTreeMap::new();
            for b in &bins {
                let total: usize = b.iter().map(|(k, v)| k.len() + v.len()).sum();
                proptest::prop_assert!(total <= 256 || b.len() == 1);
                for (k, v) in b { proptest::prop_assert!(seen.insert(k.clone(), v.clone()).is_none()); }
            }
            proptest::prop_assert_eq!(seen, files);
        }
    }

    include!("shard_known.rs");
}
