//! Keys from the identity provider (`providers[].remote_jwks`): the shared key set and its
//! one fetcher per process (`fetch`, `state`), what a key server's answer must look like
//! (`parse`), and each worker's verifiers (`WorkerKeys`), rebuilt only when the shared set's
//! version changes.
//!
//! On the request path (`gate`): a provider without keys yet holds its requests (start-up);
//! one past `max_stale_seconds` answers 503; a token whose `kid` is unknown asks for one
//! refetch (at most one per `min_refetch_seconds` per provider per process) and waits for
//! it, so the first token under a rotated key is accepted.

pub mod fetch;
pub mod parse;
pub mod state;

use crate::config::{Config, Provider};
use crate::host::{Host, SharedData};
use crate::jwks::{Alg, KeyLookup, KeySet};
use crate::metrics::Counter;
use crate::token::Decoded;
use crate::verdict::{HoldReason, Verdict};

use state::{Keys, KeysState, Status};

/// One provider's verifiers as this worker built them.
#[derive(Default)]
pub struct Installed {
    pub version: u64,
    pub removals: u32,
    pub keys: KeySet,
    /// The shared status as last read (for the 503 past `max_stale_seconds`).
    pub status: Option<Status>,
    pub fetched_at: u64,
}

/// Every remote provider's installed set on this worker, by issuer.
#[derive(Default)]
pub struct WorkerKeys {
    sets: Vec<(String, Installed)>,
    /// The process-wide change count when this worker last synced for it (`follow`).
    seen_changes: Option<u64>,
}

impl WorkerKeys {
    pub fn get(&self, issuer: &str) -> Option<&Installed> {
        self.sets.iter().find(|(i, _)| i == issuer).map(|(_, s)| s)
    }

    /// Reads every remote provider's shared state (one small read each) and rebuilds a
    /// provider's verifiers only when its version changed. Returns the states read, for
    /// `fetch::observe`. Keeps `cfg.key_epoch` in step with the removals installed.
    pub fn sync(&mut self, cfg: &Config, store: &impl SharedData) -> Vec<KeysState> {
        let mut states = Vec::new();
        for p in cfg.providers.iter().filter(|p| p.remote.is_some()) {
            states.push(self.sync_one(p, store));
        }
        let epoch = self.sets.iter().fold(0u32, |a, (_, s)| a.wrapping_add(s.removals));
        cfg.key_epoch.store(epoch, std::sync::atomic::Ordering::Relaxed);
        states
    }

    /// Syncs when the process-wide change count moved since the last time: a fetch that
    /// withdraws a key announces it (`fetch::swap`), so a token this worker verified under
    /// that key, and remembered, is refused from the very next request here, not from this
    /// worker's next tick. Without a count (`None`) the tick's sync is all there is.
    pub fn follow(&mut self, cfg: &Config, store: &impl SharedData, changes: Option<u64>) {
        if changes.is_some() && changes != self.seen_changes {
            self.sync(cfg, store);
            self.seen_changes = changes;
        }
    }

    fn sync_one(&mut self, provider: &Provider, store: &impl SharedData) -> KeysState {
        let keys = Keys::of(provider);
        let st = state::read(store, &keys.state);
        let slot = match self.sets.iter().position(|(i, _)| *i == provider.issuer) {
            Some(i) => i,
            None => {
                self.sets.push((provider.issuer.clone(), Installed::default()));
                self.sets.len().saturating_sub(1)
            }
        };
        let Some((_, installed)) = self.sets.get_mut(slot) else { return st };
        installed.status = Some(st.status);
        installed.fetched_at = st.fetched_at;
        if st.version != installed.version {
            if let Some((version, body)) = state::read_set(store, &keys.set) {
                if version > installed.version || version == st.version {
                    if let Ok((set, _)) = parse::jwks(&body, &provider.algorithms) {
                        installed.keys = set;
                        installed.version = version;
                        installed.removals = st.removals;
                    }
                }
            }
        }
        st
    }
}

/// How the inline and installed remote keys answer for a token.
enum Lookup {
    /// The inline keys name it: always trusted, whatever the remote set's state.
    Inline,
    /// A remote key to try (or a definite refusal): `verify` decides.
    Decide,
    /// No remote set yet.
    NoSet,
    UnknownKid,
}

fn lookup(provider: &Provider, installed: Option<&Installed>, alg: Alg, kid: Option<&str>) -> Lookup {
    if !matches!(provider.keys.lookup(alg, kid), KeyLookup::UnknownKid | KeyLookup::NoKeyForAlgorithm) {
        return Lookup::Inline;
    }
    match installed.filter(|s| s.version > 0) {
        None => Lookup::NoSet,
        Some(s) => match s.keys.lookup(alg, kid) {
            KeyLookup::UnknownKid => Lookup::UnknownKid,
            _ => Lookup::Decide,
        },
    }
}

/// The remote keys' say on a request, before its signature is checked. `None`: verify it.
pub fn gate(
    cfg: &Config,
    host: &impl Host,
    worker: &crate::gate::Worker,
    decoded: &Decoded,
) -> Option<Verdict> {
    let provider = cfg.provider(decoded.claims.iss.as_deref()?)?;
    let remote = provider.remote.as_ref()?;
    let alg = Alg::parse(&decoded.header.alg).filter(|a| provider.algorithms.contains(a))?;
    let kid = decoded.header.kid.as_deref();
    let mut wk = worker.keys.try_borrow_mut().ok()?;
    let mut found = lookup(provider, wk.get(&provider.issuer), alg, kid);
    if matches!(found, Lookup::NoSet | Lookup::UnknownKid) {
        // Another worker's fetch may have landed since this worker's last tick.
        wk.sync(cfg, host);
        found = lookup(provider, wk.get(&provider.issuer), alg, kid);
    }
    let status = wk.get(&provider.issuer).and_then(|s| s.status);
    drop(wk);
    if status == Some(Status::Unavailable) && matches!(found, Lookup::Decide | Lookup::UnknownKid) {
        host.count(Counter::KeysUnavailable);
        return Some(Verdict::Deny(unavailable_reply()));
    }
    match found {
        Lookup::Inline | Lookup::Decide => None,
        Lookup::NoSet => Some(Verdict::Hold {
            wait_ms: remote.startup_wait_ms,
            reason: HoldReason::KeysStartup,
            verified: None,
        }),
        Lookup::UnknownKid => kid_miss(provider, remote, host, host.now()),
    }
}

/// An unknown kid: wait for a fetch in flight or ask for one, unless one was asked for
/// less than `min_refetch_seconds` ago (then `None`: the signature check refuses).
fn kid_miss(
    provider: &Provider,
    remote: &crate::config::RemoteJwks,
    host: &impl Host,
    now: u64,
) -> Option<Verdict> {
    let keys = Keys::of(provider);
    let hold = Verdict::Hold {
        wait_ms: remote.timeout_ms.saturating_add(500),
        reason: HoldReason::KeyRefetch,
        verified: None,
    };
    let asked = crate::registry::update(host, &keys.state, |bytes| {
        let mut st = KeysState::decode(bytes);
        let waiting = st.miss_pending || st.in_flight(now);
        if waiting || now < st.last_miss_at.saturating_add(remote.min_refetch_seconds) {
            return None;
        }
        st.miss_pending = true;
        st.last_miss_at = now;
        Some((st.encode(), ()))
    });
    if let Ok(Some(())) = asked {
        host.count(Counter::KidMissRefetch);
        return Some(hold);
    }
    let st = state::read(host, &keys.state);
    if st.miss_pending || st.in_flight(now) {
        return Some(hold);
    }
    host.count(Counter::KidMissRateLimited);
    None
}

/// The answer while a provider has no usable keys: not the client's fault, so no 401.
pub fn unavailable_reply() -> crate::reject::LocalReply {
    let mut reply = crate::reject::unavailable_response("the identity provider's keys are not available yet");
    reply.headers.push(("retry-after".into(), "5".into()));
    reply
}

#[cfg(test)]
mod tests;
