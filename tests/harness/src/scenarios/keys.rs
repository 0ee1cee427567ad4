//! Keys from the identity provider (`remote_jwks`), against a stack whose first provider
//! fetches its keys from the test issuer: a rotation is followed at first sight by every
//! worker, a random-kid flood costs at most one fetch per `min_refetch_seconds`, and the
//! last good keys serve while the key server is down. Each scenario first waits out the
//! refetch rate limit an earlier one may have used. Skipped without remote keys.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

use super::{error_code, from_everywhere};
use crate::http::Client;
use crate::issuer::MintRequest;
use crate::profile::Profile;
use crate::target::Target;

fn issuer_count(t: &Target, name: &str) -> u64 {
    Client::new().get(&format!("{}/stats", t.issuer), &[]).json()[name].as_u64().unwrap_or(0)
}

fn control(t: &Target, v: Value) -> Value {
    let r = Client::new().post(&format!("{}/control", t.issuer), &[], &v.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Waits until a refetch is allowed again; `None` when the profile has no remote keys.
fn rate_limit_passed(p: &Profile) -> Option<u64> {
    let min = p.remote_min_refetch?;
    std::thread::sleep(Duration::from_millis(min * 1000 + 200));
    Some(min)
}

pub fn a_rotated_key_is_accepted_at_first_sight_by_every_worker(t: &Target, p: &Profile) {
    if rate_limit_passed(p).is_none() || !p.allows("ES256") {
        return;
    }
    let before = issuer_count(t, "jwks");
    let kid = control(t, json!({"rotate_key": true}))["kid"].as_str().unwrap_or_default().to_owned();
    let token = t.mint(&MintRequest::new("ES256", 300));
    let r = t.get("/", Some(&token));
    assert_eq!(r.status, 200, "first token under the new key {kid}: {}", r.body);
    assert!(from_everywhere(t, &token, 8).iter().all(|(s, _)| *s == 200));
    assert_eq!(issuer_count(t, "jwks"), before + 1, "one refetch for the new kid");
}

pub fn a_random_kid_flood_fetches_at_most_once_per_min_refetch(t: &Target, p: &Profile) {
    let Some(min) = rate_limit_passed(p) else { return };
    let before = issuer_count(t, "jwks");
    let started = Instant::now();
    let alg = p.alg(&["ES256", "RS256"]);
    for i in 0..200 {
        let mut m = MintRequest::new(&alg, 300);
        m.kid = Some(t.unique(&format!("random-kid-{i}")));
        let r = t.get("/", Some(&t.mint(&m)));
        assert_eq!((r.status, error_code(&r)), (401, "invalid_signature".into()), "{}", r.body);
    }
    let fetches = issuer_count(t, "jwks") - before;
    let allowed = 1 + started.elapsed().as_secs() / min;
    assert!((1..=allowed).contains(&fetches), "{fetches} fetches, at most {allowed} allowed");
}

pub fn the_last_good_keys_serve_while_the_key_server_is_down(t: &Target, p: &Profile) {
    if rate_limit_passed(p).is_none() {
        return;
    }
    let good = t.mint(&MintRequest::new(&p.alg(&["RS256", "ES256"]), 300));
    assert_eq!(t.get("/", Some(&good)).status, 200);
    control(t, json!({"jwks_down": true}));
    let mut m = MintRequest::new(&p.alg(&["ES256", "RS256"]), 300);
    m.kid = Some(t.unique("kid-while-down"));
    let failing = t.get("/", Some(&t.mint(&m)));
    let statuses = from_everywhere(t, &good, 8);
    control(t, json!({"jwks_down": false}));
    assert_eq!(failing.status, 401, "{}", failing.body);
    assert!(statuses.iter().all(|(s, _)| *s == 200), "{statuses:?}");
}
