//! Valid tokens reach the upstream unchanged; expiry follows `exp` plus the leeway on every
//! worker.

use super::{error_code, sleep_until};
use crate::http::Client;
use crate::issuer::MintRequest;
use crate::keys::now;
use crate::profile::Profile;
use crate::target::Target;

/// Seed 000 TC1: a token 5 s away from `exp` + leeway is valid at once and refused 6 s later
/// (with no leeway: a 5 s token).
pub fn token_expires_after_its_ttl(t: &Target, p: &Profile) {
    let before = t.received().len();
    let token = t.mint(&MintRequest::new(&p.alg(&["RS256"]), 5 - p.clock_skew));
    let issued = now();
    let ok = t.get("/tc1", Some(&token));
    assert_eq!(ok.status, 200, "{}", ok.body);
    let seen = t.received().split_off(before);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/tc1");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {token}").as_str()),
        "forwarded unchanged"
    );

    sleep_until(issued + 6);
    let expired = t.get("/tc1", Some(&token));
    assert_eq!(expired.status, 401);
    assert_eq!(error_code(&expired), "token_expired");
    assert_eq!(t.received().len(), before + 1, "the expired request never reached the upstream");
}

pub fn the_client_learns_how_long_its_token_has_left(t: &Target, p: &Profile) {
    let before = t.received().len();
    let token = t.mint(&MintRequest::new(&p.alg(&["PS256"]), 120));
    let r = t.get("/", Some(&token));
    assert_eq!(r.status, 200);
    let left: u64 = r.header(&p.expires_in_header).expect("header").parse().unwrap();
    assert!((118..=120).contains(&left), "{left}");
    // The upstream's own answer reached the client (the echo of what it received).
    assert_eq!(r.json()["received"]["path"], "/");
    assert_eq!(t.received().len(), before + 1);
}

pub fn both_workers_enforce_the_same_policy(t: &Target, p: &Profile) {
    let alg = p.alg(&["ES256"]);
    let good = t.mint(&MintRequest::new(&alg, 300));
    let bad = t.mint(&MintRequest::new(&alg, -1 - p.clock_skew));
    let received = t.received().len();
    t.settle_counters();
    let accepted = t.stat("wasmcustom.tokenguard.requests.accepted").expect("the accepted counter");
    // Fresh connections spread across Envoy's two workers.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (url, good, bad) = (t.url("/"), good.clone(), bad.clone());
            std::thread::spawn(move || {
                let c = Client::new();
                let ok = c.get(&url, &[("authorization", &format!("Bearer {good}"))]).status;
                let no = c.get(&url, &[("authorization", &format!("Bearer {bad}"))]).status;
                (ok, no)
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), (200, 401));
    }
    assert_eq!(t.received().len(), received + 8);
    let want = Some(accepted + 8);
    let now = crate::target::settled(|| t.stat("wasmcustom.tokenguard.requests.accepted"), |v| *v == want);
    assert_eq!(now, want);
}
