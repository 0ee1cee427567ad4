//! End-to-end: the security fixes, each test stopping one attack, in a real Envoy with two
//! workers. Every test asserts what the client, the upstream, the issuer and the audit log
//! saw.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use tokenguard_harness::envoy::{ConfigForm, Envoy, Options};
use tokenguard_harness::http::{query_encode, revoke_url, Client, Response};
use tokenguard_harness::issuer::MintRequest;
use tokenguard_harness::keys::{
    es256_twin, fingerprint, now, sign_with_header, token_sha256, KID_EC256, KID_HMAC,
};
use tokenguard_harness::stack::{demo_keys, plugin_config, Stack};

const ADMIN: &str = "security-e2e-admin-token-42";
const CLIENT_SECRET: &str = "security-e2e-client-secret";
const ISS: &str = "https://issuer.test";

fn refresh_config(extra_refresh: Value, extra: Value) -> Value {
    let mut refresh = json!({
        "cluster": "issuer", "authority": "issuer.test", "path": "/oauth/token",
        "timeout_ms": 800, "window_seconds": 30, "window_ratio": 1.0,
        "client_id": "gateway", "client_secret": CLIENT_SECRET,
        "grace_seconds": 30, "escalate_after_failures": 3,
    });
    merge(&mut refresh, &extra_refresh);
    let mut cfg = json!({"refresh": refresh, "near_expiry_warning_seconds": 0});
    merge(&mut cfg, &extra);
    cfg
}

fn merge(into: &mut Value, extra: &Value) {
    for (k, v) in extra.as_object().expect("an object") {
        into[k] = v.clone();
    }
}

fn admin_config() -> Value {
    json!({"admin": {"path_prefix": "/tokenguard/", "token": ADMIN}})
}

/// How long after Envoy starts etcd comes up in the held-request tests: a fresh Envoy holds
/// its first requests until its first full list of the revocation store, so requests made
/// at once are held for at least most of this.
const ETCD_LATE_MS: u64 = 1500;

/// A stack on `revocation_store.etcd` whose etcd is stopped when Envoy starts, with room
/// for a long hold (`startup_wait_ms`).
fn late_etcd_stack(extra: Value) -> Stack {
    Stack::start_on_etcd(extra, json!({"startup_wait_ms": 15000}), |etcd| etcd.stop())
}

/// Runs `requests` while another thread brings the stack's etcd up `ETCD_LATE_MS` later.
fn while_etcd_comes_up<T>(s: &Stack, requests: impl FnOnce() -> T) -> T {
    std::thread::scope(|scope| {
        let etcd = s.etcd();
        scope.spawn(move || {
            std::thread::sleep(Duration::from_millis(ETCD_LATE_MS));
            etcd.restart();
        });
        requests()
    })
}

/// (status, error code) of an answer; the code is empty for a 200.
fn outcome(r: &Response) -> (u16, String) {
    let code = if r.status == 200 {
        String::new()
    } else {
        serde_json::from_str::<Value>(&r.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("<{}>", r.body))
    };
    (r.status, code)
}

fn refused(code: &str) -> (u16, String) {
    (401, code.to_string())
}

fn events(s: &Stack, event: &str) -> Vec<Value> {
    s.envoy.audit_records().into_iter().filter(|a| a["event"] == event).collect()
}

fn rejections(s: &Stack, reason: &str) -> Vec<Value> {
    events(s, "token_rejected").into_iter().filter(|a| a["reason"] == reason).collect()
}

fn claims(token: &str) -> Value {
    let seg = token.split('.').nth(1).expect("a payload segment");
    serde_json::from_slice(&B64.decode(seg).expect("base64url payload")).expect("JSON claims")
}

fn sleep_until(unix: u64) {
    while now() < unix {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The authorization header of every request the upstream received.
fn upstream_auth(s: &Stack) -> Vec<String> {
    s.upstream.received().iter().map(|r| r.header("authorization").unwrap_or_default().to_string()).collect()
}

// ---------------------------------------------------------------------------------------
// 1. Refresh handoff
// ---------------------------------------------------------------------------------------

/// Stops a thief holding only a superseded access token from harvesting the rotated refresh
/// token during the grace period (which would give them a session of their own, renewable
/// for as long as the refresh token lives): an old access token alone is handed the new
/// access token, never the new refresh token. Only the client that spent the refresh token
/// for that refresh gets the new refresh token again.
#[test]
fn during_the_grace_an_old_access_token_alone_is_never_handed_the_new_refresh_token() {
    let s = Stack::start(refresh_config(json!({"grace_seconds": 30}), json!({})));
    let l = s.login(20, json!({}));
    let other = s.login(300, json!({"sub": "bob"}));
    let first = s.call(&Client::new(), &l.access, Some(&l.refresh));
    assert_eq!(first.status, 200, "{}", first.body);
    let new_access = first.header("x-new-access-token").expect("refreshed").to_string();
    let new_refresh = first.header("x-new-refresh-token").expect("rotated").to_string();

    // The attack: the old access token alone, from anywhere (fresh connections: both workers).
    for i in 0..4 {
        let r = s.call(&Client::new(), &l.access, None);
        assert_eq!(r.status, 200, "handoff {i}: {}", r.body);
        assert_eq!(r.header("x-new-access-token"), Some(new_access.as_str()), "handoff {i}");
        assert!(
            r.header("x-new-refresh-token").is_none(),
            "handoff {i}: the old access token alone was handed the new refresh token"
        );
    }
    // Another refresh token (another session's) does not unlock it either.
    let r = s.call(&Client::new(), &l.access, Some(&other.refresh));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-new-access-token"), Some(new_access.as_str()));
    assert!(r.header("x-new-refresh-token").is_none(), "a foreign refresh token got the new one");
    // The client that spent the refresh token (its response was lost, say) gets both again.
    let r = s.call(&Client::new(), &l.access, Some(&l.refresh));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-new-access-token"), Some(new_access.as_str()));
    assert_eq!(r.header("x-new-refresh-token"), Some(new_refresh.as_str()));

    // Upstream: every request went with the new access token, no refresh token ever.
    let seen = s.upstream.received();
    assert_eq!(seen.len(), 7);
    for r in &seen {
        assert_eq!(r.header("authorization"), Some(bearer(&new_access).as_str()));
        assert!(r.header("x-refresh-token").is_none(), "a refresh token reached the upstream");
    }
    // Issuer: one refresh, nothing more (the handoffs and the foreign token called nobody).
    assert_eq!(s.issuer.counter("token_calls"), 1);
    // Audit: one refresh, old and new fingerprints; no refusal.
    let ok = events(&s, "refresh_succeeded");
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0]["token"], fingerprint(&l.access).as_str());
    assert_eq!(ok[0]["new_token"], fingerprint(&new_access).as_str());
    assert_eq!(events(&s, "refresh_started").len(), 1);
    assert!(events(&s, "token_rejected").is_empty());
    let log = s.envoy.log();
    for secret in [&l.refresh, &new_refresh, &other.refresh] {
        assert!(!log.contains(secret.as_str()), "a refresh token reached Envoy's log");
    }
}

/// Stops an attacker who holds a victim's (due) access token from spending their own
/// refresh token with it: the authorization server answers with the attacker's tokens, which
/// must not replace the victim's (the victim's requests would go upstream as the attacker,
/// and the victim would be refused after the grace). The answer is a failed refresh.
#[test]
fn a_refresh_answered_for_another_subject_replaces_nothing() {
    let s = Stack::start(refresh_config(json!({"grace_seconds": 30}), json!({})));
    let victim = s.login(20, json!({}));
    let mallory = s.login(300, json!({"sub": "mallory"}));
    let r = s.call(&Client::new(), &victim.access, Some(&mallory.refresh));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("x-new-access-token").is_none(), "the victim was handed the attacker's token");
    assert_eq!(upstream_auth(&s), vec![bearer(&victim.access)]);
    assert_eq!(s.issuer.counter("token_calls"), 1, "the issuer did answer");
    let failed = events(&s, "refresh_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0]["reason"].as_str().unwrap().contains("another subject"), "{failed:?}");
    assert!(events(&s, "refresh_succeeded").is_empty());
    // The victim's token is not superseded: it goes on as itself, on both workers.
    for _ in 0..4 {
        let r = s.call(&Client::new(), &victim.access, None);
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.header("x-new-access-token").is_none());
    }
}

/// Stops an operator from configuring a grace period that keeps superseded (possibly
/// stolen) access tokens working, and handed fresh ones, for hours: `refresh.grace_seconds`
/// above 300 is a configuration error naming the field, and Envoy refuses to start.
#[test]
fn a_grace_period_above_300_seconds_is_refused_and_names_the_field() {
    let keys = demo_keys();
    let issuer = tokenguard_harness::issuer::Issuer::start(
        demo_keys(),
        tokenguard_harness::issuer::DEFAULT_ISSUER,
        "127.0.0.1:0",
    );
    let upstream = tokenguard_harness::upstream::Upstream::start("127.0.0.1:0");
    let opts = |grace: u64| Options {
        plugin_config: plugin_config(&keys, &refresh_config(json!({"grace_seconds": grace}), json!({}))),
        form: ConfigForm::StringValue,
        upstream_port: upstream.port,
        issuer_port: issuer.port,
        concurrency: 2,
        plain_route: false,
        etcd_port: None,
    };
    // 300 is the limit, and allowed.
    let at_limit = Envoy::start(&opts(300));
    drop(at_limit);
    let log = Envoy::expect_refusal(&opts(301));
    assert!(log.contains("tokenguard: invalid configuration: refresh.grace_seconds"), "{log}");
    assert!(!log.contains("audit {"), "the refused filter wrote audit lines");
    assert!(upstream.received().is_empty());
    assert_eq!(issuer.counter("requests"), 0);
}

// ---------------------------------------------------------------------------------------
// 2. Token identity: the signing input, not the signature bytes
// ---------------------------------------------------------------------------------------

/// Stops ECDSA signature malleability from undoing a revocation: anyone holding a revoked
/// ES256 token can compute (r, n - s), a second valid signature over the same header and
/// claims. A revocation by token hash names the signing input, so the twin is revoked too,
/// on every worker.
#[test]
fn revoking_an_es256_token_also_revokes_its_malleated_twin_on_every_worker() {
    let s = Stack::start(admin_config());
    let token = s.mint(MintRequest::new("ES256", 300).claim("jti", Value::Null));
    let twin = es256_twin(&token);
    assert_ne!(twin, token);
    assert_eq!(token_sha256(&twin), token_sha256(&token));
    // Both verify before the revocation (the twin is a valid signature).
    assert_eq!(outcome(&s.call(&Client::new(), &token, None)), (200, String::new()));
    assert_eq!(outcome(&s.call(&Client::new(), &twin, None)), (200, String::new()));

    let url = revoke_url(&s.envoy.url(""), "/tokenguard/", "token_sha256", &token_sha256(&token));
    let r = s.client.post(&url, &[("x-admin-token", ADMIN)], "");
    assert_eq!(r.status, 200, "{}", r.body);

    // Fresh connections: both workers. The twin first: it is the attack.
    for i in 0..6 {
        let r = s.call(&Client::new(), &twin, None);
        assert_eq!(outcome(&r), refused("token_revoked"), "twin, attempt {i}: {}", r.body);
        let r = s.call(&Client::new(), &token, None);
        assert_eq!(outcome(&r), refused("token_revoked"), "token, attempt {i}: {}", r.body);
    }
    // Upstream: only the two requests before the revocation.
    assert_eq!(upstream_auth(&s), vec![bearer(&token), bearer(&twin)]);
    // Issuer: never called.
    assert_eq!(s.issuer.counter("requests"), 0);
    // Audit: the revocation names the token by fingerprint; the twin's refusals carry the
    // same fingerprint (one token).
    let revoked = events(&s, "token_revoked");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["token"], fingerprint(&token).as_str());
    assert_eq!(fingerprint(&twin), fingerprint(&token));
    let refusals = rejections(&s, "token_revoked");
    assert_eq!(refusals.len(), 12);
    assert!(refusals.iter().all(|a| a["token"] == fingerprint(&token).as_str()));
    assert!(!s.envoy.log().contains(&twin));
}

/// Stops a replaced token from being revived after its grace period by re-signing it: the
/// malleated twin of an access token superseded by a refresh is the same token, and is
/// refused as replaced once the grace is over.
#[test]
fn after_the_grace_the_malleated_twin_of_a_replaced_token_is_refused_as_replaced() {
    let s = Stack::start(refresh_config(json!({"grace_seconds": 2}), json!({})));
    let l = s.login(20, json!({"alg": "ES256"}));
    let r = s.call(&Client::new(), &l.access, Some(&l.refresh));
    assert_eq!(r.status, 200, "{}", r.body);
    let new_access = r.header("x-new-access-token").expect("refreshed").to_string();
    let refreshed_at = now();
    sleep_until(refreshed_at + 4); // past the 2 s grace
    let twin = es256_twin(&l.access);
    for i in 0..4 {
        let r = s.call(&Client::new(), &twin, None);
        assert_eq!(outcome(&r), refused("token_revoked"), "twin, attempt {i}: {}", r.body);
        assert!(
            r.json()["error_description"].as_str().unwrap_or_default().contains("replaced"),
            "{}",
            r.body
        );
        assert!(r.header("x-new-access-token").is_none());
        let r = s.call(&Client::new(), &l.access, None);
        assert_eq!(outcome(&r), refused("token_revoked"), "old token, attempt {i}: {}", r.body);
    }
    assert_eq!(outcome(&s.call(&Client::new(), &new_access, None)), (200, String::new()));
    // Upstream: the refreshed request and the new token, never the twin or the old token.
    assert_eq!(upstream_auth(&s), vec![bearer(&new_access), bearer(&new_access)]);
    // Issuer: the one refresh.
    assert_eq!(s.issuer.counter("token_calls"), 1);
    // Audit: 8 refusals, all naming the old token's fingerprint (the twin's is the same).
    let refusals = rejections(&s, "token_revoked");
    assert_eq!(refusals.len(), 8, "{refusals:?}");
    assert!(refusals.iter().all(|a| a["token"] == fingerprint(&l.access).as_str()));
    assert_eq!(events(&s, "refresh_succeeded").len(), 1);
}

// ---------------------------------------------------------------------------------------
// 3. Admin API: query parameters, answered at the request-headers phase
// ---------------------------------------------------------------------------------------

/// Stops admin requests (and the admin token) from leaking to the upstream when the admin
/// route is not fenced off in Envoy (no buffer filter, no direct response): revocations are
/// query parameters answered at the request-headers phase, a revoke with a body is refused
/// unread, and `x-admin-token` is removed from whatever goes upstream.
#[test]
fn admin_requests_never_reach_the_upstream_even_on_a_plain_route() {
    let s = Stack::start_prepared(admin_config(), ConfigForm::StringValue, true, |_| {});
    let mint = |sub: &str, jti: &str| {
        s.mint(MintRequest::new("ES256", 300).claim("sub", json!(sub)).claim("jti", json!(jti)))
    };
    let odd_jti = "jti a/b&c=d%e?f#g";
    let by_jti = mint("u1", "jti-q1");
    let by_sub = mint("u2", "jti-q2");
    let by_sid =
        s.mint(MintRequest::new("ES256", 300).claim("sub", json!("u3")).claim("sid", json!("sid-q3")));
    let by_hash = mint("u4", "jti-q4");
    let by_odd_jti = mint("u5", odd_jti);
    let query_victims = [&by_jti, &by_sub, &by_sid, &by_hash, &by_odd_jti];
    let body_named: Vec<String> = (1..=5).map(|i| mint(&format!("b{i}"), &format!("jti-b{i}"))).collect();
    let base = s.envoy.url("");
    let prefix = "/tokenguard/";

    // (what, the answer, the status and code it must be)
    let mut answers: Vec<(String, Response, (u16, String))> = Vec::new();
    let ok = || (200, String::new());
    let bad_request = || (400, "invalid_request".to_string());
    let unauthorized = || (401, "unauthorized".to_string());
    let post = |url: &str, headers: &[(&str, &str)], body: &str| Client::new().post(url, headers, body);
    // 5 authorized revocations, as query parameters.
    for (key, value) in [
        ("jti", "jti-q1".to_string()),
        ("sub", "u2".to_string()),
        ("sid", "sid-q3".to_string()),
        ("token_sha256", token_sha256(&by_hash)),
        ("jti", odd_jti.to_string()),
    ] {
        let url = revoke_url(&base, prefix, key, &value);
        answers.push((format!("query {key}"), post(&url, &[("x-admin-token", ADMIN)], ""), ok()));
    }
    // 5 authorized revokes carrying a JSON body (the old form, and a query with a body).
    let admin_json = [("x-admin-token", ADMIN), ("content-type", "application/json")];
    let revoke = format!("{base}{prefix}revoke");
    for (what, url, body) in [
        ("body jti", revoke.clone(), json!({"jti": "jti-b1"})),
        ("body sub", revoke.clone(), json!({"sub": "b2"})),
        ("body token", revoke.clone(), json!({"token": body_named[2]})),
        ("body with query jti", format!("{revoke}?jti=jti-b4"), json!({"jti": "jti-b4"})),
        ("another body with query sub", format!("{revoke}?sub=b5"), json!({"sid": "anything"})),
    ] {
        answers.push((what.to_string(), post(&url, &admin_json, &body.to_string()), bad_request()));
    }
    // Unauthorized ones (query form: whether a body or a wrong token is refused first is
    // not part of the interface).
    let wrong = [("x-admin-token", "security-e2e-wrong-admin-token")];
    for (what, url, headers) in [
        ("no admin token", revoke_url(&base, prefix, "sub", "alice"), &[][..]),
        ("wrong admin token", revoke_url(&base, prefix, "sub", "alice"), &wrong[..]),
        ("wrong admin token, jti", revoke_url(&base, prefix, "jti", "jti-bystander"), &wrong[..]),
    ] {
        answers.push((what.to_string(), post(&url, headers, ""), unauthorized()));
    }
    // A stats read, and an ordinary request that happens to carry the admin token.
    let stats = Client::new().get(&format!("{base}{prefix}stats"), &[("x-admin-token", ADMIN)]);
    let bystander = mint("bystander", "jti-bystander");
    let auth = bearer(&bystander);
    let ordinary = Client::new()
        .get(&s.envoy.url("/api"), &[("authorization", auth.as_str()), ("x-admin-token", ADMIN)]);

    // Upstream first: the attack is an admin request, or the admin token, reaching it.
    // `arrived`: requests whose headers got there, answered or not.
    let seen = s.upstream.arrived();
    let leaked: Vec<String> = seen
        .iter()
        .filter(|r| r.path.starts_with(prefix))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(leaked.is_empty(), "admin requests reached the upstream: {leaked:?}");
    let with_token: Vec<&str> =
        seen.iter().filter(|r| r.header("x-admin-token").is_some()).map(|r| r.path.as_str()).collect();
    assert!(with_token.is_empty(), "x-admin-token reached the upstream on {with_token:?}");

    // Client: what each admin request was answered.
    for (what, r, expected) in &answers {
        assert_eq!(outcome(r), *expected, "{what}: {}", r.body);
    }
    assert_eq!(stats.status, 200, "{}", stats.body);
    assert_eq!(stats.json()["revocations"], 5, "{}", stats.body);
    assert_eq!(ordinary.status, 200, "{}", ordinary.body);

    // The query revocations took effect, on both workers; the bodies were never read.
    for (i, t) in query_victims.iter().enumerate() {
        for _ in 0..2 {
            assert_eq!(outcome(&s.call(&Client::new(), t, None)), refused("token_revoked"), "victim {i}");
        }
    }
    for (i, t) in body_named.iter().enumerate() {
        assert_eq!(outcome(&s.call(&Client::new(), t, None)), (200, String::new()), "body-named {i}");
    }
    // Upstream in total: the ordinary request and the five body-named tokens, nothing else.
    let mut expected = vec![bearer(&bystander)];
    expected.extend(body_named.iter().map(|t| bearer(t)));
    assert_eq!(upstream_auth(&s), expected);
    // Issuer: never called (no remote keys, no refresh configured).
    assert_eq!(s.issuer.counter("requests"), 0);
    // Audit: five revocations (the odd jti decoded), three denials, ten revoked refusals.
    let revoked = events(&s, "token_revoked");
    assert_eq!(revoked.len(), 5, "{revoked:?}");
    assert!(revoked.iter().any(|a| a["target"] == json!({"jti": odd_jti})), "{revoked:?}");
    assert!(revoked.iter().any(|a| a["target"] == json!({"sub": "u2"})));
    assert_eq!(events(&s, "admin_denied").len(), 3);
    assert_eq!(rejections(&s, "token_revoked").len(), 10);
    let log = s.envoy.log();
    assert!(!log.contains(ADMIN) && !log.contains("security-e2e-wrong-admin-token"));
    assert!(!log.contains(&body_named[2]), "a token in a refused body reached the log");
}

// ---------------------------------------------------------------------------------------
// 4. Audit lines never carry the query string
// ---------------------------------------------------------------------------------------

/// Stops credentials and personal data in query strings (`?access_token=...`, `email=...`)
/// from being copied into audit lines, which are shipped to log stores with long retention:
/// the audit `path` is the path without its query, for refused and accepted requests alike.
#[test]
fn audit_lines_carry_the_path_without_its_query_string() {
    let s = Stack::start(json!({"audit": {"log_accepted": true}, "near_expiry_warning_seconds": 60}));
    let target = "/api?access_token=SECRET123&email=a@b";
    let expired = s.mint(MintRequest::new("ES256", -5));
    let valid = s.mint(MintRequest::new("ES256", 300));
    let near = s.mint(MintRequest::new("RS256", 30)); // a near_expiry line too
    let get = |token: &str| Client::new().get(&s.envoy.url(target), &[("authorization", &bearer(token))]);
    assert_eq!(outcome(&get(&expired)), refused("token_expired"));
    assert_eq!(outcome(&get("not.a.jwt")), refused("malformed_token"));
    let c = Client::new(); // one worker: from the third sight on, the hot path
    for _ in 0..3 {
        let r = c.get(&s.envoy.url(target), &[("authorization", &bearer(&valid))]);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(get(&near).status, 200);

    // Upstream: the request itself is forwarded as it came, query included.
    let seen = s.upstream.received();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|r| r.path == target), "{:?}", seen.iter().map(|r| &r.path).collect::<Vec<_>>());
    assert_eq!(s.issuer.counter("requests"), 0);
    // Audit: every line with a path has it without the query.
    let audits = s.envoy.audit_records();
    let with_path: Vec<&Value> = audits.iter().filter(|a| !a["path"].is_null()).collect();
    let kinds = |e: &str| with_path.iter().filter(|a| a["event"] == e).count();
    assert_eq!(kinds("token_rejected"), 2, "{audits:?}");
    assert_eq!(kinds("token_accepted"), 4, "{audits:?}");
    assert_eq!(kinds("near_expiry"), 1, "{audits:?}");
    for a in &with_path {
        assert_eq!(a["path"], "/api", "{a}");
    }
    let log = s.envoy.log();
    assert!(!log.contains("SECRET123"), "a query-string credential reached Envoy's log");
    assert!(!log.contains("a@b"), "query-string personal data reached Envoy's log");
}

// ---------------------------------------------------------------------------------------
// 5. A refresh token in a cookie never goes upstream
// ---------------------------------------------------------------------------------------

fn cookie_parts(header: Option<&str>) -> Vec<String> {
    header.unwrap_or_default().split(';').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
}

/// Stops the upstream (any backend behind the gateway, and its logs) from receiving the
/// client's refresh token when it comes in a cookie: the `refresh_token_cookie` is removed
/// from the `cookie` header that goes upstream, other cookies are kept, whether or not the
/// request was refreshed; with a cookie token source the access-token cookie is rewritten as
/// before.
#[test]
fn a_refresh_token_cookie_is_stripped_from_the_cookie_header_sent_upstream() {
    let s = Stack::start(refresh_config(json!({"refresh_token_cookie": "rt"}), json!({})));
    // Not due: forwarded as it is, minus the refresh token.
    let fresh = s.login(300, json!({}));
    let cookie = format!("theme=dark; rt={}; lang=en", fresh.refresh);
    let r = Client::new()
        .get(&s.envoy.url("/api"), &[("authorization", &bearer(&fresh.access)), ("cookie", &cookie)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("x-new-access-token").is_none());
    // Due: refreshed with the cookie's refresh token, which still does not go upstream.
    let due = s.login(20, json!({}));
    let cookie = format!("rt={}; theme=dark", due.refresh);
    let r = Client::new()
        .get(&s.envoy.url("/api"), &[("authorization", &bearer(&due.access)), ("cookie", &cookie)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let new_access = r.header("x-new-access-token").expect("refreshed with the cookie's token").to_string();

    let seen = s.upstream.received();
    assert_eq!(seen.len(), 2);
    for (r, rt) in seen.iter().zip([&fresh.refresh, &due.refresh]) {
        let cookie = r.header("cookie").unwrap_or_default();
        assert!(!cookie.contains(rt.as_str()), "the refresh token cookie reached the upstream: {cookie}");
        assert!(!cookie_parts(Some(cookie)).iter().any(|p| p.starts_with("rt=")), "{cookie}");
        assert!(cookie.contains("theme=dark"), "other cookies are kept: {cookie}");
    }
    assert!(seen[0].header("cookie").unwrap_or_default().contains("lang=en"));
    assert_eq!(seen[0].header("authorization"), Some(bearer(&fresh.access).as_str()));
    assert_eq!(seen[1].header("authorization"), Some(bearer(&new_access).as_str()));
    assert_eq!(s.issuer.counter("token_calls"), 1);
    assert_eq!(events(&s, "refresh_succeeded").len(), 1);
    drop(s);

    // Both tokens in cookies: the access cookie is rewritten, the refresh cookie removed.
    let s = Stack::start(refresh_config(
        json!({"refresh_token_cookie": "rt"}),
        json!({"token_source": {"cookie": "at"}}),
    ));
    let due = s.login(20, json!({}));
    let cookie = format!("at={}; rt={}; theme=dark", due.access, due.refresh);
    let r = Client::new().get(&s.envoy.url("/api"), &[("cookie", &cookie)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let new_access = r.header("x-new-access-token").expect("refreshed").to_string();
    let seen = s.upstream.received();
    assert_eq!(seen.len(), 1);
    let parts = cookie_parts(seen[0].header("cookie"));
    assert!(
        parts.contains(&format!("at={new_access}")),
        "the access cookie carries the new token: {parts:?}"
    );
    assert!(parts.contains(&"theme=dark".to_string()), "{parts:?}");
    assert!(!parts.iter().any(|p| p.starts_with("rt=") || p.contains(&due.refresh)), "{parts:?}");
    assert!(!parts.iter().any(|p| p.contains(&due.access)), "the old access token went upstream: {parts:?}");
    assert_eq!(s.issuer.counter("token_calls"), 1);
    let ok = events(&s, "refresh_succeeded");
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0]["token"], fingerprint(&due.access).as_str());
    assert!(!s.envoy.log().contains(&due.refresh));
}

// ---------------------------------------------------------------------------------------
// 6. Ambiguous credentials
// ---------------------------------------------------------------------------------------

/// Stops credential smuggling through ambiguity: when the filter and the upstream (or
/// another proxy) could read different credentials from one request (two cookies of the
/// credential's name, or the cookie and an `Authorization: Bearer` header), the filter must
/// not pick one silently and vouch for the request: it is refused `malformed_token`.
#[test]
fn ambiguous_credentials_are_refused_as_malformed() {
    let s = Stack::start(json!({"token_source": {"cookie": "tg"}}));
    let a = s.mint(MintRequest::new("ES256", 300).claim("sub", json!("alice")));
    let b = s.mint(MintRequest::new("ES256", 300).claim("sub", json!("mallory")));
    let get = |headers: &[(&str, &str)]| Client::new().get(&s.envoy.url("/api"), headers);
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("two tg cookies", vec![("cookie", format!("tg={a}; tg={b}"))]),
        ("two tg cookies, among others", vec![("cookie", format!("x=1; tg={a}; y=2; tg={b}"))]),
        ("the same tg cookie twice", vec![("cookie", format!("tg={a}; tg={a}"))]),
        ("tg cookie and a bearer header", vec![("cookie", format!("tg={a}")), ("authorization", bearer(&b))]),
        (
            "tg cookie and the same bearer token",
            vec![("cookie", format!("tg={a}")), ("authorization", bearer(&a))],
        ),
    ];
    for (what, headers) in &cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = get(&h);
        assert_eq!(outcome(&r), refused("malformed_token"), "{what}: {}", r.body);
        assert!(
            r.header("www-authenticate").unwrap_or_default().contains("error=\"invalid_token\""),
            "{what}"
        );
    }
    // The unambiguous request is served.
    let ok = get(&[("cookie", &format!("theme=x; tg={a}"))]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    let seen = s.upstream.received();
    assert_eq!(seen.len(), 1, "an ambiguous request reached the upstream");
    assert_eq!(seen[0].header("cookie"), Some(format!("theme=x; tg={a}").as_str()));
    assert_eq!(s.issuer.counter("requests"), 0);
    assert_eq!(rejections(&s, "malformed_token").len(), cases.len());
    assert_eq!(events(&s, "token_rejected").len(), cases.len());
}

// ---------------------------------------------------------------------------------------
// 7. Token types
// ---------------------------------------------------------------------------------------

fn typed_token(typ: Option<&str>, n: usize) -> String {
    let t = now();
    let mut header = json!({"alg": "ES256", "kid": KID_EC256});
    if let Some(typ) = typ {
        header["typ"] = json!(typ);
    }
    let claims = json!({"iss": ISS, "sub": "alice", "aud": "api", "iat": t, "exp": t + 300,
                        "jti": format!("typ-{n}-{t}"), "sid": "sid-typ"});
    sign_with_header(&demo_keys(), &header, &claims)
}

/// Stops token-type confusion: other JWTs the trusted issuer signs with the same key (a
/// back-channel logout token, a security event token, a DPoP proof) carry the right `iss`,
/// `aud` and signature, and must never pass as access tokens. By default only `JWT` and
/// `at+jwt` (any case, optionally `application/`-prefixed) or no `typ` pass.
#[test]
fn other_jwt_types_from_the_trusted_issuer_are_not_access_tokens() {
    let s = Stack::start(json!({}));
    let refused_types = ["logout+jwt", "secevent+jwt", "dpop+jwt", "application/logout+jwt", "LOGOUT+JWT"];
    let accepted_types =
        [Some("at+jwt"), Some("JWT"), Some("jwt"), Some("AT+JWT"), Some("application/at+jwt"), None];
    let mut refused_tokens = Vec::new();
    for (i, typ) in refused_types.iter().enumerate() {
        let token = typed_token(Some(typ), i);
        let r = s.call(&Client::new(), &token, None);
        assert_eq!(outcome(&r), refused("malformed_token"), "typ {typ}: {}", r.body);
        let description = r.json()["error_description"].as_str().unwrap_or_default().to_ascii_lowercase();
        let named = typ.to_ascii_lowercase();
        let named = named.trim_start_matches("application/");
        assert!(description.contains(named), "typ {typ}: the description names it: {}", r.body);
        refused_tokens.push(token);
    }
    let mut accepted_tokens = Vec::new();
    for (i, typ) in accepted_types.iter().enumerate() {
        let token = typed_token(*typ, 100 + i);
        let r = s.call(&Client::new(), &token, None);
        assert_eq!(r.status, 200, "typ {typ:?}: {}", r.body);
        accepted_tokens.push(token);
    }
    // HMAC-signed by the same issuer: the same rule.
    let t = now();
    let hs = |typ: &str| {
        sign_with_header(
            &demo_keys(),
            &json!({"alg": "HS256", "kid": KID_HMAC, "typ": typ}),
            &json!({"iss": ISS, "sub": "alice", "aud": "api", "iat": t, "exp": t + 300}),
        )
    };
    assert_eq!(outcome(&s.call(&Client::new(), &hs("secevent+jwt"), None)), refused("malformed_token"));
    refused_tokens.push(hs("secevent+jwt"));
    assert_eq!(s.call(&Client::new(), &hs("at+jwt"), None).status, 200);
    accepted_tokens.push(hs("at+jwt"));

    let expected: Vec<String> = accepted_tokens.iter().map(|t| bearer(t)).collect();
    assert_eq!(upstream_auth(&s), expected, "a token of another type reached the upstream");
    assert_eq!(s.issuer.counter("requests"), 0);
    let refusals = rejections(&s, "malformed_token");
    assert_eq!(refusals.len(), refused_tokens.len());
    for t in &refused_tokens {
        assert!(refusals.iter().any(|a| a["token"] == fingerprint(t).as_str()));
    }
}

/// Stops a deployment that trusts a different set of types from accepting the default ones
/// regardless: `providers[].token_types` replaces the default list.
#[test]
fn configured_token_types_replace_the_default_list() {
    let mut providers = plugin_config(&demo_keys(), &json!({}))["providers"].clone();
    providers[0]["token_types"] = json!(["JWT", "secevent+jwt"]);
    let s = Stack::start(json!({"providers": providers}));
    let cases = [
        (Some("secevent+jwt"), true),
        (Some("application/SECEVENT+JWT"), true),
        (Some("JWT"), true),
        (None, true),
        (Some("at+jwt"), false),
        (Some("logout+jwt"), false),
    ];
    let mut expected = Vec::new();
    for (i, (typ, passes)) in cases.iter().enumerate() {
        let token = typed_token(*typ, 200 + i);
        let r = s.call(&Client::new(), &token, None);
        if *passes {
            assert_eq!(r.status, 200, "typ {typ:?}: {}", r.body);
            expected.push(bearer(&token));
        } else {
            assert_eq!(outcome(&r), refused("malformed_token"), "typ {typ:?}: {}", r.body);
            let typ = typ.unwrap_or_default();
            assert!(r.body.contains(typ), "typ {typ}: the description names it: {}", r.body);
        }
    }
    assert_eq!(upstream_auth(&s), expected);
    assert_eq!(s.issuer.counter("requests"), 0);
    assert_eq!(rejections(&s, "malformed_token").len(), 2);
}

// ---------------------------------------------------------------------------------------
// 8. The absolute session survives refreshes
// ---------------------------------------------------------------------------------------

fn session_config() -> Value {
    refresh_config(json!({"window_seconds": 30}), json!({"session": {"max_lifetime_seconds": 8}}))
}

/// Stops refresh from resetting the absolute session lifetime: with no `auth_time` the
/// session starts at `iat`, and a refreshed token's later `iat` must not restart it. A
/// session that has reached `session.max_lifetime_seconds` is over, whatever token now
/// carries it, and the filter does not call the issuer for it again.
#[test]
fn a_refresh_through_the_filter_does_not_extend_the_absolute_session() {
    let s = Stack::start(session_config());
    s.control(json!({"omit_auth_time": true}));
    let l = s.login(35, json!({}));
    let c0 = claims(&l.access);
    assert!(c0.get("auth_time").is_none() && c0["sid"].is_string(), "{c0}");
    let t0 = c0["iat"].as_u64().unwrap();
    sleep_until(t0 + 6); // due: 29 s left, window 30 s
    let r = s.call(&Client::new(), &l.access, Some(&l.refresh));
    assert_eq!(r.status, 200, "{}", r.body);
    let new_access = r.header("x-new-access-token").expect("refreshed").to_string();
    let new_refresh = r.header("x-new-refresh-token").expect("rotated").to_string();
    let c1 = claims(&new_access);
    assert!(c1["iat"].as_u64().unwrap() > t0, "{c1}");
    assert_eq!(c1["sid"], c0["sid"]);
    assert!(c1.get("auth_time").is_none());

    sleep_until(t0 + 9); // the session began at t0 and lasts 8 s
    let r = s.call(&Client::new(), &new_access, Some(&new_refresh));
    assert_eq!(outcome(&r), refused("session_expired"), "{}", r.body);
    assert!(r.header("x-new-access-token").is_none());
    // Upstream: only the refreshed request, with the new token.
    assert_eq!(upstream_auth(&s), vec![bearer(&new_access)]);
    // Issuer: the one refresh; nothing for the expired session.
    assert_eq!(s.issuer.counter("token_calls"), 1);
    // Audit: one refresh, then the refusal of the new token.
    assert_eq!(events(&s, "refresh_started").len(), 1);
    assert_eq!(events(&s, "refresh_succeeded").len(), 1);
    let refusals = rejections(&s, "session_expired");
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0]["token"], fingerprint(&new_access).as_str());
}

/// Stops a client from restarting its absolute session by refreshing at the issuer itself
/// (out of band, where the filter sees no refresh): a token of a session (`sid`) the filter
/// has already seen keeps that session's start, even with a later `iat` and no `auth_time`.
#[test]
fn a_token_refreshed_out_of_band_keeps_its_sessions_start() {
    let s = Stack::start(session_config());
    s.control(json!({"omit_auth_time": true}));
    let l = s.login(35, json!({}));
    let c0 = claims(&l.access);
    let t0 = c0["iat"].as_u64().unwrap();
    // The filter sees the session's first token.
    assert_eq!(outcome(&s.call(&Client::new(), &l.access, None)), (200, String::new()));
    sleep_until(t0 + 6);
    let body = format!("grant_type=refresh_token&refresh_token={}", query_encode(&l.refresh));
    let r = Client::new().post(
        &format!("{}/oauth/token", s.issuer.url()),
        &[("content-type", "application/x-www-form-urlencoded")],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let new_access = r.json()["access_token"].as_str().unwrap().to_string();
    let c1 = claims(&new_access);
    assert!(c1["iat"].as_u64().unwrap() > t0 && c1["sid"] == c0["sid"] && c1.get("auth_time").is_none());

    sleep_until(t0 + 9);
    let r = s.call(&Client::new(), &new_access, None);
    assert_eq!(outcome(&r), refused("session_expired"), "{}", r.body);
    assert_eq!(upstream_auth(&s), vec![bearer(&l.access)]);
    assert_eq!(s.issuer.counter("token_calls"), 1, "only the client's own refresh");
    let refusals = rejections(&s, "session_expired");
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0]["token"], fingerprint(&new_access).as_str());
    assert!(events(&s, "refresh_started").is_empty());
}

// ---------------------------------------------------------------------------------------
// 9. Requests held for the revocation store's first list
// ---------------------------------------------------------------------------------------

/// Sends one request with access and refresh token on a fresh connection; returns the
/// answer and how long it took.
fn timed_call(s: &Stack, access: &str, refresh: Option<&str>) -> (Response, Duration) {
    let started = Instant::now();
    let r = s.call(&Client::new(), access, refresh);
    (r, started.elapsed())
}

/// Position of the first audit record of `event` about `token`.
fn position(s: &Stack, event: &str, token: &str) -> Option<usize> {
    s.envoy
        .audit_records()
        .iter()
        .position(|a| a["event"] == event && a["token"] == fingerprint(token).as_str())
}

/// Stops an expired access token from being forwarded upstream because its request arrived
/// while a fresh Envoy waited for the first list of its revocation store: once released, a request
/// whose token may be refreshed (`refresh_expired`) is refreshed, and the upstream gets the
/// new token, never the expired one.
#[test]
fn an_expired_token_held_for_the_first_store_list_is_refreshed_not_forwarded() {
    let s = late_etcd_stack(refresh_config(json!({"refresh_expired": true}), json!({})));
    let l = s.login(-1, json!({}));
    let (r, held) = while_etcd_comes_up(&s, || timed_call(&s, &l.access, Some(&l.refresh)));
    assert!(held >= Duration::from_millis(1000), "setup: the request was not held for the store ({held:?})");
    // Upstream first: the attack is the expired token reaching it.
    let auths = upstream_auth(&s);
    assert!(!auths.contains(&bearer(&l.access)), "the expired token reached the upstream");
    assert_eq!(r.status, 200, "{}", r.body);
    let new_access = r.header("x-new-access-token").expect("refreshed").to_string();
    assert!(r.header("x-new-refresh-token").is_some());
    assert_eq!(auths, vec![bearer(&new_access)]);
    assert!(s.upstream.received()[0].header("x-refresh-token").is_none());
    assert_eq!(s.issuer.counter("token_calls"), 1);
    let started = position(&s, "refresh_started", &l.access).expect("refresh_started");
    let succeeded = position(&s, "refresh_succeeded", &l.access).expect("refresh_succeeded");
    assert!(started < succeeded);
    assert_eq!(events(&s, "refresh_started").len(), 1);
    assert!(events(&s, "token_rejected").is_empty());
}

/// Stops a held request from silently skipping its due refresh (the client then keeps a
/// token about to expire, and a refresh lease is left taken): a valid but due token held for
/// the store's first list is refreshed once released.
#[test]
fn a_due_token_held_for_the_first_store_list_is_refreshed_when_released() {
    let s = late_etcd_stack(refresh_config(json!({}), json!({})));
    let l = s.login(20, json!({}));
    let (r, held) = while_etcd_comes_up(&s, || timed_call(&s, &l.access, Some(&l.refresh)));
    assert!(held >= Duration::from_millis(1000), "setup: the request was not held for the store ({held:?})");
    let auths = upstream_auth(&s);
    assert_eq!(r.status, 200, "{}", r.body);
    let new_access = r.header("x-new-access-token").expect("refreshed after the hold").to_string();
    assert_eq!(auths, vec![bearer(&new_access)], "the upstream got the old token");
    assert_eq!(s.issuer.counter("token_calls"), 1);
    let started = position(&s, "refresh_started", &l.access).expect("refresh_started");
    let succeeded = position(&s, "refresh_succeeded", &l.access).expect("refresh_succeeded");
    assert!(started < succeeded);
    assert!(events(&s, "refresh_failed").is_empty());
}

/// Stops an expired token from passing through the hold when refreshing it is not allowed:
/// released, it is `token_expired` and nothing reaches the upstream or the token endpoint.
#[test]
fn an_expired_token_held_for_the_first_store_list_is_refused_without_refresh_expired() {
    let s = late_etcd_stack(refresh_config(json!({}), json!({})));
    let l = s.login(-1, json!({}));
    let (r, held) = while_etcd_comes_up(&s, || timed_call(&s, &l.access, Some(&l.refresh)));
    assert!(held >= Duration::from_millis(1000), "setup: the request was not held for the store ({held:?})");
    assert_eq!(outcome(&r), refused("token_expired"), "{}", r.body);
    assert!(s.upstream.received().is_empty());
    assert_eq!(s.issuer.counter("token_calls"), 0);
    let refusals = rejections(&s, "token_expired");
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0]["token"], fingerprint(&l.access).as_str());
    assert!(events(&s, "refresh_started").is_empty());
}

/// Stops held requests from becoming a CPU amplifier: a request held for the store's first
/// list has its signature verified once, not again on every 100 ms tick (a burst of
/// requests with expensive RSA tokens during a slow start would otherwise cost ten
/// verifications per request per second).
#[test]
fn a_held_request_has_its_signature_verified_once_not_on_every_tick() {
    let s = late_etcd_stack(json!({}));
    let name = "wasmcustom.tokenguard.signature_verifications";
    let before = s.envoy.stat(name).unwrap_or(0);
    let tokens: Vec<String> =
        ["RS256", "ES256", "EdDSA"].iter().map(|alg| s.mint(MintRequest::new(alg, 300))).collect();
    let done: Vec<(u16, Duration)> = while_etcd_comes_up(&s, || {
        let handles: Vec<_> = tokens
            .iter()
            .map(|t| {
                let (url, auth) = (s.envoy.url("/api"), bearer(t));
                std::thread::spawn(move || {
                    let started = Instant::now();
                    let r = Client::new().get(&url, &[("authorization", &auth)]);
                    (r.status, started.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, held) in &done {
        assert!(*held >= Duration::from_millis(1000), "setup: not held for the store ({held:?})");
        assert_eq!(*status, 200);
    }
    let after = s.envoy.stat(name).unwrap_or(0);
    assert!(
        after - before <= tokens.len() as u64,
        "{} signature verifications for {} held requests (held {:?})",
        after - before,
        tokens.len(),
        done.iter().map(|d| d.1).collect::<Vec<_>>()
    );
    let mut auths = upstream_auth(&s);
    auths.sort();
    let mut expected: Vec<String> = tokens.iter().map(|t| bearer(t)).collect();
    expected.sort();
    assert_eq!(auths, expected);
    assert_eq!(s.issuer.counter("token_calls"), 0);
    assert!(events(&s, "token_rejected").is_empty());
}
