//! The process-wide registry and the admin API: revocations hold on every worker, a known
//! token skips signature verification, admin requests are answered by the filter alone.

use serde_json::{json, Value};
use std::time::Duration;

use super::{admin_stats, from_everywhere, revoke};
use crate::issuer::MintRequest;
use crate::keys::{fingerprint, token_sha256};
use crate::profile::Profile;
use crate::target::Target;

pub fn revocation_by_each_key_is_enforced_by_every_worker(t: &Target, p: &Profile) {
    let alg = p.alg(&["RS256"]);
    let (jti, sid) = (t.unique("jti-revoke-me"), t.unique("sid-revoke-me"));
    let subs: Vec<String> = (1..=5).map(|i| t.unique(&format!("u{i}"))).collect();
    let mint = |sub: &str| MintRequest::new(&alg, 300).claim("sub", json!(sub));
    let by_jti = t.mint(&mint(&subs[0]).claim("jti", json!(jti)));
    let by_sub = t.mint(&mint(&subs[1]));
    let by_sid = t.mint(&mint(&subs[2]).claim("sid", json!(sid)));
    let by_token = t.mint(&mint(&subs[3]).claim("jti", Value::Null));
    let bystander = t.mint(&mint(&subs[4]));
    for token in [&by_jti, &by_sub, &by_sid, &by_token, &bystander] {
        assert!(from_everywhere(t, token, 6).iter().all(|(st, _)| *st == 200));
    }
    let forwarded_before = t.received().len();
    let revoked_events = || t.audit_records().into_iter().filter(|a| a["event"] == "token_revoked").count();
    let events_before = revoked_events();
    let revocations_before = admin_stats(t, p)["revocations"].as_u64().expect("revocations in the stats");

    assert_eq!(revoke(t, p, "jti", &jti)["revoked"], json!({ "jti": jti }));
    revoke(t, p, "sub", &subs[1]);
    revoke(t, p, "sid", &sid);
    // The token itself never travels to the admin API: only the SHA-256 of its signing input.
    let answer = revoke(t, p, "token_sha256", &token_sha256(&by_token));
    let shown = &answer["revoked"];
    assert!(
        *shown == json!({"token_sha256": token_sha256(&by_token)})
            || *shown == json!({"token": fingerprint(&by_token)}),
        "the token is named by its hash only: {shown}"
    );

    for token in [&by_jti, &by_sub, &by_sid, &by_token] {
        let seen = from_everywhere(t, token, 8);
        assert!(seen.iter().all(|(st, code)| *st == 401 && code == "token_revoked"), "{seen:?}");
    }
    assert!(from_everywhere(t, &bystander, 8).iter().all(|(st, _)| *st == 200));
    assert_eq!(t.received().len(), forwarded_before + 8, "only the bystander got through");

    let audits = t.audit_records();
    let revoked: Vec<&Value> = audits.iter().filter(|a| a["event"] == "token_revoked").collect();
    assert_eq!(revoked.len(), events_before + 4, "{revoked:?}");
    assert!(revoked.iter().any(|a| a["target"] == json!({"sub": subs[1]})));
    let rejected = t.audits_for(&by_jti).into_iter().filter(|a| a["reason"] == "token_revoked").count();
    assert_eq!(rejected, 8);
    assert_eq!(admin_stats(t, p)["revocations"], revocations_before + 4);
    assert!(!t.log().contains(&by_token), "a token given to the admin API is never logged");
}

pub fn revoke_all_for_a_subject_spares_tokens_issued_after_it(t: &Target, p: &Profile) {
    let alg = p.alg(&["ES256"]);
    let carol = t.unique("carol");
    let before = t.mint(&MintRequest::new(&alg, 300).claim("sub", json!(carol)));
    assert_eq!(t.get("/", Some(&before)).status, 200);
    revoke(t, p, "sub", &carol);
    std::thread::sleep(Duration::from_millis(1100)); // the next token's iat is a later second
    let after = t.mint(&MintRequest::new(&alg, 300).claim("sub", json!(carol)));
    assert_eq!(t.get("/", Some(&before)).json()["error"], "token_revoked");
    assert_eq!(t.get("/", Some(&after)).status, 200, "issued after the revocation");
}

pub fn a_known_token_skips_signature_verification(t: &Target, p: &Profile) {
    let token = t.mint(&MintRequest::new(&p.alg(&["RS256"]), 300));
    let counters = || {
        let v = t.stat("wasmcustom.tokenguard.signature_verifications").unwrap_or(0);
        (v, t.stat("wasmcustom.tokenguard.registry.hits").unwrap_or(0))
    };
    t.settle_counters();
    let (v0, h0) = counters();
    assert_eq!(t.get("/", Some(&token)).status, 200);
    assert_eq!(counters(), (v0 + 1, h0));
    // Fresh connections: the other worker benefits from the first worker's verification.
    assert!(from_everywhere(t, &token, 10).iter().all(|(st, _)| *st == 200));
    let want = (v0 + 1, h0 + 10);
    assert_eq!(crate::target::settled(counters, |c| *c == want), want);
    // An altered token (same claims, one signature byte changed) never matches the record.
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'Q' } else { 'A' });
    let r = t.get("/", Some(&forged));
    assert_eq!(r.status, 401);
    assert_eq!(counters().0, v0 + 2, "the altered token was verified, not taken from the cache");
}

pub fn the_admin_api_needs_its_token_and_never_reaches_the_upstream(t: &Target, p: &Profile) {
    let admin = p.admin();
    let url = |path: &str| t.url(&format!("{}{path}", admin.prefix));
    let before = t.received().len();
    let denied_events = || t.audit_records().into_iter().filter(|a| a["event"] == "admin_denied").count();
    let denied_before = denied_events();
    for headers in [vec![], vec![("x-admin-token", "wrong-token-wrong-token")]] {
        let r = t.client.post(&url("revoke?sub=alice"), &headers, "");
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.json()["error"], "unauthorized");
        let r = t.client.get(&url("stats"), &headers);
        assert_eq!(r.status, 401);
    }
    let bad = t.client.post(&url("revoke?sub=a&jti=b"), &[("x-admin-token", &admin.token)], "");
    assert_eq!(bad.status, 400);
    // A revoke carrying a body is refused unread, whatever the body says.
    let with_body = t.client.post(&url("revoke?sub=a"), &[("x-admin-token", &admin.token)], r#"{"sub":"a"}"#);
    assert_eq!((with_body.status, with_body.json()["error"].clone()), (400, json!("invalid_request")));
    let unknown = t.client.get(&url("nope"), &[("x-admin-token", &admin.token)]);
    assert_eq!(unknown.status, 404);
    assert_eq!(t.received().len(), before, "an admin request reached the upstream");
    assert_eq!(denied_events(), denied_before + 4);
    assert!(!t.log().contains("wrong-token-wrong-token"));
    let st = admin_stats(t, p);
    for key in ["active_tokens", "revocations", "capacity", "evictions", "requests"] {
        assert!(st.get(key).is_some(), "stats lack {key}: {st}");
    }
    assert_eq!(st["capacity"], p.registry_capacity);
    // Which build answers (tests/dist.rs checks it is the crate's version).
    assert!(st["version"].as_str().is_some_and(|v| v.split('.').count() == 3), "stats lack version: {st}");
}
