//! The shared state's say on a request: what other workers and replicas changed since this
//! worker last looked (the process-wide change count, remote key withdrawals), the
//! revocation store's readiness, and the revocations themselves.

use crate::config::Config;
use crate::host::Host;
use crate::metrics::Counter;
use crate::registry::revocation::{Target, TokenFacts};
use crate::registry::{Registry, RevocationCache};
use crate::reject;
use crate::verdict::Verdict;

use super::Worker;

/// Reads the process-wide change count (one host call, before anything shared is read, so
/// every later read sees at least what it announced) and brings this worker's remote key
/// sets up to it: a key withdrawn by another worker's fetch stops verifying here, hot path
/// included, from this request on.
pub(super) fn follow_changes(cfg: &Config, host: &impl Host, worker: &Worker) -> Option<u64> {
    let changes = host.change_count();
    if cfg.has_remote_keys() {
        if let Ok(mut keys) = worker.keys.try_borrow_mut() {
            keys.follow(cfg, host, changes);
        }
    }
    changes
}

/// The revocation store's say before anything is trusted: hold until a fresh process has
/// applied etcd's whole list, and refuse once etcd has been silent too long when the operator
/// asked for that.
pub(super) fn store_gate(
    cfg: &Config,
    host: &impl Host,
    worker: &Worker,
    registry: &Registry<'_, impl Host>,
    now: u64,
) -> Option<Verdict> {
    let etcd = cfg.revocation_store.as_ref()?;
    let fresh =
        |contact: u64| etcd.max_staleness_seconds.is_none_or(|max| now.saturating_sub(contact) <= max);
    if worker.store_synced.get() && fresh(worker.store_contact.get()) {
        return None;
    }
    let state = registry.store_state();
    if !state.synced {
        // Trusting the registry before the list is applied could let a revoked token
        // through after a restart.
        return Some(Verdict::Hold {
            wait_ms: etcd.startup_wait_ms,
            reason: crate::verdict::HoldReason::RevocationStore,
            verified: None,
        });
    }
    worker.store_synced.set(true);
    worker.store_contact.set(state.last_contact);
    if !fresh(state.last_contact) {
        host.count(Counter::StoreStale);
        return Some(Verdict::Deny(reject::unavailable_response("revocation data is stale")));
    }
    None
}

/// Whether a revocation covers the token. `None` when the shared revocation set cannot be
/// read (logged here): the caller must then refuse, with `unavailable()`.
#[allow(clippy::too_many_arguments)]
pub(super) fn is_revoked(
    host: &impl Host,
    worker: &Worker,
    registry: &Registry<'_, impl Host>,
    changes: Option<u64>,
    facts: &TokenFacts,
    targets: &[Target],
    now: u64,
) -> Option<bool> {
    let check = |mut c: std::cell::RefMut<RevocationCache>| c.check(registry, changes, targets, facts, now);
    match worker.revocations.try_borrow_mut().map(check) {
        Ok(Ok(found)) => Some(found.is_some()),
        Ok(Err(_)) | Err(_) => {
            host.log(crate::host::Level::Error, "tokenguard: revocation state unreadable; refusing requests");
            None
        }
    }
}

/// The answer when revocations cannot be checked: refusing is the only safe one.
pub(super) fn unavailable() -> Verdict {
    Verdict::Deny(reject::unavailable_response("revocation state unavailable"))
}
