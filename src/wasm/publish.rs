//! Admin revocations written through to etcd from the admin request's own context: a lease,
//! then the key on it. The reply waits for both calls, or for the deadline the root
//! context's tick enforces, and says whether etcd committed the revocation.

use prost::Message;

use super::{http, Shared};
use crate::etcd::write::{self, Write};
use crate::etcd::{LEASE_GRANT, PUT};
use crate::reject::LocalReply;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Grant,
    Put,
}

/// An admin reply waiting for its write to etcd.
pub struct Publishing {
    pub deadline_ms: u64,
    pub reply: LocalReply,
    write: Write,
    stage: Stage,
}

/// Starts the write for stream `id`; the reply goes out at once when it cannot start.
pub fn start(shared: &Shared, id: u32, write: Write, reply: LocalReply) {
    let (Some(link), Some(etcd)) = (&shared.etcd, &shared.cfg.revocation_store) else {
        return http::publish_done(shared, reply, false);
    };
    if link.call(shared, LEASE_GRANT, &write.grant().encode_to_vec(), etcd.timeout_ms).is_none() {
        return http::publish_done(shared, reply, false);
    }
    // Two calls, each within timeout_ms.
    let deadline_ms = super::now_ms().saturating_add(etcd.timeout_ms.saturating_mul(2));
    match shared.publishing.try_borrow_mut() {
        Ok(mut p) => {
            p.insert(id, Publishing { deadline_ms, reply, write, stage: Stage::Grant });
        }
        Err(_) => http::publish_done(shared, reply, false),
    }
}

/// A gRPC answer on stream `id` (whose context is in effect).
pub fn answered(shared: &Shared, id: u32, status: u32, size: usize) {
    // None: the deadline passed first and the reply has gone.
    let Some(p) = http::take(&shared.publishing, id) else { return };
    super::etcd::forget_auth_token_on(status);
    let body = if status == 0 { super::etcd::received(size).unwrap_or_default() } else { Vec::new() };
    match p.stage {
        Stage::Grant => match write::granted(&body) {
            Ok(lease) => put(shared, id, p, lease),
            Err(_) => http::publish_done(shared, p.reply, false),
        },
        Stage::Put => http::publish_done(shared, p.reply, status == 0 && write::committed(&body)),
    }
}

fn put(shared: &Shared, id: u32, mut p: Publishing, lease: i64) {
    let (Some(link), Some(etcd)) = (&shared.etcd, &shared.cfg.revocation_store) else {
        return http::publish_done(shared, p.reply, false);
    };
    if link.call(shared, PUT, &p.write.put(lease).encode_to_vec(), etcd.timeout_ms).is_none() {
        return http::publish_done(shared, p.reply, false);
    }
    p.stage = Stage::Put;
    match shared.publishing.try_borrow_mut() {
        Ok(mut m) => {
            m.insert(id, p);
        }
        Err(_) => http::publish_done(shared, p.reply, false),
    }
}
