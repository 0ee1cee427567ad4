//! The hot path: answering a repeat of a token this worker accepted a moment ago from its
//! memory (`accepted`), and remembering tokens the full path accepts.

use crate::audit::{emit, Event, Record};
use crate::config::routes::Rule;
use crate::config::Config;
use crate::host::Host;
use crate::metrics::Counter;
use crate::registry::revocation::Target;
use crate::registry::Registry;
use crate::token::{Claims, Fingerprint};
use crate::verdict::Verdict;
use crate::verify;

use super::{accepted, is_revoked, request_path, store_gate, unavailable, Ctx, Worker};
use crate::header::Edits;

/// The hot path: a token this worker accepted a moment ago, when nothing that could change
/// the answer has changed (see `accepted`). `None` sends the request down the full path,
/// which also produces every refusal (a route's requirements unmet included).
pub(super) fn accepted_again<H: Host>(
    ctx: &Ctx<'_, H>,
    worker: &Worker,
    registry: &Registry<'_, H>,
    token: &str,
    rule: Option<&Rule>,
) -> Option<Verdict> {
    let (cfg, host, now, req) = (ctx.cfg, ctx.host, ctx.now, ctx.req);
    let cache = worker.accepted.try_borrow().ok()?;
    let entry = cache.get(token)?;
    if let Some(rule) = rule {
        entry.claims.as_deref().filter(|c| crate::route::satisfied(rule, c))?;
    }
    if let Some(v) = store_gate(cfg, host, worker, registry, now) {
        return Some(v);
    }
    // Unreadable revocations refuse here as on the full path; a revoked token goes there for
    // its refusal and audit line.
    let not_revoked =
        match is_revoked(host, worker, registry, ctx.changes, &entry.facts(), &entry.targets, now) {
            Some(revoked) => !revoked,
            None => return Some(unavailable()),
        };
    let epoch = worker.revocations.try_borrow().ok().and_then(|r| r.epoch());
    if !not_revoked || !epoch.is_some_and(|e| entry.fresh(cfg.cache_generation(), now, e)) {
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
    Some(Verdict::Forward {
        expires_in: cfg.expires_in_header.as_ref().map(|_| remaining_s),
        swap: None,
        headers: entry.upstream.clone(),
    })
}

/// What the full path learnt about a token it accepted, for the hot path to remember.
pub(super) struct Seen<'a> {
    pub fingerprint: Fingerprint,
    pub targets: Vec<Target>,
    pub claims: &'a Claims,
    /// The upstream header edits made for it (`upstream::for_claims`).
    pub headers: Edits,
    pub life: verify::Lifetime,
    pub last_seen: u64,
}

/// Remembers a token the full path has just accepted, until the first moment the full path
/// could answer differently: the near-expiry warning, the refresh window, the session
/// limit, or the registry's next `last_seen` update.
pub(super) fn remember_accepted(cfg: &Config, worker: &Worker, token: &str, seen: Seen, now: u64) {
    let Seen { fingerprint, targets, claims, headers, life, last_seen } = seen;
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
        config_gen: cfg.cache_generation(),
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
        // Kept only when some rule has requirements to check on later requests.
        claims: cfg.routes.needs_claims.then(|| Box::new(claims.all.clone())),
        upstream: headers,
    };
    if let Ok(mut c) = worker.accepted.try_borrow_mut() {
        c.remember(token, entry);
    }
}
