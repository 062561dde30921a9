//! The failed-authentication limiter: a client address that keeps presenting wrong credentials
//! (webhook token, `/-/reload`, API tokens) is refused unread for a while.
//!
//! Each address has a budget (`http.auth_failure_burst`, refilled at
//! `http.auth_failures_per_minute`) spent only by failures, so Alertmanager presenting the right
//! token never spends anything and is never slowed by another address's guessing. Once an
//! address has spent its budget, its requests are answered 429 *before* their credentials are
//! looked at — otherwise a guess that happens to be right would still tell the guesser so — until
//! the budget refills by one. Guessing thus runs at the refill rate (30 a minute by default),
//! not at the ~2,500 a second the daemon can answer. IPv6 clients are keyed by their /64, which
//! one host usually owns whole.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Failed-authentication budgets per client address.
pub struct AuthThrottle {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses refused until the given instant.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl std::fmt::Debug for AuthThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthThrottle")
    }
}

impl AuthThrottle {
    /// A throttle allowing `burst` failures at once, refilled at `per_minute`.
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32) -> AuthThrottle {
        AuthThrottle {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `ip` is refused: answer 429 with `Retry-After: wait` without reading
    /// its credentials.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let key = client_key(ip);
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let Some(until) = blocked.get(&key).copied() else {
            return Ok(());
        };
        let now = Instant::now();
        if until > now {
            return Err(until - now);
        }
        blocked.remove(&key);
        Ok(())
    }

    /// Records a failed authentication from `ip`. `Some(wait)` when that spent the last of its
    /// budget: this request and the next ones for `wait` are answered 429.
    pub fn failed(&self, ip: IpAddr) -> Option<Duration> {
        let key = client_key(ip);
        let not_until = self.limiter.check_key(&key).err()?;
        let wait = not_until
            .wait_time_from(self.limiter.clock().now())
            .max(Duration::from_millis(1));
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Instant::now() + wait);
        Some(wait)
    }

    /// Forgets addresses whose block ended and budgets that are full again, so the maps cannot
    /// grow without bound.
    pub fn prune(&self) {
        let now = Instant::now();
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, until| *until > now);
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// The key of a client: its IPv4 address, or its IPv6 /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(burst: u32) -> AuthThrottle {
        AuthThrottle::new(NonZeroU32::new(1).unwrap(), NonZeroU32::new(burst).unwrap())
    }

    #[test]
    fn failures_beyond_the_burst_block_that_address_only() {
        let t = throttle(3);
        let guesser: IpAddr = "10.0.0.9".parse().unwrap();
        let alertmanager: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.check(guesser), Ok(()));
            assert_eq!(t.failed(guesser), None);
        }
        let wait = t
            .failed(guesser)
            .expect("the fourth failure spends the budget");
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        assert!(t.check(guesser).is_err());
        assert_eq!(t.check(alertmanager), Ok(()));
        t.prune();
        assert!(t.check(guesser).is_err(), "pruning keeps live blocks");
    }

    #[test]
    fn a_block_ends_when_its_time_is_up() {
        let t = throttle(1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(t.failed(ip), None);
        assert!(t.failed(ip).is_some());
        // As if the wait had passed.
        t.blocked
            .lock()
            .unwrap()
            .insert(ip, Instant::now() - Duration::from_millis(1));
        assert_eq!(t.check(ip), Ok(()));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
