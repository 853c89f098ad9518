//! HTTP Basic Auth against the `users` of the config.
//!
//! Hashes are slow by design, so a verified credential is cached under a keyed BLAKE3 hash of
//! (user, password) — never the password itself — and a cached check costs one hash and one map
//! lookup. The key is random per process and per config, so the cache dies with a reload.
//! Failures are cached separately and briefly, so that a misconfigured agent retrying a wrong
//! password does not make the gateway run argon2 on every attempt; a failure can never become a
//! success because the two live in different caches.

use super::{password, AuthError, AuthMethod, AuthOutcome, Authenticator, Identity};
use crate::config::{Config, PasswordHash};
use crate::digest_hash::DigestHashing;
use crate::per_thread::Slots;
use async_trait::async_trait;
use base64::Engine;
use moka::sync::Cache;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedRwLockWriteGuard, RwLock, Semaphore};

type CacheKey = [u8; 32];

/// A verified credential's identity, and when its verification runs out (`auth_cache_ttl`).
#[derive(Clone)]
struct Verified {
    identity: Arc<Identity>,
    until: Instant,
}

/// Entries of a thread's [`BasicAuth::verified_here`] at most: beyond, the ones that ran out
/// go, or all of them.
const VERIFIED_HERE_MAX: usize = 4096;

struct Account {
    hash: PasswordHash,
    identity: Arc<Identity>,
}

pub struct BasicAuth {
    accounts: HashMap<String, Account>,
    key: [u8; 32],
    verified: Cache<CacheKey, Verified, DigestHashing>,
    /// How long a verification holds (`server.auth_cache_ttl`).
    ttl: Duration,
    /// Per thread, the entries of `verified` that thread has used: answered without the shared
    /// cache, whose every read writes memory that all threads write (its read log, the entry's
    /// access time, the identity's reference count), which costs a cache-line transfer between
    /// cores per write (`crate::per_thread`). Each holds the thread's own copy of the identity
    /// and ends when the shared entry does.
    verified_here: Slots<Mutex<HashMap<CacheKey, Verified, DigestHashing>>>,
    refused: Cache<CacheKey, (), DigestHashing>,
    /// Bounds concurrent hash verifications so a flood of bad passwords cannot take every
    /// blocking thread ([`verification_slots`]). One client address holds at most its share
    /// of them: the brute-force throttle admits its attempts only that far.
    permits: Arc<Semaphore>,
    /// Credentials being verified (keyed like the caches), each locked by the request that
    /// verifies it: identical requests arriving meanwhile wait for its answer instead of
    /// each asking the throttle for a verification of its own ([`BasicAuth::lead_verification`]).
    in_flight: Mutex<HashMap<CacheKey, Arc<RwLock<()>>>>,
    /// Verified for unknown users, so that the work done does not tell which users exist: one
    /// hash of a random secret per shape (algorithm and cost) of the configured hashes; an
    /// unknown name always gets the same one (chosen by the keyed hash of the name), so it
    /// costs what some real user costs.
    decoys: Vec<PasswordHash>,
    /// Hash verifications started (the tests count them).
    #[cfg(test)]
    verifications: std::sync::atomic::AtomicU64,
}

/// Concurrent hash verifications: one per core.
pub fn verification_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// Longest `user:password` we accept, decoded. Keeps decoding on the stack.
pub const MAX_CREDENTIALS: usize = 1024;

impl BasicAuth {
    pub fn new(config: &Config) -> Self {
        let accounts = config
            .users
            .iter()
            .filter_map(|u| {
                let hash = u.password_hash.clone()?;
                Some((
                    u.name.clone(),
                    Account {
                        hash,
                        identity: Arc::new(identity_of(u)),
                    },
                ))
            })
            .collect();
        let ttl = config.server.auth_cache_ttl;
        BasicAuth {
            accounts,
            key: rand::random(),
            verified: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build_with_hasher(DigestHashing::default()),
            refused: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(10).min(ttl))
                .build_with_hasher(DigestHashing::default()),
            verified_here: Slots::default(),
            ttl,
            permits: Arc::new(Semaphore::new(verification_slots())),
            in_flight: Mutex::default(),
            decoys: decoys(config),
            #[cfg(test)]
            verifications: Default::default(),
        }
    }

    fn cache_key(&self, user: &[u8], pass: &[u8]) -> CacheKey {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&(user.len() as u64).to_le_bytes());
        h.update(user);
        h.update(pass);
        *h.finalize().as_bytes()
    }

    fn decoy_for(&self, user: &[u8]) -> PasswordHash {
        let pick = self.cache_key(user, b"")[0] as usize % self.decoys.len().max(1);
        self.decoys
            .get(pick)
            .cloned()
            .unwrap_or_else(|| PasswordHash::Bcrypt(String::new()))
    }

    /// The identity of the request's Basic credentials when they were verified before (the
    /// cache), without any hashing: such requests skip the brute-force throttle.
    pub fn cached(&self, headers: &http::HeaderMap) -> Option<Arc<Identity>> {
        let value = headers.get(http::header::AUTHORIZATION)?;
        let mut buf = [0u8; MAX_CREDENTIALS];
        let (user, pass) = parse_basic(value.as_bytes(), &mut buf)?.ok()?;
        self.verified(&self.cache_key(user, pass))
    }

    /// The identity of the credentials of `key`, when they were verified and that has not run
    /// out: from this thread's own entries, else from the shared cache (then kept here too).
    fn verified(&self, key: &CacheKey) -> Option<Arc<Identity>> {
        let now = Instant::now();
        let mut here = self
            .verified_here
            .here()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = here.get(key).filter(|v| now < v.until) {
            return Some(v.identity.clone());
        }
        let shared = self.verified.get(key)?;
        if here.len() >= VERIFIED_HERE_MAX {
            here.retain(|_, v| now < v.until);
            if here.len() >= VERIFIED_HERE_MAX {
                here.clear();
            }
        }
        let identity = Arc::new(Identity::clone(&shared.identity));
        here.insert(
            *key,
            Verified {
                identity: identity.clone(),
                until: shared.until,
            },
        );
        Some(identity)
    }

    /// Caches `identity` as verified for the credentials of `key`, for `auth_cache_ttl`.
    fn remember(&self, key: CacheKey, identity: Arc<Identity>) {
        // Taken before the insertion: this ends no later than the shared entry. A TTL beyond
        // what the clock can add holds for a century.
        let now = Instant::now();
        let until = now
            .checked_add(self.ttl)
            .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
            .unwrap_or(now);
        self.verified.insert(key, Verified { identity, until });
    }

    /// Single flight for first logins: a burst of requests with one new credential (agents or
    /// a dashboard restarting together) verifies it once. Returns the [`VerificationLead`] to
    /// keep while this request verifies the request's Basic credentials; `None` when there are
    /// none, or when another request verified them meanwhile (then [`BasicAuth::cached`]
    /// answers), or after waiting for three other leads that did not succeed (a refused or a
    /// throttled attempt: this request then goes its own way).
    pub async fn lead_verification(
        &self,
        headers: &http::HeaderMap,
    ) -> Option<VerificationLead<'_>> {
        let key = {
            let value = headers.get(http::header::AUTHORIZATION)?;
            let mut buf = [0u8; MAX_CREDENTIALS];
            let (user, pass) = parse_basic(value.as_bytes(), &mut buf)?.ok()?;
            self.cache_key(user, pass)
        };
        for _ in 0..3 {
            let running = match self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key)
            {
                Entry::Occupied(e) => e.get().clone(),
                Entry::Vacant(e) => {
                    let lock = Arc::new(RwLock::new(()));
                    // A lock nobody else has seen yet: never contended.
                    let guard = lock.clone().try_write_owned().ok()?;
                    e.insert(lock);
                    return Some(VerificationLead {
                        auth: self,
                        key,
                        _guard: guard,
                    });
                }
            };
            drop(running.read().await);
            if self.verified.contains_key(&key) {
                return None;
            }
        }
        None
    }

    /// Checks one `user`/`pass` pair (already decoded).
    pub async fn check(&self, user: &[u8], pass: &[u8]) -> Result<Arc<Identity>, AuthError> {
        let key = self.cache_key(user, pass);
        if let Some(identity) = self.verified(&key) {
            return Ok(identity);
        }
        if self.refused.contains_key(&key) {
            return Err(AuthError::InvalidCredentials);
        }
        let account = std::str::from_utf8(user)
            .ok()
            .and_then(|u| self.accounts.get(u));
        let (hash, identity) = match account {
            Some(a) => (a.hash.clone(), Some(a.identity.clone())),
            None => (self.decoy_for(user), None),
        };
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AuthError::Unavailable)?;
        // A burst of first logins with one credential (agents restarting together) waits here:
        // once one of them has verified it, the others are answered from the caches instead of
        // each paying a slow hash in turn.
        if let Some(identity) = self.verified(&key) {
            return Ok(identity);
        }
        if self.refused.contains_key(&key) {
            return Err(AuthError::InvalidCredentials);
        }
        #[cfg(test)]
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pass = pass.to_vec();
        // The permit travels with the hash work (a cancelled request does not free it early)
        // and comes back, to be released only once the result is cached.
        let (ok, _permit) =
            tokio::task::spawn_blocking(move || (password::verify(&hash, &pass), permit))
                .await
                .map_err(|_| AuthError::Unavailable)?;
        let verifications = &crate::metrics::metrics().auth_verifications;
        match (ok, identity) {
            (true, Some(identity)) => {
                verifications.with_label_values(&["success"]).inc();
                self.remember(key, identity.clone());
                Ok(identity)
            }
            _ => {
                verifications.with_label_values(&["failure"]).inc();
                self.refused.insert(key, ());
                Err(AuthError::InvalidCredentials)
            }
        }
    }
}

/// A request verifying a credential first; identical requests wait until it is dropped.
pub struct VerificationLead<'a> {
    auth: &'a BasicAuth,
    key: CacheKey,
    _guard: OwnedRwLockWriteGuard<()>,
}

impl Drop for VerificationLead<'_> {
    fn drop(&mut self) {
        // Out of the map first, so that a waiter woken by the guard's release finds no stale
        // entry to wait on.
        self.auth
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// Identity of a configured user (also used for client certificates).
pub fn identity_of(u: &crate::config::User) -> Identity {
    let mut tenants = u.tenants.clone();
    tenants.sort();
    tenants.dedup();
    Identity {
        name: u.name.clone(),
        tenants,
        access: u.access,
        method: AuthMethod::Basic,
        write_routing: u.write_routing.clone(),
    }
}

/// One decoy per shape of the configured password hashes (argon2id at the default cost when
/// there are none).
fn decoys(config: &Config) -> Vec<PasswordHash> {
    let mut shapes = std::collections::BTreeMap::new();
    for hash in config.users.iter().filter_map(|u| u.password_hash.as_ref()) {
        shapes.entry(password::shape(hash)).or_insert(hash);
    }
    let mut decoys: Vec<PasswordHash> = shapes
        .values()
        .filter_map(|h| password::decoy_like(h))
        .collect();
    if decoys.is_empty() {
        // Same cost as the crate default used by `whizard hash-password`.
        let phc = password::hash_argon2id(b"decoy").unwrap_or_default();
        decoys.extend(PasswordHash::parse(&phc).ok());
    }
    decoys
}

/// A decoded (user, password) pair.
pub type Credentials<'b> = (&'b [u8], &'b [u8]);

/// Splits `Authorization: Basic <base64(user:pass)>` into its parts, decoding on the stack.
pub fn parse_basic<'b>(
    header: &[u8],
    buf: &'b mut [u8; MAX_CREDENTIALS],
) -> Option<Result<Credentials<'b>, AuthError>> {
    let scheme = header.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let encoded = header[6..].trim_ascii();
    if encoded.len() > MAX_CREDENTIALS / 3 * 4 {
        return Some(Err(AuthError::Malformed("credentials too long")));
    }
    let n = match base64::engine::general_purpose::STANDARD.decode_slice(encoded, &mut buf[..]) {
        Ok(n) => n,
        Err(_) => {
            return Some(Err(AuthError::Malformed(
                "Basic credentials are not base64",
            )))
        }
    };
    let decoded = &buf[..n];
    let Some(colon) = decoded.iter().position(|b| *b == b':') else {
        return Some(Err(AuthError::Malformed("Basic credentials lack ':'")));
    };
    Some(Ok((&decoded[..colon], &decoded[colon + 1..])))
}

#[async_trait]
impl Authenticator for BasicAuth {
    fn method(&self) -> AuthMethod {
        AuthMethod::Basic
    }

    async fn authenticate(&self, headers: &http::HeaderMap) -> AuthOutcome {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return AuthOutcome::NotApplicable;
        };
        let mut buf = [0u8; MAX_CREDENTIALS];
        match parse_basic(value.as_bytes(), &mut buf) {
            None => AuthOutcome::NotApplicable,
            Some(Err(e)) => AuthOutcome::Failed(e),
            Some(Ok((user, pass))) => match self.check(user, pass).await {
                Ok(identity) => AuthOutcome::Authenticated(identity),
                Err(e) => AuthOutcome::Failed(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn config(hash: &str) -> Config {
        let yaml = format!(
            r#"
listen: {{http: "127.0.0.1:0"}}
upstreams: {{query: "http://127.0.0.1:9090", receive: "http://127.0.0.1:9090/api/v1/write"}}
tenants: [{{id: a}}, {{id: b}}]
users:
  - {{name: alice, password_hash: "{hash}", tenants: [b, a], access: [read]}}
"#
        );
        Config::from_yaml(&yaml, "test", Path::new(".")).unwrap()
    }

    fn header(user: &str, pass: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        h.insert("authorization", format!("Basic {v}").parse().unwrap());
        h
    }

    #[test]
    fn an_unknown_user_costs_what_a_configured_one_of_the_same_shape_costs() {
        let bcrypt = bcrypt::hash("pw", 5).unwrap();
        let auth = BasicAuth::new(&config(&bcrypt));
        // Not the default argon2id decoy: a bcrypt of the configured cost, for every unknown
        // name, always the same one for one name.
        assert_eq!(auth.decoys.len(), 1);
        for name in ["mallory", "root", "alice2", ""] {
            let decoy = auth.decoy_for(name.as_bytes());
            assert_eq!(password::shape(&decoy), "$2b$05", "{name}");
            assert_eq!(decoy, auth.decoy_for(name.as_bytes()));
        }
        let argon = password::hash_argon2id(b"pw").unwrap();
        let auth = BasicAuth::new(&config(&argon));
        assert_eq!(
            password::shape(&auth.decoy_for(b"mallory")),
            "$argon2id$v=19$m=19456,t=2,p=1"
        );
    }

    #[tokio::test]
    async fn verifies_then_serves_from_cache() {
        let phc = password::hash_argon2id(b"pw:with:colons").unwrap();
        let auth = BasicAuth::new(&config(&phc));
        let AuthOutcome::Authenticated(id) =
            auth.authenticate(&header("alice", "pw:with:colons")).await
        else {
            panic!("expected success");
        };
        assert_eq!(id.tenants, vec!["a".to_string(), "b".to_string()]);
        assert!(id.access.read && !id.access.write);
        assert!(auth
            .verified
            .get(&auth.cache_key(b"alice", b"pw:with:colons"))
            .is_some());
        // Second call is a cache hit: fast.
        let t = std::time::Instant::now();
        for _ in 0..1000 {
            assert!(matches!(
                auth.authenticate(&header("alice", "pw:with:colons")).await,
                AuthOutcome::Authenticated(_)
            ));
        }
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    /// Verified credentials are answered on every thread, each thread from a copy of the
    /// identity of its own (whose reference count only that thread writes), and no longer once
    /// the TTL has run out.
    #[tokio::test]
    async fn each_thread_answers_from_its_own_copy_until_the_ttl() {
        let phc = password::hash_argon2id(b"pw").unwrap();
        let mut cfg = config(&phc);
        cfg.server.auth_cache_ttl = Duration::from_secs(1);
        let auth = BasicAuth::new(&cfg);
        let right = header("alice", "pw");
        assert!(auth.cached(&right).is_none());
        assert!(matches!(
            auth.authenticate(&right).await,
            AuthOutcome::Authenticated(_)
        ));
        let here = auth
            .cached(&right)
            .expect("verified credentials are cached");
        assert!(Arc::ptr_eq(&here, &auth.cached(&right).unwrap()));
        std::thread::scope(|s| {
            // Another thread, asked each time a message comes.
            let (ask, asked) = std::sync::mpsc::channel::<()>();
            let (tell, told) = std::sync::mpsc::channel();
            let (auth, right) = (&auth, &right);
            s.spawn(move || {
                for () in asked {
                    tell.send(auth.cached(right)).unwrap();
                }
            });
            let there = || {
                ask.send(()).unwrap();
                told.recv().unwrap()
            };
            let first = there().expect("cached for another thread too");
            assert_eq!(*first, *here);
            assert!(!Arc::ptr_eq(&first, &here));
            assert!(Arc::ptr_eq(&first, &there().unwrap()));
            assert!(auth.cached(&header("alice", "other")).is_none());
            let deadline = Instant::now() + Duration::from_secs(10);
            while auth.cached(right).is_some() {
                assert!(Instant::now() < deadline, "still cached long after the TTL");
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(there().is_none(), "another thread's copy outlived the TTL");
            drop(ask);
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_of_first_logins_verifies_the_hash_once() {
        let phc = password::hash_argon2id(b"right").unwrap();
        let mut auth = BasicAuth::new(&config(&phc));
        // One permit: every check after the first waits for it, as on a busy gateway.
        auth.permits = Arc::new(Semaphore::new(1));
        let auth = Arc::new(auth);
        for (pass, ok) in [("right", true), ("wrong", false)] {
            auth.verifications
                .store(0, std::sync::atomic::Ordering::Relaxed);
            let checks: Vec<_> = (0..8)
                .map(|_| {
                    let auth = auth.clone();
                    tokio::spawn(async move { auth.check(b"alice", pass.as_bytes()).await })
                })
                .collect();
            for check in checks {
                assert_eq!(check.await.unwrap().is_ok(), ok, "{pass}");
            }
            assert_eq!(
                auth.verifications
                    .load(std::sync::atomic::Ordering::Relaxed),
                1,
                "{pass}: one hash verification for the whole burst"
            );
        }
    }

    #[tokio::test]
    async fn identical_first_logins_wait_for_the_one_verifying_them() {
        let phc = password::hash_argon2id(b"right").unwrap();
        let auth = Arc::new(BasicAuth::new(&config(&phc)));
        assert!(auth
            .lead_verification(&http::HeaderMap::new())
            .await
            .is_none());
        let lead = auth.lead_verification(&header("alice", "right")).await;
        assert!(lead.is_some(), "the first request leads");
        // Other credentials are not held up by it.
        let other = auth.lead_verification(&header("alice", "other")).await;
        assert!(other.is_some());
        drop(other);
        let waiter = {
            let auth = auth.clone();
            tokio::spawn(async move {
                auth.lead_verification(&header("alice", "right"))
                    .await
                    .is_some()
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "an identical request waits");
        assert!(auth.check(b"alice", b"right").await.is_ok());
        drop(lead);
        assert!(!waiter.await.unwrap(), "answered by the cache, not a lead");
        assert!(auth.cached(&header("alice", "right")).is_some());

        // A lead that did not verify hands the lead on to a waiter.
        let lead = auth.lead_verification(&header("alice", "wrong")).await;
        let waiter = {
            let auth = auth.clone();
            tokio::spawn(async move {
                auth.lead_verification(&header("alice", "wrong"))
                    .await
                    .is_some()
            })
        };
        tokio::task::yield_now().await;
        drop(lead);
        assert!(waiter.await.unwrap(), "the waiter leads next");
        assert!(auth.in_flight.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn wrong_password_unknown_user_and_malformed() {
        let phc = password::hash_argon2id(b"right").unwrap();
        let auth = BasicAuth::new(&config(&phc));
        for (u, p) in [("alice", "wrong"), ("mallory", "right"), ("alice", "")] {
            assert!(matches!(
                auth.authenticate(&header(u, p)).await,
                AuthOutcome::Failed(AuthError::InvalidCredentials)
            ));
        }
        // A refused credential stays refused (negative cache) and never turns into a success.
        assert!(matches!(
            auth.authenticate(&header("alice", "wrong")).await,
            AuthOutcome::Failed(AuthError::InvalidCredentials)
        ));
        assert!(matches!(
            auth.authenticate(&header("alice", "right")).await,
            AuthOutcome::Authenticated(_)
        ));
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Basic !!!".parse().unwrap());
        assert!(matches!(
            auth.authenticate(&h).await,
            AuthOutcome::Failed(AuthError::Malformed(_))
        ));
        h.insert("authorization", "Basic YWxpY2U=".parse().unwrap()); // "alice", no colon
        assert!(matches!(
            auth.authenticate(&h).await,
            AuthOutcome::Failed(AuthError::Malformed(_))
        ));
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert!(matches!(
            auth.authenticate(&h).await,
            AuthOutcome::NotApplicable
        ));
        assert!(matches!(
            auth.authenticate(&http::HeaderMap::new()).await,
            AuthOutcome::NotApplicable
        ));
    }

    #[test]
    fn cache_keys_differ_per_instance_and_never_contain_the_password() {
        let phc = password::hash_argon2id(b"x").unwrap();
        let a = BasicAuth::new(&config(&phc));
        let b = BasicAuth::new(&config(&phc));
        assert_ne!(a.cache_key(b"alice", b"x"), b.cache_key(b"alice", b"x"));
        // (user, pass) boundaries are unambiguous.
        assert_ne!(a.cache_key(b"ab", b"c"), a.cache_key(b"a", b"bc"));
    }
}
