//! Recording an accepted token: the count, the audit line, its registry record (first sight,
//! `last_seen`, the near-expiry warning) and its session's start.

use crate::audit::{emit, Event, Record};
use crate::config::Config;
use crate::host::Host;
use crate::metrics::Counter;
use crate::registry::record::{State, TokenRecord};
use crate::registry::{session, Registry};
use crate::token::{self, Claims, Fingerprint};
use crate::verify;

use super::Ctx;

/// The earliest session start the filter knows for this token beyond its own claims: its
/// registry record's (inherited through a refresh) and its `sid`'s.
pub(super) fn known_session_start(
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
    verify::earliest(inherited, by_sid)
}

/// A token that passed every check, with what recording it needs.
pub(super) struct Accepted<'a> {
    pub(super) token: &'a str,
    pub(super) fingerprint: Fingerprint,
    pub(super) claims: &'a Claims,
    pub(super) life: verify::Lifetime,
    pub(super) known: Option<&'a TokenRecord>,
    pub(super) provider: &'a crate::config::Provider,
}

/// Counts and audits the acceptance, and records what changed in the registry (first
/// sight, `last_seen`, the near-expiry warning, the session start). Returns the record's
/// `last_seen` when the registry holds the token as it is now, `None` when it could not
/// be written.
pub(super) fn record<H: Host>(ctx: &Ctx<'_, H>, registry: &Registry<'_, H>, a: &Accepted) -> Option<u64> {
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
        r.config_gen != cfg.cache_generation()
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
        config_gen: cfg.cache_generation(),
        refresh_lease_until: 0,
        refresh_retry_at: 0,
        refresh_failures: 0,
        superseded_at: 0,
        sub: claims.sub.clone().unwrap_or_default(),
        jti: claims.jti.clone().unwrap_or_default(),
        sid: claims.sid.clone().unwrap_or_default(),
    }
}
