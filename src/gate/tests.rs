use serde_json::{json, Value};

use super::credential::*;
use super::*;
use crate::config::TokenSource;
use crate::header::Edits;
use crate::host::{Level, Metrics};
use crate::reject::RejectCode;
use crate::testkit::*;

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

const META: FakeRequest =
    FakeRequest { request_id: Some("rid-1"), path: Some("/api"), method: "GET", headers: &[] };

fn run(cfg: &Config, host: &FakeHost, w: &Worker, header: Option<&str>) -> Verdict {
    check_request(cfg, host, w, &Request { credential_header: header, meta: &META, verified: None })
}

#[test]
fn missing_or_foreign_credentials_get_a_bare_challenge() {
    let cfg = config(json!({}));
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    for header in [None, Some("Basic dXNlcjpwYXNz"), Some("Bear")] {
        let Verdict::Deny(r) = run(&cfg, &host, &w, header) else { panic!("forwarded {header:?}") };
        assert_eq!(r.status, 401);
        assert_eq!(r.headers[0].1, "Bearer realm=\"tokenguard\"");
    }
    assert_eq!(host.verdicts(), vec![Counter::MissingToken; 3]);
    assert!(host.audits().is_empty());
}

#[test]
fn a_valid_token_is_forwarded_with_seconds_left() {
    let cfg = config(json!({}));
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    let t = mint("RS256", json!({"exp": NOW + 300}));
    assert_eq!(
        run(&cfg, &host, &w, Some(&bearer(&t))),
        Verdict::Forward { expires_in: Some(300), swap: None, headers: Edits::default() }
    );
    // The scheme is case-insensitive (RFC 7235 §2.1).
    assert_eq!(
        run(&cfg, &host, &w, Some(&format!("bEaReR {t}"))),
        Verdict::Forward { expires_in: Some(300), swap: None, headers: Edits::default() }
    );
    assert_eq!(host.verdicts(), vec![Counter::Accepted, Counter::Accepted]);
    assert!(host.audits().is_empty(), "accepted tokens are not audited unless asked");
    let quiet = config(json!({"expires_in_header": ""}));
    assert_eq!(
        run(&quiet, &host, &w, Some(&bearer(&t))),
        Verdict::Forward { expires_in: None, swap: None, headers: Edits::default() }
    );
}

#[test]
fn a_rejection_is_a_401_with_code_audit_line_and_counter() {
    let cfg = config(json!({}));
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    let t = mint("ES256", json!({"exp": NOW - 1, "sub": "bob"}));
    let Verdict::Deny(r) = run(&cfg, &host, &w, Some(&bearer(&t))) else { panic!("forwarded") };
    assert_eq!(r.status, 401);
    assert!(r.headers[0].1.contains("error=\"invalid_token\""));
    assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap()["error"], "token_expired");
    assert_eq!(host.verdicts(), vec![Counter::Rejected(RejectCode::TokenExpired)]);
    let audits = host.audits();
    assert_eq!(audits.len(), 1);
    let (level, a) = &audits[0];
    assert_eq!(*level, Level::Info);
    assert_eq!(a["event"], "token_rejected");
    assert_eq!(a["reason"], "token_expired");
    assert_eq!(a["token"], crate::token::Fingerprint::of(&t).short());
    assert_eq!(a["request_id"], "rid-1");
    assert_eq!(a["path"], "/api");
    assert_eq!(a["ts"], NOW);
    // The signature verified, so the identity is trustworthy even though the token expired.
    assert_eq!((a["sub"].as_str(), a["exp"].as_u64()), (Some("bob"), Some(NOW - 1)));

    // A forged token's claims are never recorded.
    let forged = t.replace('.', ".x");
    run(&cfg, &host, &w, Some(&bearer(&forged)));
    let a = &host.audits()[1].1;
    assert!(a["sub"].is_null() && a["exp"].is_null(), "{a}");
}

#[test]
fn near_expiry_warns_once_per_token() {
    let cfg = config(json!({"near_expiry_warning_seconds": 10}));
    let w = Worker::default();
    let t = mint("EdDSA", json!({"exp": NOW + 60, "sub": "carol", "jti": "j-9"}));
    for now in [NOW, NOW + 49] {
        let host = FakeHost::at(now);
        run(&cfg, &host, &w, Some(&bearer(&t)));
        assert!(host.audits().is_empty(), "warned {}s before expiry", NOW + 60 - now);
    }
    let host = FakeHost::at(NOW + 50);
    run(&cfg, &host, &w, Some(&bearer(&t)));
    run(&cfg, &host, &w, Some(&bearer(&t)));
    let audits = host.audits();
    assert_eq!(audits.len(), 1);
    let (level, a) = &audits[0];
    assert_eq!(*level, Level::Warn);
    assert_eq!((a["event"].as_str(), a["remaining_s"].as_u64()), (Some("near_expiry"), Some(10)));
    assert_eq!((a["sub"].as_str(), a["jti"].as_str()), (Some("carol"), Some("j-9")));
    assert_eq!(host.counts.borrow().iter().filter(|c| **c == Counter::NearExpiryWarning).count(), 1);
}

#[test]
fn accepted_tokens_are_audited_on_request() {
    let cfg = config(json!({"audit": {"log_accepted": true}}));
    let host = FakeHost::at(NOW);
    let t = mint("PS256", json!({}));
    run(&cfg, &host, &Worker::default(), Some(&bearer(&t)));
    let audits = host.audits();
    assert_eq!(audits[0].1["event"], "token_accepted");
    assert_eq!(audits[0].1["sub"], "alice");
    assert!(!host.lines.borrow()[0].1.contains(&t), "the token itself is never logged");
}

#[test]
fn cookie_source() {
    let cfg = config(json!({"token_source": {"cookie": "at"}}));
    let host = FakeHost::at(NOW);
    let t = mint("HS256", json!({}));
    let cookie = format!("theme=dark; at={t}; other=1");
    assert!(matches!(run(&cfg, &host, &Worker::default(), Some(&cookie)), Verdict::Forward { .. }));
    assert!(matches!(run(&cfg, &host, &Worker::default(), Some("theme=dark")), Verdict::Deny(_)));
    assert_eq!(credential_header_name(&cfg), "cookie");
}

#[test]
fn extraction_handles_odd_headers() {
    let src = TokenSource::Header { name: "authorization".into(), prefix: "Bearer ".into() };
    assert_eq!(extract_token(&src, "Bearer  abc "), Some("abc"));
    assert_eq!(extract_token(&src, "Bearer "), Some(""));
    assert_eq!(extract_token(&src, "Béarer abc"), None); // multi-byte: no slicing panic
    assert_eq!(extract_token(&src, ""), None);
}

#[test]
fn the_registry_skips_verification_for_a_known_token_only() {
    let cfg = config(json!({}));
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    let t = mint("RS256", json!({}));
    run(&cfg, &host, &w, Some(&bearer(&t)));
    run(&cfg, &host, &w, Some(&bearer(&t)));
    assert_eq!(host.value(Counter::SignatureVerified), Some(1));
    assert_eq!(host.value(Counter::RegistryHit), Some(1));
    // Another configuration (say, rotated keys) does not trust the old verification.
    let other = config(json!({"clock_skew_seconds": 1}));
    assert_ne!(other.generation, cfg.generation);
    run(&other, &host, &w, Some(&bearer(&t)));
    assert_eq!(host.value(Counter::SignatureVerified), Some(2));
}

#[test]
fn a_revoked_token_is_refused_with_token_revoked() {
    use crate::registry::revocation::{Kind, Revocation, Target};
    let cfg = config(json!({}));
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    let t = mint("ES256", json!({"jti": "gone"}));
    assert!(matches!(run(&cfg, &host, &w, Some(&bearer(&t))), Verdict::Forward { .. }));
    let reg = Registry::new(&host, Layout::of(&cfg));
    reg.revoke(Revocation { target: Target::new(Kind::Jti, "gone"), revoked_at: NOW, until: NOW + 600 }, NOW)
        .unwrap();
    let Verdict::Deny(r) = run(&cfg, &host, &w, Some(&bearer(&t))) else { panic!("forwarded") };
    assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap()["error"], "token_revoked");
    let a = host.audits().last().unwrap().1.clone();
    assert_eq!((a["reason"].as_str(), a["jti"].as_str()), (Some("token_revoked"), Some("gone")));
}

#[test]
fn a_full_registry_evicts_with_an_audit_line() {
    let cfg = config(json!({"registry": {"capacity": 1}}));
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    let first = mint("HS256", json!({"exp": NOW + 100, "jti": "first"}));
    let second = mint("HS256", json!({"exp": NOW + 200, "jti": "second"}));
    run(&cfg, &host, &w, Some(&bearer(&first)));
    run(&cfg, &host, &w, Some(&bearer(&second)));
    let evicted: Vec<Value> =
        host.audits().into_iter().map(|(_, a)| a).filter(|a| a["event"] == "registry_evicted").collect();
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0]["jti"], "first");
    assert_eq!(host.value(Counter::RegistryEvicted), Some(1));
}

fn refresh_cfg() -> Config {
    config(json!({"refresh": {"cluster": "issuer", "authority": "issuer.test", "path": "/oauth/token",
        "window_seconds": 60, "window_ratio": 1.0, "grace_seconds": 10}}))
}

fn run_rt(cfg: &Config, host: &FakeHost, w: &Worker, token: &str) -> Verdict {
    check_request(
        cfg,
        host,
        w,
        &Request {
            credential_header: Some(&bearer(token)),
            meta: &FakeRequest::refreshing(None),
            verified: None,
        },
    )
}

#[test]
fn a_due_token_starts_one_refresh_and_the_answer_swaps_it() {
    let cfg = refresh_cfg();
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    let old = mint("ES256", json!({"iat": NOW - 10, "exp": NOW + 30}));
    let Verdict::Refresh(plan) = run_rt(&cfg, &host, &w, &old) else { panic!("no refresh started") };
    assert!(String::from_utf8(plan.callout.body.clone()).unwrap().contains("refresh_token=rt-1"));
    assert!(!format!("{plan:?}").contains("rt-1"), "Debug output leaks the refresh token");
    // Single flight: while the lease is held, others go on with the old token.
    assert!(matches!(run_rt(&cfg, &host, &w, &old), Verdict::Forward { swap: None, .. }));

    let new = mint("ES256", json!({"iat": NOW, "exp": NOW + 600, "jti": "new"}));
    let body =
        json!({"access_token": new, "token_type": "Bearer", "expires_in": 600, "refresh_token": "rt-2"});
    let v = complete_refresh(&cfg, &host, &w, &plan, Ok((Some(200), body.to_string().into_bytes())));
    let Verdict::Forward { swap: Some(swap), expires_in, .. } = v else { panic!("not swapped: {v:?}") };
    assert_eq!(
        (swap.access_token.as_str(), swap.refresh_token.as_deref(), expires_in),
        (new.as_str(), Some("rt-2"), Some(600))
    );
    // Within the grace, the old token is forwarded as the new one; after it, refused.
    let Verdict::Forward { swap: Some(s), .. } = run_rt(&cfg, &host, &w, &old) else { panic!("no handoff") };
    assert_eq!(s.access_token, new);
    host.now.set(NOW + 10);
    let Verdict::Deny(r) = run_rt(&cfg, &host, &w, &old) else { panic!("old token still accepted") };
    assert!(r.body.contains("token_revoked"));
    let events: Vec<String> =
        host.audits().iter().map(|(_, a)| a["event"].as_str().unwrap().to_string()).collect();
    assert!(
        events.contains(&"refresh_started".to_string()) && events.contains(&"refresh_succeeded".to_string())
    );
    assert!(host.lines.borrow().iter().all(|(_, l)| !l.contains("rt-2") && !l.contains(&new)));
}

#[test]
fn a_failed_refresh_backs_off_and_keeps_the_old_token() {
    let cfg = refresh_cfg();
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    let old = mint("ES256", json!({"iat": NOW - 10, "exp": NOW + 30}));
    let Verdict::Refresh(plan) = run_rt(&cfg, &host, &w, &old) else { panic!("no refresh started") };
    let v = complete_refresh(&cfg, &host, &w, &plan, Err(crate::refresh::Failure::Timeout));
    assert!(matches!(v, Verdict::Forward { swap: None, expires_in: Some(30), .. }));
    // Backing off: no new attempt for 5 s.
    host.now.set(NOW + 4);
    assert!(matches!(run_rt(&cfg, &host, &w, &old), Verdict::Forward { swap: None, .. }));
    host.now.set(NOW + 5);
    assert!(matches!(run_rt(&cfg, &host, &w, &old), Verdict::Refresh(_)));
    let failed = host.audits().into_iter().find(|(_, a)| a["event"] == "refresh_failed").unwrap();
    assert_eq!(failed.0, Level::Warn);
    assert!(failed.1["reason"].as_str().unwrap().starts_with("timeout"));
}

/// Found while designing the soak's lost-revocation check: revoking a refreshed token (by its jti or as a token) must also stop
/// the grace-period handoff that forwards the old token as the new one.
#[test]
fn a_revoked_replacement_is_not_handed_off_during_the_grace() {
    use crate::registry::revocation::{Kind, Revocation, Target};
    let cfg = refresh_cfg();
    let w = Worker::default();
    for target in ["jti", "token"] {
        let host = FakeHost::at(NOW);
        let old = mint("ES256", json!({"iat": NOW - 10, "exp": NOW + 30}));
        let Verdict::Refresh(plan) = run_rt(&cfg, &host, &w, &old) else { panic!("no refresh started") };
        let new = mint("ES256", json!({"iat": NOW, "exp": NOW + 600, "jti": "new"}));
        let body = json!({"access_token": new, "token_type": "Bearer", "expires_in": 600});
        complete_refresh(&cfg, &host, &w, &plan, Ok((Some(200), body.to_string().into_bytes())));
        assert!(matches!(run_rt(&cfg, &host, &w, &old), Verdict::Forward { swap: Some(_), .. }));
        let t = match target {
            "jti" => Target::new(Kind::Jti, "new"),
            _ => Target::hashed(Kind::Token, Fingerprint::of(&new).0),
        };
        let reg = Registry::new(&host, Layout::of(&cfg));
        reg.revoke(Revocation { target: t, revoked_at: NOW, until: NOW + 600 }, NOW).unwrap();
        let Verdict::Deny(r) = run_rt(&cfg, &host, &w, &new) else { panic!("{target}: new token accepted") };
        assert!(r.body.contains("token_revoked"));
        let v = run_rt(&cfg, &host, &w, &old);
        let Verdict::Deny(r) = v else { panic!("{target}: the revoked replacement was handed off: {v:?}") };
        assert!(r.body.contains("token_revoked"), "{}", r.body);
    }
}

/// The worker's hot path answers exactly as the full path would: same verdicts, counters
/// and audit lines, and it gives way whenever time or a revocation could change the answer.
#[test]
fn the_hot_path_gives_way_to_time_and_revocations() {
    use crate::registry::revocation::{Kind, Revocation, Target};
    let cfg = config(json!({"near_expiry_warning_seconds": 60, "audit": {"log_accepted": true},
        "session": {"max_lifetime_seconds": 3600, "start_claim": "auth_time"}}));
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    let t = mint("ES256", json!({"exp": NOW + 300, "auth_time": NOW - 3400, "jti": "hot"}));
    for _ in 0..3 {
        assert!(matches!(run(&cfg, &host, &w, Some(&bearer(&t))), Verdict::Forward { .. }));
    }
    assert_eq!(w.accepted.borrow().len(), 1, "remembered after the first acceptance");
    assert_eq!(host.value(Counter::SignatureVerified), Some(1));
    assert_eq!(host.value(Counter::RegistryHit), Some(2));
    assert_eq!(host.value(Counter::Accepted), Some(3));
    let accepted: Vec<Value> =
        host.audits().into_iter().map(|(_, a)| a).filter(|a| a["event"] == "token_accepted").collect();
    assert_eq!(accepted.len(), 3, "log_accepted holds on the hot path too");
    assert_eq!(accepted[2]["jti"], "hot");
    assert_eq!(accepted[2]["request_id"], "rid-1");

    // The session limit (NOW + 200) comes before the warning (exp - 60 = NOW + 240).
    host.now.set(NOW + 199);
    assert!(matches!(run(&cfg, &host, &w, Some(&bearer(&t))), Verdict::Forward { .. }));
    host.now.set(NOW + 200);
    let Verdict::Deny(r) = run(&cfg, &host, &w, Some(&bearer(&t))) else { panic!("session outlived") };
    assert!(r.body.contains("session_expired"), "{}", r.body);

    // A revocation anywhere in the process ends the hot path for the token it names.
    host.now.set(NOW);
    let u = mint("ES256", json!({"exp": NOW + 300, "auth_time": NOW, "jti": "u1"}));
    run(&cfg, &host, &w, Some(&bearer(&u)));
    assert!(matches!(run(&cfg, &host, &w, Some(&bearer(&u))), Verdict::Forward { .. }));
    let reg = Registry::new(&host, Layout::of(&cfg));
    reg.revoke(Revocation { target: Target::new(Kind::Jti, "u1"), revoked_at: NOW, until: NOW + 600 }, NOW)
        .unwrap();
    let Verdict::Deny(r) = run(&cfg, &host, &w, Some(&bearer(&u))) else { panic!("revoked token forwarded") };
    assert!(r.body.contains("token_revoked"));
    assert!(w.accepted.borrow().get(&u).is_none(), "forgotten once refused");
}

#[test]
fn the_hot_path_warns_once_when_the_token_nears_expiry() {
    let cfg = config(json!({"near_expiry_warning_seconds": 60}));
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    let t = mint("HS256", json!({"exp": NOW + 300}));
    for at in [NOW, NOW + 100, NOW + 239, NOW + 240, NOW + 241, NOW + 299] {
        host.now.set(at);
        assert!(matches!(run(&cfg, &host, &w, Some(&bearer(&t))), Verdict::Forward { .. }), "at {at}");
    }
    assert_eq!(host.value(Counter::NearExpiryWarning), Some(1));
    host.now.set(NOW + 300);
    let Verdict::Deny(r) = run(&cfg, &host, &w, Some(&bearer(&t))) else { panic!("expired token forwarded") };
    assert!(r.body.contains("token_expired"));
}

#[test]
fn an_altered_token_never_matches_the_hot_path() {
    let cfg = config(json!({}));
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    let t = mint("HS256", json!({}));
    run(&cfg, &host, &w, Some(&bearer(&t)));
    let mut forged = t.clone();
    forged.pop();
    forged.push(if t.ends_with('A') { 'B' } else { 'A' });
    let Verdict::Deny(r) = run(&cfg, &host, &w, Some(&bearer(&forged))) else { panic!("forgery forwarded") };
    assert!(r.body.contains("invalid_signature") || r.body.contains("malformed_token"), "{}", r.body);
}

#[test]
fn a_response_carries_the_seconds_left_and_after_a_refresh_the_new_tokens() {
    use crate::gate::credential::response_headers;
    use crate::verdict::Swap;
    let cfg = refresh_cfg();
    let swap =
        |rt: Option<&str>| Some(Swap { access_token: "A2".into(), refresh_token: rt.map(str::to_owned) });
    let h = |v: &[(&'static str, &str)]| v.iter().map(|(k, v)| (*k, v.to_string())).collect::<Vec<_>>();
    assert_eq!(response_headers(&cfg, Some(42), None), h(&[("x-token-expires-in", "42")]));
    assert_eq!(
        response_headers(&cfg, None, swap(Some("R2"))),
        h(&[("x-new-access-token", "A2"), ("x-new-refresh-token", "R2")])
    );
    assert_eq!(
        response_headers(&cfg, None, swap(None)),
        h(&[("x-new-access-token", "A2")]),
        "no refresh token"
    );
    let quiet = config(json!({"expires_in_header": ""}));
    assert!(
        response_headers(&quiet, Some(42), swap(Some("R2"))).is_empty(),
        "nothing configured, nothing added"
    );
}
