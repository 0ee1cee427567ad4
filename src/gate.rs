//! Per-request decision: find the token, validate it against the registry and the
//! revocations, warn near expiry, audit, count.
//!
//! This is everything the filter does on a request, independent of Envoy: the proxy-wasm
//! layer only gathers the inputs and carries out the `Verdict`.

use std::cell::RefCell;

use crate::audit::{emit, Event, Record};
use crate::config::{Config, TokenSource};
use crate::host::Host;
use crate::metrics::Counter;
use crate::registry::record::{State, TokenRecord};
use crate::registry::revocation::{Revocation, Target, TokenFacts};
use crate::registry::{session, Layout, Registry, RevocationCache};
use crate::reject::{self, RejectCode, Rejection};
use crate::token::{self, Claims, Fingerprint};
use crate::verdict::{Swap, Verdict};
use crate::verify;

mod accepted;
mod refreshing;
pub use refreshing::complete as complete_refresh;

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
        TokenSource::Cookie { name } => cookie_values(header, name).next(),
    }
}

/// The `cookie` header without the cookies called `name`; `None` when there are none (the
/// header stays as it is). An empty result means no cookie is left.
pub fn without_cookie(header: &str, name: &str) -> Option<String> {
    cookie_values(header, name).next()?;
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').is_none_or(|(k, _)| k.trim() != name))
        .collect();
    Some(kept.join("; "))
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

/// Decides one request, in named steps: read the credential, the hot path, authenticate,
/// the revocation feed's say, revocation, supersession (the refresh handoff), claims and
/// session, record, refresh.
pub fn check_request(cfg: &Config, host: &impl Host, worker: &Worker, req: &Request) -> Verdict {
    let now = host.now();
    let mut ctx = Ctx { cfg, host, req, now, fingerprint: None };
    let token = match read_credential(cfg, req) {
        Ok(Some(t)) => t,
        Ok(None) => {
            host.count(Counter::MissingToken);
            return Verdict::Deny(reject::missing_token_response(&cfg.realm));
        }
        Err(rejection) => return ctx.reject(rejection, None),
    };
    let registry = Registry::new(host, Layout::of(cfg));
    if let Some(verdict) = accepted_again(cfg, host, worker, &registry, token, now, req) {
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
            return ctx
                .reject(Rejection::new(RejectCode::TokenRevoked, "token has been revoked"), Some(claims))
        }
        None => return unavailable(),
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
    if recorded.is_some() && plain {
        let last_seen = recorded.unwrap_or(now);
        remember_accepted(cfg, worker, token, fingerprint, targets, claims, life, last_seen, now);
    }
    Verdict::Forward { expires_in: cfg.expires_in_header.as_ref().map(|_| life.remaining_s), swap: None }
}

/// What one request's audit records share.
struct Ctx<'a, H: Host> {
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
        self.host.count(Counter::Rejected(rejection.code));
        let mut r = self.record(Event::TokenRejected);
        r.reason = Some(rejection.code.as_str().to_owned());
        // Identities only from a token whose signature verified.
        if let Some(c) = verified {
            r.sub = c.sub.clone();
            r.jti = c.jti.clone();
            r.exp = c.exp;
        }
        emit(self.host, r);
        Verdict::Deny(reject::invalid_token_response(&self.cfg.realm, &rejection))
    }
}

/// The request path as audit records show it: never the query string (tokens and personal
/// data ride there) nor a fragment.
fn request_path(meta: &dyn RequestMeta) -> Option<String> {
    let path = meta.path()?;
    let end = path.find(['?', '#']).unwrap_or(path.len());
    Some(path.get(..end).unwrap_or_default().to_owned())
}

/// The request's token. Two candidates (two cookies of the configured name, or a cookie
/// beside a bearer header) are refused: picking one lets whoever planted the other decide
/// which identity is checked and which is forwarded.
fn read_credential<'r>(cfg: &Config, req: &'r Request) -> Result<Option<&'r str>, Rejection> {
    let Some(header) = req.credential_header else { return Ok(None) };
    let ambiguous = || Rejection::new(RejectCode::MalformedToken, "request carries more than one credential");
    if let TokenSource::Cookie { name } = &cfg.token_source {
        if cookie_values(header, name).nth(1).is_some() {
            return Err(ambiguous());
        }
        let token = extract_token(&cfg.token_source, header);
        let bearer = req.meta.header("authorization");
        let scheme =
            |b: &str| b.split_ascii_whitespace().next().is_some_and(|s| s.eq_ignore_ascii_case("bearer"));
        if token.is_some() && bearer.as_deref().is_some_and(scheme) {
            return Err(ambiguous());
        }
        return Ok(token);
    }
    Ok(extract_token(&cfg.token_source, header))
}

/// The values of every cookie called `name` in a `cookie` header.
pub fn cookie_values<'h, 'n>(header: &'h str, name: &'n str) -> impl Iterator<Item = &'h str> + use<'h, 'n> {
    header.split(';').filter_map(move |pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// Whether this exact signature already verified under this configuration: the registry
/// saw this encoding of the token, or the gate verified it before holding the request.
fn signature_known_good(cfg: &Config, known: Option<&TokenRecord>, req: &Request, token: &str) -> bool {
    let seen =
        known.is_some_and(|r| r.config_gen == cfg.generation && r.sig == token::signature_digest(token));
    seen || req.verified.is_some_and(|d| admin_eq(&d, &hmac_sha256::Hash::hash(token.as_bytes())))
}

fn admin_eq(a: &[u8], b: &[u8]) -> bool {
    crate::mac::constant_time_eq(a, b)
}

/// The earliest session start the filter knows for this token beyond its own claims: its
/// registry record's (inherited through a refresh) and its `sid`'s.
fn known_session_start(
    cfg: &Config,
    registry: &Registry<'_, impl Host>,
    known: Option<&TokenRecord>,
    provider: &crate::config::Provider,
    claims: &Claims,
    now: u64,
) -> Option<u64> {
    cfg.session.as_ref()?;
    let inherited = known.map(|r| r.session_start).filter(|s| *s != 0);
    let by_sid = claims
        .sid
        .as_deref()
        .and_then(|sid| registry.sessions().start(&session::session_id(&provider.issuer, sid), now));
    match (inherited, by_sid) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A token that passed every check, with what recording it needs.
struct Accepted<'a> {
    token: &'a str,
    fingerprint: Fingerprint,
    claims: &'a Claims,
    life: verify::Lifetime,
    known: Option<&'a TokenRecord>,
    provider: &'a crate::config::Provider,
}

/// Counts and audits the acceptance, and records what changed in the registry (first
/// sight, `last_seen`, the near-expiry warning, the session start). Returns the record's
/// `last_seen` when the registry holds the token as it is now, `None` when it could not
/// be written.
fn record<H: Host>(ctx: &Ctx<'_, H>, registry: &Registry<'_, H>, a: &Accepted) -> Option<u64> {
    let (cfg, host, now) = (ctx.cfg, ctx.host, ctx.now);
    let audit = |event| {
        let mut r = ctx.record(event);
        r.sub = a.claims.sub.clone();
        r.jti = a.claims.jti.clone();
        r.exp = Some(a.life.exp);
        r.remaining_s = Some(a.life.remaining_s);
        r
    };
    host.count(Counter::Accepted);
    if cfg.log_accepted {
        emit(host, audit(Event::TokenAccepted));
    }
    let due_warning = a.life.remaining_s <= cfg.near_expiry_warning_seconds;
    let already_warned = a.known.is_some_and(|r| r.state != State::Active);
    let new_start = a
        .life
        .session_start
        .is_some_and(|s| a.known.is_none_or(|r| r.session_start == 0 || s < r.session_start));
    let stale = a.known.is_none_or(|r| {
        r.config_gen != cfg.generation
            || now.saturating_sub(r.last_seen) >= crate::registry::LAST_SEEN_GRANULARITY_S
    });
    if stale || new_start {
        note_session(cfg, registry, a, now);
    }
    if !(stale || new_start || (due_warning && !already_warned)) {
        return a.known.map(|r| r.last_seen);
    }
    let rec = record_for(cfg, &a.fingerprint, a.token, a.claims, a.life.exp, a.life.session_start, now);
    match registry.remember(rec, due_warning, now) {
        Ok(done) => {
            if done.warned_now {
                host.count(Counter::NearExpiryWarning);
                emit(host, audit(Event::NearExpiry));
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
            Some(if stale { now } else { a.known.map_or(now, |r| r.last_seen) })
        }
        Err(_) => {
            host.count(Counter::RegistryConflict);
            None
        }
    }
}

/// Remembers the session's start under its `sid`, so a sibling token (refreshed by the
/// client itself) is held to it.
fn note_session(cfg: &Config, registry: &Registry<'_, impl Host>, a: &Accepted, now: u64) {
    let (Some(policy), Some(sid), Some(start)) =
        (&cfg.session, a.claims.sid.as_deref(), a.life.session_start)
    else {
        return;
    };
    let id = session::session_id(&a.provider.issuer, sid);
    // Kept a lifetime past the session's end: later siblings must still meet the old start.
    let until = start.saturating_add(policy.max_lifetime_seconds.saturating_mul(2));
    // A lost race only means a sibling token is judged by its own claims until next time.
    let _ = registry.sessions().note(&id, start, until, now);
}

/// A token a refresh replaced: refused after the grace; during it, forwarded as its
/// replacement (`None` when the handoff is gone: the old token, still valid, goes on).
fn superseded<H: Host>(
    ctx: &Ctx<'_, H>,
    worker: &Worker,
    registry: &Registry<'_, H>,
    old: &TokenRecord,
    claims: &Claims,
) -> Option<Verdict> {
    let (cfg, host, now) = (ctx.cfg, ctx.host, ctx.now);
    let grace = cfg.refresh.as_ref().map_or(0, |r| r.grace_seconds);
    if now >= old.superseded_at.saturating_add(grace) {
        return Some(ctx.reject(
            Rejection::new(RejectCode::TokenRevoked, "token was replaced by a refresh"),
            Some(claims),
        ));
    }
    let h = registry.handoff(&old.fp, now)?;
    // The replacement is held to every check a presented token meets: revocation (by its
    // jti, or as a token), expiry, the session limit of the token it replaced.
    let replacement = match handoff_check(cfg, host, worker, registry, &h, old, now) {
        Ok(life) => life,
        Err(None) => return Some(unavailable()),
        Err(Some(rejection)) => return Some(ctx.reject(rejection, Some(claims))),
    };
    host.count(Counter::Accepted);
    host.count(Counter::RefreshHandoff);
    // Only the holder of the spent refresh token gets its successor: the old access token
    // alone buys at most the new access token.
    let presented = cfg
        .refresh
        .as_ref()
        .and_then(|r| refreshing::presented_refresh_token(&r.refresh_token_source, ctx.req));
    let refresh_token = h.refresh_token.clone().filter(|_| h.spent_by(presented.as_deref()));
    Some(Verdict::Forward {
        expires_in: cfg.expires_in_header.as_ref().map(|_| replacement.remaining_s),
        swap: Some(Swap { access_token: h.access_token, refresh_token }),
    })
}

/// Checks a handoff's new access token now. `Err(None)`: revocations unreadable.
fn handoff_check(
    cfg: &Config,
    host: &impl Host,
    worker: &Worker,
    registry: &Registry<'_, impl Host>,
    h: &crate::registry::handoff::Handoff,
    old: &TokenRecord,
    now: u64,
) -> Result<verify::Lifetime, Option<Rejection>> {
    let replaced =
        |why: &str| Some(Rejection::new(RejectCode::TokenRevoked, format!("the token's replacement {why}")));
    let decoded = token::decode(&h.access_token).map_err(|_| replaced("is unreadable"))?;
    // Verified when the refresh completed, under that configuration; under another it is
    // verified again. Issuer and algorithm are checked either way.
    let verified = h.config_gen == cfg.generation;
    let auth = verify::authenticate_decoded(cfg, &h.access_token, decoded, verified).map_err(Some)?;
    let c = &auth.decoded.claims;
    let new_fp = Fingerprint::of(&h.access_token);
    let facts = TokenFacts {
        fp: &new_fp.0,
        jti: c.jti.as_deref(),
        sub: c.sub.as_deref(),
        sid: c.sid.as_deref(),
        iat: c.iat,
    };
    let targets = Revocation::targets_of(&facts);
    match is_revoked(host, worker, registry, &facts, &targets, now) {
        Some(false) => {}
        Some(true) => return Err(replaced("has been revoked")),
        None => return Err(None),
    }
    let known_start = Some(old.session_start).filter(|s| *s != 0);
    verify::check_claims_in_session(cfg, auth.provider, c, now, known_start).map_err(Some)
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
        r.path = request_path(req.meta);
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
    token: &str,
    claims: &Claims,
    exp: u64,
    session_start: Option<u64>,
    now: u64,
) -> TokenRecord {
    TokenRecord {
        fp: fingerprint.0,
        sig: token::signature_digest(token),
        session_start: session_start.unwrap_or(0),
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

#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;
