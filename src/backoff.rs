//! Retry timing shared by every mechanism that calls out (token refresh, the egress token,
//! the revocation feed): one doubling backoff and one lease length.

/// `base` seconds after the first failure, doubling with each further one, at most `max`.
pub fn doubling(base: u64, failures: u32, max: u64) -> u64 {
    let shift = failures.saturating_sub(1).min(16);
    base.saturating_mul(1u64 << shift).min(max)
}

/// Until when a worker holds a lease for a call with `timeout_ms`: the call's deadline
/// rounded up to whole seconds, plus one, so the lease never lapses while the call may
/// still answer.
pub fn lease_until(now: u64, timeout_ms: u64) -> u64 {
    now.saturating_add(timeout_ms.div_ceil(1000)).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let seq: Vec<u64> = (1..=6).map(|f| doubling(5, f, 60)).collect();
        assert_eq!(seq, vec![5, 10, 20, 40, 60, 60]);
        assert_eq!(doubling(5, 0, 60), 5);
        assert_eq!(doubling(u64::MAX, 40, u64::MAX), u64::MAX);
        assert_eq!(lease_until(100, 1), 102);
        assert_eq!(lease_until(100, 1000), 102);
        assert_eq!(lease_until(100, 1001), 103);
        assert_eq!(lease_until(u64::MAX, 5000), u64::MAX);
    }
}
