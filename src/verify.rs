//! The validation policy: which provider, which key, and whether the claims hold *now*.
//!
//! Split in two so the registry can cache the expensive, time-independent half:
//! `authenticate` (structure, issuer, algorithm, key, signature) and `check_claims`
//! (audience, required claims, nbf/iat/exp with leeway, session lifetime), which runs on
//! every request.
//!
//! Time semantics, all in whole seconds with leeway L = `clock_skew_seconds`:
//! - expired when `now >= exp + L` (RFC 7519 §4.1.4: valid only *before* exp);
//! - not yet valid when `now + L < nbf`, or `now + L < iat` (issued in the future);
//! - session over when `now >= start + max_lifetime_seconds`, with no leeway: the absolute
//!   lifetime is a hard bound that no skew allowance or refresh may stretch.

use crate::config::{Config, Provider};
use crate::jwks::{Alg, KeyLookup, SignatureError};
use crate::keys::WorkerKeys;
use crate::reject::{RejectCode, Rejection};
use crate::token::{self, Claims, Decoded, Fingerprint};

/// A token whose signature verified, with the provider that vouches for it.
pub struct Authenticated<'c> {
    pub provider: &'c Provider,
    pub decoded: Decoded,
}

/// What the per-request claim check learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub exp: u64,
    /// Whole seconds until `exp` (0 when inside the leeway past exp).
    pub remaining_s: u64,
    /// When the session began and when its absolute lifetime ends, if a session policy
    /// applies.
    pub session_start: Option<u64>,
    pub session_ends: Option<u64>,
}

/// A fully validated token.
pub struct Valid<'c> {
    pub fingerprint: Fingerprint,
    pub auth: Authenticated<'c>,
    pub lifetime: Lifetime,
}

/// Runs the whole pipeline.
pub fn validate<'c>(cfg: &'c Config, token: &str, now: u64) -> Result<Valid<'c>, Rejection> {
    let auth = authenticate(cfg, token)?;
    let lifetime = check_claims(cfg, auth.provider, &auth.decoded.claims, now)?;
    Ok(Valid { fingerprint: Fingerprint::of(token), auth, lifetime })
}

pub fn authenticate<'c>(cfg: &'c Config, token: &str) -> Result<Authenticated<'c>, Rejection> {
    authenticate_decoded(cfg, token, token::decode(token)?, false)
}

/// `authenticate` for an already decoded token. With `signature_known_good` (the registry
/// verified this exact token under this configuration) the signature check is skipped;
/// issuer and algorithm are still checked.
pub fn authenticate_decoded<'c>(
    cfg: &'c Config,
    token: &str,
    decoded: Decoded,
    signature_known_good: bool,
) -> Result<Authenticated<'c>, Rejection> {
    authenticate_with(cfg, None, token, decoded, signature_known_good)
}

/// `authenticate_decoded` with the worker's remote key sets: a token's key is looked up in
/// the provider's inline keys first, then in its fetched set.
pub fn authenticate_with<'c>(
    cfg: &'c Config,
    remote: Option<&WorkerKeys>,
    token: &str,
    decoded: Decoded,
    signature_known_good: bool,
) -> Result<Authenticated<'c>, Rejection> {
    let iss = decoded
        .claims
        .iss
        .as_deref()
        .ok_or_else(|| Rejection::new(RejectCode::MissingClaim, "missing required claim: iss"))?;
    let provider = cfg
        .provider(iss)
        .ok_or_else(|| Rejection::new(RejectCode::InvalidIssuer, "issuer is not trusted"))?;
    check_token_type(provider, decoded.header.typ.as_deref())?;
    let alg =
        Alg::parse(&decoded.header.alg).filter(|a| provider.algorithms.contains(a)).ok_or_else(|| {
            Rejection::new(RejectCode::UnsupportedAlgorithm, "algorithm is not allowed for this issuer")
        })?;
    if signature_known_good {
        return Ok(Authenticated { provider, decoded });
    }
    let kid = decoded.header.kid.as_deref();
    let fetched = remote.and_then(|r| r.get(&provider.issuer)).map(|i| &i.keys);
    let lookup = match (provider.keys.lookup(alg, kid), fetched) {
        (KeyLookup::UnknownKid | KeyLookup::NoKeyForAlgorithm, Some(set)) => set.lookup(alg, kid),
        (inline, _) => inline,
    };
    let candidates = match lookup {
        KeyLookup::Found(c) => c,
        KeyLookup::UnknownKid => {
            return Err(Rejection::new(RejectCode::InvalidSignature, "no key matches the token's kid"))
        }
        KeyLookup::AlgorithmNotAllowedForKey => {
            return Err(Rejection::new(
                RejectCode::UnsupportedAlgorithm,
                "algorithm is not allowed for the key named by kid",
            ))
        }
        KeyLookup::NoKeyForAlgorithm => {
            return Err(Rejection::new(RejectCode::UnsupportedAlgorithm, "no key for this algorithm"))
        }
    };
    let mut refused = false;
    for entry in candidates {
        match entry.verifier.verify(token) {
            Ok(()) => return Ok(Authenticated { provider, decoded }),
            Err(SignatureError::Mismatch) => {}
            Err(SignatureError::Rejected) => refused = true,
        }
    }
    if refused {
        Err(Rejection::new(RejectCode::MalformedToken, "token refused by the signature verifier"))
    } else {
        Err(Rejection::new(RejectCode::InvalidSignature, "signature verification failed"))
    }
}

/// RFC 8725 §3.11: an issuer signs more than access tokens (logout tokens, security event
/// tokens, DPoP proofs); only the configured types pass. A token without `typ` passes, as
/// most access tokens carry none.
fn check_token_type(provider: &Provider, typ: Option<&str>) -> Result<(), Rejection> {
    let Some(typ) = typ else { return Ok(()) };
    let t = crate::config::normalize_token_type(typ);
    if provider.token_types.contains(&t) {
        return Ok(());
    }
    // The type is attacker-chosen text: shown only when short and printable.
    let shown =
        if typ.len() <= 64 && typ.bytes().all(|b| b.is_ascii_graphic()) { typ } else { "(unprintable)" };
    Err(Rejection::new(RejectCode::MalformedToken, format!("token type {shown} is not accepted")))
}

pub fn check_claims(
    cfg: &Config,
    provider: &Provider,
    claims: &Claims,
    now: u64,
) -> Result<Lifetime, Rejection> {
    check_claims_in_session(cfg, provider, claims, now, None)
}

/// When the token's session began: the earliest of its start claim (or `iat`) and
/// `known_start`. `None` without a session policy or any start.
pub fn session_start(cfg: &Config, claims: &Claims, known_start: Option<u64>) -> Option<u64> {
    let policy = cfg.session.as_ref()?;
    let claimed = claims.numeric_date(&policy.start_claim).ok().flatten().or(claims.iat);
    earliest(claimed, known_start)
}

/// The earlier of two optional times; either alone when the other is unknown.
pub fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `check_claims` for a token whose session may have begun before its own claims say:
/// `known_start` is the earliest start the filter has seen for it (the token it was
/// refreshed from, or another token of its `sid`). A refreshed token carries a new `iat`,
/// and many servers copy no `auth_time` into it; without this, refreshing would extend
/// the absolute lifetime.
pub fn check_claims_in_session(
    cfg: &Config,
    provider: &Provider,
    claims: &Claims,
    now: u64,
    known_start: Option<u64>,
) -> Result<Lifetime, Rejection> {
    if !provider.audiences.is_empty() && !claims.aud.iter().any(|a| provider.audiences.contains(a)) {
        return Err(Rejection::new(RejectCode::InvalidAudience, "audience is not accepted"));
    }
    for name in &cfg.required_claims {
        if !claims.has(name) {
            return Err(Rejection::new(RejectCode::MissingClaim, format!("missing required claim: {name}")));
        }
    }
    // `exp` is always among the required claims, so this only guards the invariant.
    let exp =
        claims.exp.ok_or_else(|| Rejection::new(RejectCode::MissingClaim, "missing required claim: exp"))?;
    let skew = cfg.clock_skew_seconds;
    let now_plus = now.saturating_add(skew);
    if claims.nbf.is_some_and(|nbf| now_plus < nbf) {
        return Err(Rejection::new(RejectCode::TokenNotYetValid, "token is not valid yet (nbf)"));
    }
    if claims.iat.is_some_and(|iat| now_plus < iat) {
        return Err(Rejection::new(RejectCode::TokenNotYetValid, "token is issued in the future (iat)"));
    }
    let (session_start, session_ends) = match &cfg.session {
        None => (None, None),
        Some(policy) => {
            let claimed = claims.numeric_date(&policy.start_claim)?.or(claims.iat);
            let start = earliest(claimed, known_start).ok_or_else(|| {
                Rejection::new(
                    RejectCode::MissingClaim,
                    format!("missing session start claim: {} (or iat)", policy.start_claim),
                )
            })?;
            let ends = start.saturating_add(policy.max_lifetime_seconds);
            if now >= ends {
                return Err(Rejection::new(
                    RejectCode::SessionExpired,
                    "session exceeded its maximum lifetime; sign in again",
                ));
            }
            (Some(start), Some(ends))
        }
    };
    let born = claims.iat.unwrap_or(now);
    if exp.saturating_sub(born) > cfg.max_token_lifetime_seconds {
        return Err(Rejection::new(
            RejectCode::MalformedToken,
            "token lifetime exceeds max_token_lifetime_seconds",
        ));
    }
    if now >= exp.saturating_add(skew) {
        return Err(Rejection::new(RejectCode::TokenExpired, "token has expired"));
    }
    Ok(Lifetime { exp, remaining_s: exp.saturating_sub(now), session_start, session_ends })
}

#[cfg(test)]
mod tests;
