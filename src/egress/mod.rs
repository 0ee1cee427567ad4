//! Egress mode: keep the service's own token fresh on its outgoing requests.
//!
//! One current token per Envoy process, in shared data. The root contexts renew it ahead of
//! its expiry (one worker at a time, a CAS lease), so requests normally never wait: they
//! find a usable token and carry it. Only with no usable token (start-up, an outage that
//! outlived the token) does a request wait, up to `wait_ms`, then get a 503.

use crate::audit::{emit, Event, Record};
use crate::config::{EgressConfig, EgressGrant};
use crate::host::{Host, SharedData};
use crate::metrics::Counter;
use crate::refresh::{self, form_encode, Callout, Failure};
use crate::registry::codec::{Reader, Writer};
use crate::registry::{update, Conflict};
use crate::token::{self, Fingerprint};
use crate::verdict::{HoldReason, Secret, Verdict};

const KEY_STATE: &str = "tokenguard/egress/state";

/// The current token and the renewal bookkeeping, process-wide.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EgressState {
    pub access_token: String,
    pub expires_at: u64,
    pub fetched_at: u64,
    /// The rotated refresh token (refresh_token grant), empty until the server rotates it.
    pub refresh_token: String,
    pub lease_until: u64,
    pub failures: u32,
    pub next_attempt_at: u64,
}

impl std::fmt::Debug for EgressState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EgressState {{ token: {}, expires_at: {} }}",
            Fingerprint::of(&self.access_token).short(),
            self.expires_at
        )
    }
}

impl EgressState {
    pub fn decode(bytes: &[u8]) -> EgressState {
        let mut r = Reader::new(bytes);
        (|| {
            Some(EgressState {
                access_token: r.long_str()?,
                expires_at: r.u64()?,
                fetched_at: r.u64()?,
                refresh_token: r.long_str()?,
                lease_until: r.u64()?,
                failures: r.u32()?,
                next_attempt_at: r.u64()?,
            })
        })()
        .unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.long_str(&self.access_token);
        w.u64(self.expires_at);
        w.u64(self.fetched_at);
        w.long_str(&self.refresh_token);
        w.u64(self.lease_until);
        w.u32(self.failures);
        w.u64(self.next_attempt_at);
        w.0
    }

    /// Valid for the whole of a request that starts now.
    pub fn usable(&self, cfg: &EgressConfig, now: u64) -> bool {
        !self.access_token.is_empty() && self.expires_at > now.saturating_add(cfg.max_request_seconds)
    }

    /// Time to renew: the token is unusable, or within the window (min(`window_seconds`,
    /// `window_ratio` x lifetime)) plus the time a renewal may take, so that the new token
    /// is in place before the old one enters the window.
    pub fn due(&self, cfg: &EgressConfig, now: u64) -> bool {
        if !self.usable(cfg, now) {
            return true;
        }
        let lifetime = self.expires_at.saturating_sub(self.fetched_at) as f64;
        let window = (cfg.window_seconds as f64).min(cfg.window_ratio * lifetime);
        let lead = cfg.timeout_ms.div_ceil(1000).saturating_add(1) as f64;
        (self.expires_at.saturating_sub(now) as f64) <= window + lead
    }
}

pub fn state(store: &impl SharedData) -> EgressState {
    EgressState::decode(store.get(KEY_STATE).0.as_deref().unwrap_or_default())
}

/// Takes the renewal lease when a renewal is due and not backing off; returns the state to
/// renew from.
pub fn try_lease(
    store: &impl SharedData,
    cfg: &EgressConfig,
    now: u64,
) -> Result<Option<EgressState>, Conflict> {
    let lease_until = crate::backoff::lease_until(now, cfg.timeout_ms);
    update(store, KEY_STATE, |bytes| {
        let mut st = EgressState::decode(bytes);
        if !st.due(cfg, now) || st.lease_until > now || st.next_attempt_at > now {
            return None;
        }
        st.lease_until = lease_until;
        Some((st.encode(), st))
    })
}

/// The token request: RFC 6749 §4.4 client credentials, or §6 refresh with the newest
/// refresh token.
/// The token fetch to make now, when one is due and this worker won the lease.
pub fn start(cfg: &EgressConfig, store: &impl SharedData, now: u64) -> Option<Callout> {
    let state = try_lease(store, cfg, now).ok().flatten()?;
    Some(build_fetch(cfg, &state))
}

pub fn build_fetch(cfg: &EgressConfig, st: &EgressState) -> Callout {
    let form = match &cfg.grant {
        EgressGrant::ClientCredentials { scope, audience } => {
            let mut b = "grant_type=client_credentials".to_string();
            if let Some(s) = scope {
                b.push_str(&format!("&scope={}", form_encode(s)));
            }
            if let Some(a) = audience {
                b.push_str(&format!("&audience={}", form_encode(a)));
            }
            b
        }
        EgressGrant::RefreshToken { refresh_token } => {
            let rt = if st.refresh_token.is_empty() { refresh_token } else { &st.refresh_token };
            format!("grant_type=refresh_token&refresh_token={}", form_encode(rt))
        }
    };
    let ep = refresh::TokenEndpoint {
        cluster: &cfg.cluster,
        authority: &cfg.authority,
        path: &cfg.path,
        timeout_ms: cfg.timeout_ms,
        client_id: cfg.client_id.as_deref(),
        client_secret: cfg.client_secret.as_deref(),
    };
    refresh::token_request(&ep, form)
}

/// Applies the token endpoint's answer (or failure) to the shared state; audits and counts.
pub fn complete(cfg: &EgressConfig, host: &impl Host, answer: Result<(Option<u16>, Vec<u8>), Failure>) {
    let now = host.now();
    let fetched =
        answer.and_then(|(status, body)| refresh::parse_response(status, &body)).and_then(|grant| {
            // The lifetime from expires_in, else from the token's own exp.
            let expires_at = match grant.expires_in {
                Some(s) => now.saturating_add(s),
                None => token::decode(&grant.access_token)
                    .ok()
                    .and_then(|d| d.claims.exp)
                    .ok_or(Failure::BadResponse("no expires_in and no exp claim"))?,
            };
            if expires_at <= now.saturating_add(cfg.max_request_seconds) {
                return Err(Failure::BadResponse("the new token expires too soon"));
            }
            Ok((grant, expires_at))
        });
    match fetched {
        Ok((grant, expires_at)) => {
            let written = update(host, KEY_STATE, |bytes| {
                let mut st = EgressState::decode(bytes);
                st.access_token = grant.access_token.clone();
                st.expires_at = expires_at;
                st.fetched_at = now;
                if let Some(rt) = &grant.refresh_token {
                    st.refresh_token = rt.clone();
                }
                st.lease_until = 0;
                st.failures = 0;
                st.next_attempt_at = 0;
                Some((st.encode(), ()))
            });
            if written.is_err() {
                host.count(Counter::RegistryConflict);
            }
            host.count(Counter::EgressFetches);
            let mut r = Record::new(Event::EgressTokenFetched, now);
            r.token = Some(Fingerprint::of(&grant.access_token).short());
            r.exp = Some(expires_at);
            r.remaining_s = Some(expires_at.saturating_sub(now));
            emit(host, r);
        }
        Err(failure) => {
            let failures = update(host, KEY_STATE, |bytes| {
                let mut st = EgressState::decode(bytes);
                st.failures = st.failures.saturating_add(1);
                st.lease_until = 0;
                let backoff =
                    crate::backoff::doubling(cfg.retry_seconds, st.failures, refresh::MAX_BACKOFF_SECONDS);
                st.next_attempt_at = now.saturating_add(backoff);
                Some((st.encode(), st.failures))
            })
            .ok()
            .flatten()
            .unwrap_or(1);
            host.count(Counter::EgressFailure(failure.kind()));
            let mut r = Record::new(Event::EgressTokenFailed, now);
            r.reason = Some(format!("{} (consecutive failure {failures})", failure.cause()));
            emit(host, r);
            if failures == cfg.escalate_after_failures {
                host.count(Counter::EgressEscalation);
                let mut r = Record::new(Event::EgressEscalation, now);
                r.reason =
                    Some(format!("{failures} consecutive token fetch failures; last: {}", failure.cause()));
                emit(host, r);
            }
        }
    }
}

/// An outgoing request: carry the current token, or wait for one.
pub fn check(cfg: &EgressConfig, store: &impl SharedData, now: u64) -> Verdict {
    let st = state(store);
    if st.usable(cfg, now) {
        Verdict::Inject {
            name: cfg.header.clone(),
            value: Secret(format!("{}{}", cfg.prefix, st.access_token)),
        }
    } else {
        Verdict::Hold { wait_ms: cfg.wait_ms, reason: HoldReason::EgressToken, verified: None }
    }
}

#[cfg(test)]
mod tests;
