//! End-to-end: proactive refresh through the test authorization server, in a real Envoy
//! with two workers.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

use tokenguard_harness::http::Client;
use tokenguard_harness::keys::{fingerprint, now, token_sha256};
use tokenguard_harness::stack::Stack;

const TIMEOUT_MS: u64 = 800;

fn refresh_config(extra_refresh: Value, extra: Value) -> Value {
    let mut refresh = json!({
        "cluster": "issuer", "authority": "issuer.test", "path": "/oauth/token",
        "timeout_ms": TIMEOUT_MS, "window_seconds": 30, "window_ratio": 1.0,
        "client_id": "gateway", "client_secret": "gateway-secret-value",
        "grace_seconds": 30, "escalate_after_failures": 3,
    });
    for (k, v) in extra_refresh.as_object().unwrap() {
        refresh[k] = v.clone();
    }
    let mut cfg = json!({"refresh": refresh, "near_expiry_warning_seconds": 0});
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    cfg
}

fn events(s: &Stack, event: &str) -> Vec<Value> {
    s.envoy.audit_records().into_iter().filter(|a| a["event"] == event).collect()
}

#[test]
fn a_due_token_is_refreshed_and_both_sides_see_the_new_one() {
    let s = Stack::start(refresh_config(json!({}), json!({})));
    let l = s.login(20, json!({}));
    let r = s.call(&s.client, &l.access, Some(&l.refresh));
    assert_eq!(r.status, 200, "{}", r.body);
    let new_access = r.header("x-new-access-token").expect("new access token for the client").to_string();
    let new_refresh = r.header("x-new-refresh-token").expect("rotated refresh token").to_string();
    assert_ne!(new_access, l.access);
    assert_ne!(new_refresh, l.refresh);
    let seen = s.upstream.received();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {new_access}").as_str()),
        "upstream got the new token"
    );
    assert!(seen[0].header("x-refresh-token").is_none(), "refresh tokens never reach the upstream");
    assert_eq!(s.issuer.counter("token_calls"), 1);
    // Client authentication reached the token endpoint as HTTP Basic.
    assert_eq!(
        s.issuer.last_client_auth().as_deref(),
        Some("Basic Z2F0ZXdheTpnYXRld2F5LXNlY3JldC12YWx1ZQ==")
    );
    let ok = events(&s, "refresh_succeeded");
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0]["token"], fingerprint(&l.access).as_str());
    assert_eq!(ok[0]["new_token"], fingerprint(&new_access).as_str());
    assert_eq!(events(&s, "refresh_started").len(), 1);
    // The new token works on its own, and is not refreshed again (outside the window).
    s.control(json!({"access_ttl": 300}));
    let r = s.call(&s.client, &new_access, Some(&new_refresh));
    assert_eq!(r.status, 200);
    let log = s.envoy.log();
    for secret in [
        l.refresh.as_str(),
        new_refresh.as_str(),
        "gateway-secret-value",
        l.access.as_str(),
        new_access.as_str(),
    ] {
        assert!(!log.contains(secret), "a secret reached Envoy's log");
    }
}

#[test]
fn fifty_concurrent_requests_cause_one_refresh() {
    let s = Stack::start(refresh_config(json!({}), json!({})));
    s.control(json!({"delay_ms": 300}));
    let l = s.login(20, json!({}));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let (url, auth, rt) = (s.envoy.url("/api"), format!("Bearer {}", l.access), l.refresh.clone());
            std::thread::spawn(move || {
                Client::new()
                    .get(&url, &[("authorization", auth.as_str()), ("x-refresh-token", rt.as_str())])
                    .status
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(s.issuer.counter("token_calls"), 1, "exactly one refresh at the issuer");
    assert_eq!(s.upstream.received().len(), 50);
}

/// Seed 000 TC3: a new token is issued, no request is refused in between, and the old token
/// is refused once the grace period is over.
#[test]
fn tc3_refresh_without_a_gap_then_the_old_token_is_retired() {
    let s = Stack::start(refresh_config(json!({"grace_seconds": 3}), json!({})));
    let l = s.login(20, json!({}));
    let first = s.call(&s.client, &l.access, Some(&l.refresh));
    assert_eq!(first.status, 200);
    let new_access = first.header("x-new-access-token").unwrap().to_string();
    let refreshed_at = now();
    // During the grace: the old token still works everywhere, forwarded as the new one.
    let mut during = 0;
    while now() < refreshed_at + 2 {
        let c = Client::new(); // fresh connections: both workers
        let r = s.call(&c, &l.access, None);
        assert_eq!(r.status, 200, "refused during the grace: {}", r.body);
        assert_eq!(r.header("x-new-access-token"), Some(new_access.as_str()));
        during += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(during >= 5);
    let last = s.upstream.received().pop().unwrap();
    assert_eq!(last.header("authorization"), Some(format!("Bearer {new_access}").as_str()));
    while now() < refreshed_at + 4 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = s.call(&s.client, &l.access, None);
    assert_eq!((r.status, r.json()["error"].clone()), (401, json!("token_revoked")));
    assert_eq!(s.call(&s.client, &new_access, None).status, 200);
    assert_eq!(s.issuer.counter("token_calls"), 1);
}

#[test]
fn every_failure_leaves_the_request_on_its_old_token_within_the_timeout() {
    let s = Stack::start(refresh_config(json!({"escalate_after_failures": 100}), json!({})));
    let modes = [
        (json!({"mode": "fail_500"}), "status_500"),
        (json!({"mode": "garbage"}), "bad_response"),
        (json!({"mode": "huge"}), "response_too_large"),
        (json!({"mode": "wrong_key"}), "invalid_new_token: invalid_signature"),
        (json!({"mode": "expired_token"}), "invalid_new_token: token_expired"),
        // Envoy answers a reset upstream connection itself, with a 503.
        (json!({"mode": "hang_up"}), "status_503"),
        (json!({"mode": "normal", "delay_ms": 3000}), "timeout"),
    ];
    for (mode, cause) in modes {
        s.control(json!({"mode": "normal", "delay_ms": 0}));
        let l = s.login(20, json!({}));
        s.control(mode.clone());
        let started = Instant::now();
        let r = s.call(&Client::new(), &l.access, Some(&l.refresh));
        let held = started.elapsed();
        assert_eq!(r.status, 200, "{mode}: {}", r.body);
        assert!(r.header("x-new-access-token").is_none(), "{mode}");
        let seen = s.upstream.received().pop().unwrap();
        assert_eq!(seen.header("authorization"), Some(format!("Bearer {}", l.access).as_str()), "{mode}");
        // The deadline, not a speed claim: no request waits much past timeout_ms.
        assert!(held < Duration::from_millis(TIMEOUT_MS + 1500), "{mode}: held {held:?}");
        let failed: Vec<Value> = events(&s, "refresh_failed")
            .into_iter()
            .filter(|a| a["token"] == fingerprint(&l.access).as_str())
            .collect();
        assert_eq!(failed.len(), 1, "{mode}: {failed:?}");
        let reason = failed[0]["reason"].as_str().unwrap();
        assert!(reason.contains(cause), "{mode}: {reason}");
        // Backoff: the same token is not retried at once.
        let again = s.call(&Client::new(), &l.access, Some(&l.refresh));
        assert_eq!(again.status, 200);
    }
    s.control(json!({"mode": "normal", "delay_ms": 0}));
    assert_eq!(events(&s, "refresh_failed").len(), 7, "one failure per token: backoff held the retries");
}

#[test]
fn a_refused_connection_is_a_failed_refresh_not_a_held_request() {
    // The issuer cluster points at a port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut s = Stack::start(refresh_config(json!({}), json!({})));
    let l = s.login(20, json!({}));
    s.envoy = tokenguard_harness::envoy::Envoy::start(&tokenguard_harness::envoy::Options {
        plugin_config: tokenguard_harness::stack::plugin_config(
            &tokenguard_harness::stack::demo_keys(),
            &refresh_config(json!({}), json!({})),
        ),
        form: tokenguard_harness::envoy::ConfigForm::StringValue,
        upstream_port: s.upstream.port,
        issuer_port: dead,
        concurrency: 2,
        plain_route: false,
        etcd_port: None,
    });
    let started = Instant::now();
    let r = s.call(&Client::new(), &l.access, Some(&l.refresh));
    assert_eq!(r.status, 200);
    assert!(started.elapsed() < Duration::from_millis(TIMEOUT_MS + 1500));
    let failed = events(&s, "refresh_failed");
    assert_eq!(failed.len(), 1);
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("status_503") || reason.contains("unreachable") || reason.contains("timeout"),
        "{reason}"
    );
}

#[test]
fn three_consecutive_failures_escalate_once_and_a_success_resets() {
    let s = Stack::start(refresh_config(json!({}), json!({})));
    let fail_once = |s: &Stack| {
        s.control(json!({"mode": "normal"}));
        let l = s.login(20, json!({}));
        s.control(json!({"mode": "fail_500"}));
        assert_eq!(s.call(&Client::new(), &l.access, Some(&l.refresh)).status, 200);
    };
    for _ in 0..4 {
        fail_once(&s);
    }
    // The line is written before the held request is released; allow the log a moment.
    let start = Instant::now();
    while events(&s, "refresh_escalation").is_empty() && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let esc = events(&s, "refresh_escalation");
    let trail: Vec<Value> = s
        .envoy
        .audit_records()
        .into_iter()
        .filter(|a| a["event"].as_str().unwrap().starts_with("refresh"))
        .collect();
    assert_eq!(esc.len(), 1, "escalated exactly once for the streak: {trail:#?}");
    assert!(s.envoy.log().lines().any(|l| l.contains("[error]") && l.contains("refresh_escalation")));
    assert_eq!(s.envoy.stat("wasmcustom.tokenguard.refresh.escalations"), Some(1));
    s.control(json!({"mode": "normal"}));
    let l = s.login(20, json!({}));
    assert!(s.call(&Client::new(), &l.access, Some(&l.refresh)).header("x-new-access-token").is_some());
    for _ in 0..3 {
        fail_once(&s);
    }
    assert_eq!(events(&s, "refresh_escalation").len(), 2, "a success reset the streak");
}

#[test]
fn no_refresh_past_the_absolute_session_lifetime() {
    let s = Stack::start(refresh_config(
        json!({"refresh_expired": true}),
        json!({"session": {"max_lifetime_seconds": 3600, "start_claim": "auth_time"}}),
    ));
    let l = s.login(20, json!({"auth_time": now() - 3601}));
    let r = s.call(&s.client, &l.access, Some(&l.refresh));
    assert_eq!((r.status, r.json()["error"].clone()), (401, json!("session_expired")));
    assert_eq!(s.issuer.counter("token_calls"), 0, "the filter did not call out");
}

#[test]
fn an_expired_token_is_refreshed_before_forwarding_when_allowed() {
    let s = Stack::start(refresh_config(json!({"refresh_expired": true}), json!({})));
    let l = s.login(-1, json!({}));
    let r = s.call(&s.client, &l.access, Some(&l.refresh));
    assert_eq!(r.status, 200, "{}", r.body);
    let new_access = r.header("x-new-access-token").unwrap();
    assert_eq!(
        s.upstream.received()[0].header("authorization"),
        Some(format!("Bearer {new_access}").as_str())
    );
    // Without refresh_expired an expired token is simply expired.
    let strict = Stack::start(refresh_config(json!({}), json!({})));
    let l = strict.login(-1, json!({}));
    let r = strict.call(&strict.client, &l.access, Some(&l.refresh));
    assert_eq!(r.json()["error"], "token_expired");
    assert_eq!(strict.issuer.counter("token_calls"), 0);
}

#[test]
fn issuer_reuse_detection_revokes_the_family() {
    let s = Stack::start(refresh_config(json!({}), json!({})));
    let l = s.login(20, json!({}));
    let r = s.call(&s.client, &l.access, Some(&l.refresh));
    let rotated = r.header("x-new-refresh-token").unwrap().to_string();
    // An attacker replays the old (rotated) refresh token at the issuer.
    let body = format!("grant_type=refresh_token&refresh_token={}", l.refresh);
    let replay = s.client.post(
        &format!("{}/oauth/token", s.issuer.url()),
        &[("content-type", "application/x-www-form-urlencoded")],
        &body,
    );
    assert_eq!(replay.status, 400);
    assert_eq!(replay.json()["reason"], "reuse_detected");
    // The whole family is dead: the legitimate rotated token fails too.
    let body = format!("grant_type=refresh_token&refresh_token={rotated}");
    let legit = s.client.post(&format!("{}/oauth/token", s.issuer.url()), &[], &body);
    assert_eq!((legit.status, legit.json()["reason"].clone()), (400, json!("family_revoked")));
    assert_eq!(s.issuer.counter("reuse_detected"), 1);
    // Absolute lifetime is a distinct error from ordinary expiry.
    let old = s.login(20, json!({"absolute_ttl": 0}));
    let body = format!("grant_type=refresh_token&refresh_token={}", old.refresh);
    let r = s.client.post(&format!("{}/oauth/token", s.issuer.url()), &[], &body);
    assert_eq!(r.json()["reason"], "absolute_lifetime_exceeded");
}

/// Revoking a refreshed token also stops the grace-period handoff: a request still carrying
/// the old token must not be forwarded as the revoked new one.
#[test]
fn revoking_the_new_token_stops_its_handoff_during_the_grace() {
    const ADMIN: &str = "refresh-e2e-admin-token-0123";
    let s = Stack::start(refresh_config(
        json!({"grace_seconds": 30}),
        json!({"admin": {"path_prefix": "/tokenguard/", "token": ADMIN}}),
    ));
    let l = s.login(20, json!({}));
    let r = s.call(&s.client, &l.access, Some(&l.refresh));
    let new_access = r.header("x-new-access-token").expect("refreshed").to_string();
    assert_eq!(s.call(&Client::new(), &l.access, None).status, 200, "handoff during the grace");
    let revoke = format!("/tokenguard/revoke?token_sha256={}", token_sha256(&new_access));
    let revoked = s.client.post(&s.envoy.url(&revoke), &[("x-admin-token", ADMIN)], "");
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    for _ in 0..4 {
        let c = Client::new(); // both workers
        for token in [&new_access, &l.access] {
            let r = s.call(&c, token, None);
            assert_eq!((r.status, r.json()["error"].clone()), (401, json!("token_revoked")));
            assert!(r.header("x-new-access-token").is_none());
        }
    }
}

/// While one request waits on a slow token endpoint, every other request (valid tokens not
/// yet due, on any worker) is served at once: a refresh holds only its own request.
#[test]
fn valid_tokens_keep_flowing_while_a_refresh_waits_on_a_slow_issuer() {
    let s = Stack::start(refresh_config(json!({"timeout_ms": 3000}), json!({})));
    let due = s.login(20, json!({}));
    let fresh = s.login(300, json!({}));
    s.control(json!({"delay_ms": 6000}));
    let started = Instant::now();
    let held = {
        let (url, auth, rt) = (s.envoy.url("/api"), format!("Bearer {}", due.access), due.refresh.clone());
        std::thread::spawn(move || {
            let r = Client::new()
                .get(&url, &[("authorization", auth.as_str()), ("x-refresh-token", rt.as_str())]);
            (r.status, Instant::now())
        })
    };
    std::thread::sleep(Duration::from_millis(200)); // the refresh call is under way
    let flowing: Vec<_> = (0..20)
        .map(|_| {
            let (url, auth) = (s.envoy.url("/api"), format!("Bearer {}", fresh.access));
            std::thread::spawn(move || {
                (Client::new().get(&url, &[("authorization", auth.as_str())]).status, Instant::now())
            })
        })
        .collect();
    let done: Vec<(u16, Instant)> = flowing.into_iter().map(|h| h.join().unwrap()).collect();
    let (held_status, held_done) = held.join().unwrap();
    assert_eq!(held_status, 200, "the held request goes on with its old token");
    assert!(held_done - started < Duration::from_millis(3000 + 1500), "held past the timeout");
    for (status, at) in done {
        assert_eq!(status, 200);
        assert!(at < held_done, "a request with a valid token waited behind the refresh");
    }
    s.control(json!({"delay_ms": 0}));
}
