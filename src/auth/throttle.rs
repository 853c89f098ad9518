//! Brute-force protection: repeated failed logins from one client address, or for one user,
//! are slowed down and then refused for a while.
//!
//! An address is refused after many failures of its own. A user name under attack from many
//! addresses is only slowed down — and refused only at addresses that have failed themselves —
//! so the real user, logging in from an address with no failures, is never locked out.
//! Counters are forgotten after [`FORGET_AFTER`] without failures; a success resets nothing (a
//! sprayer who also signs in with an account of their own stays counted). Credentials the
//! gateway has already verified (the Basic Auth cache) are answered before the throttle is
//! asked, so an attack on a user or from a shared address (a NAT) never delays or refuses a
//! client whose credentials are known good.
//!
//! While no login has failed for [`FORGET_AFTER`], every counter is zero; checks then skip
//! the counter lookups (two hash-map reads per request on the hot path).

use moka::sync::Cache;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const FORGET_AFTER: Duration = Duration::from_secs(300);
const IP_DELAY_AFTER: u32 = 5;
const IP_REFUSE_AFTER: u32 = 20;
const USER_DELAY_AFTER: u32 = 10;
const USER_REFUSE_AFTER: u32 = 50;
const MAX_DELAY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Verify, but only after this pause.
    Delay(Duration),
    /// Refuse (429) without verifying.
    Refuse,
}

pub struct Throttle {
    by_ip: Cache<IpAddr, Arc<AtomicU32>>,
    by_user: Cache<String, Arc<AtomicU32>>,
    /// Whole seconds from `epoch` to the last recorded failure, plus one (0: none yet).
    last_failure: AtomicU64,
    epoch: Instant,
    /// Seconds added to the clock, so tests can pass the window without waiting.
    #[cfg(test)]
    skipped: AtomicU64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            by_ip: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(FORGET_AFTER)
                .build(),
            by_user: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(FORGET_AFTER)
                .build(),
            last_failure: AtomicU64::new(0),
            epoch: Instant::now(),
            #[cfg(test)]
            skipped: AtomicU64::new(0),
        }
    }
}

fn delay(failures: u32, after: u32) -> Duration {
    let steps = failures.saturating_sub(after).min(10);
    (Duration::from_millis(100) * (1u32 << steps)).min(MAX_DELAY)
}

impl Throttle {
    /// Seconds since `epoch`, plus one so that 0 can mean "never".
    fn now(&self) -> u64 {
        let now = self.epoch.elapsed().as_secs() + 1;
        #[cfg(test)]
        let now = now + self.skipped.load(Ordering::Relaxed);
        now
    }

    /// True when no failure was recorded within the last [`FORGET_AFTER`] (rounded up to
    /// whole seconds), so every counter is known to be zero.
    fn quiet(&self) -> bool {
        let last = self.last_failure.load(Ordering::Relaxed);
        last == 0 || self.now() > last + FORGET_AFTER.as_secs()
    }

    /// What to do with an attempt from `ip` for `user`, before verifying it.
    /// `user` is asked for only while failures are being counted: decoding it is work that a
    /// quiet gateway (the usual case) does not need.
    pub fn check<'u>(&self, ip: Option<IpAddr>, user: impl FnOnce() -> Option<&'u str>) -> Verdict {
        if self.quiet() {
            return Verdict::Allow;
        }
        let user = user();
        let ip_failures = ip
            .and_then(|ip| self.by_ip.get(&ip))
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0);
        let user_failures = user
            .and_then(|u| self.by_user.get(u))
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0);
        if ip_failures >= IP_REFUSE_AFTER || (user_failures >= USER_REFUSE_AFTER && ip_failures > 0)
        {
            return Verdict::Refuse;
        }
        let d = delay(ip_failures, IP_DELAY_AFTER - 1)
            .max(delay(user_failures, USER_DELAY_AFTER - 1))
            .min(MAX_DELAY);
        if ip_failures >= IP_DELAY_AFTER || user_failures >= USER_DELAY_AFTER {
            Verdict::Delay(d)
        } else {
            Verdict::Allow
        }
    }

    pub fn failed(&self, ip: Option<IpAddr>, user: Option<&str>) {
        if self.quiet() {
            // Counters that were only kept alive by reads are older than the window: the
            // first failure after a quiet spell starts from zero, as the fast path assumed.
            self.by_ip.invalidate_all();
            self.by_user.invalidate_all();
        }
        self.last_failure.store(self.now(), Ordering::Relaxed);
        if let Some(ip) = ip {
            self.by_ip
                .get_with(ip, Default::default)
                .fetch_add(1, Ordering::Relaxed);
        }
        if let Some(u) = user {
            // Bound the key: user names of attackers can be arbitrarily long.
            let key: String = u.chars().take(128).collect();
            self.by_user
                .get_with(key, Default::default)
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn an_address_is_slowed_then_refused() {
        let t = Throttle::default();
        for _ in 0..4 {
            t.failed(ip(1), Some("alice"));
        }
        assert_eq!(t.check(ip(1), || Some("alice")), Verdict::Allow);
        t.failed(ip(1), Some("alice"));
        assert_eq!(
            t.check(ip(1), || Some("alice")),
            Verdict::Delay(Duration::from_millis(200))
        );
        for _ in 0..15 {
            t.failed(ip(1), Some("bob"));
        }
        assert_eq!(t.check(ip(1), || Some("carol")), Verdict::Refuse);
        // Other addresses are unaffected by this address's failures.
        assert_eq!(t.check(ip(2), || Some("carol")), Verdict::Allow);
        // A success does not clear the address: a sprayer who also signs in with an account of
        // their own stays counted (the gateway never records successes here).
    }

    #[test]
    fn a_user_under_attack_is_not_locked_out_from_a_clean_address() {
        let t = Throttle::default();
        for n in 0..60 {
            t.failed(ip(n), Some("alice"));
        }
        assert_eq!(
            t.check(ip(200), || Some("alice")),
            Verdict::Delay(MAX_DELAY)
        );
        assert_eq!(
            t.check(ip(3), || Some("alice")),
            Verdict::Refuse,
            "an attacking address is refused"
        );
        assert_eq!(t.check(ip(200), || Some("bob")), Verdict::Allow);
    }

    #[test]
    fn counters_are_forgotten_after_a_window_without_failures() {
        let t = Throttle::default();
        assert!(t.quiet(), "nothing failed yet");
        for _ in 0..IP_REFUSE_AFTER {
            t.failed(ip(1), Some("alice"));
        }
        assert_eq!(t.check(ip(1), || Some("alice")), Verdict::Refuse);
        // Checks inside the window see the counters, even a second before its end.
        t.skipped
            .store(FORGET_AFTER.as_secs() - 1, Ordering::Relaxed);
        assert_eq!(t.check(ip(1), || Some("alice")), Verdict::Refuse);
        assert_eq!(t.check(ip(1), || Some("alice")), Verdict::Refuse);
        // Past the window, everything is allowed without looking anything up...
        t.skipped
            .store(FORGET_AFTER.as_secs() + 1, Ordering::Relaxed);
        assert_eq!(t.check(ip(1), || Some("alice")), Verdict::Allow);
        // ...and the next failure counts from zero, not from the old counters.
        t.failed(ip(1), Some("alice"));
        assert_eq!(t.check(ip(1), || Some("alice")), Verdict::Allow);
        for _ in 1..IP_DELAY_AFTER {
            t.failed(ip(1), Some("alice"));
        }
        assert_eq!(
            t.check(ip(1), || Some("alice")),
            Verdict::Delay(Duration::from_millis(200))
        );
    }

    #[test]
    fn delays_grow_and_are_capped() {
        assert_eq!(delay(5, 4), Duration::from_millis(200));
        assert_eq!(delay(6, 4), Duration::from_millis(400));
        assert_eq!(delay(100, 4), MAX_DELAY);
    }
}
