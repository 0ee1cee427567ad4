//! Per-request decision: find the token, validate it, warn near expiry, audit, count.
//!
//! This is everything the filter does on a request, independent of Envoy: the proxy-wasm
//! layer only gathers the inputs and carries out the `Verdict`.

use crate::audit::{Event, Record};
use crate::config::{Config, TokenSource};
use crate::host::Host;
use crate::metrics::Counter;
use crate::near_expiry::WarnOnce;
use crate::reject::{self, DenyResponse, Rejection};
use crate::token::{Claims, Fingerprint};
use crate::verify;

/// Request facts only an audit record needs. Fetched lazily: each is a host call, and most
/// requests emit no audit record.
pub trait RequestMeta {
    fn request_id(&self) -> Option<String>;
    fn path(&self) -> Option<String>;
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
    Forward {
        expires_in: Option<u64>,
    },
    Deny(DenyResponse),
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

pub fn check_request(cfg: &Config, host: &impl Host, warnings: &impl WarnOnce, req: &Request) -> Verdict {
    let now = host.now();
    let token = req.credential_header.and_then(|h| extract_token(&cfg.token_source, h));
    let Some(token) = token else {
        host.count(Counter::MissingToken);
        return Verdict::Deny(reject::missing_token_response(&cfg.realm));
    };
    let with_request = |mut r: Record| {
        r.request_id = req.meta.request_id();
        r.path = req.meta.path();
        r
    };
    let reject = |rejection: Rejection, verified: Option<&Claims>| {
        host.count(Counter::Rejected(rejection.code));
        let mut r = with_request(Record::new(Event::TokenRejected, now));
        r.token = Some(Fingerprint::of(token).short());
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
    let auth = match verify::authenticate(cfg, token) {
        Ok(a) => a,
        Err(rejection) => return reject(rejection, None),
    };
    let claims = &auth.decoded.claims;
    let life = match verify::check_claims(cfg, auth.provider, claims, now) {
        Ok(l) => l,
        Err(rejection) => return reject(rejection, Some(claims)),
    };
    let fingerprint = Fingerprint::of(token);
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
    if life.remaining_s <= cfg.near_expiry_warning_seconds
        && warnings.first_warning(&fingerprint, life.exp, now)
    {
        host.count(Counter::NearExpiryWarning);
        emit(host, record(Event::NearExpiry));
    }
    Verdict::Forward { expires_in: cfg.expires_in_header.as_ref().map(|_| life.remaining_s) }
}

fn emit(host: &impl Host, record: Record) {
    host.log(record.event.level(), &record.line());
}

#[cfg(test)]
mod tests;
