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
    let state = registry.feed_state();
    if let (Some(gauge), Some(age)) = (shared.feed_age_gauge, state.age(now)) {
        let _ = hostcalls::record_metric(gauge, age);
    }
    in_flight
}

/// Applies a poll's answer (or failure): see `feed::poll::finish`.
pub fn finish_poll(shared: &Shared, answer: Result<(Option<u16>, Vec<u8>), Failure>) {
    poll::finish(&shared.cfg, &shared.host(), answer);
}
