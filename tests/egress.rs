//! End-to-end egress: a client calls an egress Envoy (tokenguard in egress mode), which
//! sends to an ingress Envoy (tokenguard validating), which forwards to the upstream. The
//! test issuer serves client_credentials tokens to the egress side.

use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tokenguard_harness::envoy::{ConfigForm, Envoy, Options};
use tokenguard_harness::http::Client;
use tokenguard_harness::keys::now;
use tokenguard_harness::stack::Stack;

fn egress_config(extra: Value) -> Value {
    let mut e = json!({
        "cluster": "issuer", "authority": "issuer.test", "path": "/oauth/token", "timeout_ms": 1000,
        "grant": "client_credentials", "client_id": "svc", "client_secret": "svc-secret", "scope": "write",
        "window_seconds": 120, "window_ratio": 0.25, "max_request_seconds": 1, "wait_ms": 1500,
        "retry_seconds": 1,
    });
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    json!({"mode": "egress", "egress": e})
}

/// The ingress stack (issuer, upstream, validating Envoy) plus an egress Envoy in front.
fn start(access_ttl: u64, extra: Value) -> (Stack, Envoy) {
    let s = Stack::start(json!({"clock_skew_seconds": 0}));
    s.client.post(
        &format!("{}/control", s.issuer.url()),
        &[],
        &json!({"access_ttl": access_ttl}).to_string(),
    );
    let egress = Envoy::start(&Options {
        plugin_config: egress_config(extra),
        form: ConfigForm::StringValue,
        upstream_port: s.envoy.port, // the egress Envoy's upstream is the ingress Envoy
        issuer_port: s.issuer.port,
        concurrency: 2,
        plain_route: false,
        etcd_port: None,
    });
    (s, egress)
}

fn exp_of(authorization: &str) -> u64 {
    let token = authorization.strip_prefix("Bearer ").unwrap();
    let claims = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["exp"].as_u64().unwrap()
}

#[test]
fn outgoing_requests_always_carry_a_fresh_token_across_renewals() {
    // 8 s tokens: window min(120, 25% of 8) = 2 s; renewal starts 2 s earlier than that.
    let (s, egress) = start(8, json!({}));
    let started = Instant::now();
    let mut statuses = Vec::new();
    let mut worst_left = u64::MAX;
    while started.elapsed() < Duration::from_secs(18) {
        let c = Client::new(); // fresh connections: both egress workers
        let r = c.get(&egress.url("/out"), &[]);
        statuses.push(r.status);
        if r.status == 200 {
            let auth = r.json()["received"]["headers"]["authorization"].as_str().unwrap().to_string();
            worst_left = worst_left.min(exp_of(&auth).saturating_sub(now()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let refused = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(refused, 0, "requests refused downstream: {statuses:?}");
    assert!(worst_left > 2, "a request carried a token with only {worst_left} s left (window 2 s)");
    let tokens: BTreeSet<String> =
        s.upstream.received().iter().map(|r| r.header("authorization").unwrap().to_string()).collect();
    let fetches = s.issuer.counter("cc_ok");
    eprintln!(
        "{} requests, {} distinct tokens, {fetches} fetches, worst remaining {worst_left} s",
        statuses.len(),
        tokens.len()
    );
    assert!(tokens.len() >= 3, "several renewals happened: {}", tokens.len());
    // One fetch per renewal: not one per worker, not one per request.
    assert!(fetches as usize <= tokens.len() + 1, "{fetches} fetches for {} tokens", tokens.len());
    let fetched: Vec<Value> =
        egress.audit_records().into_iter().filter(|a| a["event"] == "egress_token_fetched").collect();
    assert_eq!(fetched.len() as u64, fetches);
    let left = egress.stat("wasmcustom.tokenguard.egress.token_expires_in_seconds").unwrap();
    assert!(left > 0 && left <= 8, "gauge {left}");
    assert!(!egress.log().contains(tokens.iter().next().unwrap().trim_start_matches("Bearer ")));
}

#[test]
fn an_issuer_outage_backs_off_escalates_refuses_cleanly_and_recovers() {
    let (s, egress) = start(5, json!({}));
    assert_eq!(Client::new().get(&egress.url("/"), &[]).status, 200);
    s.client.post(&format!("{}/control", s.issuer.url()), &[], r#"{"mode": "fail_500"}"#);
    // The token runs out; without a usable one, requests wait up to wait_ms, then get a
    // clear 503, never a request with a stale credential.
    let start = Instant::now();
    let refused = loop {
        let r = Client::new().get(&egress.url("/"), &[]);
        if r.status == 503 {
            break r;
        }
        assert_eq!(r.status, 200);
        assert!(start.elapsed() < Duration::from_secs(15), "never ran out");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(refused.json()["error"], "egress_token_unavailable");
    let before = s.upstream.received().len();
    // Three consecutive failures: one escalation at error level.
    let start = Instant::now();
    while !egress.audit_records().iter().any(|a| a["event"] == "egress_escalation") {
        assert!(start.elapsed() < Duration::from_secs(15), "no escalation");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(egress.log().lines().any(|l| l.contains("[error]") && l.contains("egress_escalation")));
    assert_eq!(egress.stat("wasmcustom.tokenguard.egress.escalations"), Some(1));
    assert!(egress.stat("wasmcustom.tokenguard.egress.failures.status").unwrap() >= 3);
    // Backoff: 1 s, 2 s, 4 s ... not a fetch per request or per tick.
    let failed = egress.audit_records().into_iter().filter(|a| a["event"] == "egress_token_failed").count();
    assert!(failed <= 5, "{failed} attempts in the outage so far");
    assert_eq!(s.upstream.received().len(), before, "nothing went out without a valid token");
    s.client.post(&format!("{}/control", s.issuer.url()), &[], r#"{"mode": "normal"}"#);
    let start = Instant::now();
    while Client::new().get(&egress.url("/"), &[]).status != 200 {
        assert!(start.elapsed() < Duration::from_secs(20), "did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bad_client_credentials_are_an_outage_not_a_crash() {
    let (s, egress) = start(60, json!({"client_secret": "wrong-secret-value-xyz"}));
    let r = Client::new().get(&egress.url("/"), &[]);
    assert_eq!(r.status, 503);
    assert!(s.upstream.received().is_empty());
    let failed: Vec<Value> =
        egress.audit_records().into_iter().filter(|a| a["event"] == "egress_token_failed").collect();
    assert!(
        failed.iter().any(|a| a["reason"].as_str().unwrap().starts_with("oauth_invalid_client")),
        "{failed:?}"
    );
    assert!(!egress.log().contains("wrong-secret-value-xyz"), "the client secret is never logged");
}
