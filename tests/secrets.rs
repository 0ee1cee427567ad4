//! End-to-end: no secret ever reaches Envoy's log.
//!
//! A full scenario (sign-in, requests, a refresh with rotation, a grace-period handoff,
//! failed refreshes, revocations through the admin API, a wrong admin token, refused and
//! hostile tokens) runs against a real Envoy; then every line of Envoy's log is scanned
//! for every access token, refresh token, the client secret (plain and as the Basic
//! credential), the admin token and the wrong admin token, and for each token segment long
//! enough to identify it. Run twice: at Envoy's default `info` level (every line) and at
//! `debug` (Envoy then logs request headers itself, so only the plugin's lines are ours).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use tokenguard_harness::http::{revoke_url, Client, Response};
use tokenguard_harness::issuer::MintRequest;
use tokenguard_harness::keys::{raw_token, token_sha256};
use tokenguard_harness::stack::{demo_keys, Stack};

const ADMIN_TOKEN: &str = "secrets-e2e-admin-token-7f3a9c";
const WRONG_ADMIN_TOKEN: &str = "secrets-e2e-admin-token-7f3a9d";
const CLIENT_SECRET: &str = "secrets-e2e-client-secret-55c1";

fn config() -> Value {
    json!({
        "refresh": {
            "cluster": "issuer", "authority": "issuer.test", "path": "/oauth/token",
            "timeout_ms": 800, "window_seconds": 30, "window_ratio": 1.0,
            "client_id": "gateway", "client_secret": CLIENT_SECRET,
            "grace_seconds": 30, "escalate_after_failures": 2,
        },
        "admin": {"path_prefix": "/tokenguard/", "token": ADMIN_TOKEN},
        "near_expiry_warning_seconds": 60,
        "audit": {"log_accepted": true},
    })
}

/// Every secret the scenario handled, and what Envoy did with them.
#[derive(Default)]
struct Secrets(Vec<String>);

impl Secrets {
    fn add(&mut self, s: &str) {
        if !s.is_empty() {
            self.0.push(s.to_string());
        }
    }

    /// A token, and each of its segments that is long enough to single it out.
    fn token(&mut self, t: &str) {
        self.add(t);
        for seg in t.split('.').filter(|s| s.len() >= 24) {
            self.add(seg);
        }
    }
}

fn login(s: &Stack, secrets: &mut Secrets, sub: &str, ttl: i64) -> (String, String) {
    let body = json!({"sub": sub, "alg": "ES256", "ttl": ttl}).to_string();
    let v = s.client.post(&format!("{}/oauth/login", s.issuer.url()), &[], &body).json();
    let (a, r) =
        (v["access_token"].as_str().unwrap().to_string(), v["refresh_token"].as_str().unwrap().to_string());
    secrets.token(&a);
    secrets.add(&r);
    (a, r)
}

fn call(s: &Stack, secrets: &mut Secrets, access: &str, refresh: Option<&str>) -> Response {
    let auth = format!("Bearer {access}");
    let mut h = vec![("authorization", auth.as_str()), ("x-request-id", "secrets-e2e")];
    if let Some(r) = refresh {
        h.push(("x-refresh-token", r));
    }
    let r = Client::new().get(&s.envoy.url("/api"), &h);
    for name in ["x-new-access-token", "x-new-refresh-token"] {
        if let Some(v) = r.header(name) {
            secrets.token(v);
        }
    }
    r
}

fn control(s: &Stack, v: Value) {
    assert_eq!(s.client.post(&format!("{}/control", s.issuer.url()), &[], &v.to_string()).status, 200);
}

/// `POST /tokenguard/revoke?{key}={value}`, no body.
fn admin(s: &Stack, token: &str, key: &str, value: &str) -> Response {
    s.client.post(&revoke_url(&s.envoy.url(""), "/tokenguard/", key, value), &[("x-admin-token", token)], "")
}

/// Runs the scenario on a fresh stack; returns the secrets it handled.
fn scenario(s: &Stack) -> Secrets {
    let mut secrets = Secrets::default();
    for v in [ADMIN_TOKEN, WRONG_ADMIN_TOKEN, CLIENT_SECRET] {
        secrets.add(v);
    }
    secrets.add(&STANDARD.encode(format!("gateway:{CLIENT_SECRET}")));

    // Sign in; a token far from expiry is forwarded, one inside the window is refreshed.
    let (fresh, fresh_rt) = login(s, &mut secrets, "alice", 300);
    assert_eq!(call(s, &mut secrets, &fresh, Some(&fresh_rt)).status, 200);
    let (due, due_rt) = login(s, &mut secrets, "bob", 20);
    let r = call(s, &mut secrets, &due, Some(&due_rt));
    assert_eq!(r.status, 200, "{}", r.body);
    let new_access = r.header("x-new-access-token").expect("refreshed").to_string();
    let new_refresh = r.header("x-new-refresh-token").expect("rotated").to_string();
    // The grace-period handoff, then the new pair on its own.
    assert_eq!(call(s, &mut secrets, &due, None).header("x-new-access-token"), Some(new_access.as_str()));
    assert_eq!(call(s, &mut secrets, &new_access, Some(&new_refresh)).status, 200);

    // Failed refreshes of every kind, up to the escalation.
    for mode in ["fail_500", "garbage", "wrong_key", "expired_token", "hang_up"] {
        control(s, json!({"mode": "normal"}));
        let (a, rt) = login(s, &mut secrets, "carol", 20);
        control(s, json!({"mode": mode}));
        assert_eq!(call(s, &mut secrets, &a, Some(&rt)).status, 200, "{mode}");
    }
    control(s, json!({"mode": "normal"}));

    // Revocations through the admin API, by every key, and the refusals that follow.
    let (by_token, _) = login(s, &mut secrets, "dave", 300);
    let (by_sub, _) = login(s, &mut secrets, "erin", 300);
    let (by_sid, _) = login(s, &mut secrets, "frank", 300);
    for t in [&by_token, &by_sub, &by_sid] {
        assert_eq!(call(s, &mut secrets, t, None).status, 200);
    }
    assert_eq!(admin(s, ADMIN_TOKEN, "token_sha256", &token_sha256(&by_token)).status, 200);
    assert_eq!(admin(s, ADMIN_TOKEN, "sub", "erin").status, 200);
    // The issuer names the token family in the token's sid claim.
    let claims: Value = {
        let seg = by_sid.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(seg).unwrap())
            .unwrap()
    };
    assert_eq!(admin(s, ADMIN_TOKEN, "sid", claims["sid"].as_str().unwrap()).status, 200);
    assert_eq!(admin(s, ADMIN_TOKEN, "token_sha256", &token_sha256(&new_access)).status, 200);
    for t in [&by_token, &by_sub, &by_sid, &new_access, &due] {
        assert_eq!(call(s, &mut secrets, t, None).json()["error"], "token_revoked");
    }
    // A wrong admin token, and none at all.
    assert_eq!(admin(s, WRONG_ADMIN_TOKEN, "sub", "alice").status, 401);
    let r = s.client.get(&s.envoy.url("/tokenguard/stats"), &[("x-admin-token", WRONG_ADMIN_TOKEN)]);
    assert_eq!(r.status, 401);

    // Refused tokens: expired, forged, hostile.
    let expired = s.mint(MintRequest::new("RS256", -5));
    let other_key = tokenguard_harness::IssuerKeys::generate();
    let forged = other_key
        .sign(
            "ES256",
            &json!({"iss": "https://issuer.test", "sub": "alice", "aud": "api",
        "iat": tokenguard_harness::keys::now(), "exp": tokenguard_harness::keys::now() + 60}),
            None,
        )
        .unwrap();
    let hostile =
        raw_token(r#"{"alg":"none"}"#, r#"{"iss":"https://issuer.test","sub":"x"}"#, &demo_keys().hmac);
    for t in [&expired, &forged, &hostile] {
        secrets.token(t);
        assert_eq!(call(s, &mut secrets, t, Some(&fresh_rt)).status, 401);
    }
    secrets
}

fn scan(lines: &[&str], secrets: &Secrets) -> Vec<String> {
    let mut leaks = Vec::new();
    for line in lines {
        for secret in &secrets.0 {
            if line.contains(secret.as_str()) {
                let shown: String = secret.chars().take(12).collect();
                leaks.push(format!("{shown}... in: {line}"));
            }
        }
    }
    leaks
}

#[test]
fn no_token_refresh_token_client_secret_or_admin_token_reaches_envoys_log() {
    // Info: Envoy's default, and what production runs. Every line is scanned.
    let s = Stack::start(config());
    let secrets = scenario(&s);
    let log = s.envoy.log();
    let lines: Vec<&str> = log.lines().collect();
    let leaks = scan(&lines, &secrets);
    assert!(leaks.is_empty(), "{} leaks:\n{}", leaks.len(), leaks.join("\n"));
    // The scan is meaningful: the scenario produced every kind of audit line.
    let events: Vec<String> =
        s.envoy.audit_records().iter().map(|a| a["event"].as_str().unwrap_or_default().to_string()).collect();
    for e in [
        "token_accepted",
        "token_rejected",
        "near_expiry",
        "refresh_started",
        "refresh_succeeded",
        "refresh_failed",
        "refresh_escalation",
        "token_revoked",
        "admin_denied",
    ] {
        assert!(events.iter().any(|x| x == e), "no {e} line: the scenario did not exercise it");
    }
    eprintln!("info: {} lines scanned for {} secrets", lines.len(), secrets.0.len());
    drop(s);

    // Debug: Envoy itself then prints request headers, so only the plugin's lines count.
    // SAFETY of set_var: this file has a single test, so no other thread reads the
    // environment meanwhile.
    std::env::set_var("TOKENGUARD_ENVOY_LOG_LEVEL", "debug");
    let s = Stack::start(config());
    std::env::remove_var("TOKENGUARD_ENVOY_LOG_LEVEL");
    let secrets = scenario(&s);
    let log = s.envoy.log();
    let plugin: Vec<&str> = log.lines().filter(|l| l.contains("[wasm]") || l.contains("wasm log")).collect();
    assert!(plugin.len() > 30, "too few plugin lines at debug level: {}", plugin.len());
    let leaks = scan(&plugin, &secrets);
    assert!(leaks.is_empty(), "{} leaks at debug level:\n{}", leaks.len(), leaks.join("\n"));
    eprintln!("debug: {} plugin lines scanned for {} secrets", plugin.len(), secrets.0.len());
}
