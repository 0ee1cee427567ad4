//! What operators see: one audit line per lifecycle event (never the token itself), and
//! counters in Prometheus.

use serde_json::{json, Value};

use super::from_everywhere;
use crate::issuer::MintRequest;
use crate::keys::{fingerprint, now};
use crate::profile::Profile;
use crate::target::{sample, Target};

pub fn a_rejection_writes_one_audit_line_without_the_token(t: &Target, p: &Profile) {
    let token = t.mint(&MintRequest::new(&p.alg(&["ES384"]), -5 - p.clock_skew).claim("sub", json!("dave")));
    let r = t.client.get(
        &t.url("/audit?x=1"),
        &[("authorization", &format!("Bearer {token}")), ("x-request-id", "req-42")],
    );
    assert_eq!(r.status, 401);
    let records = t.audits_for(&token);
    assert_eq!(records.len(), 1, "{records:?}");
    let a = &records[0];
    assert_eq!(a["event"], "token_rejected");
    assert_eq!(a["reason"], "token_expired");
    assert_eq!(a["token"], fingerprint(&token).as_str());
    assert_eq!(a["request_id"], "req-42");
    assert_eq!(a["path"], "/audit", "the audit path never carries the query string");
    assert!(a["ts"].as_u64().unwrap() >= now() - 5);
    let log = t.log();
    assert!(!log.contains(&token), "the raw token appears in Envoy's log");
    let fp = fingerprint(&token);
    assert!(log.lines().any(|l| l.contains("[info]")
        && l.contains("audit {\"event\":\"token_rejected\"")
        && l.contains(&fp)));
}

pub fn counters_are_visible_to_prometheus(t: &Target, p: &Profile) {
    let alg = p.alg(&["HS512"]);
    let good = t.mint(&MintRequest::new(&alg, 300));
    let expired = t.mint(&MintRequest::new(&alg, -1 - p.clock_skew));
    let names = [
        "tokenguard_requests_accepted",
        "tokenguard_requests_rejected_token_expired",
        "tokenguard_requests_missing_token",
        "tokenguard_requests_rejected_invalid_signature",
    ];
    t.settle_counters();
    let prom = t.prometheus();
    let before: Vec<u64> =
        names.iter().map(|n| sample(&prom, n).unwrap_or_else(|| panic!("no {n} in {prom}"))).collect();
    for _ in 0..3 {
        t.get("/", Some(&good));
    }
    for _ in 0..2 {
        t.get("/", Some(&expired));
    }
    t.get("/", None);
    let moved_in = |prom: &str, i: usize| sample(prom, names[i]).map(|v| v - before[i]);
    let prom = crate::target::settled(|| t.prometheus(), |prom| moved_in(prom, 0) == Some(3));
    let moved = |i: usize| moved_in(&prom, i);
    assert_eq!(moved(0), Some(3), "{prom}");
    assert_eq!(moved(1), Some(2));
    assert_eq!(moved(2), Some(1));
    assert_eq!(moved(3), Some(0));
}

/// Seed 000 TC2: a token inside the warning window produces exactly one near_expiry event
/// (with a 10 s window: a 60 s token 10 s before expiry).
pub fn near_expiry_warning_fires_once(t: &Target, p: &Profile) {
    let alg = p.alg(&["ES256"]);
    let warned = t.stat("wasmcustom.tokenguard.near_expiry_warnings").expect("the near-expiry counter");
    let t0 = now() as i64;
    let due = t.mint(&MintRequest::new(&alg, p.near_expiry).claim("iat", json!(t0 - 50)));
    let fresh = t.mint(&MintRequest::new(&alg, p.near_expiry + 50));
    for _ in 0..5 {
        assert_eq!(t.get("/", Some(&due)).status, 200);
        assert_eq!(t.get("/", Some(&fresh)).status, 200);
    }
    let warnings: Vec<Value> =
        t.audits_for(&due).into_iter().filter(|a| a["event"] == "near_expiry").collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert!(w["remaining_s"].as_i64().unwrap() <= p.near_expiry);
    assert_eq!(w["sub"], t.subject.as_str());
    assert_eq!(w["exp"], t0 + p.near_expiry);
    assert!(t.audits_for(&fresh).is_empty(), "no warning for a token outside the window");
    assert_eq!(t.stat("wasmcustom.tokenguard.near_expiry_warnings"), Some(warned + 1));
}

pub fn near_expiry_warns_once_per_process_across_workers(t: &Target, p: &Profile) {
    let warned = t.stat("wasmcustom.tokenguard.near_expiry_warnings").expect("the near-expiry counter");
    let due = t.mint(&MintRequest::new(&p.alg(&["EdDSA"]), p.near_expiry - 2));
    let seen = from_everywhere(t, &due, 16);
    assert!(seen.iter().all(|(st, _)| *st == 200));
    let warnings = t.audits_for(&due).into_iter().filter(|a| a["event"] == "near_expiry").count();
    assert_eq!(warnings, 1);
    assert_eq!(t.stat("wasmcustom.tokenguard.near_expiry_warnings"), Some(warned + 1));
}
