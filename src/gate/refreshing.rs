//! The refresh half of the gate: deciding to refresh (single flight through the registry
//! lease) and finishing once the token endpoint has answered.

use super::{record_for, Request};
use crate::audit::{emit, Event, Record};
use crate::config::{Config, TokenSource};
use crate::host::Host;
use crate::metrics::Counter;
use crate::refresh::{self, Failure, PendingRefresh};
use crate::registry::handoff::Handoff;
use crate::registry::revocation::{Revocation, TokenFacts};
use crate::registry::{Layout, Lease, Registry};
use crate::reject::{self, RejectCode, Rejection};
use crate::token::{Claims, Fingerprint};
use crate::verdict::{Swap, Verdict};
use crate::verify::{self, Lifetime};

/// The refresh token the request presents, if any.
pub(super) fn presented_refresh_token(source: &TokenSource, req: &Request) -> Option<String> {
    let raw = match source {
        TokenSource::Header { name, .. } => req.meta.header(name)?,
        TokenSource::Cookie { name } => {
            let cookies = req.meta.header("cookie")?;
            return super::credential::cookie_values(&cookies, name)
                .next()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
        }
    };
    Some(raw.trim().to_owned()).filter(|t| !t.is_empty())
}

/// Starts a refresh when one is due (or, with `refresh_expired`, when the token has just
/// expired), the request carries a refresh token, and no other request holds the lease.
/// `life` is `None` for an expired token.
#[allow(clippy::too_many_arguments)]
pub(super) fn start(
    cfg: &Config,
    host: &impl Host,
    registry: &Registry<impl Host>,
    req: &Request,
    token: &str,
    fingerprint: &Fingerprint,
    claims: &Claims,
    life: Option<Lifetime>,
    session_start: Option<u64>,
) -> Option<PendingRefresh> {
    let rcfg = cfg.refresh.as_ref()?;
    let now = host.now();
    let exp = claims.exp?;
    match life {
        Some(l) if !refresh::is_due(rcfg, l.exp, claims.iat, now) => return None,
        None if !rcfg.refresh_expired => return None,
        _ => {}
    }
    let refresh_token = presented_refresh_token(&rcfg.refresh_token_source, req)?;
    let lease_until = crate::backoff::lease_until(now, rcfg.timeout_ms);
    let rec = record_for(cfg, fingerprint, token, claims, exp, session_start, now);
    match registry.try_lease_refresh(rec, now, lease_until) {
        Ok(Lease::Acquired) => {}
        Ok(_) => return None,
        Err(_) => {
            host.count(Counter::RegistryConflict);
            return None;
        }
    }
    host.count(Counter::RefreshStarted);
    let mut r = Record::new(Event::RefreshStarted, now);
    r.token = Some(fingerprint.short());
    r.sub = claims.sub.clone();
    r.jti = claims.jti.clone();
    r.exp = Some(exp);
    r.remaining_s = Some(exp.saturating_sub(now));
    emit(host, r);
    Some(PendingRefresh {
        callout: refresh::build_request(rcfg, &refresh_token),
        old: *fingerprint,
        iss: claims.iss.clone(),
        sub: claims.sub.clone(),
        jti: claims.jti.clone(),
        sid: claims.sid.clone(),
        iat: claims.iat,
        exp,
        expired: life.is_none(),
        session_start,
        spent_refresh: hmac_sha256::Hash::hash(refresh_token.as_bytes()),
        upstream: super::upstream::for_claims(cfg, token, &claims.all),
    })
}

/// Finishes a refresh with the token endpoint's answer (`:status` and body) or the reason
/// there was none, and says what happens to the held request.
pub fn complete(
    cfg: &Config,
    host: &impl Host,
    worker: &super::Worker,
    plan: &PendingRefresh,
    answer: Result<(Option<u16>, Vec<u8>), Failure>,
) -> Verdict {
    let now = host.now();
    let registry = Registry::new(host, Layout::of(cfg));
    let outcome =
        answer.and_then(|(status, body)| refresh::parse_response(status, &body)).and_then(|grant| {
            // The new token passes exactly the checks any incoming token passes, in the
            // session of the token it replaces.
            let remote = worker.keys.try_borrow().ok();
            let checked = crate::token::decode(&grant.access_token)
                .and_then(|d| {
                    verify::authenticate_with(cfg, remote.as_deref(), &grant.access_token, d, false)
                })
                .and_then(|auth| {
                    let claims = auth.decoded.claims;
                    verify::check_claims_in_session(cfg, auth.provider, &claims, now, plan.session_start)
                        .map(|life| (life, claims))
                });
            match checked {
                Ok((life, claims)) => {
                    successor_of(plan, &grant.access_token, &claims)?;
                    Ok((grant, life, claims))
                }
                Err(rejection) => Err(Failure::InvalidNewToken(rejection.code)),
            }
        });
    let grace = cfg.refresh.as_ref().map_or(0, |r| r.grace_seconds);
    match outcome {
        Ok((grant, life, claims)) => {
            let new_fp = Fingerprint::of(&grant.access_token);
            let handoff = Handoff {
                old_fp: plan.old.0,
                access_token: grant.access_token.clone(),
                refresh_token: grant.refresh_token.clone(),
                spent_refresh: plan.spent_refresh,
                config_gen: cfg.cache_generation(),
                until: now.saturating_add(grace),
            };
            let new_record =
                record_for(cfg, &new_fp, &grant.access_token, &claims, life.exp, life.session_start, now);
            if registry.refresh_succeeded(&plan.old.0, new_record, handoff, now).is_err() {
                host.count(Counter::RegistryConflict);
            }
            if registry.reset_failure_streak().is_err() {
                host.count(Counter::RegistryConflict);
            }
            host.count(Counter::RefreshSucceeded);
            if plan.expired {
                host.count(Counter::Accepted);
            }
            let mut r = Record::new(Event::RefreshSucceeded, now);
            r.token = Some(plan.old.short());
            r.new_token = Some(new_fp.short());
            r.sub = claims.sub.clone();
            r.jti = claims.jti.clone();
            r.exp = Some(life.exp);
            r.remaining_s = Some(life.remaining_s);
            emit(host, r);
            Verdict::Forward {
                expires_in: cfg.expires_in_header.as_ref().map(|_| life.remaining_s),
                headers: super::upstream::for_claims(cfg, &grant.access_token, &claims.all),
                swap: Some(Swap { access_token: grant.access_token, refresh_token: grant.refresh_token }),
            }
        }
        Err(failure) => {
            let failures = registry.refresh_failed(&plan.old.0, now).unwrap_or(1);
            host.count(Counter::RefreshFailed);
            let mut r = Record::new(Event::RefreshFailed, now);
            r.token = Some(plan.old.short());
            r.sub = plan.sub.clone();
            r.jti = plan.jti.clone();
            r.exp = Some(plan.exp);
            r.remaining_s = Some(plan.exp.saturating_sub(now));
            r.reason = Some(format!("{} (attempt {failures} for this token)", failure.cause()));
            emit(host, r);
            if let (Ok(streak), Some(rcfg)) = (registry.bump_failure_streak(), cfg.refresh.as_ref()) {
                if streak == u64::from(rcfg.escalate_after_failures) {
                    host.count(Counter::RefreshEscalation);
                    let mut r = Record::new(Event::RefreshEscalation, now);
                    r.reason =
                        Some(format!("{streak} consecutive refresh failures; last: {}", failure.cause()));
                    emit(host, r);
                }
            }
            old_token_now(cfg, host, worker, &registry, plan, now)
        }
    }
}

/// Another replica holds the fleet's claim on this token and refreshes it: no call out here
/// (a second refresh of one refresh token trips the authorization server's reuse detection)
/// and none before `until`, when the claim lapses. The request goes on with its old token,
/// judged again now.
pub fn claimed_elsewhere(
    cfg: &Config,
    host: &impl Host,
    worker: &super::Worker,
    plan: &PendingRefresh,
    until: u64,
) -> Verdict {
    let now = host.now();
    let registry = Registry::new(host, Layout::of(cfg));
    if registry.refresh_deferred(&plan.old.0, until).is_err() {
        host.count(Counter::RegistryConflict);
    }
    host.count(Counter::RefreshClaimedElsewhere);
    let mut r = Record::new(Event::RefreshDeferred, now);
    r.token = Some(plan.old.short());
    r.sub = plan.sub.clone();
    r.exp = Some(plan.exp);
    r.reason = Some(
        "another replica is refreshing this token (its etcd claim); forwarded with the old token".into(),
    );
    emit(host, r);
    old_token_now(cfg, host, worker, &registry, plan, now)
}

/// etcd could not be asked for the fleet's claim: the refresh goes on under this process's
/// single flight only, and says so.
pub fn unclaimed(host: &impl Host, plan: &PendingRefresh, cause: &str) {
    host.count(Counter::RefreshUnclaimed);
    let mut r = Record::new(Event::RefreshUnclaimed, host.now());
    r.token = Some(plan.old.short());
    r.sub = plan.sub.clone();
    r.reason = Some(format!("{cause}; refreshing with this replica's single flight only"));
    emit(host, r);
}

/// A refresh answer must continue the same session: a token for another issuer, subject or
/// session (a refresh token of the caller's own, spent with a victim's access token) would
/// put the victim's requests and client on the caller's account. The same token again is no
/// refresh at all, and superseding it would lock its holder out.
fn successor_of(plan: &PendingRefresh, new_token: &str, claims: &Claims) -> Result<(), Failure> {
    let same_sid = match (&plan.sid, &claims.sid) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    if claims.iss != plan.iss || claims.sub != plan.sub || !same_sid {
        return Err(Failure::BadResponse("the new token names another subject or session"));
    }
    if Fingerprint::of(new_token) == plan.old {
        return Err(Failure::BadResponse("the token endpoint returned the same access token"));
    }
    Ok(())
}

/// The held request after a failed refresh: its old token, judged again now (time passed
/// during the call, and a revocation may have arrived).
fn old_token_now(
    cfg: &Config,
    host: &impl Host,
    worker: &super::Worker,
    registry: &Registry<impl Host>,
    plan: &PendingRefresh,
    now: u64,
) -> Verdict {
    let deny = |code, why: &str| {
        host.count(Counter::Rejected(code));
        Verdict::Deny(reject::invalid_token_response(&cfg.challenge(), &Rejection::new(code, why)))
    };
    if plan.expired || now >= plan.exp.saturating_add(cfg.clock_skew_seconds) {
        return deny(RejectCode::TokenExpired, "token has expired and could not be refreshed");
    }
    let facts = TokenFacts {
        fp: &plan.old.0,
        jti: plan.jti.as_deref(),
        sub: plan.sub.as_deref(),
        sid: plan.sid.as_deref(),
        iat: plan.iat,
    };
    match super::is_revoked(
        host,
        worker,
        registry,
        host.change_count(),
        &facts,
        &Revocation::targets_of(&facts),
        now,
    ) {
        Some(false) => {}
        Some(true) => return deny(RejectCode::TokenRevoked, "token has been revoked"),
        None => return super::unavailable(),
    }
    let remaining = plan.exp.saturating_sub(now);
    Verdict::Forward {
        expires_in: cfg.expires_in_header.as_ref().map(|_| remaining),
        swap: None,
        headers: plan.upstream.clone(),
    }
}
