//! Remote key sets from the root contexts: the provider's one fetcher per process (the
//! lease in shared data) makes its call from here; every worker picks up a new set version
//! on its tick, moves the audited status on, and records the key-set age gauge.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType};

use super::Shared;
use crate::keys::fetch;
use crate::keys::parse::{Answer, MAX_JWKS_BYTES};
use crate::refresh::Failure;

/// One call slot per provider (by index): the call in flight and its deadline (ms).
pub type Calls = Vec<Option<(u32, u64)>>;

/// The age gauge per provider (by index), for providers with remote keys.
pub fn define_gauges(cfg: &crate::config::Config) -> Vec<Option<u32>> {
    cfg.providers
        .iter()
        .map(|p| {
            p.remote.as_ref()?;
            let name: String =
                p.issuer.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            let metric = format!("tokenguard.remote_jwks.key_set_age_seconds.{name}");
            hostcalls::define_metric(MetricType::Gauge, &metric).ok()
        })
        .collect()
}

/// Jitter for the core's timing: differs per process and per moment.
fn seed(holder: u64) -> u64 {
    holder ^ (super::since_epoch().as_nanos() as u64).rotate_left(17)
}

pub fn tick(shared: &Shared, calls: &mut Calls, holder: u64, now: u64, now_ms: u64) {
    let host = shared.host();
    calls.resize(shared.cfg.providers.len(), None);
    for (p, slot) in shared.cfg.providers.iter().zip(calls.iter_mut()) {
        if p.remote.is_none() {
            continue;
        }
        *slot = super::host::drive_call(
            slot.take(),
            now_ms,
            || fetch::start(p, &host, now),
            |failure| fetch::finish(p, &host, Err(failure), seed(holder)),
        );
    }
    let states = match shared.worker.keys.try_borrow_mut() {
        Ok(mut wk) => wk.sync(&shared.cfg, &host),
        Err(_) => return,
    };
    let remote = shared.cfg.providers.iter().enumerate().filter(|(_, p)| p.remote.is_some());
    for ((i, p), st) in remote.zip(states) {
        fetch::observe(p, &host, &st, now);
        if let (Some(Some(gauge)), true) = (shared.keys_gauges.get(i), st.version > 0) {
            let _ = hostcalls::record_metric(*gauge, now.saturating_sub(st.fetched_at));
        }
    }
}

/// A key fetch's answer, when `token` is one: applied, and this worker's keys synced at
/// once. Returns whether it was one.
pub fn answered(
    shared: &Shared,
    calls: &mut Calls,
    holder: u64,
    token: u32,
    headers: usize,
    body: usize,
) -> bool {
    let Some(i) = calls.iter().position(|c| c.is_some_and(|(t, _)| t == token)) else { return false };
    if let Some(slot) = calls.get_mut(i) {
        *slot = None;
    }
    let Some(p) = shared.cfg.providers.get(i) else { return true };
    let host = shared.host();
    fetch::finish(p, &host, read_answer(headers, body), seed(holder));
    if let Ok(mut wk) = shared.worker.keys.try_borrow_mut() {
        wk.sync(&shared.cfg, &host);
    }
    true
}

/// The answer's `:status`, `cache-control` and body, refusing bodies over the bound unread.
fn read_answer(num_headers: usize, body_size: usize) -> Result<Answer, Failure> {
    if num_headers == 0 {
        return Err(Failure::Unreachable);
    }
    if body_size > MAX_JWKS_BYTES {
        return Err(Failure::TooLarge);
    }
    let header = |name: &str| {
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
    };
    let status = header(":status").and_then(|s| s.parse::<u16>().ok());
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
        .ok()
        .flatten()
        .unwrap_or_default();
    Ok(Answer { status, cache_control: header("cache-control"), body })
}
