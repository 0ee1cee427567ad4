//! The filter's counters. Names are public interface: Envoy exposes them (prefixed
//! `wasmcustom.`) on `/stats` and `/stats/prometheus`, and dashboards depend on them.

use crate::refresh::FAILURE_KINDS;
use crate::reject::RejectCode;

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
    FeedPolls,
    FeedFailures,
    FeedEntries,
    /// Requests refused because the revocation data is older than `max_staleness_seconds`.
    FeedStale,
    RevocationPublished,
    RevocationPublishFailed,
    EgressFetches,
    /// Failed egress token fetches, by `Failure::kind`.
    EgressFailure(&'static str),
    EgressEscalation,
    /// Outgoing requests refused (503) for want of a usable token.
    EgressUnavailable,
}

impl Counter {
    /// Every counter, in `index` order, for hosts that define metrics up front.
    pub fn all() -> Vec<Counter> {
        let mut v = vec![Counter::Accepted, Counter::MissingToken];
        v.extend(RejectCode::ALL.into_iter().map(Counter::Rejected));
        v.extend([
            Counter::NearExpiryWarning,
            Counter::SignatureVerified,
            Counter::RegistryHit,
            Counter::RegistryEvicted,
            Counter::RegistryConflict,
            Counter::RevocationAdded,
            Counter::AdminDenied,
            Counter::RefreshStarted,
            Counter::RefreshSucceeded,
            Counter::RefreshFailed,
            Counter::RefreshEscalation,
            Counter::RefreshHandoff,
            Counter::FeedPolls,
            Counter::FeedFailures,
            Counter::FeedEntries,
            Counter::FeedStale,
            Counter::RevocationPublished,
            Counter::RevocationPublishFailed,
            Counter::EgressFetches,
        ]);
        v.extend(FAILURE_KINDS.into_iter().map(Counter::EgressFailure));
        v.extend([Counter::EgressEscalation, Counter::EgressUnavailable]);
        v
    }

    /// Position in `all()`.
    pub fn index(self) -> usize {
        match self {
            Counter::Accepted => 0,
            Counter::MissingToken => 1,
            Counter::Rejected(code) => {
                2 + RejectCode::ALL.iter().position(|c| *c == code).unwrap_or_default()
            }
            Counter::NearExpiryWarning => 2 + RejectCode::ALL.len(),
            Counter::SignatureVerified => 3 + RejectCode::ALL.len(),
            Counter::RegistryHit => 4 + RejectCode::ALL.len(),
            Counter::RegistryEvicted => 5 + RejectCode::ALL.len(),
            Counter::RegistryConflict => 6 + RejectCode::ALL.len(),
            Counter::RevocationAdded => 7 + RejectCode::ALL.len(),
            Counter::AdminDenied => 8 + RejectCode::ALL.len(),
            Counter::RefreshStarted => 9 + RejectCode::ALL.len(),
            Counter::RefreshSucceeded => 10 + RejectCode::ALL.len(),
            Counter::RefreshFailed => 11 + RejectCode::ALL.len(),
            Counter::RefreshEscalation => 12 + RejectCode::ALL.len(),
            Counter::RefreshHandoff => 13 + RejectCode::ALL.len(),
            Counter::FeedPolls => 14 + RejectCode::ALL.len(),
            Counter::FeedFailures => 15 + RejectCode::ALL.len(),
            Counter::FeedEntries => 16 + RejectCode::ALL.len(),
            Counter::FeedStale => 17 + RejectCode::ALL.len(),
            Counter::RevocationPublished => 18 + RejectCode::ALL.len(),
            Counter::RevocationPublishFailed => 19 + RejectCode::ALL.len(),
            Counter::EgressFetches => 20 + RejectCode::ALL.len(),
            Counter::EgressFailure(kind) => {
                21 + RejectCode::ALL.len() + FAILURE_KINDS.iter().position(|k| *k == kind).unwrap_or_default()
            }
            Counter::EgressEscalation => 21 + RejectCode::ALL.len() + FAILURE_KINDS.len(),
            Counter::EgressUnavailable => 22 + RejectCode::ALL.len() + FAILURE_KINDS.len(),
        }
    }

    pub fn name(self) -> String {
        match self {
            Counter::Accepted => "tokenguard.requests.accepted".into(),
            Counter::MissingToken => "tokenguard.requests.missing_token".into(),
            Counter::Rejected(code) => format!("tokenguard.requests.rejected.{}", code.as_str()),
            Counter::NearExpiryWarning => "tokenguard.near_expiry_warnings".into(),
            Counter::SignatureVerified => "tokenguard.signature_verifications".into(),
            Counter::RegistryHit => "tokenguard.registry.hits".into(),
            Counter::RegistryEvicted => "tokenguard.registry.evictions".into(),
            Counter::RegistryConflict => "tokenguard.registry.conflicts".into(),
            Counter::RevocationAdded => "tokenguard.revocations.added".into(),
            Counter::AdminDenied => "tokenguard.admin.denied".into(),
            Counter::RefreshStarted => "tokenguard.refresh.started".into(),
            Counter::RefreshSucceeded => "tokenguard.refresh.succeeded".into(),
            Counter::RefreshFailed => "tokenguard.refresh.failed".into(),
            Counter::RefreshEscalation => "tokenguard.refresh.escalations".into(),
            Counter::RefreshHandoff => "tokenguard.refresh.handoffs".into(),
            Counter::FeedPolls => "tokenguard.revocation_feed.polls".into(),
            Counter::FeedFailures => "tokenguard.revocation_feed.failures".into(),
            Counter::FeedEntries => "tokenguard.revocation_feed.entries".into(),
            Counter::FeedStale => "tokenguard.revocation_feed.stale_rejections".into(),
            Counter::RevocationPublished => "tokenguard.revocations.published".into(),
            Counter::RevocationPublishFailed => "tokenguard.revocations.publish_failed".into(),
            Counter::EgressFetches => "tokenguard.egress.fetches".into(),
            Counter::EgressFailure(kind) => format!("tokenguard.egress.failures.{kind}"),
            Counter::EgressEscalation => "tokenguard.egress.escalations".into(),
            Counter::EgressUnavailable => "tokenguard.egress.unavailable".into(),
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
}
