//! Admin revocations written through to etcd from the admin request's own context: a lease,
//! then the key on it. The reply waits for both calls, or for the deadline the root
//! context's tick enforces, and says whether etcd committed the revocation.

use super::{http, Shared};
use crate::etcd::write::{self, Next, Write};
use crate::reject::LocalReply;

/// An admin reply waiting for its write to etcd.
pub struct Publishing {
    pub deadline_ms: u64,
    pub reply: LocalReply,
    write: Write,
    /// The lease, once granted.
    lease: Option<i64>,
}

/// Starts the write for stream `id`; the reply goes out at once when it cannot start.
pub fn start(shared: &Shared, id: u32, write: Write, reply: LocalReply) {
    let Some(etcd) = &shared.cfg.revocation_store else {
        return http::publish_done(shared, reply, false);
    };
    // Two calls, each within timeout_ms.
    let deadline_ms = super::now_ms().saturating_add(etcd.timeout_ms.saturating_mul(2));
    send(shared, id, Publishing { deadline_ms, reply, write, lease: None });
}

/// A gRPC answer on stream `id` (whose context is in effect).
pub fn answered(shared: &Shared, id: u32, status: u32, size: usize) {
    // None: the deadline passed first and the reply has gone.
    let Some(mut p) = http::take(&shared.publishing, id) else { return };
    super::etcd::forget_auth_token_on(status);
    let body = if status == 0 { super::etcd::received(size).unwrap_or_default() } else { Vec::new() };
    match write::next(p.lease, status, &body) {
        Next::Put(lease) => {
            p.lease = Some(lease);
            send(shared, id, p);
        }
        Next::Done(committed) => http::publish_done(shared, p.reply, committed),
    }
}

/// Makes the write's next call and keeps the reply waiting for it.
fn send(shared: &Shared, id: u32, p: Publishing) {
    let (Some(link), Some(etcd)) = (&shared.etcd, &shared.cfg.revocation_store) else {
        return http::publish_done(shared, p.reply, false);
    };
    let (rpc, ask) = p.write.call(p.lease);
    if link.call(shared, rpc, &ask, etcd.timeout_ms).is_none() {
        return http::publish_done(shared, p.reply, false);
    }
    match shared.publishing.try_borrow_mut() {
        Ok(mut m) => {
            m.insert(id, p);
        }
        Err(_) => http::publish_done(shared, p.reply, false),
    }
}
