//! Brute-force protection for password logins, organised around whom each rule protects.
//!
//! * **(address, name)** — one address guessing one user's password is slowed down from its
//!   5th failure (200 ms, doubling up to 2 s) and refused from its 20th. Other users behind
//!   the same address (a NAT, a load balancer) are not affected.
//! * **name** — a user attacked from many addresses is slowed down from the name's 10th
//!   failure, and refused (from the 50th) only at addresses that have themselves failed for
//!   it, so the owner, logging in from a clean address, is never locked out.
//! * **address** — a whole address is slowed down once it has failed for 5 distinct names
//!   and refused from 10: it is spraying. Only up to 10 keyed hashes of names are kept per
//!   address, never the names.
//! * **slots** — one address holds at most a quarter of the hash-verification slots (at
//!   least one); up to [`WAITING_PER_ADDRESS`] more of its attempts wait in its own queue,
//!   for at most [`SLOT_WAIT`], and any beyond are refused. Another address's first login
//!   thus finds a slot promptly however many guesses one address sends.
//!
//! An attempt in flight counts like a failure of its name and pair while deciding whether the
//! next one may start, so a burst of concurrent guesses is refused before it is verified,
//! not after. Counters are forgotten [`FORGET_AFTER`] after their last failure; a success
//! resets nothing (a sprayer who also signs in with an account of its own stays counted).
//! Credentials the gateway has already verified (the Basic Auth cache) are answered before
//! the throttle is asked: they are never delayed or refused.
//!
//! An IPv6 client counts as its /64 (one host's usual share), an IPv4 client as its address.
//! Requests without Basic credentials (tokens, cookies) are only subject to the address
//! rule; while no login has failed for [`FORGET_AFTER`] they cost one clock read and no
//! lookups.

use crate::sync::lock;
use moka::sync::Cache;
use std::collections::hash_map::{Entry, RandomState};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub const FORGET_AFTER: Duration = Duration::from_secs(300);
/// Failures (and attempts in flight) of one name from one address.
pub const PAIR_DELAY_AFTER: u32 = 5;
pub const PAIR_REFUSE_AFTER: u32 = 20;
/// Failures (and attempts in flight) of one name from every address.
pub const USER_DELAY_AFTER: u32 = 10;
pub const USER_REFUSE_AFTER: u32 = 50;
/// Distinct names that failed from one address.
pub const SPRAY_DELAY_AFTER: usize = 5;
pub const SPRAY_REFUSE_AFTER: usize = 10;
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// Attempts of one address waiting for a slot of its share, beyond those holding one.
pub const WAITING_PER_ADDRESS: usize = 16;
/// Longest wait for a slot of the address's share.
pub const SLOT_WAIT: Duration = Duration::from_secs(5);

/// Name hash of a failure without a name (a bad token): one pseudo-name per address.
const NAMELESS: u64 = 0;

/// The share of `slots` verification slots one address may hold.
pub fn share_of(slots: usize) -> usize {
    (slots / 4).max(1)
}

/// Which rule slowed an attempt down or refused it (the `scope` of
/// `whizard_auth_throttled_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The address failed for many distinct names.
    Address,
    /// The name failed from many addresses.
    User,
    /// This address failed for this name.
    AddressUser,
    /// The address's share of the verification slots and its queue are full.
    Slots,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Address => "address",
            Scope::User => "user",
            Scope::AddressUser => "address_user",
            Scope::Slots => "slots",
        }
    }
}

/// What the counters say about the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Verify, but only after this pause.
    Delay(Duration, Scope),
    /// Refuse (429) without verifying.
    Refuse(Scope),
}

/// An attempt refused without verification (429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub scope: Scope,
    /// Seconds until the counter that refused it is forgotten if nothing else fails (1 for a
    /// full queue).
    pub retry_after: u64,
}

impl Refused {
    pub fn message(&self) -> &'static str {
        match self.scope {
            Scope::Slots => "too many logins in progress from this address; try again later",
            _ => "too many failed logins; try again later",
        }
    }
}

/// The throttle's answer to an attempt.
pub enum Verdict<'t> {
    /// Go on; keep the attempt until the answer is decided (a failure is recorded with
    /// [`Throttle::failed`] before it is dropped).
    Admitted(Attempt<'t>),
    Refused(Refused),
}

/// A password attempt admitted for verification: counted in flight for its address, name and
/// pair, and holding one of the address's slots, until dropped.
#[must_use]
pub struct Attempt<'t> {
    throttle: &'t Throttle,
    registered: Option<(IpAddr, u64)>,
    slot: Option<OwnedSemaphorePermit>,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        // The slot first: once the address's entry is gone, a new one starts a new share.
        drop(self.slot.take());
        if let Some((addr, name)) = self.registered.take() {
            self.throttle.release(addr, name);
        }
    }
}

/// A failure count, forgotten [`FORGET_AFTER`] after its last failure.
#[derive(Default)]
struct Count {
    failures: u32,
    last: u64,
}

impl Count {
    fn get(&self, now: u64) -> u32 {
        if live(self.last, now) {
            self.failures
        } else {
            0
        }
    }

    fn add(&mut self, now: u64) {
        if !live(self.last, now) {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        self.last = now;
    }
}

/// The distinct names (keyed hashes) that failed from one address, up to the number that
/// refuses it; forgotten [`FORGET_AFTER`] after its last failure.
#[derive(Default)]
struct Names {
    hashes: [u64; SPRAY_REFUSE_AFTER],
    len: usize,
    last: u64,
}

impl Names {
    fn get(&self, now: u64) -> usize {
        if live(self.last, now) {
            self.len
        } else {
            0
        }
    }

    fn add(&mut self, name: u64, now: u64) {
        if !live(self.last, now) {
            self.len = 0;
        }
        self.last = now;
        if self.hashes[..self.len].contains(&name) {
            return;
        }
        if let Some(free) = self.hashes.get_mut(self.len) {
            *free = name;
            self.len += 1;
        }
    }
}

/// Whether a record last touched at `last` (0: never) is still within the window at `now`.
fn live(last: u64, now: u64) -> bool {
    last != 0 && now <= last + FORGET_AFTER.as_secs()
}

/// Attempts admitted and not yet answered. Entries go when their count reaches zero, so the
/// maps hold only what is in flight.
#[derive(Default)]
struct InFlight {
    /// The address's share of the slots, and its attempts holding or waiting for one.
    addresses: HashMap<IpAddr, (Arc<Semaphore>, usize)>,
    pairs: HashMap<(IpAddr, u64), u32>,
    users: HashMap<u64, u32>,
}

impl InFlight {
    fn counts(&self, addr: IpAddr, name: u64) -> (u32, u32) {
        (
            self.pairs.get(&(addr, name)).copied().unwrap_or(0),
            self.users.get(&name).copied().unwrap_or(0),
        )
    }
}

fn decrement<K: Hash + Eq>(map: &mut HashMap<K, u32>, key: K) {
    if let Entry::Occupied(mut e) = map.entry(key) {
        *e.get_mut() = e.get().saturating_sub(1);
        if *e.get() == 0 {
            e.remove();
        }
    }
}

/// The address an attempt is counted under: an IPv4 address, an IPv6 /64, or one shared
/// entry for clients without an IP address.
fn source(ip: Option<IpAddr>) -> IpAddr {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V6(v6)) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        Some(v4) => v4,
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// The pause for `n` failures when pauses start at `after` (200 ms, doubling, capped).
fn delay(n: u32, after: u32) -> Option<Duration> {
    let steps = n.checked_sub(after)?.saturating_add(1).min(10);
    Some((Duration::from_millis(100) * (1u32 << steps)).min(MAX_DELAY))
}

/// A bounded map of records, dropped once idle for the window.
fn window<K, V>() -> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(100_000)
        .time_to_idle(FORGET_AFTER)
        .build()
}

fn count(scope: Scope, action: &str) {
    crate::metrics::metrics()
        .auth_throttled
        .with_label_values(&[scope.as_str(), action])
        .inc();
}

pub struct Throttle {
    addresses: Cache<IpAddr, Arc<Mutex<Names>>>,
    pairs: Cache<(IpAddr, u64), Arc<Mutex<Count>>>,
    users: Cache<u64, Arc<Mutex<Count>>>,
    in_flight: Mutex<InFlight>,
    /// Keys the name hashes (random per process).
    hasher: RandomState,
    /// Slots one address may hold.
    share: usize,
    max_delay: Duration,
    slot_wait: Duration,
    /// Whole seconds from `epoch` to the last recorded failure, plus one (0: none yet).
    last_failure: AtomicU64,
    epoch: Instant,
    /// Seconds added to the clock, so tests can pass the window without waiting.
    #[cfg(test)]
    skipped: AtomicU64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::with_slots(crate::auth::basic::verification_slots())
    }
}

impl Throttle {
    /// A throttle for a gateway with `slots` concurrent hash verifications.
    pub fn with_slots(slots: usize) -> Self {
        Throttle {
            addresses: window(),
            pairs: window(),
            users: window(),
            in_flight: Mutex::default(),
            hasher: RandomState::new(),
            share: share_of(slots),
            max_delay: MAX_DELAY,
            slot_wait: SLOT_WAIT,
            last_failure: AtomicU64::new(0),
            epoch: Instant::now(),
            #[cfg(test)]
            skipped: AtomicU64::new(0),
        }
    }

    /// Seconds since `epoch`, plus one so that 0 can mean "never".
    fn now(&self) -> u64 {
        let now = self.epoch.elapsed().as_secs() + 1;
        #[cfg(test)]
        let now = now + self.skipped.load(Ordering::Relaxed);
        now
    }

    /// True when no failure was recorded within the window, so every counter is zero.
    fn quiet(&self, now: u64) -> bool {
        !live(self.last_failure.load(Ordering::Relaxed), now)
    }

    /// The decision for an attempt from `addr` for `name` (none: not a password attempt),
    /// counting `in_flight` other attempts of the (pair, name) like failures.
    fn decide(&self, addr: IpAddr, name: Option<u64>, in_flight: (u32, u32), now: u64) -> Decision {
        let quiet = self.quiet(now);
        let distinct = match self.addresses.get(&addr) {
            Some(names) if !quiet => lock(&names).get(now),
            _ => 0,
        };
        if distinct >= SPRAY_REFUSE_AFTER {
            return Decision::Refuse(Scope::Address);
        }
        // `distinct` is at most SPRAY_REFUSE_AFTER: the cast cannot truncate.
        let mut delays = [
            (
                delay(distinct as u32, SPRAY_DELAY_AFTER as u32),
                Scope::Address,
            ),
            (None, Scope::User),
            (None, Scope::AddressUser),
        ];
        if let Some(name) = name {
            let failures = |c: Option<Arc<Mutex<Count>>>| match c {
                Some(c) if !quiet => lock(&c).get(now),
                _ => 0,
            };
            let pair_failed = failures(self.pairs.get(&(addr, name)));
            let user_failed = failures(self.users.get(&name));
            let pair = pair_failed.saturating_add(in_flight.0);
            let user = user_failed.saturating_add(in_flight.1);
            if pair >= PAIR_REFUSE_AFTER {
                return Decision::Refuse(Scope::AddressUser);
            }
            if user >= USER_REFUSE_AFTER && pair_failed > 0 {
                return Decision::Refuse(Scope::User);
            }
            delays[1].0 = delay(user, USER_DELAY_AFTER);
            delays[2].0 = delay(pair, PAIR_DELAY_AFTER);
        }
        // The longest pause wins; on a tie, the narrowest rule (listed last) names it.
        delays
            .into_iter()
            .filter_map(|(d, scope)| Some((d?, scope)))
            .max_by_key(|(d, _)| *d)
            .map_or(Decision::Allow, |(d, scope)| {
                Decision::Delay(d.min(self.max_delay), scope)
            })
    }

    /// What the counters say about an attempt from `ip` for `user`, without admitting it.
    #[cfg(test)]
    fn check(&self, ip: Option<IpAddr>, user: Option<&str>) -> Decision {
        let addr = source(ip);
        let name = user.map(|u| self.hasher.hash_one(u));
        let in_flight = name.map_or((0, 0), |n| lock(&self.in_flight).counts(addr, n));
        self.decide(addr, name, in_flight, self.now())
    }

    /// Admits, slows down or refuses an attempt from `ip` for the Basic Auth `user` (none
    /// for other kinds of credentials), before anything is verified.
    pub async fn admit<'u>(
        &self,
        ip: Option<IpAddr>,
        user: impl FnOnce() -> Option<&'u str>,
    ) -> Verdict<'_> {
        let addr = source(ip);
        let name = user().map(|u| self.hasher.hash_one(u));
        let now = self.now();
        let Some(name) = name else {
            // Not a password attempt: no hash to share out, only a spraying address applies.
            let decision = if self.quiet(now) {
                Decision::Allow
            } else {
                self.decide(addr, None, (0, 0), now)
            };
            return match decision {
                Decision::Allow => Verdict::Admitted(self.attempt(None)),
                Decision::Delay(d, scope) => {
                    count(scope, "delayed");
                    tokio::time::sleep(d).await;
                    Verdict::Admitted(self.attempt(None))
                }
                Decision::Refuse(scope) => self.refuse(scope, addr, None, now),
            };
        };
        let (slots, decision) = match self.register(addr, name, now) {
            Ok(registered) => registered,
            Err(scope) => return self.refuse(scope, addr, Some(name), now),
        };
        // From here on, dropping the attempt (a refusal, a cancelled request) deregisters it.
        let mut attempt = self.attempt(Some((addr, name)));
        if let Decision::Delay(d, scope) = decision {
            count(scope, "delayed");
            tokio::time::sleep(d).await;
        }
        match tokio::time::timeout(self.slot_wait, slots.acquire_owned()).await {
            Ok(Ok(slot)) => attempt.slot = Some(slot),
            _ => return self.refuse(Scope::Slots, addr, Some(name), self.now()),
        }
        // Failures recorded while this attempt waited (other names of a sprayer, earlier
        // guesses of this pair) may refuse it now; its pause is not repeated.
        let now = self.now();
        let (pair, user) = lock(&self.in_flight).counts(addr, name);
        let others = (pair.saturating_sub(1), user.saturating_sub(1));
        if let Decision::Refuse(scope) = self.decide(addr, Some(name), others, now) {
            return self.refuse(scope, addr, Some(name), now);
        }
        Verdict::Admitted(attempt)
    }

    fn attempt(&self, registered: Option<(IpAddr, u64)>) -> Attempt<'_> {
        Attempt {
            throttle: self,
            registered,
            slot: None,
        }
    }

    /// Decides on a password attempt, counting the others in flight, and registers it in
    /// flight unless refused. Returns the address's share of the slots.
    fn register(
        &self,
        addr: IpAddr,
        name: u64,
        now: u64,
    ) -> Result<(Arc<Semaphore>, Decision), Scope> {
        let mut in_flight = lock(&self.in_flight);
        let decision = self.decide(addr, Some(name), in_flight.counts(addr, name), now);
        if let Decision::Refuse(scope) = decision {
            return Err(scope);
        }
        let share = self.share;
        let (slots, attempts) = in_flight
            .addresses
            .entry(addr)
            .or_insert_with(|| (Arc::new(Semaphore::new(share)), 0));
        if *attempts >= share + WAITING_PER_ADDRESS {
            return Err(Scope::Slots);
        }
        *attempts += 1;
        let slots = slots.clone();
        *in_flight.pairs.entry((addr, name)).or_default() += 1;
        *in_flight.users.entry(name).or_default() += 1;
        Ok((slots, decision))
    }

    fn release(&self, addr: IpAddr, name: u64) {
        let mut in_flight = lock(&self.in_flight);
        if let Entry::Occupied(mut e) = in_flight.addresses.entry(addr) {
            e.get_mut().1 = e.get().1.saturating_sub(1);
            if e.get().1 == 0 {
                e.remove();
            }
        }
        decrement(&mut in_flight.pairs, (addr, name));
        decrement(&mut in_flight.users, name);
    }

    fn refuse(&self, scope: Scope, addr: IpAddr, name: Option<u64>, now: u64) -> Verdict<'_> {
        count(scope, "refused");
        let last = match (scope, name) {
            (Scope::Address, _) => self.addresses.get(&addr).map(|n| lock(&n).last),
            (Scope::AddressUser, Some(name)) => {
                self.pairs.get(&(addr, name)).map(|c| lock(&c).last)
            }
            (Scope::User, Some(name)) => self.users.get(&name).map(|c| lock(&c).last),
            _ => None,
        };
        let retry_after = match last {
            Some(last) if live(last, now) => last + FORGET_AFTER.as_secs() + 1 - now,
            _ => 1,
        };
        Verdict::Refused(Refused { scope, retry_after })
    }

    /// Records a failed login from `ip` for the Basic Auth `user` (none: a bad token, which
    /// counts for the address as one name of its own and throttles nothing by itself).
    pub fn failed(&self, ip: Option<IpAddr>, user: Option<&str>) {
        let now = self.now();
        self.last_failure.store(now, Ordering::Relaxed);
        let addr = source(ip);
        let name = user.map(|u| self.hasher.hash_one(u));
        lock(&self.addresses.get_with(addr, Default::default)).add(name.unwrap_or(NAMELESS), now);
        if let Some(name) = name {
            lock(&self.pairs.get_with((addr, name), Default::default)).add(now);
            lock(&self.users.get_with(name, Default::default)).add(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    async fn admitted<'t>(t: &'t Throttle, ip: Option<IpAddr>, user: &str) -> Attempt<'t> {
        match t.admit(ip, || Some(user)).await {
            Verdict::Admitted(a) => a,
            Verdict::Refused(r) => panic!("{user} refused: {r:?}"),
        }
    }

    async fn refused(t: &Throttle, ip: Option<IpAddr>, user: Option<&str>) -> Option<Refused> {
        match t.admit(ip, || user).await {
            Verdict::Admitted(_) => None,
            Verdict::Refused(r) => Some(r),
        }
    }

    #[test]
    fn one_name_from_one_address_throttles_that_pair_and_slows_the_name() {
        let t = Throttle::with_slots(4);
        for _ in 0..4 {
            t.failed(ip(1), Some("alice"));
        }
        assert_eq!(t.check(ip(1), Some("alice")), Decision::Allow);
        t.failed(ip(1), Some("alice"));
        assert_eq!(
            t.check(ip(1), Some("alice")),
            Decision::Delay(ms(200), Scope::AddressUser)
        );
        t.failed(ip(1), Some("alice"));
        assert_eq!(
            t.check(ip(1), Some("alice")),
            Decision::Delay(ms(400), Scope::AddressUser)
        );
        for _ in 6..PAIR_REFUSE_AFTER {
            t.failed(ip(1), Some("alice"));
        }
        assert_eq!(
            t.check(ip(1), Some("alice")),
            Decision::Refuse(Scope::AddressUser)
        );
        // Another user behind the same address (a NAT) is neither refused nor slowed down,
        // even after 30 failures for alice.
        for _ in PAIR_REFUSE_AFTER..30 {
            t.failed(ip(1), Some("alice"));
        }
        assert_eq!(t.check(ip(1), Some("bob")), Decision::Allow);
        assert_eq!(t.check(ip(1), None), Decision::Allow);
        // alice elsewhere is slowed down (the name's 30 failures), not refused.
        assert_eq!(
            t.check(ip(2), Some("alice")),
            Decision::Delay(MAX_DELAY, Scope::User)
        );
    }

    #[test]
    fn an_address_spraying_names_is_slowed_then_refused() {
        let t = Throttle::with_slots(4);
        // Repeated failures for one name are one name.
        for _ in 0..3 {
            t.failed(ip(1), Some("n0"));
        }
        for n in 1..SPRAY_DELAY_AFTER - 1 {
            t.failed(ip(1), Some(&format!("n{n}")));
        }
        assert_eq!(t.check(ip(1), Some("fresh")), Decision::Allow);
        // A bad token counts as one more name.
        t.failed(ip(1), None);
        t.failed(ip(1), None);
        assert_eq!(
            t.check(ip(1), Some("fresh")),
            Decision::Delay(ms(200), Scope::Address)
        );
        for n in SPRAY_DELAY_AFTER..SPRAY_REFUSE_AFTER {
            t.failed(ip(1), Some(&format!("n{n}")));
        }
        assert_eq!(
            t.check(ip(1), Some("fresh")),
            Decision::Refuse(Scope::Address)
        );
        assert_eq!(
            t.check(ip(1), None),
            Decision::Refuse(Scope::Address),
            "tokens and cookies from a spraying address too"
        );
        assert_eq!(t.check(ip(2), Some("fresh")), Decision::Allow);
        // The set stays bounded however many names fail.
        for n in 0..1000 {
            t.failed(ip(1), Some(&format!("m{n}")));
        }
        let names = t.addresses.get(&source(ip(1))).unwrap();
        assert_eq!(lock(&names).len, SPRAY_REFUSE_AFTER);
    }

    #[test]
    fn a_user_under_attack_is_not_locked_out_from_a_clean_address() {
        let t = Throttle::with_slots(4);
        for n in 0..60 {
            t.failed(ip(n), Some("alice"));
        }
        assert_eq!(
            t.check(ip(200), Some("alice")),
            Decision::Delay(MAX_DELAY, Scope::User)
        );
        assert_eq!(
            t.check(ip(3), Some("alice")),
            Decision::Refuse(Scope::User),
            "an address that failed for the name is refused"
        );
        assert_eq!(t.check(ip(3), Some("bob")), Decision::Allow);
        assert_eq!(t.check(ip(200), Some("bob")), Decision::Allow);
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source(Some(a)), source(Some(b)));
        assert_ne!(source(Some(a)), source(Some(c)));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(source(Some(mapped)), source(ip(1)));
    }

    #[test]
    fn counters_are_forgotten_after_a_window_without_failures() {
        let t = Throttle::with_slots(4);
        assert!(t.quiet(t.now()), "nothing failed yet");
        for _ in 0..PAIR_REFUSE_AFTER {
            t.failed(ip(1), Some("alice"));
        }
        assert_eq!(
            t.check(ip(1), Some("alice")),
            Decision::Refuse(Scope::AddressUser)
        );
        // Checks inside the window see the counters, even a second before its end.
        t.skipped
            .store(FORGET_AFTER.as_secs() - 1, Ordering::Relaxed);
        assert_eq!(
            t.check(ip(1), Some("alice")),
            Decision::Refuse(Scope::AddressUser)
        );
        // Past the window, everything is allowed without looking anything up...
        t.skipped
            .store(FORGET_AFTER.as_secs() + 1, Ordering::Relaxed);
        assert!(t.quiet(t.now()));
        assert_eq!(t.check(ip(1), Some("alice")), Decision::Allow);
        // ...and the next failure counts from zero, not from the old counters.
        t.failed(ip(1), Some("alice"));
        assert_eq!(t.check(ip(1), Some("alice")), Decision::Allow);
        for _ in 1..PAIR_DELAY_AFTER {
            t.failed(ip(1), Some("alice"));
        }
        assert_eq!(
            t.check(ip(1), Some("alice")),
            Decision::Delay(ms(200), Scope::AddressUser)
        );
    }

    #[test]
    fn delays_grow_and_are_capped() {
        assert_eq!(delay(4, 5), None);
        assert_eq!(delay(5, 5), Some(ms(200)));
        assert_eq!(delay(6, 5), Some(ms(400)));
        assert_eq!(delay(100, 5), Some(MAX_DELAY));
        assert_eq!(share_of(1), 1);
        assert_eq!(share_of(2), 1);
        assert_eq!(share_of(8), 2);
        assert_eq!(share_of(64), 16);
    }

    #[tokio::test]
    async fn attempts_in_flight_count_like_failures() {
        let t = Throttle::with_slots(64); // a share of 16: no waiting here
        let mut held = Vec::new();
        for _ in 0..PAIR_DELAY_AFTER {
            held.push(admitted(&t, ip(1), "alice").await);
        }
        // Nothing has failed, yet the next guess is slowed down: 5 are being verified.
        assert_eq!(
            t.check(ip(1), Some("alice")),
            Decision::Delay(ms(200), Scope::AddressUser)
        );
        assert_eq!(t.check(ip(1), Some("bob")), Decision::Allow);
        // With failures, in flight + failed reaching the limit refuses before verifying.
        for _ in 0..PAIR_REFUSE_AFTER - PAIR_DELAY_AFTER {
            t.failed(ip(1), Some("alice"));
        }
        let r = refused(&t, ip(1), Some("alice")).await.unwrap();
        assert_eq!(r.scope, Scope::AddressUser);
        assert!(r.retry_after > 1 && r.retry_after <= FORGET_AFTER.as_secs() + 1);
        // Answered attempts leave the in-flight counts; their maps empty out.
        drop(held);
        assert_eq!(
            t.check(ip(1), Some("alice")),
            Decision::Delay(MAX_DELAY, Scope::AddressUser)
        );
        let in_flight = lock(&t.in_flight);
        assert!(in_flight.addresses.is_empty() && in_flight.pairs.is_empty());
        assert!(in_flight.users.is_empty());
    }

    #[tokio::test]
    async fn one_address_holds_its_share_of_the_slots_and_a_bounded_queue() {
        let mut t = Throttle::with_slots(8);
        assert_eq!(t.share, 2);
        t.slot_wait = Duration::from_secs(600);
        let t = Arc::new(t);
        // Two attempts hold the address's share (different names: no pair pauses).
        let a = admitted(&t, ip(1), "u0").await;
        let b = admitted(&t, ip(1), "u1").await;
        // The next ones of that address wait in its queue, up to WAITING_PER_ADDRESS...
        let waiting: Vec<_> = (0..WAITING_PER_ADDRESS)
            .map(|n| {
                let t = t.clone();
                tokio::spawn(async move {
                    let name = format!("w{n}");
                    matches!(t.admit(ip(1), || Some(&name)).await, Verdict::Admitted(_))
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&t.in_flight).addresses[&source(ip(1))].1 < 2 + WAITING_PER_ADDRESS {
            assert!(Instant::now() < deadline, "the waiters never registered");
            tokio::task::yield_now().await;
        }
        // ...and any beyond are refused at once.
        let r = refused(&t, ip(1), Some("one-too-many")).await.unwrap();
        assert_eq!((r.scope, r.retry_after), (Scope::Slots, 1));
        // Another address is not behind them.
        let other = admitted(&t, ip(2), "alice").await;
        assert!(other.slot.is_some());
        drop((a, b, other));
        for w in waiting {
            assert!(w.await.unwrap(), "a waiter gets its turn");
        }
    }

    #[tokio::test]
    async fn a_waiter_whose_wait_runs_out_is_refused() {
        let mut t = Throttle::with_slots(1);
        t.slot_wait = Duration::ZERO;
        let _holder = admitted(&t, ip(1), "u0").await;
        let r = refused(&t, ip(1), Some("u1")).await.unwrap();
        assert_eq!(r.scope, Scope::Slots);
        assert_eq!(lock(&t.in_flight).addresses[&source(ip(1))].1, 1);
    }

    /// 300 concurrent guesses from one address, each verified (counted) then failed unless
    /// refused: the verifications are bounded by the policy, not by the flood.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_flood_of_concurrent_guesses_is_mostly_refused_before_verification() {
        for (spray, bound) in [
            (false, PAIR_REFUSE_AFTER as usize),
            (true, SPRAY_REFUSE_AFTER),
        ] {
            let mut t = Throttle::with_slots(8);
            t.max_delay = Duration::ZERO; // the policy, not the pauses, is under test
            let t = Arc::new(t);
            let verified = Arc::new(AtomicUsize::new(0));
            let guesses: Vec<_> = (0..300)
                .map(|n| {
                    let (t, verified) = (t.clone(), verified.clone());
                    tokio::spawn(async move {
                        let name = if spray {
                            format!("n{n}")
                        } else {
                            "alice".into()
                        };
                        match t.admit(ip(1), || Some(&name)).await {
                            Verdict::Admitted(_attempt) => {
                                verified.fetch_add(1, Ordering::Relaxed);
                                tokio::task::yield_now().await; // the hash
                                t.failed(ip(1), Some(&name));
                                None
                            }
                            Verdict::Refused(r) => Some(r.scope),
                        }
                    })
                })
                .collect();
            let mut refusals = HashMap::new();
            for g in guesses {
                if let Some(scope) = g.await.unwrap() {
                    *refusals.entry(scope).or_insert(0) += 1;
                }
            }
            let mut verified = verified.load(Ordering::Relaxed);
            assert!(
                verified <= bound + t.share,
                "spray={spray}: {verified} verified, {refusals:?}"
            );
            assert_eq!(verified + refusals.values().sum::<usize>(), 300);
            // Guessing on, one at a time, ends in a refusal by the policy within the same
            // bound (the flood may have been refused for slots before reaching it).
            let refusal = loop {
                let name = if spray {
                    format!("after-{verified}")
                } else {
                    "alice".into()
                };
                match t.admit(ip(1), || Some(&name)).await {
                    Verdict::Admitted(_attempt) => {
                        verified += 1;
                        t.failed(ip(1), Some(&name));
                    }
                    Verdict::Refused(r) => break r,
                }
                assert!(verified <= bound + t.share, "spray={spray}: never refused");
            };
            let scope = if spray {
                Scope::Address
            } else {
                Scope::AddressUser
            };
            assert_eq!(refusal.scope, scope);
            // Another user at that address is untouched by a single-name flood.
            if !spray {
                assert_eq!(t.check(ip(1), Some("bob")), Decision::Allow);
            }
        }
    }

    #[tokio::test]
    async fn requests_without_a_name_pass_while_quiet_and_hold_nothing() {
        let t = Throttle::with_slots(1);
        let _a = match t.admit(ip(1), || None).await {
            Verdict::Admitted(a) => a,
            Verdict::Refused(r) => panic!("{r:?}"),
        };
        // Failed tokens alone do not slow down the address's token requests.
        for _ in 0..100 {
            t.failed(ip(1), None);
        }
        assert_eq!(t.check(ip(1), None), Decision::Allow);
        assert!(refused(&t, ip(1), None).await.is_none());
        assert!(lock(&t.in_flight).addresses.is_empty());
    }
}
