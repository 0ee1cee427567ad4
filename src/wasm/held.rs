//! Requests held until they can be decided (etcd's first list, an egress
//! token): asked again on every tick, refused with a 503 at their deadline.

use proxy_wasm::hostcalls;

use super::{http, Shared};

pub fn release(shared: &Shared, now_ms: u64) {
    let held: Vec<(u32, super::Held)> = match shared.held.try_borrow() {
        Ok(h) => h.iter().map(|(k, v)| (*k, *v)).collect(),
        Err(_) => return,
    };
    for (id, super::Held { deadline_ms: deadline, reason, .. }) in held {
        if hostcalls::set_effective_context(id).is_err() {
            if let Ok(mut h) = shared.held.try_borrow_mut() {
                h.remove(&id); // the stream is gone
            }
            continue;
        }
        if deadline <= now_ms {
            if let Ok(mut h) = shared.held.try_borrow_mut() {
                h.remove(&id);
            }
            http::send(&reason.timeout_response(&shared.host(), &shared.cfg.challenge()));
        } else {
            // Decided now: `apply` drops the entry; held again: it keeps its deadline.
            http::check(shared, id, true);
        }
    }
}
