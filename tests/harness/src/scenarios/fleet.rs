//! The fleet (issue 17): two Envoy replicas, each its own process and shared data, learning
//! revocations through etcd. Run when the target has a second replica and etcd (the compose
//! stack; tests/scenarios.rs against a local fleet).

use serde_json::json;
use std::time::{Duration, Instant};

use super::{error_code, revoke};
use crate::http::Client;
use crate::issuer::MintRequest;
use crate::keys::now;
use crate::profile::Profile;
use crate::target::{FleetTarget, Target};

/// The store's prefix in the configurations the scenarios run under.
const PREFIX: &str = "/tokenguard/";
/// A liveness bound for a revocation to reach a replica, not a speed claim.
const REACH: Duration = Duration::from_secs(5);

fn fleet(t: &Target) -> &FleetTarget {
    t.fleet.as_ref().expect("a fleet scenario needs --envoy-b and --etcd")
}

/// Status and error code of `GET /` on `base` with `token`, on a fresh connection.
fn code_at(base: &str, token: &str) -> (u16, String) {
    let r = Client::new().get(&format!("{base}/"), &[("authorization", &format!("Bearer {token}"))]);
    let code = if r.status == 200 { String::new() } else { error_code(&r) };
    (r.status, code)
}

/// Waits until the replica at `base` refuses `token` as revoked; how long that took.
fn until_revoked(base: &str, token: &str) -> Duration {
    let start = Instant::now();
    loop {
        let seen = code_at(base, token);
        if seen == (401, "token_revoked".to_string()) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < REACH,
            "{base} did not refuse the revoked token within {REACH:?}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn an_admin_revocation_on_one_replica_is_refused_on_the_other(t: &Target, p: &Profile) {
    let f = fleet(t);
    let jti = t.unique("jti-fleet-admin");
    let token = t.mint(&MintRequest::new(&p.alg(&["ES256"]), 300).claim("jti", json!(jti)));
    let bystander = t.mint(&MintRequest::new(&p.alg(&["ES256"]), 300));
    for base in [&t.envoy, &f.envoy_b] {
        assert_eq!(code_at(base, &token).0, 200, "{base} before the revocation");
    }
    revoke(t, p, "jti", &jti);
    assert_eq!(code_at(&t.envoy, &token), (401, "token_revoked".into()), "at once where it was made");
    let took = until_revoked(&f.envoy_b, &token);
    println!("        admin revocation on replica 1 refused on replica 2 after {took:?}");
    assert!(f.etcd.get(&format!("{PREFIX}revoked/jti/{jti}")).is_some(), "written through to etcd");
    for base in [&t.envoy, &f.envoy_b] {
        for _ in 0..4 {
            assert_eq!(code_at(base, &bystander).0, 200, "{base}: a bystander");
        }
    }
}

pub fn a_revocation_written_to_etcd_is_refused_on_both_replicas(t: &Target, p: &Profile) {
    let f = fleet(t);
    let sid = t.unique("sid-fleet-etcd");
    let token = t.mint(&MintRequest::new(&p.alg(&["RS256"]), 300).claim("sid", json!(sid)));
    for base in [&t.envoy, &f.envoy_b] {
        assert_eq!(code_at(base, &token).0, 200, "{base} before the revocation");
    }
    // What `etcdctl put --lease` does: a lease that outlives the token, the documented key.
    let lease = f.etcd.grant(900);
    let value = json!({"revoked_at": now(), "reason": "compose fleet scenario"}).to_string();
    f.etcd.put(&format!("{PREFIX}revoked/sid/{sid}"), &value, lease);
    for base in [&t.envoy, &f.envoy_b] {
        let took = until_revoked(base, &token);
        println!("        etcd write refused on {base} after {took:?}");
    }
    let later = t.mint(&MintRequest::new(&p.alg(&["RS256"]), 300));
    for base in [&t.envoy, &f.envoy_b] {
        assert_eq!(code_at(base, &later).0, 200, "{base}: another session");
    }
}
