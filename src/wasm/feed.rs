//! The revocation feed from the root contexts: one worker polls per period (the lease in
//! the registry), every worker releases the requests it held until the first sync.

use proxy_wasm::hostcalls;

use super::Shared;
use crate::audit::{emit, Event, Record};
use crate::feed::{build_poll, parse_page};
use crate::host::{Log, Metrics};
use crate::metrics::Counter;
use crate::refresh::Failure;
use crate::registry::{Layout, Registry};

/// One tick: poll when due, enforce the poll's deadline, release or refuse held requests,
/// update the sync-age gauge. Returns the poll in flight.
pub fn tick(shared: &Shared, in_flight: Option<(u32, u64)>, now: u64, now_ms: u64) -> Option<(u32, u64)> {
    let Some(feed) = &shared.cfg.revocation_feed else { return None };
    let host = shared.host();
    let registry = Registry::new(&host, Layout::of(&shared.cfg));
    let mut in_flight = in_flight;
    if let Some((_, deadline)) = in_flight {
        if deadline <= now_ms {
            // Envoy's own timeout did not answer (no healthy endpoint): give up on this poll.
            in_flight = None;
            finish_poll(shared, Err(Failure::Timeout));
        }
    }
    if in_flight.is_none() {
        let lease_until = crate::backoff::lease_until(now, feed.timeout_ms);
        if let Ok(Some(cursor)) = registry.feed_try_lease(now, lease_until) {
            let call = build_poll(feed, &cursor);
            match super::host::dispatch(&call) {
                Ok(token) => in_flight = Some((token, now_ms.saturating_add(call.timeout_ms))),
                Err(_) => finish_poll(shared, Err(Failure::DispatchFailed)),
            }
        }
    }
    let state = registry.feed_state();
    if let (Some(gauge), Some(age)) = (shared.feed_age_gauge, state.age(now)) {
        let _ = hostcalls::record_metric(gauge, age);
    }
    in_flight
}

/// Applies a poll's answer (or failure) to the registry and the feed state.
pub fn finish_poll(shared: &Shared, answer: Result<(Option<u16>, Vec<u8>), Failure>) {
    let Some(feed) = &shared.cfg.revocation_feed else { return };
    let host = shared.host();
    let now = crate::host::Clock::now(&host);
    let registry = Registry::new(&host, Layout::of(&shared.cfg));
    let retention = shared.cfg.revocation_retention_seconds();
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
                        emit(&host, r);
                    }
                }
                Err(_) => failed(shared, &registry, "revocation store unwritable".into(), now),
            }
        }
        Err(failure) => failed(shared, &registry, failure.cause(), now),
    }
}

fn failed(shared: &Shared, registry: &Registry<super::host::EnvoyHost>, cause: String, now: u64) {
    let host = shared.host();
    let interval = shared.cfg.revocation_feed.as_ref().map_or(5, |f| f.interval_seconds);
    let failures = registry.feed_failed(now, interval).unwrap_or(1);
    host.count(Counter::FeedFailures);
    let age = registry.feed_state().age(now);
    let mut r = Record::new(Event::RevocationFeedFailed, now);
    r.reason = Some(format!(
        "{cause} (failure {failures}; last sync {} ago); enforcing the revocations already known",
        age.map_or("never".to_string(), |a| format!("{a}s"))
    ));
    emit(&host, r);
    if failures == 1 {
        host.log(crate::host::Level::Warn, "tokenguard: revocation feed unreachable; backing off");
    }
}
