//! In-memory rate limiting: an exact sliding-window log per key, and a per-key limit on
//! requests in flight. Self-contained: knows keys and instants, nothing of HTTP or users.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// The outcome of one check, with what the `x-ratelimit-*` headers need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the oldest counted request leaves the window.
    pub reset_s: u64,
}

/// At most `limit` events per `window` per key, counted over the last `window` exactly.
/// Memory is bounded: each key keeps at most `limit` instants, keys idle for a window are
/// swept, and past `max_keys` the least recently seen keys are dropped.
pub struct SlidingWindow {
    limit: u32,
    window: Duration,
    max_keys: usize,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, VecDeque<Instant>>>>,
}

impl SlidingWindow {
    pub fn new(limit: u32, window: Duration, max_keys: usize) -> SlidingWindow {
        SlidingWindow {
            limit: limit.max(1),
            window,
            max_keys: max_keys.max(SHARDS),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, VecDeque<Instant>>> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// Counts one event for `key` at `now` if it fits.
    pub fn check(&self, key: &str, now: Instant) -> Decision {
        let mut map = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(key) && map.len() >= self.max_keys / SHARDS {
            self.evict(&mut map, now);
        }
        let log = map.entry(key.to_string()).or_default();
        while log
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            log.pop_front();
        }
        let allowed = (log.len() as u32) < self.limit;
        if allowed {
            log.push_back(now);
        }
        let reset_s = log
            .front()
            .map(|t| {
                (self.window.saturating_sub(now.duration_since(*t)))
                    .as_secs_f64()
                    .ceil() as u64
            })
            .unwrap_or(0)
            .max(1);
        Decision {
            allowed,
            limit: self.limit,
            remaining: self.limit.saturating_sub(log.len() as u32),
            reset_s,
        }
    }

    /// Drops keys idle for a whole window; if the shard is still full, the half seen least
    /// recently.
    fn evict(&self, map: &mut HashMap<String, VecDeque<Instant>>, now: Instant) {
        map.retain(|_, log| {
            log.back()
                .is_some_and(|t| now.duration_since(*t) < self.window)
        });
        let cap = self.max_keys / SHARDS;
        if map.len() >= cap {
            let mut seen: Vec<(Instant, String)> = map
                .iter()
                .map(|(k, log)| (log.back().copied().unwrap_or(now), k.clone()))
                .collect();
            seen.sort();
            for (_, k) in seen.into_iter().take(cap / 2 + 1) {
                map.remove(&k);
            }
        }
    }

    /// Keys currently tracked (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// At most `limit` requests in flight per key. `enter` hands out a guard that leaves on drop.
pub struct Concurrency {
    limit: u32,
    inner: Arc<Mutex<HashMap<String, u32>>>,
}

pub struct InFlight {
    key: String,
    inner: Arc<Mutex<HashMap<String, u32>>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl Concurrency {
    pub fn new(limit: u32) -> Concurrency {
        Concurrency {
            limit: limit.max(1),
            inner: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// A guard when `key` has fewer than `limit` requests in flight, else `None`.
    pub fn enter(&self, key: &str) -> Option<InFlight> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.to_string()).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(InFlight {
            key: key.to_string(),
            inner: self.inner.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_exactly_and_slides() {
        let w = SlidingWindow::new(5, Duration::from_secs(60), 1000);
        let t0 = Instant::now();
        for i in 0..5 {
            let d = w.check("ip", t0 + Duration::from_secs(i));
            assert!(d.allowed);
            assert_eq!(d.remaining, 4 - i as u32);
        }
        let d = w.check("ip", t0 + Duration::from_secs(10));
        assert!(!d.allowed);
        assert_eq!(d.reset_s, 50);
        assert!(w.check("other", t0).allowed, "keys are independent");
        // The first event leaves the window at t0+60.
        assert!(w.check("ip", t0 + Duration::from_secs(60)).allowed);
        assert!(!w.check("ip", t0 + Duration::from_secs(60)).allowed);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_keys() {
        let w = SlidingWindow::new(5, Duration::from_secs(60), 1600);
        let t0 = Instant::now();
        for i in 0..100_000 {
            w.check(&format!("10.0.{}.{}", i / 256, i % 256), t0);
        }
        assert!(w.len() <= 1600, "{} keys", w.len());
        assert!(
            w.len() >= 800,
            "eviction keeps the recent half: {}",
            w.len()
        );
    }

    #[test]
    fn concurrency_guard_releases_on_drop() {
        let c = Concurrency::new(2);
        let a = c.enter("u").unwrap();
        let _b = c.enter("u").unwrap();
        assert!(c.enter("u").is_none());
        assert!(c.enter("v").is_some());
        drop(a);
        assert!(c.enter("u").is_some());
    }
}
