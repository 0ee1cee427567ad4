//! Per-request decision: find the token, validate it against the registry and the
//! revocations, warn near expiry, audit, count.
//!
//! This is everything the filter does on a request, independent of Envoy: the proxy-wasm
//! layer only gathers the inputs and carries out the `Verdict`.

use std::cell::RefCell;

use crate::audit::{Event, Record};
use crate::config::{Config, TokenSource};
use crate::host::Host;
use crate::metrics::Counter;
use crate::registry::record::{State, TokenRecord};
use crate::registry::revocation::{Revocation, Target, TokenFacts};
use crate::registry::{Layout, Registry, RevocationCache};
use crate::reject::{self, DenyResponse, RejectCode, Rejection};
use crate::token::{self, Claims, Fingerprint};
use crate::verify;

mod accepted;
mod refreshing;
pub use refreshing::{complete as complete_refresh, PendingRefresh};

/// Request facts only an audit record needs. Fetched lazily: each is a host call, and most
/// requests emit no audit record.
pub trait RequestMeta {
    fn request_id(&self) -> Option<String>;
    fn path(&self) -> Option<String>;
    /// Any request header, for the rarely needed ones (the refresh token).
    fn header(&self, name: &str) -> Option<String>;
}

/// The request facts the gate looks at.
pub struct Request<'a> {
    /// The value of the configured token header, or the whole `cookie` header for a cookie
    /// source.
    pub credential_header: Option<&'a str>,
    pub meta: &'a dyn RequestMeta,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the request through; on the response, set the expires-in header to this value.
    /// With `swap`, the request goes upstream with the new token instead of the old one, and
    /// the response hands the new tokens to the client.
    Forward {
        expires_in: Option<u64>,
        swap: Option<Swap>,
    },
    Deny(DenyResponse),
    /// Hold the request, make this refresh call, then finish with `complete_refresh`.
    Refresh(PendingRefresh),
    /// Not decidable yet (a fresh process has not loaded the revocation feed; egress has no
    /// usable token): hold the request, at most `wait_ms`, and ask again.
    Hold {
        wait_ms: u64,
        reason: crate::egress::HoldReason,
    },
    /// Egress: put this header (the service's token) on the request and let it go.
    Inject {
        name: String,
        value: Secret,
    },
}

/// A header value holding a credential: Debug output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Tokens a refresh produced, to put in the request (access token) and the response.
#[derive(Clone, PartialEq, Eq)]
pub struct Swap {
    pub access_token: String,
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for Swap {
    /// Never prints the tokens: a Debug dump must not leak them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Swap({})", Fingerprint::of(&self.access_token).short())
    }
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

/// The registry layout a configuration asks for.
pub fn layout(cfg: &Config) -> Layout {
    Layout::new(cfg.registry.capacity, cfg.registry.max_revocations, cfg.clock_skew_seconds)
}

/// The header a request's credential is read from.
pub fn credential_header_name(cfg: &Config) -> &str {
    match &cfg.token_source {
        TokenSource::Header { name, .. } => name,
        TokenSource::Cookie { .. } => "cookie",
    }
}

/// Pulls the token out of the credential header. `None` means the request carries no token
/// in the configured form (no header, another auth scheme, no such cookie).
pub fn extract_token<'a>(source: &TokenSource, header: &'a str) -> Option<&'a str> {
    match source {
        TokenSource::Header { prefix, .. } => {
            let head = header.get(..prefix.len())?;
            if !head.eq_ignore_ascii_case(prefix) {
                return None;
            }
            header.get(prefix.len()..).map(str::trim)
        }
        TokenSource::Cookie { name } => header.split(';').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        }),
    }
}

/// The credential header's new value, carrying `new_token` in place of the old one.
/// `current` is the header's present value (needed to keep other cookies).
pub fn rewrite_credential(source: &TokenSource, current: Option<&str>, new_token: &str) -> String {
    match source {
        TokenSource::Header { prefix, .. } => format!("{prefix}{new_token}"),
        TokenSource::Cookie { name } => {
            let mut replaced = false;
            let mut parts: Vec<String> = current
                .unwrap_or_default()
                .split(';')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.trim() == name => {
                        replaced = true;
                        format!("{name}={new_token}")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            if !replaced {
                parts.push(format!("{name}={new_token}"));
            }
            parts.join("; ")
        }
    }
}

pub fn check_request(cfg: &Config, host: &impl Host, worker: &Worker, req: &Request) -> Verdict {
    let now = host.now();
    let token = req.credential_header.and_then(|h| extract_token(&cfg.token_source, h));
    let Some(token) = token else {
        host.count(Counter::MissingToken);
        return Verdict::Deny(reject::missing_token_response(&cfg.realm));
    };
    let registry = Registry::new(host, layout(cfg));
    if let Some(verdict) = accepted_again(cfg, host, worker, &registry, token, now, req) {
        return verdict;
    }
    let fingerprint = Fingerprint::of(token);
    let with_request = |mut r: Record| {
        r.request_id = req.meta.request_id();
        r.path = req.meta.path();
        r
    };
    let reject = |rejection: Rejection, verified: Option<&Claims>| {
        host.count(Counter::Rejected(rejection.code));
        let mut r = with_request(Record::new(Event::TokenRejected, now));
        r.token = Some(fingerprint.short());
        r.reason = Some(rejection.code.as_str().to_owned());
        // Identities only from a token whose signature verified.
        if let Some(c) = verified {
            r.sub = c.sub.clone();
            r.jti = c.jti.clone();
            r.exp = c.exp;
        }
        emit(host, r);
        Verdict::Deny(reject::invalid_token_response(&cfg.realm, &rejection))
    };

    let decoded = match token::decode(token) {
        Ok(d) => d,
        Err(rejection) => return reject(rejection, None),
    };
    let known = registry.lookup(&fingerprint.0);
    // Same bytes (same SHA-256) verified under the same configuration: the signature holds.
    let cached = known.as_ref().is_some_and(|r| r.config_gen == cfg.generation);
    host.count(if cached { Counter::RegistryHit } else { Counter::SignatureVerified });
    let auth = match verify::authenticate_decoded(cfg, token, decoded, cached) {
        Ok(a) => a,
        Err(rejection) => return reject(rejection, None),
    };
    let claims = &auth.decoded.claims;

    if let Some(v) = feed_gate(cfg, host, worker, &registry, now) {
        return v;
    }

    let facts = TokenFacts {
        fp: &fingerprint.0,
        jti: claims.jti.as_deref(),
        sub: claims.sub.as_deref(),
        sid: claims.sid.as_deref(),
        iat: claims.iat,
    };
    // Hashed once: the check below, and the hot path's memory of this token, both need them.
    let targets = Revocation::targets_of(&facts);
    let revoked = known.as_ref().is_some_and(|r| r.state == State::Revoked);
    match is_revoked(host, worker, &registry, &facts, &targets, now) {
        Some(false) if !revoked => {}
        Some(_) => {
            return reject(Rejection::new(RejectCode::TokenRevoked, "token has been revoked"), Some(claims))
        }
        None => return unavailable(),
    }

    if let Some(old) = known.as_ref().filter(|r| r.state == State::Superseded) {
        let grace = cfg.refresh.as_ref().map_or(0, |r| r.grace_seconds);
        if now >= old.superseded_at.saturating_add(grace) {
            return reject(
                Rejection::new(RejectCode::TokenRevoked, "token was replaced by a refresh"),
                Some(claims),
            );
        }
        if let Some(h) = registry.handoff(&fingerprint.0, now) {
            // The replacement may have been revoked since (by its jti, or as a token): handing
            // it on would let a revoked token through under the old one's name.
            let new_claims = token::decode(&h.access_token).ok().map(|d| d.claims);
            let new_fp = Fingerprint::of(&h.access_token);
            let new_facts = TokenFacts {
                fp: &new_fp.0,
                jti: new_claims.as_ref().and_then(|c| c.jti.as_deref()),
                sub: new_claims.as_ref().and_then(|c| c.sub.as_deref()),
                sid: new_claims.as_ref().and_then(|c| c.sid.as_deref()),
                iat: new_claims.as_ref().and_then(|c| c.iat),
            };
            let new_targets = Revocation::targets_of(&new_facts);
            match is_revoked(host, worker, &registry, &new_facts, &new_targets, now) {
                Some(false) => {}
                Some(true) => {
                    return reject(
                        Rejection::new(RejectCode::TokenRevoked, "the token's replacement has been revoked"),
                        Some(claims),
                    )
                }
                None => return unavailable(),
            }
            host.count(Counter::Accepted);
            host.count(Counter::RefreshHandoff);
            let expires_in = new_claims.and_then(|c| c.exp).map(|e| e.saturating_sub(now));
            return Verdict::Forward {
                expires_in: cfg.expires_in_header.as_ref().and(expires_in),
                swap: Some(Swap { access_token: h.access_token, refresh_token: h.refresh_token }),
            };
        }
        // The handoff is gone (evicted): the old token, still valid, goes on as it is.
    }

    let life = match verify::check_claims(cfg, auth.provider, claims, now) {
        Ok(l) => l,
        Err(rejection) => {
            if rejection.code == RejectCode::TokenExpired {
                if let Some(plan) = refreshing::start(cfg, host, &registry, req, &fingerprint, claims, None) {
                    return Verdict::Refresh(plan);
                }
            }
            return reject(rejection, Some(claims));
        }
    };
    let record = |event| {
        let mut r = Record::new(event, now);
        r.token = Some(fingerprint.short());
        r.sub = claims.sub.clone();
        r.jti = claims.jti.clone();
        r.exp = Some(life.exp);
        r.remaining_s = Some(life.remaining_s);
        with_request(r)
    };
    host.count(Counter::Accepted);
    if cfg.log_accepted {
        emit(host, record(Event::TokenAccepted));
    }

    let due_warning = life.remaining_s <= cfg.near_expiry_warning_seconds;
    let already_warned = known.as_ref().is_some_and(|r| r.state != State::Active);
    let stale = known.as_ref().is_none_or(|r| {
        r.config_gen != cfg.generation
            || now.saturating_sub(r.last_seen) >= crate::registry::LAST_SEEN_GRANULARITY_S
    });
    let mut recorded = !stale;
    if stale || (due_warning && !already_warned) {
        let rec = record_for(cfg, &fingerprint, claims, life.exp, now);
        match registry.remember(rec, due_warning, now) {
            Ok(done) => {
                recorded = true;
                if done.warned_now {
                    host.count(Counter::NearExpiryWarning);
                    emit(host, record(Event::NearExpiry));
                }
                for gone in done.evicted {
                    host.count(Counter::RegistryEvicted);
                    let mut r = Record::new(Event::RegistryEvicted, now);
                    r.token = Some(Fingerprint(gone.fp).short());
                    r.sub = Some(gone.sub).filter(|s| !s.is_empty());
                    r.jti = Some(gone.jti).filter(|s| !s.is_empty());
                    r.exp = Some(gone.exp);
                    r.remaining_s = Some(gone.exp.saturating_sub(now));
                    r.reason = Some("capacity".into());
                    emit(host, r);
                }
            }
            Err(_) => host.count(Counter::RegistryConflict),
        }
    }
    if let Some(plan) = refreshing::start(cfg, host, &registry, req, &fingerprint, claims, Some(life)) {
        return Verdict::Refresh(plan);
    }
    // Remembered from the second sight on: a token seen once (a flood of one-shot tokens,
    // say) would only churn the cache.
    let plain = known.as_ref().is_some_and(|r| !matches!(r.state, State::Superseded | State::Revoked));
    if recorded && plain {
        let last_seen = known.as_ref().filter(|_| !stale).map_or(now, |r| r.last_seen);
        remember_accepted(cfg, worker, token, fingerprint, targets, claims, life, last_seen, now);
    }
    Verdict::Forward { expires_in: cfg.expires_in_header.as_ref().map(|_| life.remaining_s), swap: None }
}

/// The revocation feed's say before anything is trusted: hold until a fresh process has
/// loaded it, and refuse on stale data when the operator asked for that.
fn feed_gate(
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
            reason: crate::egress::HoldReason::RevocationFeed,
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

/// The hot path: a token this worker accepted a moment ago, when nothing that could change
/// the answer has changed (see `accepted`). `None` sends the request down the full path,
/// which also produces every refusal.
fn accepted_again(
    cfg: &Config,
    host: &impl Host,
    worker: &Worker,
    registry: &Registry<'_, impl Host>,
    token: &str,
    now: u64,
    req: &Request,
) -> Option<Verdict> {
    let cache = worker.accepted.try_borrow().ok()?;
    let entry = cache.get(token)?;
    if let Some(v) = feed_gate(cfg, host, worker, registry, now) {
        return Some(v);
    }
    // Unreadable revocations refuse here as on the full path; a revoked token goes there for
    // its refusal and audit line.
    let not_revoked = match is_revoked(host, worker, registry, &entry.facts(), &entry.targets, now) {
        Some(revoked) => !revoked,
        None => return Some(unavailable()),
    };
    let epoch = worker.revocations.try_borrow().ok().and_then(|r| r.epoch());
    if !not_revoked || !epoch.is_some_and(|e| entry.fresh(cfg.generation, now, e)) {
        drop(cache);
        if let Ok(mut c) = worker.accepted.try_borrow_mut() {
            c.forget(token);
        }
        return None;
    }
    host.count(Counter::RegistryHit);
    host.count(Counter::Accepted);
    let remaining_s = entry.exp.saturating_sub(now);
    if cfg.log_accepted {
        let mut r = Record::new(Event::TokenAccepted, now);
        r.token = Some(entry.fingerprint.short());
        r.sub = entry.sub.clone();
        r.jti = entry.jti.clone();
        r.exp = Some(entry.exp);
        r.remaining_s = Some(remaining_s);
        r.request_id = req.meta.request_id();
        r.path = req.meta.path();
        emit(host, r);
    }
    Some(Verdict::Forward { expires_in: cfg.expires_in_header.as_ref().map(|_| remaining_s), swap: None })
}

/// Remembers a token the full path has just accepted, until the first moment the full path
/// could answer differently: the near-expiry warning, the refresh window, the session
/// limit, or the registry's next `last_seen` update.
#[allow(clippy::too_many_arguments)]
fn remember_accepted(
    cfg: &Config,
    worker: &Worker,
    token: &str,
    fingerprint: Fingerprint,
    targets: Vec<Target>,
    claims: &Claims,
    life: verify::Lifetime,
    last_seen: u64,
    now: u64,
) {
    let Some(epoch) = worker.revocations.try_borrow().ok().and_then(|r| r.epoch()) else { return };
    let mut until = life.exp.saturating_sub(cfg.near_expiry_warning_seconds);
    if let Some(r) = &cfg.refresh {
        until = until.min(life.exp.saturating_sub(crate::refresh::window_seconds(r, life.exp, claims.iat)));
    }
    if let Some(ends) = life.session_ends {
        until = until.min(ends);
    }
    until = until.min(last_seen.saturating_add(crate::registry::LAST_SEEN_GRANULARITY_S));
    let entry = accepted::Entry {
        config_gen: cfg.generation,
        fingerprint,
        sub: claims.sub.clone(),
        jti: claims.jti.clone(),
        sid: claims.sid.clone(),
        iat: claims.iat,
        exp: life.exp,
        accepted_at: now,
        // One second of margin: the full path's own boundaries are inclusive.
        fresh_until: until.saturating_sub(1),
        revocation_epoch: epoch,
        targets,
    };
    if let Ok(mut c) = worker.accepted.try_borrow_mut() {
        c.remember(token, entry);
    }
}

/// Whether a revocation covers the token. `None` when the shared revocation set cannot be
/// read (logged here): the caller must then refuse, with `unavailable()`.
fn is_revoked(
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
fn unavailable() -> Verdict {
    Verdict::Deny(reject::unavailable_response("revocation state unavailable"))
}

/// A fresh registry record for a verified token.
pub(crate) fn record_for(
    cfg: &Config,
    fingerprint: &Fingerprint,
    claims: &Claims,
    exp: u64,
    now: u64,
) -> TokenRecord {
    TokenRecord {
        fp: fingerprint.0,
        exp,
        iat: claims.iat.unwrap_or(0),
        first_seen: now,
        last_seen: now,
        state: State::Active,
        config_gen: cfg.generation,
        refresh_lease_until: 0,
        refresh_retry_at: 0,
        refresh_failures: 0,
        superseded_at: 0,
        sub: claims.sub.clone().unwrap_or_default(),
        jti: claims.jti.clone().unwrap_or_default(),
        sid: claims.sid.clone().unwrap_or_default(),
    }
}

pub(crate) fn emit(host: &impl Host, record: Record) {
    host.log(record.event.level(), &record.line());
}

#[cfg(test)]
mod tests;
