//! Per-request decision: find the token, validate it against the registry and the
//! revocations, warn near expiry, audit, count.
//!
//! This is everything the filter does on a request, independent of Envoy: the proxy-wasm
//! layer only gathers the inputs and carries out the `Verdict`.

use std::cell::RefCell;

use crate::audit::{emit, Event, Record};
use crate::config::routes::Rule;
use crate::config::Config;
use crate::host::Host;
use crate::metrics::Counter;
use crate::refresh::{Failure, PendingRefresh};
use crate::registry::record::{State, TokenRecord};
use crate::registry::revocation::{Revocation, Target, TokenFacts};
use crate::registry::{Layout, Registry, RevocationCache};
use crate::reject::{self, RejectCode, Rejection};
use crate::token::{self, Claims, Fingerprint};
use crate::verdict::Verdict;
use crate::verify;

mod accepted;
pub mod credential;
mod handoff;
mod hot;
mod policy;
mod record;
mod refreshing;
mod shared;
pub mod upstream;

use credential::read_credential;
use handoff::superseded;
use hot::{accepted_again, remember_accepted};
pub(crate) use record::record_for;
use record::{known_session_start, record, Accepted};
pub use refreshing::unclaimed as refresh_unclaimed;
use shared::{follow_changes, is_revoked, store_gate, unavailable};

/// Request facts only an audit record needs. Fetched lazily: each is a host call, and most
/// requests emit no audit record.
pub trait RequestMeta {
    fn request_id(&self) -> Option<String>;
    fn path(&self) -> Option<String>;
    /// Read only when route rules are configured.
    fn method(&self) -> Option<String>;
    /// Any request header, for the rarely needed ones (the refresh token).
    fn header(&self, name: &str) -> Option<String>;
}

/// The request facts the gate looks at.
pub struct Request<'a> {
    /// The value of the configured token header, or the whole `cookie` header for a cookie
    /// source.
    pub credential_header: Option<&'a str>,
    pub meta: &'a dyn RequestMeta,
    /// SHA-256 of the whole token whose signature the gate verified before holding this
    /// request (`Verdict::Hold::verified`): asked again, it is not verified again.
    pub verified: Option<[u8; 32]>,
}

/// One worker's own state, next to the shared registry.
#[derive(Default)]
pub struct Worker {
    pub revocations: RefCell<RevocationCache>,
    /// etcd's whole list has been applied (a process never goes back to unsynced).
    pub store_synced: std::cell::Cell<bool>,
    /// The last etcd contact this worker read from shared data: while it is recent enough,
    /// the staleness check reads nothing (contact times only move forward).
    pub store_contact: std::cell::Cell<u64>,
    /// Tokens this worker accepted a moment ago: the hot path (see `accepted`).
    pub accepted: RefCell<accepted::AcceptedCache>,
    /// The remote key sets' verifiers on this worker (`keys::WorkerKeys`).
    pub keys: RefCell<crate::keys::WorkerKeys>,
}

/// A step of the pipeline: what it learnt for the next step, or the request's verdict.
type Step<T> = Result<T, Verdict>;

/// Decides one request. The route decides first (the metadata document, public, optional,
/// which requirements); then the token's steps, in order: read the credential, the hot
/// path, authenticate, the revocation store's say, revocation, the route's requirements,
/// supersession (the refresh handoff), claims and session, record, refresh. Each step either
/// hands on what it learnt or ends the request with its verdict. Report-only may then turn
/// a refusal into a forward.
pub fn check_request(cfg: &Config, host: &impl Host, worker: &Worker, req: &Request) -> Verdict {
    match policy::route_step(cfg, req) {
        policy::Step::Done(verdict) => verdict,
        policy::Step::Check { rule, optional } => {
            let verdict = decide(cfg, host, worker, req, rule, optional);
            policy::enforce(cfg, verdict.unwrap_or_else(|end| end))
        }
    }
}

/// Finishes a request held for a refresh call (see `refreshing::complete`).
pub fn complete_refresh(
    cfg: &Config,
    host: &impl Host,
    worker: &Worker,
    plan: &PendingRefresh,
    answer: Result<(Option<u16>, Vec<u8>), Failure>,
) -> Verdict {
    policy::enforce(cfg, refreshing::complete(cfg, host, worker, plan, answer))
}

/// Finishes a request held for the fleet's refresh claim that another replica holds (see
/// `refreshing::claimed_elsewhere`).
pub fn refresh_claimed_elsewhere(
    cfg: &Config,
    host: &impl Host,
    worker: &Worker,
    plan: &PendingRefresh,
    until: u64,
) -> Verdict {
    policy::enforce(cfg, refreshing::claimed_elsewhere(cfg, host, worker, plan, until))
}

fn decide<H: Host>(
    cfg: &Config,
    host: &H,
    worker: &Worker,
    req: &Request,
    rule: Option<&Rule>,
    optional: bool,
) -> Step<Verdict> {
    let now = host.now();
    let mut ctx = Ctx { cfg, host, req, now, changes: None, fingerprint: None };
    let token = credential(&ctx, optional)?;
    ctx.changes = follow_changes(cfg, host, worker);
    let registry = Registry::new(host, Layout::of(cfg));
    if let Some(verdict) = accepted_again(&ctx, worker, &registry, token, rule) {
        return Ok(verdict);
    }
    let fingerprint = Fingerprint::of(token);
    ctx.fingerprint = Some(fingerprint);
    let (auth, known) = authenticate(&ctx, worker, &registry, &fingerprint, token)?;
    let claims = &auth.decoded.claims;
    store_say(&ctx, worker, &registry, token)?;
    let facts = TokenFacts::of(&fingerprint.0, claims);
    // Hashed once: the revocation check and the hot path's memory of this token need them.
    let targets = Revocation::targets_of(&facts);
    not_revoked(&ctx, worker, &registry, known.as_ref(), &facts, &targets, claims)?;
    // Before expiry and refresh: a token refreshed below is forwarded without being judged
    // again, so it must already meet the route (its successor continues the same session).
    if let Some(rule) = rule.filter(|r| !crate::route::satisfied(r, &claims.all)) {
        return Err(ctx.forbid(rule, claims));
    }
    if let Some(old) = known.as_ref().filter(|r| r.state == State::Superseded) {
        superseded(&ctx, worker, &registry, old, claims).map_or(Ok(()), Err)?;
    }
    let life = claims_and_session(&ctx, worker, &registry, known.as_ref(), &auth, token)?;
    let accepted =
        Accepted { token, fingerprint, claims, life, known: known.as_ref(), provider: auth.provider };
    let recorded = record(&ctx, &registry, &accepted);
    let start = life.session_start;
    if let Some(plan) = (!retirement_pending(worker, &fingerprint))
        .then(|| refreshing::start(cfg, host, &registry, req, token, &fingerprint, claims, Some(life), start))
        .flatten()
    {
        return Ok(Verdict::Refresh(Box::new(plan)));
    }
    // Remembered from the second sight on: a token seen once (a flood of one-shot tokens,
    // say) would only churn the cache.
    let plain = known.as_ref().is_some_and(|r| !matches!(r.state, State::Superseded | State::Revoked));
    let headers = upstream::for_claims(cfg, token, &claims.all);
    if let (Some(last_seen), true) = (recorded, plain) {
        let seen = hot::Seen { fingerprint, targets, claims, headers: headers.clone(), life, last_seen };
        remember_accepted(cfg, worker, token, seen, now);
    }
    Ok(Verdict::Forward {
        expires_in: cfg.expires_in_header.as_ref().map(|_| life.remaining_s),
        swap: None,
        headers,
    })
}

/// Read the credential: the token, or the request ends (no token: forwarded on an optional
/// route, a challenge elsewhere; a malformed or ambiguous credential: a rejection).
fn credential<'r, H: Host>(ctx: &Ctx<'r, H>, optional: bool) -> Step<&'r str> {
    match read_credential(ctx.cfg, ctx.req) {
        Ok(Some(token)) => Ok(token),
        Ok(None) if optional => Err(upstream::forward_unverified(ctx.cfg)),
        Ok(None) => Err(ctx.missing()),
        Err(rejection) => Err(ctx.reject(rejection, None)),
    }
}

/// Authenticate: decode (before anything is read for a token: garbage costs nothing more),
/// wait for the provider's remote keys when they are not there yet or the token names an
/// unknown kid, look the token up in the registry, find the provider and key, and check the
/// signature unless this exact signature already verified under this configuration. Hands
/// on the token's registry record too.
fn authenticate<'c, H: Host>(
    ctx: &Ctx<'c, H>,
    worker: &Worker,
    registry: &Registry<'_, H>,
    fingerprint: &Fingerprint,
    token: &str,
) -> Step<(verify::Authenticated<'c>, Option<TokenRecord>)> {
    let decoded = token::decode(token).map_err(|rejection| ctx.reject(rejection, None))?;
    if ctx.cfg.has_remote_keys() {
        if let Some(verdict) = crate::keys::gate(ctx.cfg, ctx.host, worker, &decoded) {
            return Err(verdict);
        }
    }
    let known = registry.lookup(&fingerprint.0);
    let cached = signature_known_good(ctx.cfg, known.as_ref(), ctx.req, token);
    ctx.host.count(if cached { Counter::RegistryHit } else { Counter::SignatureVerified });
    let remote = worker.keys.try_borrow().ok();
    let auth = verify::authenticate_with(ctx.cfg, remote.as_deref(), token, decoded, cached)
        .map_err(|rejection| ctx.reject(rejection, None))?;
    Ok((auth, known))
}

/// The revocation store's say (see `store_gate`). A request held here is not verified again
/// when it is asked again.
fn store_say<H: Host>(
    ctx: &Ctx<'_, H>,
    worker: &Worker,
    registry: &Registry<'_, H>,
    token: &str,
) -> Step<()> {
    match store_gate(ctx.cfg, ctx.host, worker, registry, ctx.now) {
        None => Ok(()),
        Some(Verdict::Hold { wait_ms, reason, .. }) => {
            Err(Verdict::Hold { wait_ms, reason, verified: Some(hmac_sha256::Hash::hash(token.as_bytes())) })
        }
        Some(other) => Err(other),
    }
}

/// Revocation: refused when a revocation covers the token or its record says revoked;
/// unavailable when the revocation set cannot be read.
fn not_revoked<H: Host>(
    ctx: &Ctx<'_, H>,
    worker: &Worker,
    registry: &Registry<'_, H>,
    known: Option<&TokenRecord>,
    facts: &TokenFacts,
    targets: &[Target],
    claims: &Claims,
) -> Step<()> {
    let revoked = known.is_some_and(|r| r.state == State::Revoked);
    match is_revoked(ctx.host, worker, registry, ctx.changes, facts, targets, ctx.now) {
        Some(false) if !revoked => Ok(()),
        Some(_) => {
            Err(ctx.reject(Rejection::new(RejectCode::TokenRevoked, "token has been revoked"), Some(claims)))
        }
        None => Err(unavailable()),
    }
}

/// Claims and session: the time rules, audience and required claims, and the session's
/// absolute lifetime. An expired token whose refresh token the request carries is
/// refreshed instead of refused.
fn claims_and_session<H: Host>(
    ctx: &Ctx<'_, H>,
    worker: &Worker,
    registry: &Registry<'_, H>,
    known: Option<&TokenRecord>,
    auth: &verify::Authenticated,
    token: &str,
) -> Step<verify::Lifetime> {
    let (cfg, claims) = (ctx.cfg, &auth.decoded.claims);
    let known_start = known_session_start(cfg, registry, known, auth.provider, claims, ctx.now);
    verify::check_claims_in_session(cfg, auth.provider, claims, ctx.now, known_start).map_err(|rejection| {
        let fingerprint = ctx.fingerprint.unwrap_or_else(|| Fingerprint::of(token));
        if rejection.code == RejectCode::TokenExpired && !retirement_pending(worker, &fingerprint) {
            let start = verify::session_start(cfg, claims, known_start);
            if let Some(plan) =
                refreshing::start(cfg, ctx.host, registry, ctx.req, token, &fingerprint, claims, None, start)
            {
                return Verdict::Refresh(Box::new(plan));
            }
        }
        ctx.reject(rejection, Some(claims))
    })
}

/// A token another replica already refreshed is retired at its grace's end: refreshing it
/// again, due or expired, would spend its refresh token twice (and trip the server's reuse
/// detection).
fn retirement_pending(worker: &Worker, fingerprint: &Fingerprint) -> bool {
    let own = Target::hashed(crate::registry::revocation::Kind::Token, fingerprint.0);
    worker.revocations.try_borrow().ok().is_some_and(|c| c.get(&own).is_some())
}

/// What one request's audit records share.
pub(super) struct Ctx<'a, H: Host> {
    cfg: &'a Config,
    host: &'a H,
    req: &'a Request<'a>,
    now: u64,
    /// The process-wide change count, read once per request before any shared data.
    changes: Option<u64>,
    fingerprint: Option<Fingerprint>,
}

impl<H: Host> Ctx<'_, H> {
    fn record(&self, event: Event) -> Record {
        let mut r = Record::new(event, self.now);
        r.token = self.fingerprint.map(|f| f.short());
        r.request_id = self.req.meta.request_id();
        r.path = request_path(self.req.meta);
        r
    }

    fn reject(&self, rejection: Rejection, verified: Option<&Claims>) -> Verdict {
        self.refused(rejection.code, verified);
        Verdict::Deny(reject::invalid_token_response(&self.cfg.challenge(), &rejection))
    }

    /// A valid token without what the route requires: 403.
    fn forbid(&self, rule: &Rule, claims: &Claims) -> Verdict {
        self.refused(RejectCode::InsufficientScope, Some(claims));
        Verdict::Deny(reject::insufficient_scope_response(&self.cfg.challenge(), &rule.required_scopes))
    }

    /// No token where one is required. Audited only in report-only mode, where it is one
    /// of the refusals the operator wants to read about.
    fn missing(&self) -> Verdict {
        self.host.count(Counter::MissingToken);
        if self.cfg.routes.report_only {
            let mut r = self.record(Event::TokenRejected);
            r.reason = Some(reject::MISSING_TOKEN.to_owned());
            r.enforced = Some(false);
            emit(self.host, r);
        }
        Verdict::Deny(reject::missing_token_response(&self.cfg.challenge()))
    }

    /// Counts and audits a refusal.
    fn refused(&self, code: RejectCode, verified: Option<&Claims>) {
        self.host.count(Counter::Rejected(code));
        let mut r = self.record(Event::TokenRejected);
        r.reason = Some(code.as_str().to_owned());
        // Identities only from a token whose signature verified.
        if let Some(c) = verified {
            r.sub = c.sub.clone();
            r.jti = c.jti.clone();
            r.exp = c.exp;
        }
        if self.cfg.routes.report_only {
            r.enforced = Some(false);
        }
        emit(self.host, r);
    }
}

/// The request path as audit records show it: never the query string (tokens and personal
/// data ride there) nor a fragment.
pub(super) fn request_path(meta: &dyn RequestMeta) -> Option<String> {
    let path = meta.path()?;
    let end = path.find(['?', '#']).unwrap_or(path.len());
    Some(path.get(..end).unwrap_or_default().to_owned())
}

/// Whether this exact signature already verified under this configuration: the registry
/// saw this encoding of the token, or the gate verified it before holding the request.
fn signature_known_good(cfg: &Config, known: Option<&TokenRecord>, req: &Request, token: &str) -> bool {
    let seen = known
        .is_some_and(|r| r.config_gen == cfg.cache_generation() && r.sig == token::signature_digest(token));
    seen || req
        .verified
        .is_some_and(|d| crate::mac::constant_time_eq(&d, &hmac_sha256::Hash::hash(token.as_bytes())))
}

#[cfg(test)]
mod route_tests;
#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;
