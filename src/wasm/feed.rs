//! The revocation feed from the root contexts: one worker polls per period (the lease in
//! the registry), every worker releases the requests it held until the first sync.

use proxy_wasm::hostcalls;

use super::Shared;
use crate::feed::poll;
use crate::refresh::Failure;
use crate::registry::{Layout, Registry};

/// One tick: poll when due, enforce the poll's deadline, release or refuse held requests,
/// update the sync-age gauge. Returns the poll in flight.
pub fn tick(shared: &Shared, in_flight: Option<(u32, u64)>, now: u64, now_ms: u64) -> Option<(u32, u64)> {
    let Some(feed) = &shared.cfg.revocation_feed else { return None };
    let host = shared.host();
    let registry = Registry::new(&host, Layout::of(&shared.cfg));
    let in_flight = super::host::drive_call(
        in_flight,
        now_ms,
        || poll::start(feed, &registry, now),
        |failure| finish_poll(shared, Err(failure)),
    );
    record_age(shared, &registry, now);
    in_flight
}

/// Applies a poll's answer (or failure): see `feed::poll::finish`. The gauge is brought up to
/// date at once, so a dashboard never shows an outage that has already ended.
pub fn finish_poll(shared: &Shared, answer: Result<(Option<u16>, Vec<u8>), Failure>) {
    let host = shared.host();
    poll::finish(&shared.cfg, &host, answer);
    let now = crate::host::Clock::now(&host);
    record_age(shared, &Registry::new(&host, Layout::of(&shared.cfg)), now);
}

fn record_age<S: crate::host::SharedData>(shared: &Shared, registry: &Registry<'_, S>, now: u64) {
    if let (Some(gauge), Some(age)) = (shared.feed_age_gauge, registry.feed_state().age(now)) {
        let _ = hostcalls::record_metric(gauge, age);
    }
}
