//! Ruler credentials: passwords derived from the Service's credentials seed, argon2id hashes
//! computed once and kept.
//!
//! One Argon2id derivation of the seed per plan gives a 32-byte key; each user's password and
//! salt are BLAKE3 keyed hashes of `password/<user>` and `salt/<user>` under that key (cheap,
//! deterministic). The argon2id hash of a password — the slow part, one per user — is written
//! to the gateway config Secret (key [`HASHES_KEY`]) together with a *check*: the keyed BLAKE3
//! digest of user, password and hash. On the next plan a stored hash is reused when its check
//! matches the password derived now, so an unchanged Service computes no password hash at all;
//! a changed seed, a changed password or an edited hash fails the check and is hashed anew.
//! The Secret holds no plaintext password (the check cannot be verified or brute-forced
//! without the seed-derived key, itself one Argon2id derivation per guess of the seed).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A gateway user the reconciler creates (for rulers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayUser {
    pub name: String,
    pub password: String,
    pub password_hash: String,
    /// Keyed digest binding name, password and hash (see the module doc).
    pub check: String,
    pub tenants: Vec<String>,
    pub access: Vec<String>,
}

/// Key of the gateway config Secret holding the stored hashes (JSON, [`Stored`]).
pub const HASHES_KEY: &str = "password-hashes.json";

/// The hash of one user's password and its check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredHash {
    /// PHC string (`$argon2id$...`), as in the gateway config.
    pub hash: String,
    /// Hex BLAKE3 keyed digest binding user, password and hash.
    pub check: String,
}

/// User name → stored hash.
pub type StoredHashes = BTreeMap<String, StoredHash>;

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    version: u32,
    users: StoredHashes,
}

/// The stored hashes of a Secret value; `None` when it is not in the expected format (then
/// every hash is computed anew).
pub fn parse(text: &str) -> Option<StoredHashes> {
    let s: Stored = serde_json::from_str(text).ok()?;
    (s.version == 1).then_some(s.users)
}

/// The Secret value for `(user, hash, check)` entries: the ruler users and the Tenant access
/// users whose password the reconciler hashed.
pub fn serialize<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) -> String {
    let s = Stored {
        version: 1,
        users: entries
            .into_iter()
            .map(|(name, hash, check)| {
                (
                    name.to_string(),
                    StoredHash {
                        hash: hash.to_string(),
                        check: check.to_string(),
                    },
                )
            })
            .collect(),
    };
    serde_json::to_string(&s).expect("stored hashes serialize")
}

/// Makes the users of one plan.
pub struct Credentials<'a> {
    seed: &'a str,
    key: Option<[u8; 32]>,
    stored: &'a StoredHashes,
    /// Argon2id password hashes computed (not reused) so far.
    pub hashes_computed: usize,
}

impl<'a> Credentials<'a> {
    pub fn new(seed: &'a str, stored: &'a StoredHashes) -> Self {
        Credentials {
            seed,
            key: None,
            stored,
            hashes_computed: 0,
        }
    }

    fn key(&mut self) -> [u8; 32] {
        *self.key.get_or_insert_with(|| {
            let mut out = [0u8; 32];
            argon2::Argon2::default()
                .hash_password_into(
                    self.seed.as_bytes(),
                    b"whizard-reconciler:credentials-key",
                    &mut out,
                )
                .expect("argon2 derive");
            out
        })
    }

    fn check(key: &[u8; 32], name: &str, password: &str, hash: &str) -> blake3::Hash {
        let msg = format!("hash-check\0{name}\0{password}\0{hash}");
        blake3::keyed_hash(key, msg.as_bytes())
    }

    /// A gateway user whose password and salt derive from the seed, its hash reused from the
    /// stored ones when the check matches.
    pub fn user(&mut self, name: &str, tenants: Vec<String>, access: &[&str]) -> GatewayUser {
        let key = self.key();
        let derive =
            |purpose: &str| blake3::keyed_hash(&key, format!("{purpose}/{name}").as_bytes());
        let password: String = derive("password").as_bytes()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let salt = derive("salt");
        let (hash, check) = self.hash_with_salt(&key, name, &password, salt);
        GatewayUser {
            name: name.to_string(),
            password,
            password_hash: hash,
            check,
            tenants,
            access: access.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl Credentials<'_> {
    /// `(hash, check)` of a given password (a Tenant access user's `passwordSecret`): the
    /// stored hash when its check matches `name` and `password`, else an argon2id hash with a
    /// salt derived from the seed key, name and password (deterministic renders).
    pub fn hash_given(&mut self, name: &str, password: &str) -> (String, String) {
        let key = self.key();
        let salt = blake3::keyed_hash(&key, format!("given-salt\0{name}\0{password}").as_bytes());
        self.hash_with_salt(&key, name, password, salt)
    }

    fn hash_with_salt(
        &mut self,
        key: &[u8; 32],
        name: &str,
        password: &str,
        salt: blake3::Hash,
    ) -> (String, String) {
        use argon2::PasswordHasher;
        let reused = self.stored.get(name).filter(|s| {
            // blake3::Hash compares in constant time.
            blake3::Hash::from_hex(&s.check)
                .is_ok_and(|c| c == Self::check(key, name, password, &s.hash))
        });
        match reused {
            Some(s) => (s.hash.clone(), s.check.clone()),
            None => {
                self.hashes_computed += 1;
                let hash = argon2::Argon2::default()
                    .hash_password_with_salt(password.as_bytes(), &salt.as_bytes()[..16])
                    .expect("argon2 hash")
                    .to_string();
                let check = Self::check(key, name, password, &hash).to_hex().to_string();
                (hash, check)
            }
        }
    }
}
