//! The end-to-end scenarios. Each one is a function of a `Target` (what it may touch) and a
//! `Profile` (the plugin configuration in force), so the same function runs against a local
//! Envoy started by a test and against the compose stack (`tg-scenarios`).
//!
//! A target may be long-lived and shared by earlier scenarios, so scenarios assert on what
//! changed while they ran (requests the upstream received, counters, audit lines), never on
//! absolute totals; against a fresh local stack the two are the same.

pub mod fleet;
pub mod forwarding;
pub mod keys;
pub mod observability;
pub mod registry;
pub mod rejections;
pub mod routes;
mod suite;

pub use suite::{run_suite, Outcome, FLEET_SUITE, SUITE};

use serde_json::Value;
use std::time::Duration;

use crate::http::{revoke_url, Client, Response};
use crate::keys::now;
use crate::profile::Profile;
use crate::target::Target;

pub type Scenario = fn(&Target, &Profile);

pub fn error_code(resp: &Response) -> String {
    resp.json()["error"].as_str().unwrap_or_default().to_string()
}

pub fn sleep_until(unix: u64) {
    while now() < unix {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends the token on `n` fresh connections (Envoy spreads them over its workers) and
/// returns the statuses and error codes seen.
pub fn from_everywhere(t: &Target, token: &str, n: usize) -> Vec<(u16, String)> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (url, auth) = (t.url("/"), format!("Bearer {token}"));
            std::thread::spawn(move || {
                let r = Client::new().get(&url, &[("authorization", &auth)]);
                let code = if r.status == 200 { String::new() } else { error_code(&r) };
                (r.status, code)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// `POST {admin prefix}revoke?{key}={value}` (no body); asserts it was accepted and returns
/// the answer. `key` is `jti`, `sub`, `sid` or `token_sha256` (`keys::token_sha256`).
pub fn revoke(t: &Target, p: &Profile, key: &str, value: &str) -> Value {
    let admin = p.admin();
    let r = t.client.post(
        &revoke_url(&t.url(""), &admin.prefix, key, value),
        &[("x-admin-token", &admin.token)],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// `GET {admin prefix}stats`.
pub fn admin_stats(t: &Target, p: &Profile) -> Value {
    let admin = p.admin();
    let r = t.client.get(&t.url(&format!("{}stats", admin.prefix)), &[("x-admin-token", &admin.token)]);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}
