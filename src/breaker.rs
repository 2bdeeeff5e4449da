//! A circuit breaker: closed → open after N consecutive failures → half-open after a
//! cool-down with exactly one probe → closed on its success. Knows only instants.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// May a call go through?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go.
    Allowed,
    /// Half-open: go, as the one probe; report its outcome.
    Probe,
    /// Open (or a probe is already out): not before this instant.
    Rejected { until: Instant },
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

pub struct Breaker {
    threshold: u32,
    cool_down: Duration,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cool_down,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state at `now` (an open circuit past its cool-down reads as half-open).
    pub fn state(&self, now: Instant) -> State {
        match *self.lock() {
            Inner::Closed { .. } => State::Closed,
            Inner::Open { until } if now < until => State::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// When an open circuit will let a probe through.
    pub fn open_until(&self) -> Option<Instant> {
        match *self.lock() {
            Inner::Open { until } => Some(until),
            _ => None,
        }
    }

    /// Asks to make a call at `now`.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => Admission::Allowed,
            Inner::Open { until } if now < until => Admission::Rejected { until },
            Inner::Open { .. } | Inner::HalfOpen { probing: false } => {
                *inner = Inner::HalfOpen { probing: true };
                Admission::Probe
            }
            Inner::HalfOpen { probing: true } => Admission::Rejected {
                until: now + Duration::from_secs(1),
            },
        }
    }

    pub fn on_success(&self) {
        *self.lock() = Inner::Closed { failures: 0 };
    }

    /// Records a failure at `now`; returns true when this failure opened the circuit.
    pub fn on_failure(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        let opens = match *inner {
            Inner::Closed { failures } if failures + 1 >= self.threshold => true,
            Inner::Closed { failures } => {
                *inner = Inner::Closed {
                    failures: failures + 1,
                };
                false
            }
            // A failed probe (or a late failure while half-open) opens it again.
            Inner::HalfOpen { .. } | Inner::Open { .. } => true,
        };
        if opens {
            *inner = Inner::Open {
                until: now + self.cool_down,
            };
        }
        opens
    }

    /// A call that was admitted but did not reach the provider (e.g. no key): a probe
    /// slot is handed back without judging the provider.
    pub fn release_probe(&self) {
        let mut inner = self.lock();
        if let Inner::HalfOpen { probing: true } = *inner {
            *inner = Inner::HalfOpen { probing: false };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_states() {
        let b = Breaker::new(3, Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(b.admit(t0), Admission::Allowed);
        assert!(!b.on_failure(t0));
        assert!(!b.on_failure(t0));
        b.on_success(); // resets the count
        assert!(!b.on_failure(t0));
        assert!(!b.on_failure(t0));
        assert!(b.on_failure(t0), "third consecutive failure opens");
        assert_eq!(b.state(t0), State::Open);
        assert_eq!(
            b.admit(t0 + Duration::from_secs(29)),
            Admission::Rejected {
                until: t0 + Duration::from_secs(30)
            }
        );
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(b.state(t1), State::HalfOpen);
        assert_eq!(b.admit(t1), Admission::Probe);
        assert!(
            matches!(b.admit(t1), Admission::Rejected { .. }),
            "one probe at a time"
        );
        assert!(b.on_failure(t1), "a failed probe opens again");
        assert_eq!(b.state(t1 + Duration::from_secs(1)), State::Open);
        let t2 = t1 + Duration::from_secs(30);
        assert_eq!(b.admit(t2), Admission::Probe);
        b.on_success();
        assert_eq!(b.state(t2), State::Closed);
        assert_eq!(b.admit(t2), Admission::Allowed);
    }
}
