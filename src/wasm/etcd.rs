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
/// How often the following worker authenticates again: well within etcd's default token
/// lifetime (`--auth-token-ttl`, 300 s).
const REAUTH_MS: u64 = 60_000;
/// How often each worker checks that Envoy knows the etcd cluster.
const CLUSTER_CHECK_SECONDS: u64 = 60;

/// Per-worker etcd plumbing, built at configuration.
pub struct Link {
    /// The `GrpcService` Envoy's gRPC calls name their upstream with, serialized.
    upstream: String,
    /// Whether Envoy knows the cluster (checked by each worker's root context: a gRPC call
    /// to an unknown cluster is an error status the SDK does not expect, and it would panic).
    known: std::cell::Cell<Option<bool>>,
    /// When the root context last checked the cluster (unix seconds).
    checked_at: std::cell::Cell<Option<u64>>,
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
        Some(Link {
            upstream,
            known: std::cell::Cell::new(None),
            checked_at: std::cell::Cell::new(None),
            age_gauge,
        })
    }

    /// Asks Envoy, from the root context (at configuration, then on its ticks), whether it
    /// knows the cluster: a plain HTTP call dispatched to it is refused at once, without a
    /// panic, when it does not. Again every minute, for clusters that come and go with CDS. The answer itself is ignored (the
    /// root context takes it); from a request's context it could be mistaken for another.
    pub fn check(&self, etcd: &EtcdConfig, now: u64) {
        // A cluster not known yet (CDS still on its way) is asked about every second.
        let every = if self.usable() { CLUSTER_CHECK_SECONDS } else { 1 };
        if self.checked_at.get().is_some_and(|t| now < t.saturating_add(every)) {
            return;
        }
        self.checked_at.set(Some(now));
        let authority = etcd.authority.as_deref().unwrap_or(&etcd.cluster);
        let headers = vec![(":method", "GET"), (":path", "/health"), (":authority", authority)];
        let timeout = std::time::Duration::from_millis(etcd.timeout_ms);
        let known = hostcalls::dispatch_http_call(&etcd.cluster, headers, None, vec![], timeout).is_ok();
        if !known && self.known.get() != Some(false) {
            super::host::log_error(&format!(
                "tokenguard: revocation_store.etcd.cluster {:?} is not a cluster Envoy knows; revocations cannot be followed",
                etcd.cluster
            ));
        }
        self.known.set(Some(known));
    }

    /// Whether calls may be made (the root context's last check found the cluster).
    fn usable(&self) -> bool {
        self.known.get() == Some(true)
    }

    /// A unary call; its answer comes to the context in effect.
    pub fn call(&self, shared: &Shared, rpc: Rpc, message: &[u8], timeout_ms: u64) -> Option<u32> {
        if !self.usable() {
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
        if !self.usable() {
            return None;
        }
        let token = auth_token(shared);
        // `hasleader`: a member cut off from its cluster's leader ends the watch instead of
        // answering progress requests from its own, stale, state.
        let mut metadata: Vec<(&str, &[u8])> = vec![("hasleader", b"true")];
        metadata.extend(token.iter().map(|t| (crate::etcd::TOKEN_METADATA, t.as_slice())));
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

/// The status's message is not read: the SDK unwraps it as UTF-8, so a peer sending other
/// bytes there would panic the VM.
fn grpc_failure(status: u32) -> String {
    format!("etcd answered gRPC status {status}")
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
    /// When this worker last authenticated (ms): etcd's tokens lapse (after 5 minutes by
    /// default) while a watch goes on without using them, and the admin writes and refresh
    /// claims that do use them must not be the first to find out.
    authed_ms: u64,
}

impl Watcher {
    pub fn tick(&mut self, shared: &Shared, holder: u64, now: u64, now_ms: u64) {
        let (Some(etcd), Some(link)) = (&shared.cfg.revocation_store, &shared.etcd) else { return };
        link.check(etcd, now);
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
        let stale = now_ms.saturating_sub(self.authed_ms) >= REAUTH_MS || auth_token(shared).is_none();
        if let (Some((name, password)), true) = (&etcd.credentials, stale) {
            // Admin writes and claims need a live token even while the watch, authorized
            // when it opened, goes on without one.
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
                    self.authed_ms = now_ms;
                    hostcalls::set_shared_data(AUTH_KEY, Some(a.token.as_bytes()), None).is_ok()
                }
                _ => false,
            },
            Unary::Page => self.page(shared, &body),
        };
        if !ok {
            if let (Unary::Page, Some(sync)) = (kind, self.sync.as_mut()) {
                // A page that was read but not applied may be the last one, after which the
                // machine watches: list again rather than watch past it.
                sync.relist();
            }
            self.failed(shared, "etcd's answer could not be read or applied", now_ms);
        } else if self.stream.is_none() {
            // The next page at once: a list of 100,000 keys is a hundred pages.
            self.next(shared, now_ms);
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
        let (cancelled, compacted) = (answer.canceled, answer.canceled && answer.compact_revision > 0);
        match sync.on_watch(&answer, shared.cfg.revocation_retention_seconds(), now) {
            Watched::Apply(batch) => {
                if !follow::applied(&shared.cfg, &host, &batch, true, sync.applied_revision()) {
                    // Not applied, so the revision must not move past it: list afresh.
                    sync.relist();
                    let _ = hostcalls::cancel_grpc_stream(token);
                    self.stream = None;
                    self.failed(shared, "watched revocations could not be applied", now_ms);
                }
            }
            Watched::Restart => {
                let _ = hostcalls::cancel_grpc_stream(token);
                self.stream = None;
                if compacted {
                    // Not an outage: etcd forgot the revisions the watch started from.
                    self.retry_at_ms = now_ms;
                } else if cancelled {
                    // etcd refuses a watch under an auth token it no longer knows (it
                    // restarted, or the token expired) by cancelling it, not with status 16.
                    forget_auth_token();
                    self.failed(shared, "etcd cancelled the watch", now_ms);
                } else {
                    // The store's revision went back or its cluster changed: rebuilt, or
                    // restored from a snapshot. What was applied says nothing about it now.
                    super::host::log_warn(
                        "tokenguard: etcd's store went back (rebuilt or restored); listing it again",
                    );
                    self.retry_at_ms = now_ms;
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
