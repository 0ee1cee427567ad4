//! The core's host traits, implemented with Envoy's host calls.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType, Status};

use crate::host::{Clock, Level, Log, Metrics, SharedData, WriteError};
use crate::metrics::Counter;

pub struct EnvoyHost<'a> {
    pub metric_ids: &'a [u32],
    pub batched: &'a Batched,
    /// The revocation change gauge, when Envoy keeps it (`define_change_gauge`).
    pub changes: Option<u32>,
}

/// The gauge `tokenguard.revocation_changes`: every revocation written in this process adds
/// one, after writing the shared data. Reading it costs a request far less than reading
/// the revocation versions from shared data (no lock, no copy into the VM), and Envoy's
/// gauges are one per process, like shared data. A gauge Envoy does not keep (its stats
/// matcher may reject it) reads 0 after the increment here: then there is none, and every
/// request reads the versions.
pub fn define_change_gauge() -> Option<u32> {
    let id = hostcalls::define_metric(MetricType::Gauge, "tokenguard.revocation_changes").ok()?;
    hostcalls::increment_metric(id, 1).ok()?;
    (hostcalls::get_metric(id).ok()? > 0).then_some(id)
}

/// The two counters every accepted request bumps, added up in the worker and published on
/// its next tick (each second): a host call per increment was a measurable share of the
/// hot path's cost. Every other counter is published at once.
#[derive(Default)]
pub struct Batched {
    accepted: std::cell::Cell<u64>,
    registry_hits: std::cell::Cell<u64>,
}

impl Batched {
    fn cell(&self, counter: Counter) -> Option<&std::cell::Cell<u64>> {
        match counter {
            Counter::Accepted => Some(&self.accepted),
            Counter::RegistryHit => Some(&self.registry_hits),
            _ => None,
        }
    }

    pub fn flush(&self, metric_ids: &[u32]) {
        for counter in [Counter::Accepted, Counter::RegistryHit] {
            let Some(cell) = self.cell(counter) else { continue };
            let n = cell.take();
            if n == 0 {
                continue;
            }
            if let Some(id) = metric_ids.get(counter.index()) {
                let _ = hostcalls::increment_metric(*id, n as i64);
            }
        }
    }
}

impl Clock for EnvoyHost<'_> {
    fn now(&self) -> u64 {
        // A clock before 1970 or a failing host call is not something to serve traffic on;
        // 0 makes every token look issued in the future, so requests fail closed.
        super::since_epoch().as_secs()
    }
}

impl Log for EnvoyHost<'_> {
    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let _ = hostcalls::log(level, message);
    }
}

impl Metrics for EnvoyHost<'_> {
    fn count(&self, counter: Counter) {
        if let Some(cell) = self.batched.cell(counter) {
            cell.set(cell.get().saturating_add(1));
            return;
        }
        if let Some(id) = self.metric_ids.get(counter.index()) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }

    fn value(&self, counter: Counter) -> Option<u64> {
        // This worker's pending counts first, so an admin answer is current for its worker.
        self.batched.flush(self.metric_ids);
        hostcalls::get_metric(*self.metric_ids.get(counter.index())?).ok()
    }
}

impl SharedData for EnvoyHost<'_> {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(WriteError::CasMismatch),
            Err(_) => Err(WriteError::Failed),
        }
    }

    fn change_count(&self) -> Option<u64> {
        hostcalls::get_metric(self.changes?).ok()
    }

    fn note_change(&self) {
        if let Some(id) = self.changes {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

/// Makes a callout; the answer comes back to the context active now. Returns its token.
pub fn dispatch(call: &crate::refresh::Callout) -> Result<u32, Status> {
    let headers: Vec<(&str, &str)> = call.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let body = (!call.body.is_empty()).then_some(call.body.as_slice());
    hostcalls::dispatch_http_call(
        &call.cluster,
        headers,
        body,
        vec![],
        std::time::Duration::from_millis(call.timeout_ms),
    )
}

/// A background call from a root context (egress token fetch, remote keys): gives up on the
/// one in flight past its deadline (Envoy's own timeout does not fire when the cluster has
/// no healthy endpoint), starts the next when the core says so, and reports every failure
/// to `finish`. Returns the call in flight: (token, deadline in ms).
pub fn drive_call(
    in_flight: Option<(u32, u64)>,
    now_ms: u64,
    start: impl FnOnce() -> Option<crate::refresh::Callout>,
    finish: impl Fn(crate::refresh::Failure),
) -> Option<(u32, u64)> {
    if let Some((token, deadline)) = in_flight {
        if deadline > now_ms {
            return Some((token, deadline));
        }
        finish(crate::refresh::Failure::Timeout);
    }
    let call = start()?;
    match dispatch(&call) {
        Ok(token) => Some((token, now_ms.saturating_add(call.timeout_ms))),
        Err(_) => {
            finish(crate::refresh::Failure::DispatchFailed);
            None
        }
    }
}

pub fn log_warn(message: &str) {
    let _ = hostcalls::log(LogLevel::Warn, message);
}

pub fn log_error(message: &str) {
    let _ = hostcalls::log(LogLevel::Error, message);
}

/// Defines every counter; on failure returns the name that could not be defined.
pub fn define_counters(counters: &[Counter]) -> Result<Vec<u32>, String> {
    counters
        .iter()
        .map(|c| hostcalls::define_metric(MetricType::Counter, &c.name()).map_err(|_| c.name()))
        .collect()
}
