//! A token a refresh replaced: during the grace it is forwarded as its replacement (checked
//! like any presented token), after it refused.

use crate::config::Config;
use crate::host::Host;
use crate::metrics::Counter;
use crate::registry::record::TokenRecord;
use crate::registry::revocation::{Revocation, TokenFacts};
use crate::registry::Registry;
use crate::reject::{RejectCode, Rejection};
use crate::token::{self, Claims, Fingerprint};
use crate::verdict::{Swap, Verdict};
use crate::verify;

use super::{is_revoked, refreshing, unavailable, Ctx, Worker};

/// A token a refresh replaced: refused after the grace; during it, forwarded as its
/// replacement (`None` when the handoff is gone: the old token, still valid, goes on).
pub(super) fn superseded<H: Host>(
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
        headers: super::upstream::for_token(cfg, &h.access_token),
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
    let verified = h.config_gen == cfg.cache_generation();
    let remote = worker.keys.try_borrow().ok();
    let auth = verify::authenticate_with(cfg, remote.as_deref(), &h.access_token, decoded, verified)
        .map_err(Some)?;
    let c = &auth.decoded.claims;
    let new_fp = Fingerprint::of(&h.access_token);
    let facts = TokenFacts::of(&new_fp.0, c);
    let targets = Revocation::targets_of(&facts);
    match is_revoked(host, worker, registry, host.change_count(), &facts, &targets, now) {
        Some(false) => {}
        Some(true) => return Err(replaced("has been revoked")),
        None => return Err(None),
    }
    let known_start = Some(old.session_start).filter(|s| *s != 0);
    verify::check_claims_in_session(cfg, auth.provider, c, now, known_start).map_err(Some)
}
