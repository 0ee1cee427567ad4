//! The fleet's refresh claim from the proxy-wasm layer: before the token endpoint is called,
//! a lease and a create-if-absent in etcd (see `etcd::claim`), made from the context that
//! holds the request. The root context's tick enforces the deadline; any failure to ask etcd
//! falls back to this process's single flight, audited.

use prost::Message;
use proxy_wasm::hostcalls;
use proxy_wasm::types::Action;

use super::{http, Shared};
use crate::etcd::claim::{self, Claim};
use crate::etcd::{write, LEASE_GRANT, TXN};
use crate::refresh::PendingRefresh;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Grant,
    Take { lease: i64 },
}

/// A request held while its refresh claim is asked for.
pub struct Claiming {
    plan: PendingRefresh,
    claim: Claim,
    stage: Stage,
    pub deadline_ms: u64,
    from_root: bool,
}

/// Starts the claim for stream `id`; the token endpoint is called once etcd says this
/// process holds it.
pub fn start(shared: &Shared, id: u32, plan: PendingRefresh, from_root: bool) -> Action {
    let (Some(etcd), Some(link), Some(rcfg)) =
        (&shared.cfg.revocation_store, &shared.etcd, &shared.cfg.refresh)
    else {
        return http::call_token_endpoint(shared, id, plan, from_root, from_root, None);
    };
    let now = crate::host::Clock::now(&shared.host());
    let ttl = claim::lease_seconds(
        plan.exp,
        now,
        rcfg.grace_seconds,
        shared.cfg.clock_skew_seconds,
        rcfg.timeout_ms,
    );
    let claim = Claim::new(etcd, &plan.old, process_id(shared), ttl);
    let Some(token) = link.call(shared, LEASE_GRANT, &claim.grant().encode_to_vec(), etcd.timeout_ms) else {
        return fallback(shared, id, plan, (from_root, from_root), "the claim could not be sent to etcd");
    };
    let deadline_ms = super::now_ms().saturating_add(etcd.timeout_ms.saturating_mul(2));
    keep(shared, id, token, Claiming { plan, claim, stage: Stage::Grant, deadline_ms, from_root });
    Action::Pause
}

fn keep(shared: &Shared, id: u32, token: u32, c: Claiming) {
    if c.from_root {
        if let Ok(mut m) = shared.root_claims.try_borrow_mut() {
            m.insert(token, id);
        }
    }
    if let Ok(mut m) = shared.claims.try_borrow_mut() {
        m.insert(id, c);
    }
}

fn process_id(shared: &Shared) -> u64 {
    if shared.process_id.get() == 0 {
        let host = shared.host();
        let candidate = super::random_id(0);
        let id = crate::registry::Registry::new(&host, crate::registry::Layout::of(&shared.cfg))
            .process_id(candidate);
        shared.process_id.set(id);
    }
    shared.process_id.get()
}

/// `(from_root, resume)`: see `http::call_token_endpoint`.
fn fallback(
    shared: &Shared,
    id: u32,
    plan: PendingRefresh,
    (from_root, resume): (bool, bool),
    cause: &str,
) -> Action {
    crate::gate::refresh_unclaimed(&shared.host(), &plan, cause);
    http::call_token_endpoint(shared, id, plan, from_root, resume, None)
}

/// A gRPC answer for stream `id` (whose context is in effect); false when no claim of its is
/// in flight.
pub fn answered(shared: &Shared, id: u32, status: u32, size: usize) -> bool {
    let Some(c) = http::take(&shared.claims, id) else { return false };
    if status != 0 {
        super::etcd::forget_auth_token_on(status);
        fallback(
            shared,
            id,
            c.plan,
            (c.from_root, true),
            &format!("etcd answered the claim with gRPC status {status}"),
        );
        return true;
    }
    let body = super::etcd::received(size).unwrap_or_default();
    match c.stage {
        Stage::Grant => match write::granted(&body) {
            Ok(lease) => take_claim(shared, id, c, lease),
            Err(why) => {
                fallback(shared, id, c.plan, (c.from_root, true), why);
            }
        },
        Stage::Take { lease } => match c.claim.taken_by_us(&body) {
            Ok(true) => {
                http::call_token_endpoint(shared, id, c.plan, c.from_root, true, Some((c.claim, lease)));
            }
            Ok(false) => {
                let host = shared.host();
                let until = crate::host::Clock::now(&host).saturating_add(c.claim.ttl_seconds as u64);
                let verdict = crate::gate::refresh_claimed_elsewhere(
                    &shared.cfg,
                    &host,
                    &shared.worker,
                    &c.plan,
                    until,
                );
                http::apply(shared, id, verdict, true);
            }
            Err(why) => {
                fallback(shared, id, c.plan, (c.from_root, true), why);
            }
        },
    }
    true
}

fn take_claim(shared: &Shared, id: u32, mut c: Claiming, lease: i64) {
    let (Some(etcd), Some(link)) = (&shared.cfg.revocation_store, &shared.etcd) else { return };
    let now = crate::host::Clock::now(&shared.host());
    match link.call(shared, TXN, &c.claim.take(lease, now).encode_to_vec(), etcd.timeout_ms) {
        Some(token) => {
            c.stage = Stage::Take { lease };
            keep(shared, id, token, c);
        }
        None => {
            fallback(shared, id, c.plan, (c.from_root, true), "the claim could not be sent to etcd");
        }
    }
}

/// After a refresh this process made under the claim: the old token retired on every
/// replica at the grace's end (on the claim's lease). Its answer is not waited for: the old
/// token is superseded here already, and every replica's own checks still hold meanwhile.
pub fn retire(shared: &Shared, fleet: &(Claim, i64)) {
    let (Some(etcd), Some(link), Some(rcfg)) =
        (&shared.cfg.revocation_store, &shared.etcd, &shared.cfg.refresh)
    else {
        return;
    };
    let now = crate::host::Clock::now(&shared.host());
    let put = fleet.0.retirement(fleet.1, now.saturating_add(rcfg.grace_seconds));
    let _ = link.call(shared, crate::etcd::PUT, &put.encode_to_vec(), etcd.timeout_ms);
}

/// Claims past their deadline: the refresh goes on without the fleet's claim.
pub fn deadlines(shared: &Shared, now_ms: u64) {
    let late: Vec<(u32, Claiming)> = match shared.claims.try_borrow_mut() {
        Ok(mut m) if !m.is_empty() => {
            let ids: Vec<u32> = m.iter().filter(|(_, c)| c.deadline_ms <= now_ms).map(|(k, _)| *k).collect();
            ids.into_iter().filter_map(|id| m.remove(&id).map(|c| (id, c))).collect()
        }
        _ => Vec::new(),
    };
    for (id, c) in late {
        if hostcalls::set_effective_context(id).is_ok() {
            fallback(shared, id, c.plan, (true, true), "etcd did not answer the claim within timeout_ms");
        }
    }
}
