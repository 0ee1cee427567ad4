//! One poll of the revocation feed, host-agnostic: whether this worker polls now (the lease
//! in the registry), and what its answer does to the registry, the feed state, the counters
//! and the audit trail.

use crate::audit::{emit, Event, Record};
use crate::config::{Config, FeedConfig};
use crate::host::Host;
use crate::metrics::Counter;
use crate::refresh::{Callout, Failure};
use crate::registry::{Layout, Registry};

use super::{build_poll, parse_page};

/// The poll to make now, when one is due and this worker won the lease.
pub fn start<H: Host>(feed: &FeedConfig, registry: &Registry<'_, H>, now: u64) -> Option<Callout> {
    let lease_until = crate::backoff::lease_until(now, feed.timeout_ms);
    let cursor = registry.feed_try_lease(now, lease_until).ok().flatten()?;
    Some(build_poll(feed, &cursor))
}

/// Applies a poll's answer (or failure) to the registry and the feed state.
pub fn finish(cfg: &Config, host: &impl Host, answer: Result<(Option<u16>, Vec<u8>), Failure>) {
    let Some(feed) = &cfg.revocation_feed else { return };
    let now = host.now();
    let registry = Registry::new(host, Layout::of(cfg));
    let retention = cfg.revocation_retention_seconds();
    let page = answer.and_then(|(status, body)| parse_page(status, &body, retention, now));
    match page {
        Ok(page) => {
            let refused = if page.revocations.is_empty() {
                Ok(0)
            } else {
                registry.revoke_many(&page.revocations, now)
            };
            match refused {
                Ok(refused) => {
                    let before = registry.feed_state();
                    if registry
                        .feed_succeeded(&page.cursor, page.has_more, now, feed.interval_seconds)
                        .is_err()
                    {
                        host.count(Counter::RegistryConflict);
                    }
                    host.count(Counter::FeedPolls);
                    for _ in 0..page.revocations.len().saturating_sub(refused) {
                        host.count(Counter::FeedEntries);
                    }
                    if before.failures > 0 || refused > 0 || page.skipped > 0 {
                        let mut r = Record::new(Event::RevocationFeedRecovered, now);
                        r.reason = Some(format!(
                            "synced after {} failed polls; {} entries applied, {refused} refused (store full), {} malformed skipped",
                            before.failures,
                            page.revocations.len().saturating_sub(refused),
                            page.skipped
                        ));
                        emit(host, r);
                    }
                }
                Err(_) => failed(feed, host, &registry, "revocation store unwritable".into(), now),
            }
        }
        Err(failure) => failed(feed, host, &registry, failure.cause(), now),
    }
}

fn failed<H: Host>(feed: &FeedConfig, host: &H, registry: &Registry<'_, H>, cause: String, now: u64) {
    let failures = registry.feed_failed(now, feed.interval_seconds).unwrap_or(1);
    host.count(Counter::FeedFailures);
    let age = registry.feed_state().age(now);
    let mut r = Record::new(Event::RevocationFeedFailed, now);
    r.reason = Some(format!(
        "{cause} (failure {failures}; last sync {} ago); enforcing the revocations already known",
        age.map_or("never".to_string(), |a| format!("{a}s"))
    ));
    emit(host, r);
    if failures == 1 {
        host.log(crate::host::Level::Warn, "tokenguard: revocation feed unreachable; backing off");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::host::{Level, Metrics};
    use crate::registry::revocation::TokenFacts;
    use crate::testkit::*;

    fn cfg() -> Config {
        config(json!({"revocation_feed": {"cluster": "issuer", "authority": "issuer.test",
            "path": "/revocations", "interval_seconds": 5}}))
    }

    #[test]
    fn one_worker_polls_and_a_page_revokes_and_syncs() {
        let (cfg, host) = (cfg(), FakeHost::at(NOW));
        let registry = Registry::new(&host, Layout::of(&cfg));
        let feed = cfg.revocation_feed.as_ref().unwrap();
        let call = start(feed, &registry, NOW).expect("due at start-up");
        assert!(call.headers.iter().any(|(k, v)| k == ":path" && v.starts_with("/revocations")));
        assert!(start(feed, &registry, NOW).is_none(), "the lease keeps a second worker out");
        let body = json!({"cursor": "c1", "has_more": false,
            "revocations": [{"sub": "alice", "revoked_at": NOW - 1}, {"nonsense": 1, "revoked_at": 1}]});
        finish(&cfg, &host, Ok((Some(200), body.to_string().into_bytes())));
        assert!(registry.feed_state().synced);
        assert_eq!(registry.feed_state().cursor, "c1");
        assert_eq!((host.value(Counter::FeedPolls), host.value(Counter::FeedEntries)), (Some(1), Some(1)));
        let alice = TokenFacts { fp: &[0; 32], jti: None, sub: Some("alice"), sid: None, iat: Some(NOW - 5) };
        let later = TokenFacts { iat: Some(NOW), ..alice };
        let set = registry.load_revocations(NOW).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set[0].covers(&alice) && !set[0].covers(&later), "{set:?}");
        let recovered = host.audits().into_iter().find(|(_, a)| a["event"] == "revocation_feed_recovered");
        assert!(recovered.is_some_and(|(_, a)| a["reason"].as_str().unwrap().contains("1 malformed skipped")));
    }

    #[test]
    fn a_failed_poll_backs_off_and_warns_once() {
        let (cfg, host) = (cfg(), FakeHost::at(NOW));
        let registry = Registry::new(&host, Layout::of(&cfg));
        let feed = cfg.revocation_feed.as_ref().unwrap();
        // Before the first sync every tick may poll again; after it, failures back off.
        assert!(start(feed, &registry, NOW).is_some());
        let empty = json!({"cursor": "c0", "has_more": false, "revocations": []});
        finish(&cfg, &host, Ok((Some(200), empty.to_string().into_bytes())));
        let later = NOW + feed.interval_seconds;
        host.now.set(later);
        assert!(start(feed, &registry, later).is_some());
        finish(&cfg, &host, Err(Failure::Timeout));
        finish(&cfg, &host, Ok((Some(500), Vec::new())));
        let st = registry.feed_state();
        assert_eq!((st.failures, st.synced), (2, true));
        assert!(st.next_poll_at > later, "backed off");
        assert!(start(feed, &registry, later).is_none(), "not before the backoff ends");
        assert_eq!(host.value(Counter::FeedFailures), Some(2));
        let warns = host
            .lines
            .borrow()
            .iter()
            .filter(|(l, m)| *l == Level::Warn && m.contains("unreachable"))
            .count();
        assert_eq!(warns, 1, "warned on the first failure only");
    }
}
