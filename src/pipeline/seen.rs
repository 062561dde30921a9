//! The dedup cache: the alert occurrences this process has committed, so that Alertmanager's
//! re-sends are answered without the store.
//!
//! Hand-written rather than `moka` (which it replaced): the cache only ever answers "seen or
//! not", and moka kept about 500 bytes per entry (measured: 36 MiB of RSS for 72,000 fresh
//! alerts), which made memory grow with every new alert up to `dedup.cache_capacity`. Here an
//! occurrence is a 128-bit keyed hash of its [`DedupKey`] (two SipHash passes with random keys),
//! about 20 bytes in a hash set. A false "seen" would drop a new alert, so the hash is wide
//! enough that one is not expected in the life of the universe (2⁻¹²⁸ per pair).
//!
//! Bounds, as before: `capacity` entries and `ttl`. Entries live in two generations; the current
//! one is retired when it holds half the capacity or is half the TTL old, and the retired one is
//! then dropped. So an entry is kept at least half the TTL (unless the capacity pushes it out
//! sooner), never longer than the TTL, and the set never holds more than `capacity`. Forgetting
//! early is always safe: the store's unique index is the dedup truth.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::alert::DedupKey;

/// Occurrences committed by this process (see the module documentation).
pub(super) struct Seen {
    generations: Mutex<Generations>,
    keys: (RandomState, RandomState),
    capacity: usize,
    ttl: Duration,
}

struct Generations {
    current: HashSet<u128, BuildHasherDefault<Spread>>,
    previous: HashSet<u128, BuildHasherDefault<Spread>>,
    /// When the current generation began.
    started: Instant,
    /// When the previous one began: it is dropped a TTL after that.
    previous_started: Instant,
}

impl Seen {
    /// An empty cache of at most `capacity` occurrences, each kept at most `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Seen {
        Seen {
            generations: Mutex::new(Generations {
                current: HashSet::default(),
                previous: HashSet::default(),
                started: Instant::now(),
                previous_started: Instant::now(),
            }),
            keys: (RandomState::new(), RandomState::new()),
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            ttl,
        }
    }

    fn hash(&self, key: &DedupKey) -> u128 {
        (u128::from(self.keys.0.hash_one(key)) << 64) | u128::from(self.keys.1.hash_one(key))
    }

    fn generations(&self, now: Instant) -> std::sync::MutexGuard<'_, Generations> {
        let mut g = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        let age = now.saturating_duration_since(g.started);
        if age >= self.ttl {
            g.current.clear();
            g.previous.clear();
            g.started = now;
        } else if age >= self.ttl / 2 || g.current.len() >= self.capacity.div_ceil(2) {
            g.previous = std::mem::take(&mut g.current);
            g.previous_started = g.started;
            g.started = now;
        }
        // Retired late (nothing asked for a while): still dropped a TTL after it began.
        if !g.previous.is_empty() && now.saturating_duration_since(g.previous_started) >= self.ttl {
            g.previous.clear();
        }
        g
    }

    /// Whether this process committed `key` (and still remembers it).
    pub fn contains(&self, key: &DedupKey) -> bool {
        self.contains_at(key, Instant::now())
    }

    /// Remembers a committed occurrence.
    pub fn insert(&self, key: &DedupKey) {
        self.insert_at(key, Instant::now());
    }

    fn contains_at(&self, key: &DedupKey, now: Instant) -> bool {
        let h = self.hash(key);
        let g = self.generations(now);
        g.current.contains(&h) || g.previous.contains(&h)
    }

    fn insert_at(&self, key: &DedupKey, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let h = self.hash(key);
        self.generations(now).current.insert(h);
    }

    /// Occurrences remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        let g = self.generations(Instant::now());
        g.current.len() + g.previous.len()
    }
}

/// The set's hasher: the key is already a uniform random hash, so its low bits are the hash.
#[derive(Default)]
struct Spread(u64);

impl Hasher for Spread {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Status;

    fn key(n: i64) -> DedupKey {
        DedupKey {
            fingerprint: format!("{n:016x}"),
            status: Status::Firing,
            starts_at_ms: n,
        }
    }

    #[test]
    fn a_committed_occurrence_is_seen_and_a_different_one_is_not() {
        let seen = Seen::new(100, Duration::from_secs(3600));
        seen.insert(&key(1));
        assert!(seen.contains(&key(1)));
        assert!(!seen.contains(&key(2)));
        let resolved = DedupKey {
            status: Status::Resolved,
            ..key(1)
        };
        assert!(!seen.contains(&resolved), "the status is part of the key");
    }

    #[test]
    fn it_never_holds_more_than_its_capacity_and_keeps_the_newest_half() {
        let seen = Seen::new(1000, Duration::from_secs(3600));
        for n in 0..10_000 {
            seen.insert(&key(n));
            assert!(seen.len() <= 1000);
        }
        for n in 9_500..10_000 {
            assert!(seen.contains(&key(n)), "{n}");
        }
        assert!(!seen.contains(&key(0)));
    }

    #[test]
    fn entries_are_kept_half_the_ttl_at_least_and_the_ttl_at_most() {
        let ttl = Duration::from_secs(60);
        let seen = Seen::new(100, ttl);
        let t0 = Instant::now();
        seen.insert_at(&key(1), t0);
        assert!(seen.contains_at(&key(1), t0 + ttl / 2 - Duration::from_millis(1)));
        // Retired into the previous generation, still remembered.
        assert!(seen.contains_at(&key(1), t0 + ttl / 2));
        seen.insert_at(&key(2), t0 + ttl / 2);
        assert!(
            !seen.contains_at(&key(1), t0 + ttl),
            "dropped with its generation"
        );
        assert!(seen.contains_at(&key(2), t0 + ttl));
        assert!(
            !seen.contains_at(&key(2), t0 + ttl * 3),
            "a long quiet forgets everything"
        );
    }

    #[test]
    fn a_generation_retired_late_is_still_dropped_a_ttl_after_it_began() {
        let ttl = Duration::from_secs(60);
        let seen = Seen::new(100, ttl);
        let t0 = Instant::now();
        seen.insert_at(&key(1), t0);
        // Nothing happens until just before the TTL: the generation is retired only now.
        let late = t0 + ttl - Duration::from_secs(1);
        assert!(seen.contains_at(&key(1), late));
        assert!(
            !seen.contains_at(&key(1), t0 + ttl),
            "never kept past the TTL"
        );
    }

    #[test]
    fn a_zero_capacity_remembers_nothing() {
        let seen = Seen::new(0, Duration::from_secs(3600));
        seen.insert(&key(1));
        assert!(!seen.contains(&key(1)));
    }
}
