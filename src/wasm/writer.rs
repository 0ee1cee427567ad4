//! Writes to etcd that no request waits for (a refreshed token's fleet-wide retirement),
//! made from the root context so they outlive the request that asked for them: a lease,
//! then the key on it, one write at a time, each call under a deadline the tick enforces.

use proxy_wasm::hostcalls;

use super::Shared;
use crate::etcd::write::{self, Next, Write};

/// Writes waiting per worker beyond this are dropped (logged): a refresh storm must not
/// grow the queue without bound.
pub const MAX_QUEUED: usize = 1024;

#[derive(Default)]
pub struct Writer {
    /// The call in flight: its token, deadline (ms), the write, and the lease once granted.
    call: Option<(u32, u64, Write, Option<i64>)>,
}

/// Queues a write for this worker's root context.
pub fn queue(shared: &Shared, w: Write) {
    match shared.writes.try_borrow_mut() {
        Ok(mut q) if q.len() < MAX_QUEUED => q.push_back(w),
        _ => {
            super::host::log_warn("tokenguard: too many etcd writes queued; a token's retirement was dropped")
        }
    }
}

fn lost() {
    super::host::log_warn(
        "tokenguard: a refreshed token's retirement could not be written to etcd; other replicas refuse it at its expiry instead",
    );
}

impl Writer {
    pub fn tick(&mut self, shared: &Shared, now_ms: u64) {
        if let Some((token, deadline, _, _)) = &self.call {
            if now_ms < *deadline {
                return;
            }
            let _ = hostcalls::cancel_grpc_call(*token);
            self.call = None;
            lost();
        }
        let next = shared.writes.try_borrow_mut().ok().and_then(|mut q| q.pop_front());
        if let Some(w) = next {
            self.send(shared, w, None, now_ms);
        }
    }

    /// Sends the write's next call: the lease, or with `lease` the key on it.
    fn send(&mut self, shared: &Shared, w: Write, lease: Option<i64>, now_ms: u64) {
        let (Some(link), Some(etcd)) = (&shared.etcd, &shared.cfg.revocation_store) else { return };
        let (rpc, ask) = w.call(lease);
        match link.call(shared, rpc, &ask, etcd.timeout_ms) {
            Some(token) => self.call = Some((token, now_ms.saturating_add(etcd.timeout_ms), w, lease)),
            None => lost(),
        }
    }

    /// A unary answer; false when it is not this writer's.
    pub fn answered(&mut self, shared: &Shared, token: u32, status: u32, size: usize) -> bool {
        let Some((_, _, w, lease)) = self.call.take_if(|(t, ..)| *t == token) else { return false };
        super::etcd::forget_auth_token_on(status);
        let body = if status == 0 { super::etcd::received(size).unwrap_or_default() } else { Vec::new() };
        match write::next(lease, status, &body) {
            Next::Put(id) => self.send(shared, w, Some(id), super::now_ms()),
            Next::Done(true) => {}
            Next::Done(false) => lost(),
        }
        true
    }
}
