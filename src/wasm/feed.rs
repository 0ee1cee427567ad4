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
    let mut in_flight = in_flight;
    if let Some((_, deadline)) = in_flight {
        if deadline <= now_ms {
            // Envoy's own timeout did not answer (no healthy endpoint): give up on this poll.
            in_flight = None;
            finish_poll(shared, Err(Failure::Timeout));
        }
    }
    if in_flight.is_none() {
        if let Some(call) = poll::start(feed, &registry, now) {
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

/// Applies a poll's answer (or failure): see `feed::poll::finish`.
pub fn finish_poll(shared: &Shared, answer: Result<(Option<u16>, Vec<u8>), Failure>) {
    poll::finish(&shared.cfg, &shared.host(), answer);
}
