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
pub mod upstream;

use credential::read_credential;
use handoff::superseded;
use hot::{accepted_again, remember_accepted};
pub(crate) use record::record_for;
use record::{known_session_start, record, Accepted};

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
    /// The revocation feed has been loaded (a process never goes back to unsynced).
    pub feed_synced: std::cell::Cell<bool>,
    /// Tokens this worker accepted a moment ago: the hot path (see `accepted`).
    pub accepted: RefCell<accepted::AcceptedCache>,
}

/// Decides one request, in named steps: the route (metadata document, public, optional,
/// requirements), read the credential, the hot path, authenticate, the revocation feed's
/// say, revocation, the route's requirements, supersession (the refresh handoff), claims and
/// session, record, refresh; then report-only may turn a refusal into a forward.
pub fn check_request(cfg: &Config, host: &impl Host, worker: &Worker, req: &Request) -> Verdict {
    match policy::route_step(cfg, req) {
        policy::Step::Done(verdict) => verdict,
        policy::Step::Check { rule, optional } => {
            policy::enforce(cfg, check_token(cfg, host, worker, req, rule, optional))
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

fn check_token(
    cfg: &Config,
    host: &impl Host,
    worker: &Worker,
    req: &Request,
    rule: Option<&Rule>,
    optional: bool,
) -> Verdict {
    let now = host.now();
    let mut ctx = Ctx { cfg, host, req, now, fingerprint: None };
    let token = match read_credential(cfg, req) {
        Ok(Some(t)) => t,
        Ok(None) if optional => return upstream::forward_unverified(cfg),
        Ok(None) => return ctx.missing(),
        Err(rejection) => return ctx.reject(rejection, None),
    };
    let registry = Registry::new(host, Layout::of(cfg));
    if let Some(verdict) = accepted_again(cfg, host, worker, &registry, token, now, req, rule) {
        return verdict;
    }
    let fingerprint = Fingerprint::of(token);
    ctx.fingerprint = Some(fingerprint);
    let decoded = match token::decode(token) {
        Ok(d) => d,
        Err(rejection) => return ctx.reject(rejection, None),
    };
    let known = registry.lookup(&fingerprint.0);
    let cached = signature_known_good(cfg, known.as_ref(), req, token);
    host.count(if cached { Counter::RegistryHit } else { Counter::SignatureVerified });
    let auth = match verify::authenticate_decoded(cfg, token, decoded, cached) {
        Ok(a) => a,
        Err(rejection) => return ctx.reject(rejection, None),
    };
    let claims = &auth.decoded.claims;
    if let Some(v) = feed_gate(cfg, host, worker, &registry, now) {
        // Held: the signature is not checked again when the request is asked again.
        return match v {
            Verdict::Hold { wait_ms, reason, .. } => {
                Verdict::Hold { wait_ms, reason, verified: Some(hmac_sha256::Hash::hash(token.as_bytes())) }
            }
            other => other,
        };
    }
    let facts = TokenFacts::of(&fingerprint.0, claims);
    // Hashed once: the check below, and the hot path's memory of this token, both need them.
    let targets = Revocation::targets_of(&facts);
    let revoked = known.as_ref().is_some_and(|r| r.state == State::Revoked);
    match is_revoked(host, worker, &registry, &facts, &targets, now) {
        Some(false) if !revoked => {}
        Some(_) => {
            return ctx
                .reject(Rejection::new(RejectCode::TokenRevoked, "token has been revoked"), Some(claims))
        }
        None => return unavailable(),
    }
    // Before expiry and refresh: a token refreshed below is forwarded without being judged
    // again, so it must already meet the route (its successor continues the same session).
    if let Some(rule) = rule.filter(|r| !crate::route::satisfied(r, &claims.all)) {
        return ctx.forbid(rule, claims);
    }
    if let Some(old) = known.as_ref().filter(|r| r.state == State::Superseded) {
        if let Some(v) = superseded(&ctx, worker, &registry, old, claims) {
            return v;
        }
    }
    let known_start = known_session_start(cfg, &registry, known.as_ref(), auth.provider, claims, now);
    let life = match verify::check_claims_in_session(cfg, auth.provider, claims, now, known_start) {
        Ok(l) => l,
        Err(rejection) => {
            if rejection.code == RejectCode::TokenExpired {
                let start = verify::session_start(cfg, claims, known_start);
                if let Some(plan) =
                    refreshing::start(cfg, host, &registry, req, token, &fingerprint, claims, None, start)
                {
                    return Verdict::Refresh(Box::new(plan));
                }
            }
            return ctx.reject(rejection, Some(claims));
        }
    };
    let accepted =
        Accepted { token, fingerprint, claims, life, known: known.as_ref(), provider: auth.provider };
    let recorded = record(&ctx, &registry, &accepted);
    if let Some(plan) = refreshing::start(
        cfg,
        host,
        &registry,
        req,
        token,
        &fingerprint,
        claims,
        Some(life),
        life.session_start,
    ) {
        return Verdict::Refresh(Box::new(plan));
    }
    // Remembered from the second sight on: a token seen once (a flood of one-shot tokens,
    // say) would only churn the cache.
    let plain = known.as_ref().is_some_and(|r| !matches!(r.state, State::Superseded | State::Revoked));
    let headers = upstream::for_claims(cfg, token, &claims.all);
    if recorded.is_some() && plain {
        let last_seen = recorded.unwrap_or(now);
        let seen = hot::Seen { fingerprint, targets, claims, headers: headers.clone(), life, last_seen };
        remember_accepted(cfg, worker, token, seen, now);
    }
    Verdict::Forward {
        expires_in: cfg.expires_in_header.as_ref().map(|_| life.remaining_s),
        swap: None,
        headers,
    }
}

/// What one request's audit records share.
pub(super) struct Ctx<'a, H: Host> {
    cfg: &'a Config,
    host: &'a H,
    req: &'a Request<'a>,
    now: u64,
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
    let seen =
        known.is_some_and(|r| r.config_gen == cfg.generation && r.sig == token::signature_digest(token));
    seen || req
        .verified
        .is_some_and(|d| crate::mac::constant_time_eq(&d, &hmac_sha256::Hash::hash(token.as_bytes())))
}

/// The revocation feed's say before anything is trusted: hold until a fresh process has
/// loaded it, and refuse on stale data when the operator asked for that.
pub(super) fn feed_gate(
    cfg: &Config,
    host: &impl Host,
    worker: &Worker,
    registry: &Registry<'_, impl Host>,
    now: u64,
) -> Option<Verdict> {
    let feed = cfg.revocation_feed.as_ref()?;
    if worker.feed_synced.get() && feed.max_staleness_seconds.is_none() {
        return None;
    }
    let state = registry.feed_state();
    if !state.synced {
        // Trusting the registry before the feed is loaded could let a revoked token
        // through after a restart.
        return Some(Verdict::Hold {
            wait_ms: feed.startup_wait_ms,
            reason: crate::verdict::HoldReason::RevocationFeed,
            verified: None,
        });
    }
    worker.feed_synced.set(true);
    let max = feed.max_staleness_seconds?;
    if state.age(now).is_none_or(|age| age > max) {
        host.count(Counter::FeedStale);
        return Some(Verdict::Deny(reject::unavailable_response("revocation data is stale")));
    }
    None
}

/// Whether a revocation covers the token. `None` when the shared revocation set cannot be
/// read (logged here): the caller must then refuse, with `unavailable()`.
pub(super) fn is_revoked(
    host: &impl Host,
    worker: &Worker,
    registry: &Registry<'_, impl Host>,
    facts: &TokenFacts,
    targets: &[Target],
    now: u64,
) -> Option<bool> {
    match worker.revocations.try_borrow_mut().map(|mut c| c.check(registry, targets, facts, now)) {
        Ok(Ok(found)) => Some(found.is_some()),
        Ok(Err(_)) | Err(_) => {
            host.log(crate::host::Level::Error, "tokenguard: revocation state unreadable; refusing requests");
            None
        }
    }
}

/// The answer when revocations cannot be checked: refusing is the only safe one.
pub(super) fn unavailable() -> Verdict {
    Verdict::Deny(reject::unavailable_response("revocation state unavailable"))
}

#[cfg(test)]
mod route_tests;
#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;
