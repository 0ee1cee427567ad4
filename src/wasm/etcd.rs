//! etcd from the proxy-wasm layer: the gRPC calls and the watch stream the core asks for, and
//! nothing more. One worker per process follows etcd (the lease in the registry); the others
//! only read what it applied. Every call and the stream have a deadline enforced by the tick:
//! Envoy's own timeout covers unary calls only, and a watch can stay silent for ever.

use prost::Message;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MetricType};

use super::Shared;
use crate::config::{EtcdConfig, CONTACT_INTERVAL_SECONDS};
use crate::etcd::proto::{self, AuthenticateRequest, AuthenticateResponse, RangeResponse, WatchResponse};
use crate::etcd::store::Batch;
use crate::etcd::sync::{Call, Sync, Watched};
use crate::etcd::{follow, progress_request, Rpc, AUTHENTICATE, RANGE, WATCH};
use crate::registry::{Layout, Registry};

/// How long the following worker's lease lasts without renewal: a worker whose VM stopped
/// ticking is replaced within this.
const LEASE_SECONDS: u64 = 3;
/// gRPC status UNAUTHENTICATED: etcd's auth token expired; authenticate again.
const UNAUTHENTICATED: u32 = 16;
/// Where the following worker keeps etcd's auth token for every worker's calls.
const AUTH_KEY: &str = "tokenguard/store/auth";

/// Per-worker etcd plumbing, built at configuration.
pub struct Link {
    /// The `GrpcService` Envoy's gRPC calls name their upstream with, serialized.
    upstream: String,
    /// Whether Envoy knows the cluster (checked once per worker: a gRPC call to an unknown
    /// cluster is an error status the SDK does not expect, and it would panic).
    known: std::cell::Cell<Option<bool>>,
    pub age_gauge: Option<u32>,
}

impl Link {
    /// `None` when the cluster or authority cannot be named to Envoy (not UTF-8 once
    /// serialized: over 127 bytes).
    pub fn new(etcd: &EtcdConfig) -> Option<Link> {
        let bytes = proto::grpc_service(&etcd.cluster, etcd.authority.as_deref());
        let upstream = String::from_utf8(bytes).ok()?;
        let age_gauge =
            hostcalls::define_metric(MetricType::Gauge, "tokenguard.revocation_store.contact_age_seconds")
                .ok();
        Some(Link { upstream, known: std::cell::Cell::new(None), age_gauge })
    }

    /// Whether calls may be made: the first time, asks Envoy to dispatch a plain HTTP call
    /// to the cluster (refused at once, without a panic, when the cluster is unknown).
    fn usable(&self, etcd: &EtcdConfig) -> bool {
        if let Some(known) = self.known.get() {
            return known;
        }
        let authority = etcd.authority.as_deref().unwrap_or(&etcd.cluster);
        let headers = vec![(":method", "GET"), (":path", "/health"), (":authority", authority)];
        let known = hostcalls::dispatch_http_call(
            &etcd.cluster,
            headers,
            None,
            vec![],
            std::time::Duration::from_millis(etcd.timeout_ms),
        )
        .is_ok();
        if !known {
            super::host::log_error(&format!(
                "tokenguard: revocation_store.etcd.cluster {:?} is not a cluster Envoy knows; revocations cannot be followed",
                etcd.cluster
            ));
        }
        self.known.set(Some(known));
        known
    }

    /// A unary call; its answer comes to the context in effect.
    pub fn call(&self, shared: &Shared, rpc: Rpc, message: &[u8], timeout_ms: u64) -> Option<u32> {
        let etcd = shared.cfg.revocation_store.as_ref()?;
        if !self.usable(etcd) {
            return None;
        }
        let token = auth_token(shared);
        let metadata: Vec<(&str, &[u8])> =
            token.iter().map(|t| (crate::etcd::TOKEN_METADATA, t.as_slice())).collect();
        let timeout = std::time::Duration::from_millis(timeout_ms);
        hostcalls::dispatch_grpc_call(
            &self.upstream,
            rpc.service,
            rpc.method,
            metadata,
            Some(message),
            timeout,
        )
        .ok()
    }

    fn open_watch(&self, shared: &Shared, create: &[u8]) -> Option<u32> {
        let etcd = shared.cfg.revocation_store.as_ref()?;
        if !self.usable(etcd) {
            return None;
        }
        let token = auth_token(shared);
        let metadata: Vec<(&str, &[u8])> =
            token.iter().map(|t| (crate::etcd::TOKEN_METADATA, t.as_slice())).collect();
        let stream =
            hostcalls::open_grpc_stream(&self.upstream, WATCH.service, WATCH.method, metadata).ok()?;
        if hostcalls::send_grpc_stream_message(stream, Some(create), false).is_err() {
            let _ = hostcalls::cancel_grpc_stream(stream);
            return None;
        }
        Some(stream)
    }
}

fn auth_token(shared: &Shared) -> Option<Vec<u8>> {
    shared.cfg.revocation_store.as_ref()?.credentials.as_ref()?;
    hostcalls::get_shared_data(AUTH_KEY).ok()?.0.filter(|t| !t.is_empty())
}

/// etcd said the auth token is no longer valid (gRPC UNAUTHENTICATED): the following worker
/// authenticates again on its next tick.
pub fn forget_auth_token_on(status: u32) {
    if status == UNAUTHENTICATED {
        forget_auth_token();
    }
}

fn forget_auth_token() {
    let _ = hostcalls::set_shared_data(AUTH_KEY, Some(b""), None);
}

/// Larger answers are refused unread: a page of 1,000 revocations is about 100 KiB, and a
/// store holding values this big under the prefix is not one tokenguard wrote or documented.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// The answer of the gRPC call or stream message in effect; `None` when it is too large.
pub fn received(size: usize) -> Option<Vec<u8>> {
    if size > MAX_ANSWER_BYTES {
        return None;
    }
    Some(hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size).ok().flatten().unwrap_or_default())
}

fn grpc_failure(status: u32) -> String {
    let message = hostcalls::get_grpc_status().ok().and_then(|(_, m)| m).unwrap_or_default();
    // etcd's messages name keys and users at most, never secrets; kept short all the same.
    let message: String = message.chars().take(120).collect();
    format!("etcd answered gRPC status {status} {message}")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Unary {
    Page,
    Authenticate,
}

struct Stream {
    token: u32,
    /// When the stream last said anything.
    heard_ms: u64,
    /// A message asked for and not yet answered: the create, or a progress request.
    asked_ms: Option<u64>,
}

/// List pages are applied together, up to this many revocations at a time: each apply
/// rewrites the buckets it touches, so one per page made a large list quadratic.
const APPLY_BATCH: usize = 10_000;

/// The following worker's side: the list-then-watch machine and what it has in flight.
#[derive(Default)]
pub struct Watcher {
    sync: Option<Sync>,
    /// List pages read and not yet applied.
    listing: Batch,
    call: Option<(u32, u64, Unary)>,
    stream: Option<Stream>,
    retry_at_ms: u64,
}

impl Watcher {
    pub fn tick(&mut self, shared: &Shared, holder: u64, now: u64, now_ms: u64) {
        let (Some(etcd), Some(link)) = (&shared.cfg.revocation_store, &shared.etcd) else { return };
        let host = shared.host();
        let registry = Registry::new(&host, Layout::of(&shared.cfg));
        if let (Some(gauge), Some(age)) = (link.age_gauge, registry.store_state().age(now)) {
            let _ = hostcalls::record_metric(gauge, age);
        }
        if !registry.store_lease(holder, now, now.saturating_add(LEASE_SECONDS)).unwrap_or(false) {
            self.stop();
            return;
        }
        if let Some((token, deadline, _)) = self.call {
            if now_ms < deadline {
                return;
            }
            let _ = hostcalls::cancel_grpc_call(token);
            self.call = None;
            self.failed(shared, "etcd did not answer within timeout_ms", now_ms);
            return;
        }
        if let (Some((name, password)), None) = (&etcd.credentials, auth_token(shared)) {
            // etcd's tokens expire (5 min by default); admin writes and claims need a fresh
            // one even while the watch, authorized when it opened, goes on.
            if now_ms >= self.retry_at_ms {
                let ask =
                    AuthenticateRequest { name: name.clone(), password: password.clone() }.encode_to_vec();
                self.unary(shared, link, AUTHENTICATE, &ask, Unary::Authenticate, now_ms);
            }
            return;
        }
        if self.stream.is_some() {
            self.keep_alive(shared, etcd, now_ms);
            return;
        }
        if now_ms >= self.retry_at_ms {
            self.next(shared, now_ms);
        }
    }

    /// The watch says nothing while nothing changes: ask for progress now and then, and give
    /// the stream up when even that goes unanswered.
    fn keep_alive(&mut self, shared: &Shared, etcd: &EtcdConfig, now_ms: u64) {
        let Some(s) = &mut self.stream else { return };
        match s.asked_ms {
            Some(asked) if now_ms.saturating_sub(asked) >= etcd.timeout_ms => {
                let _ = hostcalls::cancel_grpc_stream(s.token);
                self.stream = None;
                self.failed(shared, "the watch stream went silent", now_ms);
            }
            None if now_ms.saturating_sub(s.heard_ms) >= CONTACT_INTERVAL_SECONDS * 1000 => {
                let ask = progress_request().encode_to_vec();
                if hostcalls::send_grpc_stream_message(s.token, Some(&ask), false).is_ok() {
                    s.asked_ms = Some(now_ms);
                } else {
                    self.stream = None;
                    self.failed(shared, "the watch stream is gone", now_ms);
                }
            }
            _ => {}
        }
    }

    /// Makes the next call the machine asks for.
    fn next(&mut self, shared: &Shared, now_ms: u64) {
        let (Some(etcd), Some(link)) = (&shared.cfg.revocation_store, &shared.etcd) else { return };
        let sync = self.sync.get_or_insert_with(|| Sync::new(etcd.prefix_bytes()));
        match sync.call() {
            Call::Range(page) => self.unary(shared, link, RANGE, &page.encode_to_vec(), Unary::Page, now_ms),
            Call::Watch(create) => match link.open_watch(shared, &create.encode_to_vec()) {
                Some(token) => self.stream = Some(Stream { token, heard_ms: now_ms, asked_ms: Some(now_ms) }),
                None => self.failed(shared, "the watch could not be opened", now_ms),
            },
        }
    }

    fn unary(&mut self, shared: &Shared, link: &Link, rpc: Rpc, ask: &[u8], kind: Unary, now_ms: u64) {
        let timeout = shared.cfg.revocation_store.as_ref().map_or(1000, |e| e.timeout_ms);
        match link.call(shared, rpc, ask, timeout) {
            Some(token) => self.call = Some((token, now_ms.saturating_add(timeout), kind)),
            None => self.failed(shared, "the call to etcd could not be dispatched", now_ms),
        }
    }

    /// A unary answer; false when it is not this watcher's.
    pub fn answered(&mut self, shared: &Shared, token: u32, status: u32, size: usize) -> bool {
        let Some((_, _, kind)) = self.call.filter(|(t, _, _)| *t == token) else { return false };
        self.call = None;
        let now_ms = super::now_ms();
        if status != 0 {
            if status == UNAUTHENTICATED {
                forget_auth_token();
            }
            self.failed(shared, &grpc_failure(status), now_ms);
            return true;
        }
        let Some(body) = received(size) else {
            self.failed(shared, "etcd's answer is larger than 16 MiB", now_ms);
            return true;
        };
        let ok = match kind {
            Unary::Authenticate => match proto::decode::<AuthenticateResponse>(&body) {
                Some(a) if !a.token.is_empty() => {
                    hostcalls::set_shared_data(AUTH_KEY, Some(a.token.as_bytes()), None).is_ok()
                }
                _ => false,
            },
            Unary::Page => self.page(shared, &body),
        };
        if ok && self.stream.is_none() {
            // The next page at once: a list of 100,000 keys is a hundred pages.
            self.next(shared, now_ms);
        } else {
            self.failed(shared, "etcd's answer could not be read or applied", now_ms);
        }
        true
    }

    fn page(&mut self, shared: &Shared, body: &[u8]) -> bool {
        let (Some(sync), Some(page)) = (&mut self.sync, proto::decode::<RangeResponse>(body)) else {
            return false;
        };
        let host = shared.host();
        let now = crate::host::Clock::now(&host);
        let revision = page.header.as_ref().map_or(0, |h| h.revision);
        let Ok(batch) = sync.on_page(&page, shared.cfg.revocation_retention_seconds(), now) else {
            return false;
        };
        self.listing.revocations.extend(batch.revocations);
        self.listing.skipped += batch.skipped;
        let complete = sync.watching();
        if complete || self.listing.revocations.len() >= APPLY_BATCH {
            let all = std::mem::take(&mut self.listing);
            follow::applied(&shared.cfg, &host, &all, complete, revision)
        } else {
            follow::contact(&shared.cfg, &host, false, revision);
            true
        }
    }

    /// A message on the watch stream; false when it is not this watcher's stream.
    pub fn watched(&mut self, shared: &Shared, token: u32, size: usize) -> bool {
        let Some(s) = self.stream.as_mut().filter(|s| s.token == token) else { return false };
        let now_ms = super::now_ms();
        s.heard_ms = now_ms;
        s.asked_ms = None;
        let answer = received(size).and_then(|b| proto::decode::<WatchResponse>(&b));
        let (Some(sync), Some(answer)) = (&mut self.sync, answer) else {
            let _ = hostcalls::cancel_grpc_stream(token);
            self.stream = None;
            self.failed(shared, "a watch answer could not be read (undecodable or over 16 MiB)", now_ms);
            return true;
        };
        let host = shared.host();
        let now = crate::host::Clock::now(&host);
        let compacted = answer.canceled && answer.compact_revision > 0;
        match sync.on_watch(&answer, shared.cfg.revocation_retention_seconds(), now) {
            Watched::Apply(batch) => {
                if !follow::applied(&shared.cfg, &host, &batch, true, sync.applied_revision()) {
                    // Not applied, so the revision must not move past it: list afresh.
                    self.sync = None;
                    let _ = hostcalls::cancel_grpc_stream(token);
                    self.stream = None;
                    self.retry_at_ms = now_ms.saturating_add(1000);
                }
            }
            Watched::Restart => {
                let _ = hostcalls::cancel_grpc_stream(token);
                self.stream = None;
                if compacted {
                    // Not an outage: etcd forgot the revisions the watch started from.
                    self.retry_at_ms = now_ms;
                } else {
                    // etcd refuses a watch under an auth token it no longer knows (it
                    // restarted, or the token expired) by cancelling it, not with status 16.
                    forget_auth_token();
                    self.failed(shared, "etcd cancelled the watch", now_ms);
                }
            }
        }
        true
    }

    /// The watch stream closed; false when it is not this watcher's stream.
    pub fn closed(&mut self, shared: &Shared, token: u32, status: u32) -> bool {
        if self.stream.as_ref().is_none_or(|s| s.token != token) {
            return false;
        }
        self.stream = None;
        if status == UNAUTHENTICATED {
            forget_auth_token();
        }
        self.failed(shared, &grpc_failure(status), super::now_ms());
        true
    }

    fn failed(&mut self, shared: &Shared, cause: &str, now_ms: u64) {
        // A list that fails starts again from its first page (see `Sync::on_failure`).
        self.listing = Batch::default();
        let jitter = (super::since_epoch().subsec_nanos() as u64) % 1001;
        let wait = self.sync.as_mut().map_or(1000, |s| s.on_failure(jitter));
        self.retry_at_ms = now_ms.saturating_add(wait);
        follow::failed(&shared.cfg, &shared.host(), cause);
    }

    /// Another worker follows etcd now: let go of everything.
    fn stop(&mut self) {
        if let Some((token, _, _)) = self.call.take() {
            let _ = hostcalls::cancel_grpc_call(token);
        }
        if let Some(s) = self.stream.take() {
            let _ = hostcalls::cancel_grpc_stream(s.token);
        }
        self.sync = None;
        self.listing = Batch::default();
    }
}
