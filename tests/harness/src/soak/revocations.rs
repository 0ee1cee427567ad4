//! Revocations under load, and the lost-revocation check.
//!
//! A revocation counts from the moment its answer arrived. Any request sent after that
//! moment which carried a covered token, or was handed one (a refresh or a grace-period
//! handoff), and got a 200, is a lost revocation. Coverage follows the documented rules: the
//! exact token, its `jti`, its `sid`, or its `sub` when issued at or before the revocation.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::load::{Facts, Rng};
use super::{Shared, ADMIN_TOKEN};
use crate::http::{revoke_url, Client};
use crate::keys::token_sha256;

#[derive(Default)]
pub struct Revoked {
    tokens: HashMap<String, Instant>,
    jtis: HashMap<String, Instant>,
    sids: HashMap<String, Instant>,
    /// Subject: when answered, and the revocation time the filter reported (unix seconds).
    subs: HashMap<String, (Instant, u64)>,
}

impl Revoked {
    /// The revocation, answered before `sent`, that covers this token.
    fn covering(&self, f: &Facts, sent: Instant) -> Option<String> {
        let before = |at: &Instant| *at < sent;
        if self.tokens.get(&f.token).is_some_and(before) {
            return Some("token".into());
        }
        if let Some(j) = f.jti.as_ref().filter(|j| self.jtis.get(*j).is_some_and(before)) {
            return Some(format!("jti {j}"));
        }
        if let Some(s) = f.sid.as_ref().filter(|s| self.sids.get(*s).is_some_and(before)) {
            return Some(format!("sid {s}"));
        }
        let sub = f.sub.as_ref()?;
        let (at, revoked_at) = self.subs.get(sub)?;
        (before(at) && f.iat.is_none_or(|iat| iat <= *revoked_at)).then(|| format!("sub {sub}"))
    }
}

/// Called for every 200: records a lost revocation if one covered the token.
pub fn check_not_revoked(shared: &Shared, facts: &Facts, sent: Instant, how: &str) {
    let covering = shared.revoked.lock().ok().and_then(|r| r.covering(facts, sent));
    if let Some(what) = covering {
        if let Ok(mut lost) = shared.lost.lock() {
            lost.push(format!("{how} token revoked by {what} got a 200 at {:?}", shared.started.elapsed()));
        }
    }
}

/// Twice a second: revoke a recently seen session by a random key, then probe the token
/// from two fresh connections (both workers, most likely): each must be refused.
pub fn revoker(shared: &Shared, url: &str, admin_url: &str) {
    let mut rng = Rng::new(99);
    let admin = Client::new();
    while !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(500));
        let pick = shared
            .recent
            .lock()
            .ok()
            .and_then(|r| (!r.is_empty()).then(|| r[rng.below(r.len() as u64) as usize].clone()));
        let Some(f) = pick else { continue };
        let (key, value) = match rng.below(4) {
            0 => ("token", Some(f.token.clone())),
            1 => ("jti", f.jti.clone()),
            2 => ("sid", f.sid.clone()),
            _ => ("sub", f.sub.clone()),
        };
        let Some(value) = value else { continue };
        // A token is revoked by the SHA-256 of its signing input; the token never travels.
        let (param, given) =
            if key == "token" { ("token_sha256", token_sha256(&value)) } else { (key, value.clone()) };
        let revoke = revoke_url(admin_url, "", param, &given);
        let Some(r) = admin.try_post(&revoke, &[("x-admin-token", ADMIN_TOKEN)], "") else {
            note(shared, |c| {
                c.transport_errors += 1;
                c.note_odd("transport error on revoke".into());
            });
            continue;
        };
        let answered = Instant::now();
        if r.status != 200 {
            note(shared, |c| {
                if r.status >= 500 {
                    c.server_errors += 1;
                }
                c.note_odd(format!("revoke answered {}: {}", r.status, r.body));
            });
            continue;
        }
        let revoked_at = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| v["revoked_at"].as_u64());
        if let Ok(mut rv) = shared.revoked.lock() {
            match key {
                "token" => drop(rv.tokens.insert(value, answered)),
                "jti" => drop(rv.jtis.insert(value, answered)),
                "sid" => drop(rv.sids.insert(value, answered)),
                _ => drop(rv.subs.insert(value, (answered, revoked_at.unwrap_or(0)))),
            }
        }
        note(shared, |c| c.revocations += 1);
        for _ in 0..2 {
            let sent = Instant::now();
            let auth = format!("Bearer {}", f.token);
            match Client::new().try_get(url, &[("authorization", &auth)]) {
                Some(p) if p.status == 200 => check_not_revoked(shared, &f, sent, "probe"),
                Some(p) if p.status >= 500 => note(shared, |c| c.server_errors += 1),
                Some(_) => {}
                None => note(shared, |c| c.transport_errors += 1),
            }
            note(shared, |c| c.revocation_probes += 1);
        }
    }
}

fn note(shared: &Shared, f: impl FnOnce(&mut super::load::Counts)) {
    if let Ok(mut c) = shared.counts.lock() {
        f(&mut c);
    }
}
