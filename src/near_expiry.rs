//! "Warn once per token" bookkeeping.
//!
//! The trait is what the gate needs; `LocalWarnings` answers it for one worker. The
//! process-wide registry (shared data) will answer it for all workers at once.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::token::Fingerprint;

pub trait WarnOnce {
    /// True exactly once per token (per scope of the implementation): the caller emits the
    /// warning only then.
    fn first_warning(&self, token: &Fingerprint, exp: u64, now: u64) -> bool;
}

/// Remembers warned tokens in this worker, bounded by `capacity`: tokens past expiry are
/// forgotten first, then the soonest to expire.
pub struct LocalWarnings {
    capacity: usize,
    seen: RefCell<HashMap<Fingerprint, u64>>,
}

impl LocalWarnings {
    pub fn new(capacity: usize) -> Self {
        LocalWarnings { capacity: capacity.max(1), seen: RefCell::new(HashMap::new()) }
    }

    pub fn len(&self) -> usize {
        self.seen.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl WarnOnce for LocalWarnings {
    fn first_warning(&self, token: &Fingerprint, exp: u64, now: u64) -> bool {
        let Ok(mut seen) = self.seen.try_borrow_mut() else {
            return false; // re-entrancy cannot happen in a single-threaded VM; stay quiet if it does
        };
        if seen.contains_key(token) {
            return false;
        }
        if seen.len() >= self.capacity {
            seen.retain(|_, e| *e > now);
            if seen.len() >= self.capacity {
                if let Some(victim) = seen.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k) {
                    seen.remove(&victim);
                }
            }
        }
        seen.insert(*token, exp);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u8) -> Fingerprint {
        Fingerprint([n; 32])
    }

    #[test]
    fn warns_once_per_token() {
        let w = LocalWarnings::new(8);
        assert!(w.first_warning(&fp(1), 100, 50));
        assert!(!w.first_warning(&fp(1), 100, 51));
        assert!(w.first_warning(&fp(2), 100, 51));
    }

    #[test]
    fn stays_bounded_and_forgets_expired_first() {
        let w = LocalWarnings::new(2);
        assert!(w.first_warning(&fp(1), 10, 0));
        assert!(w.first_warning(&fp(2), 100, 0));
        assert!(w.first_warning(&fp(3), 200, 20)); // fp(1) expired: evicted
        assert_eq!(w.len(), 2);
        assert!(!w.first_warning(&fp(2), 100, 20));
        assert!(w.first_warning(&fp(4), 300, 20)); // full, none expired: soonest (fp 2) goes
        assert_eq!(w.len(), 2);
        assert!(!w.first_warning(&fp(3), 200, 20));
    }
}
