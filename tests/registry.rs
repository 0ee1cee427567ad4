//! End-to-end: the shared registry and revocations in a real Envoy with two workers.

use serde_json::{json, Value};
use std::time::Duration;

use tokenguard_harness::http::Client;
use tokenguard_harness::issuer::MintRequest;
use tokenguard_harness::keys::{fingerprint, now};
use tokenguard_harness::stack::{demo_keys, Stack};

const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";

fn admin_config(extra: Value) -> Value {
    let mut cfg = json!({"admin": {"path_prefix": "/tokenguard/", "token": ADMIN_TOKEN}});
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    cfg
}

fn revoke(s: &Stack, body: Value) -> Value {
    let r = s.client.post(
        &s.envoy.url("/tokenguard/revoke"),
        &[("x-admin-token", ADMIN_TOKEN), ("content-type", "application/json")],
        &body.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn stats(s: &Stack) -> Value {
    let r = s.client.get(&s.envoy.url("/tokenguard/stats"), &[("x-admin-token", ADMIN_TOKEN)]);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Sends the token on `n` fresh connections (Envoy spreads them over its workers) and
/// returns the statuses and error codes seen.
fn from_everywhere(s: &Stack, token: &str, n: usize) -> Vec<(u16, String)> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (url, auth) = (s.envoy.url("/"), format!("Bearer {token}"));
            std::thread::spawn(move || {
                let r = Client::new().get(&url, &[("authorization", &auth)]);
                let code = if r.status == 200 {
                    String::new()
                } else {
                    r.json()["error"].as_str().unwrap_or_default().to_string()
                };
                (r.status, code)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn revocation_by_each_key_is_enforced_by_every_worker() {
    let s = Stack::start(admin_config(json!({})));
    let by_jti =
        s.mint(MintRequest::new("RS256", 300).claim("jti", json!("jti-revoke-me")).claim("sub", json!("u1")));
    let by_sub = s.mint(MintRequest::new("RS256", 300).claim("sub", json!("u2")));
    let by_sid =
        s.mint(MintRequest::new("RS256", 300).claim("sid", json!("sid-revoke-me")).claim("sub", json!("u3")));
    let by_token = s.mint(MintRequest::new("RS256", 300).claim("jti", Value::Null).claim("sub", json!("u4")));
    let bystander = s.mint(MintRequest::new("RS256", 300).claim("sub", json!("u5")));
    for t in [&by_jti, &by_sub, &by_sid, &by_token, &bystander] {
        assert!(from_everywhere(&s, t, 6).iter().all(|(st, _)| *st == 200));
    }
    let forwarded_before = s.upstream.received().len();

    assert_eq!(revoke(&s, json!({"jti": "jti-revoke-me"}))["revoked"], json!({"jti": "jti-revoke-me"}));
    revoke(&s, json!({"sub": "u2"}));
    revoke(&s, json!({"sid": "sid-revoke-me"}));
    let answer = revoke(&s, json!({"token": by_token}));
    assert_eq!(
        answer["revoked"]["token"],
        fingerprint(&by_token).as_str(),
        "the token is named by fingerprint only"
    );

    for t in [&by_jti, &by_sub, &by_sid, &by_token] {
        let seen = from_everywhere(&s, t, 8);
        assert!(seen.iter().all(|(st, code)| *st == 401 && code == "token_revoked"), "{seen:?}");
    }
    assert!(from_everywhere(&s, &bystander, 8).iter().all(|(st, _)| *st == 200));
    assert_eq!(s.upstream.received().len(), forwarded_before + 8, "only the bystander got through");

    let audits = s.envoy.audit_records();
    let revoked: Vec<&Value> = audits.iter().filter(|a| a["event"] == "token_revoked").collect();
    assert_eq!(revoked.len(), 4, "{revoked:?}");
    assert!(revoked.iter().any(|a| a["target"] == json!({"sub": "u2"})));
    let rejected = s.audits_for(&by_jti).into_iter().filter(|a| a["reason"] == "token_revoked").count();
    assert_eq!(rejected, 8);
    assert_eq!(stats(&s)["revocations"], 4);
    assert!(!s.envoy.log().contains(&by_token), "a token given to the admin API is never logged");
}

#[test]
fn revoke_all_for_a_subject_spares_tokens_issued_after_it() {
    let s = Stack::start(admin_config(json!({})));
    let before = s.mint(MintRequest::new("ES256", 300).claim("sub", json!("carol")));
    assert_eq!(s.get("/", Some(&before)).status, 200);
    revoke(&s, json!({"sub": "carol"}));
    std::thread::sleep(Duration::from_millis(1100)); // the next token's iat is a later second
    let after = s.mint(MintRequest::new("ES256", 300).claim("sub", json!("carol")));
    assert_eq!(s.get("/", Some(&before)).json()["error"], "token_revoked");
    assert_eq!(s.get("/", Some(&after)).status, 200, "issued after the revocation");
}

#[test]
fn a_known_token_skips_signature_verification() {
    let s = Stack::start(json!({}));
    let token = s.mint(MintRequest::new("RS256", 300));
    let verifications = || s.envoy.stat("wasmcustom.tokenguard.signature_verifications").unwrap_or(0);
    let hits = || s.envoy.stat("wasmcustom.tokenguard.registry.hits").unwrap_or(0);
    assert_eq!(s.get("/", Some(&token)).status, 200);
    assert_eq!((verifications(), hits()), (1, 0));
    // Fresh connections: the other worker benefits from the first worker's verification.
    assert!(from_everywhere(&s, &token, 10).iter().all(|(st, _)| *st == 200));
    assert_eq!((verifications(), hits()), (1, 10));
    // An altered token (same claims, one signature byte changed) never matches the record.
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'Q' } else { 'A' });
    let r = s.get("/", Some(&forged));
    assert_eq!(r.status, 401);
    assert_eq!(verifications(), 2, "the altered token was verified, not taken from the cache");
}

#[test]
fn near_expiry_warns_once_per_process_across_workers() {
    let s = Stack::start(json!({"near_expiry_warning_seconds": 10}));
    let due = s.mint(MintRequest::new("EdDSA", 8));
    let seen = from_everywhere(&s, &due, 16);
    assert!(seen.iter().all(|(st, _)| *st == 200));
    let warnings = s.audits_for(&due).into_iter().filter(|a| a["event"] == "near_expiry").count();
    assert_eq!(warnings, 1);
    assert_eq!(s.envoy.stat("wasmcustom.tokenguard.near_expiry_warnings"), Some(1));
}

#[test]
fn the_admin_api_needs_its_token_and_never_reaches_the_upstream() {
    let s = Stack::start(admin_config(json!({})));
    for headers in [vec![], vec![("x-admin-token", "wrong-token-wrong-token")]] {
        let r = s.client.post(&s.envoy.url("/tokenguard/revoke"), &headers, r#"{"sub":"alice"}"#);
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.json()["error"], "unauthorized");
        let r = s.client.get(&s.envoy.url("/tokenguard/stats"), &headers);
        assert_eq!(r.status, 401);
    }
    let bad = s.client.post(
        &s.envoy.url("/tokenguard/revoke"),
        &[("x-admin-token", ADMIN_TOKEN)],
        r#"{"sub":"a","jti":"b"}"#,
    );
    assert_eq!(bad.status, 400);
    let unknown = s.client.get(&s.envoy.url("/tokenguard/nope"), &[("x-admin-token", ADMIN_TOKEN)]);
    assert_eq!(unknown.status, 404);
    assert!(s.upstream.received().is_empty(), "an admin request reached the upstream");
    let denied: Vec<Value> =
        s.envoy.audit_records().into_iter().filter(|a| a["event"] == "admin_denied").collect();
    assert_eq!(denied.len(), 4);
    assert!(!s.envoy.log().contains("wrong-token-wrong-token"));
    let st = stats(&s);
    for key in ["active_tokens", "revocations", "capacity", "evictions", "requests"] {
        assert!(st.get(key).is_some(), "stats lack {key}: {st}");
    }
    assert_eq!(st["capacity"], 10_000);
}

/// Tens of thousands of distinct short-lived tokens: the registry stays at capacity, the
/// shared-data key count stays fixed, and Envoy's memory stays within a stated bound.
#[test]
fn a_flood_of_distinct_tokens_stays_bounded() {
    const CAPACITY: u64 = 2_000;
    const TOKENS: usize = 20_000;
    let s = Stack::start(admin_config(
        json!({"registry": {"capacity": CAPACITY}, "near_expiry_warning_seconds": 0}),
    ));
    let keys = demo_keys();
    let t0 = now();
    let tokens: Vec<String> = (0..TOKENS)
        .map(|i| {
            let claims = json!({"iss": "https://issuer.test", "sub": format!("flood-{i}"), "aud": "api",
                                "iat": t0, "exp": t0 + 120 + (i % 60) as u64, "jti": format!("flood-{i}")});
            keys.sign("HS256", &claims, None).unwrap()
        })
        .collect();
    let memory = || s.envoy.stat("server.memory_allocated").unwrap_or(0);
    let warm = s.mint(MintRequest::new("HS256", 300));
    s.get("/", Some(&warm));
    let mem_before = memory();

    let chunks: Vec<Vec<String>> = tokens.chunks(TOKENS / 4).map(|c| c.to_vec()).collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let url = s.envoy.url("/");
            std::thread::spawn(move || {
                let c = Client::new();
                let mut failures = std::collections::BTreeMap::new();
                let mut ok = 0;
                for t in &chunk {
                    let r = c.get(&url, &[("authorization", &format!("Bearer {t}"))]);
                    if r.status == 200 {
                        ok += 1;
                    } else {
                        *failures.entry(format!("{} {}", r.status, r.body)).or_insert(0) += 1;
                    }
                }
                if !failures.is_empty() {
                    eprintln!("flood failures: {failures:?}");
                }
                ok
            })
        })
        .collect();
    let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(ok, TOKENS);

    let st = stats(&s);
    let active = st["active_tokens"].as_u64().unwrap();
    assert!(active <= CAPACITY, "{st}");
    assert!(active >= CAPACITY * 9 / 10, "the registry should be nearly full: {st}");
    assert!(st["evictions"].as_u64().unwrap() >= (TOKENS as u64) - CAPACITY, "{st}");
    assert_eq!(
        st["shared_data"]["keys"],
        CAPACITY / 8 + 16 + 64 + 3,
        "token, revocation and handoff buckets plus 3 control keys"
    );
    let bytes = st["shared_data"]["bytes"].as_u64().unwrap();
    assert!(bytes <= CAPACITY * 160, "{bytes} bytes for {CAPACITY} records");
    let growth = memory().saturating_sub(mem_before);
    eprintln!("flood: {st}\nEnvoy memory_allocated grew by {growth} bytes");
    // Stated bound: 16 MiB over the whole flood (registry bytes, V8 heaps, Envoy buffers).
    assert!(growth < 16 * 1024 * 1024, "memory grew by {growth} bytes");
}

/// Revocations and token records live in shared data under the `vm_id`, so a new plugin
/// configuration (what a control plane pushes) keeps them.
#[test]
fn revocations_and_records_survive_a_plugin_config_update() {
    let mut s = Stack::start_dynamic(admin_config(json!({})));
    let revoked = s.mint(MintRequest::new("ES256", 300).claim("jti", json!("jti-survivor")));
    let tracked = s.mint(MintRequest::new("ES256", 300));
    assert_eq!(s.get("/", Some(&revoked)).status, 200);
    assert_eq!(s.get("/", Some(&tracked)).status, 200);
    revoke(&s, json!({"jti": "jti-survivor"}));
    assert_eq!(s.get("/", Some(&revoked)).json()["error"], "token_revoked");

    s.reconfigure(admin_config(json!({"expires_in_header": "x-seconds-left"})));
    let r = s.get("/", Some(&tracked));
    assert_eq!(r.status, 200);
    assert!(r.header("x-seconds-left").is_some(), "the new configuration is in force");
    assert_eq!(s.get("/", Some(&revoked)).json()["error"], "token_revoked", "the revocation survived");
    let st = stats(&s);
    assert_eq!(st["revocations"], 1);
    assert!(st["tracked_tokens"].as_u64().unwrap() >= 2, "records survived: {st}");
}
