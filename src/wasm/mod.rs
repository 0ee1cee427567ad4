//! The proxy-wasm layer: translates between Envoy and the core, nothing more.
//!
//! Host calls go through `proxy_wasm::hostcalls` directly, never the SDK's trait helpers:
//! those `unwrap` host results (and `get_map_value` unwraps UTF-8), and a panic here kills
//! the worker's VM for every later request.

mod claim;
#[cfg(test)]
mod double;
mod etcd;
#[cfg(test)]
mod etcd_tests;
mod held;
mod host;
mod http;
mod keys;
mod publish;
#[cfg(test)]
mod tests;
mod writer;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MetricType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use crate::config::Config;
use crate::gate::{self, Worker};
use crate::metrics::Counter;
use crate::refresh::Failure;
use crate::refresh::PendingRefresh;
use crate::registry::{Layout, Registry};
use crate::verdict::Swap;
use host::EnvoyHost;

/// How often each worker's root context ticks: often enough to enforce refresh deadlines
/// within a tenth of a second. The sweep runs under a one-second lease, so once per second
/// per process whatever the number of workers.
const TICK: Duration = Duration::from_millis(100);
const SWEEP_PERIOD_S: u64 = 1;

/// Envoy's wall clock since the Unix epoch; zero when the host call fails or the clock is
/// before 1970 (callers treat zero as "fail closed" or "no deadline yet", see each).
pub(crate) fn since_epoch() -> Duration {
    hostcalls::get_current_time().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).unwrap_or_default()
}

fn now_micros() -> u64 {
    since_epoch().as_micros() as u64
}

pub(crate) fn now_ms() -> u64 {
    since_epoch().as_millis() as u64
}

/// A request held for a refresh, by HTTP context id.
pub(crate) struct Pending {
    pub plan: PendingRefresh,
    pub deadline_ms: u64,
    /// The fleet's claim on the token (etcd), when this process holds it.
    pub fleet: Option<crate::etcd::claim::Claim>,
}

/// A request held until it can be decided.
#[derive(Clone, Copy)]
pub(crate) struct Held {
    pub deadline_ms: u64,
    pub reason: crate::verdict::HoldReason,
    /// The gate's `Verdict::Hold::verified`, handed back when asking again.
    pub verified: Option<[u8; 32]>,
}

/// What the response phase must add, by HTTP context id.
pub(crate) struct Outcome {
    pub expires_in: Option<u64>,
    pub swap: Option<Swap>,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root {
            shared: None,
            holder: holder_id(context_id),
            watcher: etcd::Watcher::default(),
            writer: writer::Writer::default(),
            egress_call: None,
            keys_calls: Vec::new(),
        })
    });
}}

/// A number that tells this VM's root context from every other worker's (and process's),
/// for the sweep and etcd leases and the fleet's refresh claims: context ids repeat across
/// workers and clocks can be coarse, so it is random (std's hasher keys come from WASI's
/// `random_get`, which Envoy serves from its own random source).
pub(crate) fn random_id(context_id: u32) -> u64 {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(context_id);
    (random ^ since_epoch().as_nanos() as u64) | 1
}

fn holder_id(context_id: u32) -> u64 {
    random_id(context_id)
}

/// Everything an HTTP context needs, built once per configuration.
pub(crate) struct Shared {
    pub cfg: Config,
    pub metric_ids: Vec<u32>,
    pub batched: host::Batched,
    pub worker: Worker,
    pub pending: RefCell<HashMap<u32, Pending>>,
    pub outcomes: RefCell<HashMap<u32, Outcome>>,
    /// Requests held until they can be decided, by context id.
    pub held: RefCell<HashMap<u32, Held>>,
    /// Admin replies waiting for their write to etcd, by context id.
    pub publishing: RefCell<HashMap<u32, publish::Publishing>>,
    /// Refresh calls the root context dispatched for a released held request: the call's
    /// token -> the stream's context id.
    pub root_refreshes: RefCell<HashMap<u32, u32>>,
    /// The calls to etcd, when `revocation_store` is configured.
    pub etcd: Option<etcd::Link>,
    /// Requests held while their refresh claim is asked of etcd, by context id.
    pub claims: RefCell<HashMap<u32, claim::Claiming>>,
    /// Claim calls the root context dispatched for a released held request: the call's
    /// token -> the stream's context id.
    pub root_claims: RefCell<HashMap<u32, u32>>,
    /// Writes to etcd this worker's root context makes for requests already over.
    pub writes: RefCell<std::collections::VecDeque<crate::etcd::write::Write>>,
    /// This process's identity in the fleet's claims (0 until first asked).
    pub process_id: std::cell::Cell<u64>,
    /// The gauge for the seconds the egress token has left.
    pub egress_gauge: Option<u32>,
    /// The gauge for how long the last registry sweep step took, in microseconds.
    pub sweep_gauge: Option<u32>,
    /// The process-wide revocation change count (`host::define_change_gauge`).
    pub change_gauge: Option<u32>,
    /// The key-set age gauge of each provider with remote keys, by provider index.
    pub keys_gauges: Vec<Option<u32>>,
}

impl Shared {
    pub fn host(&self) -> EnvoyHost<'_> {
        EnvoyHost { metric_ids: &self.metric_ids, batched: &self.batched, changes: self.change_gauge }
    }
}

struct Root {
    shared: Option<Rc<Shared>>,
    holder: u64,
    /// Following etcd, when this worker holds the lease.
    watcher: etcd::Watcher,
    /// Writes to etcd no request waits for.
    writer: writer::Writer,
    /// The egress token fetch in flight, with its deadline (ms).
    egress_call: Option<(u32, u64)>,
    /// Remote key fetches in flight, by provider index.
    keys_calls: keys::Calls,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _trailers: usize) {
        if let Some(shared) = self.shared.clone() {
            let stream = shared.root_refreshes.try_borrow_mut().ok().and_then(|mut m| m.remove(&token));
            if let Some(id) = stream {
                // The stream may be gone (client hung up): then there is nothing to finish.
                if hostcalls::set_effective_context(id).is_ok() {
                    http::finish_refresh(&shared, id, num_headers, body_size);
                }
                return;
            }
        }
        if let Some(shared) = self.shared.clone() {
            if keys::answered(&shared, &mut self.keys_calls, self.holder, token, num_headers, body_size) {
                return;
            }
        }
        if self.egress_call.is_some_and(|(t, _)| t == token) {
            self.egress_call = None;
            if let Some(shared) = self.shared.clone() {
                if let Some(egress) = &shared.cfg.egress {
                    let answer = http::call_response_limited(
                        num_headers,
                        body_size,
                        crate::refresh::MAX_RESPONSE_BYTES,
                    );
                    crate::egress::complete(egress, &shared.host(), answer);
                }
            }
        }
        // Anything else is the answer to the one-off cluster check (`etcd::Link`): ignored.
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        let Some(shared) = self.shared.clone() else { return };
        if self.watcher.answered(&shared, token, status, size)
            || self.writer.answered(&shared, token, status, size)
        {
            return;
        }
        let stream = shared.root_claims.try_borrow_mut().ok().and_then(|mut m| m.remove(&token));
        // The stream may be gone (client hung up): then there is nothing to finish.
        if let Some(id) = stream.filter(|id| hostcalls::set_effective_context(*id).is_ok()) {
            claim::answered(&shared, id, status, size);
        }
    }

    fn on_grpc_stream_message(&mut self, token: u32, size: usize) {
        if let Some(shared) = self.shared.clone() {
            self.watcher.watched(&shared, token, size);
        }
    }

    fn on_grpc_stream_close(&mut self, token: u32, status: u32) {
        if let Some(shared) = self.shared.clone() {
            self.watcher.closed(&shared, token, status);
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        let batched = host::Batched::default();
        crate::version::announce(&EnvoyHost { metric_ids: &[], batched: &batched, changes: None });
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => b,
            Ok(None) => Vec::new(),
            Err(status) => {
                host::log_error(&format!("tokenguard: cannot read plugin configuration: {status:?}"));
                return false;
            }
        };
        let cfg = match Config::from_plugin_bytes(&bytes) {
            Ok(c) => c,
            Err(e) => {
                // Returning false makes Envoy refuse the filter, so a bad config never serves.
                host::log_error(&format!("tokenguard: invalid configuration: {e}"));
                return false;
            }
        };
        let metric_ids = match host::define_counters(&Counter::all()) {
            Ok(ids) => ids,
            Err(name) => {
                host::log_error(&format!("tokenguard: cannot define metric {name}"));
                return false;
            }
        };
        let etcd = match &cfg.revocation_store {
            None => None,
            Some(e) => match etcd::Link::new(e) {
                Some(link) => Some(link),
                None => {
                    host::log_error("tokenguard: invalid configuration: revocation_store.etcd.cluster: too long to name to Envoy");
                    return false;
                }
            },
        };
        let mut shared = Shared {
            cfg,
            metric_ids,
            batched: host::Batched::default(),
            worker: Worker::default(),
            pending: RefCell::new(HashMap::new()),
            outcomes: RefCell::new(HashMap::new()),
            held: RefCell::new(HashMap::new()),
            publishing: RefCell::new(HashMap::new()),
            root_refreshes: RefCell::new(HashMap::new()),
            etcd,
            claims: RefCell::new(HashMap::new()),
            root_claims: RefCell::new(HashMap::new()),
            writes: RefCell::new(std::collections::VecDeque::new()),
            process_id: std::cell::Cell::new(0),
            egress_gauge: None,
            sweep_gauge: hostcalls::define_metric(
                MetricType::Gauge,
                "tokenguard.registry.sweep_step_microseconds",
            )
            .ok(),
            change_gauge: host::define_change_gauge(),
            keys_gauges: Vec::new(),
        };
        shared.keys_gauges = keys::define_gauges(&shared.cfg);
        if shared.cfg.egress.is_some() {
            shared.egress_gauge =
                hostcalls::define_metric(MetricType::Gauge, "tokenguard.egress.token_expires_in_seconds")
                    .ok();
        }
        Registry::new(&shared.host(), Layout::of(&shared.cfg)).init_keys();
        if let (Some(link), Some(etcd)) = (&shared.etcd, &shared.cfg.revocation_store) {
            // Before the first request: an admin write or a refresh claim may come at once.
            link.check(etcd, crate::host::Clock::now(&shared.host()));
        }
        self.shared = Some(Rc::new(shared));
        let _ = hostcalls::set_tick_period(TICK);
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else { return };
        shared.batched.flush(&shared.metric_ids);
        if let Ok(mut cache) = shared.worker.revocations.try_borrow_mut() {
            cache.read_again();
        }
        let host = shared.host();
        let now = crate::host::Clock::now(&host);
        let started = now_micros();
        let swept =
            Registry::new(&host, Layout::of(&shared.cfg)).sweep_step(now, self.holder, SWEEP_PERIOD_S);
        if let (Some(_), Some(gauge)) = (swept, shared.sweep_gauge) {
            let _ = hostcalls::record_metric(gauge, now_micros().saturating_sub(started));
        }
        // Refreshes past their deadline: the held request goes on without a new token.
        let now_ms = now_ms();
        let expired: Vec<(u32, Pending)> = match shared.pending.try_borrow_mut() {
            Ok(mut p) => {
                let ids: Vec<u32> =
                    p.iter().filter(|(_, v)| v.deadline_ms <= now_ms).map(|(k, _)| *k).collect();
                ids.into_iter().filter_map(|id| p.remove(&id).map(|v| (id, v))).collect()
            }
            Err(_) => Vec::new(),
        };
        for (id, p) in expired {
            if hostcalls::set_effective_context(id).is_err() {
                continue; // the stream is gone
            }
            let verdict =
                gate::complete_refresh(&shared.cfg, &host, &shared.worker, &p.plan, Err(Failure::Timeout));
            http::apply(&shared, id, verdict, true);
        }
        publish_deadlines(&shared, now_ms);
        claim::deadlines(&shared, now_ms);
        if shared.cfg.revocation_store.is_some() {
            self.watcher.tick(&shared, self.holder, now, now_ms);
            self.writer.tick(&shared, now_ms);
        }
        if shared.cfg.egress.is_some() {
            self.egress_call = egress_tick(&shared, self.egress_call.take(), now, now_ms);
        }
        if shared.cfg.has_remote_keys() {
            keys::tick(&shared, &mut self.keys_calls, self.holder, now, now_ms);
        }
        held::release(&shared, now_ms);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(http::Http::new(context_id, self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Admin replies whose write to etcd is past its deadline: answered as not committed.
fn publish_deadlines(shared: &Shared, now_ms: u64) {
    let late: Vec<(u32, publish::Publishing)> = match shared.publishing.try_borrow_mut() {
        Ok(mut p) if !p.is_empty() => {
            let ids: Vec<u32> = p.iter().filter(|(_, w)| w.deadline_ms <= now_ms).map(|(k, _)| *k).collect();
            ids.into_iter().filter_map(|id| p.remove(&id).map(|w| (id, w))).collect()
        }
        _ => Vec::new(),
    };
    for (id, w) in late {
        if hostcalls::set_effective_context(id).is_ok() {
            http::publish_done(shared, w.reply, false);
        }
    }
}

/// Egress: renew the process's token when due (one worker, the lease), enforce the fetch
/// deadline, and publish the seconds it has left.
fn egress_tick(shared: &Shared, in_flight: Option<(u32, u64)>, now: u64, now_ms: u64) -> Option<(u32, u64)> {
    let egress = shared.cfg.egress.as_ref()?;
    let host = shared.host();
    let in_flight = host::drive_call(
        in_flight,
        now_ms,
        || crate::egress::start(egress, &host, now),
        |failure| crate::egress::complete(egress, &host, Err(failure)),
    );
    if let Some(gauge) = shared.egress_gauge {
        let left = crate::egress::state(&host).expires_at.saturating_sub(now);
        let _ = hostcalls::record_metric(gauge, left);
    }
    in_flight
}
