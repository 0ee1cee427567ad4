//! The filter's counters. Names are public interface: Envoy exposes them (prefixed
//! `wasmcustom.`) on `/stats` and `/stats/prometheus`, and dashboards depend on them.

use crate::refresh::FAILURE_KINDS;
use crate::reject::RejectCode;

/// A variant without a parameter must also be listed, with its name, in `plain_counters!`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    Accepted,
    MissingToken,
    Rejected(RejectCode),
    NearExpiryWarning,
    /// Signatures actually checked (a registry hit skips the check).
    SignatureVerified,
    /// Requests whose token the registry already knew as verified.
    RegistryHit,
    RegistryEvicted,
    /// Registry writes abandoned after `MAX_CAS_ATTEMPTS` conflicts.
    RegistryConflict,
    RevocationAdded,
    AdminDenied,
    RefreshStarted,
    RefreshSucceeded,
    RefreshFailed,
    RefreshEscalation,
    /// Requests carrying a superseded token, forwarded with its replacement.
    RefreshHandoff,
    /// Refreshes not made because another replica holds the fleet's claim (etcd).
    RefreshClaimedElsewhere,
    /// Refreshes made without the fleet's claim because etcd could not be asked.
    RefreshUnclaimed,
    /// Answers from etcd applied (list pages, watch events, progress answers).
    StoreUpdates,
    /// Calls to etcd that failed, and watch streams that broke.
    StoreFailures,
    /// Revocations read from etcd and applied.
    StoreEntries,
    /// Keys under `<prefix>revoked/` that break the documented format: skipped.
    StoreMalformed,
    /// Requests refused because etcd has not answered for `max_staleness_seconds`.
    StoreStale,
    /// Admin revocations etcd committed, and those it did not (they hold on one replica).
    RevocationPublished,
    RevocationPublishFailed,
    EgressFetches,
    /// Failed egress token fetches, by `Failure::kind`.
    EgressFailure(&'static str),
    EgressEscalation,
    /// Outgoing requests refused (503) for want of a usable token.
    EgressUnavailable,
    /// Remote key set and discovery fetches started (one process-wide per due fetch).
    KeysFetches,
    /// Failed remote key fetches, by `Failure::kind`.
    KeysFailure(&'static str),
    /// Refetches asked for by a token with an unknown kid.
    KidMissRefetch,
    /// Unknown kids refused without a refetch: one happened less than `min_refetch_seconds` ago.
    KidMissRateLimited,
    /// Requests answered 503 because their provider has no usable keys.
    KeysUnavailable,
}

/// The counters that take no parameter, with their names: the one table `all`, `index` and
/// `name` are read from.
macro_rules! plain_counters {
    ($($variant:ident => $name:literal,)*) => {
        const PLAIN: &[(Counter, &str)] = &[$((Counter::$variant, $name),)*];

        /// Position in `PLAIN`, without a search: this runs on every request.
        fn plain_index(c: Counter) -> Option<usize> {
            let mut i = 0;
            $(
                if let Counter::$variant = c {
                    return Some(i);
                }
                i += 1;
            )*
            let _ = i;
            None
        }
    };
}

plain_counters! {
    Accepted => "tokenguard.requests.accepted",
    MissingToken => "tokenguard.requests.missing_token",
    NearExpiryWarning => "tokenguard.near_expiry_warnings",
    SignatureVerified => "tokenguard.signature_verifications",
    RegistryHit => "tokenguard.registry.hits",
    RegistryEvicted => "tokenguard.registry.evictions",
    RegistryConflict => "tokenguard.registry.conflicts",
    RevocationAdded => "tokenguard.revocations.added",
    AdminDenied => "tokenguard.admin.denied",
    RefreshStarted => "tokenguard.refresh.started",
    RefreshSucceeded => "tokenguard.refresh.succeeded",
    RefreshFailed => "tokenguard.refresh.failed",
    RefreshEscalation => "tokenguard.refresh.escalations",
    RefreshHandoff => "tokenguard.refresh.handoffs",
    RefreshClaimedElsewhere => "tokenguard.refresh.claimed_elsewhere",
    RefreshUnclaimed => "tokenguard.refresh.unclaimed",
    StoreUpdates => "tokenguard.revocation_store.updates",
    StoreFailures => "tokenguard.revocation_store.failures",
    StoreEntries => "tokenguard.revocation_store.entries",
    StoreMalformed => "tokenguard.revocation_store.malformed_keys",
    StoreStale => "tokenguard.revocation_store.stale_rejections",
    RevocationPublished => "tokenguard.revocations.published",
    RevocationPublishFailed => "tokenguard.revocations.publish_failed",
    EgressFetches => "tokenguard.egress.fetches",
    EgressEscalation => "tokenguard.egress.escalations",
    EgressUnavailable => "tokenguard.egress.unavailable",
    KeysFetches => "tokenguard.remote_jwks.fetches",
    KidMissRefetch => "tokenguard.remote_jwks.kid_miss_refetches",
    KidMissRateLimited => "tokenguard.remote_jwks.kid_miss_rate_limited",
    KeysUnavailable => "tokenguard.remote_jwks.unavailable",
}

impl Counter {
    /// Every counter, in `index` order, for hosts that define metrics up front: the plain
    /// ones, then one per rejection code, then one per egress failure kind.
    pub fn all() -> Vec<Counter> {
        let mut v: Vec<Counter> = PLAIN.iter().map(|(c, _)| *c).collect();
        v.extend(RejectCode::ALL.into_iter().map(Counter::Rejected));
        v.extend(FAILURE_KINDS.into_iter().map(Counter::EgressFailure));
        v.extend(FAILURE_KINDS.into_iter().map(Counter::KeysFailure));
        v
    }

    /// Position in `all()`.
    pub fn index(self) -> usize {
        let rejected = PLAIN.len();
        let egress = rejected + RejectCode::ALL.len();
        let keys = egress + FAILURE_KINDS.len();
        match self {
            Counter::Rejected(code) => {
                rejected + RejectCode::ALL.iter().position(|c| *c == code).unwrap_or_default()
            }
            Counter::EgressFailure(kind) => {
                egress + FAILURE_KINDS.iter().position(|k| *k == kind).unwrap_or_default()
            }
            Counter::KeysFailure(kind) => {
                keys + FAILURE_KINDS.iter().position(|k| *k == kind).unwrap_or_default()
            }
            plain => plain_index(plain).unwrap_or_default(),
        }
    }

    pub fn name(self) -> String {
        match self {
            Counter::Rejected(code) => format!("tokenguard.requests.rejected.{}", code.as_str()),
            Counter::EgressFailure(kind) => format!("tokenguard.egress.failures.{kind}"),
            Counter::KeysFailure(kind) => format!("tokenguard.remote_jwks.failures.{kind}"),
            plain => plain_index(plain)
                .and_then(|i| PLAIN.get(i))
                .map_or_else(String::new, |(_, n)| (*n).to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position_in_all() {
        for (i, c) in Counter::all().into_iter().enumerate() {
            assert_eq!(c.index(), i, "{c:?}");
        }
    }

    #[test]
    fn every_counter_has_one_distinct_name() {
        let names: Vec<String> = Counter::all().into_iter().map(Counter::name).collect();
        assert!(names.iter().all(|n| n.starts_with("tokenguard.")));
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert_eq!(Counter::SignatureVerified.name(), "tokenguard.signature_verifications");
        assert_eq!(
            Counter::Rejected(RejectCode::TokenRevoked).name(),
            "tokenguard.requests.rejected.token_revoked"
        );
    }
}
