//! Route policy: public and optional routes, scopes and claims a route requires, claims
//! handed to the upstream, RFC 9728 metadata, and report-only rollout.
//!
//! The scenarios run under `config()` (report-only ones under `report_only_config()`),
//! merged into the stack's plugin configuration.

use serde_json::{json, Value};

use super::error_code;
use crate::http::{raw_exchange, Response};
use crate::issuer::MintRequest;
use crate::profile::Profile;
use crate::target::Target;

pub const RESOURCE: &str = "https://api.example.com";
pub const METADATA_URL: &str = "https://api.example.com/.well-known/oauth-protected-resource";

/// The route keys these scenarios run under (top-level plugin configuration keys).
pub fn config() -> Value {
    json!({
        "routes": [
            {"path_prefix": "/healthz", "policy": "public"},
            {"path_exact": "/login", "methods": ["GET", "POST"], "policy": "public"},
            {"path_prefix": "/catalog/", "methods": ["GET"], "policy": "optional"},
            {"path_prefix": "/staff/", "required_scopes": ["admin"]},
            {"path_prefix": "/orders/", "required_claims": {"org.tenant": ["acme", "globex"]}}
        ],
        "claims_to_headers": [
            {"claim": "sub", "header": "x-user-id"},
            {"claim": "realm_access.roles", "header": "x-user-roles"},
            {"claim": "org", "header": "x-org"}
        ],
        "forward_payload_header": "x-jwt-payload",
        "resource_metadata": {
            "resource": RESOURCE,
            "authorization_servers": ["https://issuer.test"],
            "scopes_supported": ["read", "admin"]
        }
    })
}

/// `config()` with `report_only` on.
pub fn report_only_config() -> Value {
    let mut c = config();
    c["report_only"] = json!(true);
    c
}

/// Forged copies of the claim headers, one of them twice.
const FORGED: [(&str, &str); 5] = [
    ("x-user-id", "root"),
    ("x-user-id", "root-again"),
    ("x-user-roles", "admin"),
    ("x-org", "{\"tenant\":\"acme\"}"),
    ("x-jwt-payload", "eyJzdWIiOiJyb290In0"),
];

fn get(t: &Target, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Response {
    let auth = token.map(|tok| format!("Bearer {tok}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    t.client.get(&t.url(path), &headers)
}

/// Sends a request line exactly as written: HTTP libraries normalise paths.
fn raw(t: &Target, method: &str, path: &str) -> Response {
    let port: u16 = t.envoy.rsplit(':').next().and_then(|p| p.parse().ok()).expect("envoy port");
    let request = format!("{method} {path} HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n");
    raw_exchange(port, request.as_bytes())
}

/// Audit records about one token, waiting for them to reach the log. (`Target::audits_for`
/// syncs with a token it expects refused, which report-only forwards.)
fn audits_eventually(t: &Target, token: &str, n: usize) -> Vec<Value> {
    let fp = crate::keys::fingerprint(token);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found: Vec<Value> =
            crate::envoy::audit_records(&t.log()).into_iter().filter(|r| r["token"] == fp.as_str()).collect();
        if found.len() >= n || std::time::Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub fn a_public_path_without_a_token_reaches_the_upstream(t: &Target, _p: &Profile) {
    let before = t.received().len();
    let r = get(t, "/healthz/live?probe=1", None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = t.client.post(&t.url("/login"), &[], "user=alice");
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = t.received().split_off(before);
    assert_eq!(seen.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(), ["/healthz/live?probe=1", "/login"]);
    let r = t.client.post(&t.url("/login/other"), &[], "");
    assert_eq!(r.status, 401, "path_exact is exact");
    let r = raw(t, "DELETE", "/login");
    assert_eq!(r.status, 401, "DELETE is not a listed method");
    assert_eq!(t.received().len(), before + 2);
}

pub fn path_tricks_do_not_pass_as_public(t: &Target, _p: &Profile) {
    let before = t.received().len();
    for trick in [
        "/healthz/../admin",
        "/healthz/%2e%2e/admin",
        "/healthz/%2E%2E/admin",
        "//admin",
        "/healthz%2Fadmin",
        "/healthz%2fadmin",
        "/healthz%5Cadmin",
        "/healthz/..;/admin",
        "/healthz/%252e%252e/admin",
        "/catalog/../admin",
    ] {
        let r = raw(t, "GET", trick);
        assert_eq!(r.status, 401, "{trick} passed as public: {}", r.body);
        assert_eq!(error_code(&r), "missing_token", "{trick}");
    }
    assert_eq!(t.received().len(), before, "a path trick reached the upstream");
    assert_eq!(raw(t, "GET", "/healthz/ok").status, 200, "the plain path is public");
}

pub fn an_optional_route_takes_no_token_and_refuses_a_bad_one(t: &Target, p: &Profile) {
    let before = t.received().len();
    let r = get(t, "/catalog/items", None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let bad = t.mint(&MintRequest::new(&p.alg(&["RS256"]), -5 - p.clock_skew));
    let r = get(t, "/catalog/items", Some(&bad), &[]);
    assert_eq!(r.status, 401);
    assert_eq!(error_code(&r), "token_expired");
    let forged = format!("{}x", t.mint(&MintRequest::new(&p.alg(&["RS256"]), 300)));
    assert_eq!(get(t, "/catalog/items", Some(&forged), &[]).status, 401, "a bad signature is refused");
    let good = t.mint(&MintRequest::new(&p.alg(&["RS256"]), 300));
    let r = get(t, "/catalog/items", Some(&good), &[]);
    assert_eq!(r.status, 200);
    let r = t.client.post(&t.url("/catalog/items"), &[], "");
    assert_eq!(r.status, 401, "optional only for GET");
    let seen = t.received().split_off(before);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("x-user-id"), None, "no token, no identity");
    assert_eq!(seen[1].header("x-user-id"), Some(t.subject.as_str()));
}

pub fn a_missing_scope_is_403_insufficient_scope(t: &Target, p: &Profile) {
    let before = t.received().len();
    let alg = p.alg(&["ES256"]);
    let reader = t.mint(&MintRequest::new(&alg, 300).claim("scope", json!("read")));
    // Three times: full path, registry hit, the worker's memory of the token.
    for _ in 0..3 {
        let r = get(t, "/staff/reports", Some(&reader), &[]);
        assert_eq!(r.status, 403, "{}", r.body);
        let challenge = r.header("www-authenticate").expect("challenge");
        assert!(challenge.starts_with("Bearer realm="), "{challenge}");
        assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
        assert!(challenge.contains("scope=\"admin\""), "{challenge}");
        assert_eq!(error_code(&r), "insufficient_scope");
    }
    // What an upstream could read as /staff/ is held to the same rule.
    for trick in ["/STAFF/reports", "/%73taff/reports", "/x/%2e%2e/staff/reports", "/staff;v=1/reports"] {
        let r = get(t, trick, Some(&reader), &[]);
        assert_eq!(r.status, 403, "{trick} escaped the scope: {}", r.body);
    }
    let scp = t.mint(&MintRequest::new(&alg, 300).claim("scp", json!(["read", "admin"])));
    let admin = t.mint(&MintRequest::new(&alg, 300).claim("scope", json!("read admin")));
    for token in [&scp, &admin, &admin] {
        assert_eq!(get(t, "/staff/reports", Some(token), &[]).status, 200);
    }
    assert_eq!(t.received().len(), before + 3);
    let audits = t.audits_for(&reader);
    assert_eq!(audits.len(), 7, "{audits:?}");
    assert!(audits.iter().all(|a| a["reason"] == "insufficient_scope" && a["sub"] == t.subject.as_str()));
}

pub fn required_claims_match_a_nested_claim(t: &Target, p: &Profile) {
    let before = t.received().len();
    let alg = p.alg(&["RS256"]);
    let acme = t.mint(&MintRequest::new(&alg, 300).claim("org", json!({"tenant": "acme"})));
    let listed = t.mint(&MintRequest::new(&alg, 300).claim("org", json!({"tenant": ["initech", "globex"]})));
    let other = t.mint(&MintRequest::new(&alg, 300).claim("org", json!({"tenant": "initech"})));
    let flat = t.mint(&MintRequest::new(&alg, 300).claim("org.tenant", json!("acme")));
    let none = t.mint(&MintRequest::new(&alg, 300));
    assert_eq!(get(t, "/orders/1", Some(&acme), &[]).status, 200);
    assert_eq!(get(t, "/orders/1", Some(&listed), &[]).status, 200, "a list claim containing one");
    for (name, token) in [("other tenant", &other), ("dotted name", &flat), ("no org", &none)] {
        let r = get(t, "/orders/1", Some(token), &[]);
        assert_eq!(r.status, 403, "{name}");
        assert_eq!(error_code(&r), "insufficient_scope", "{name}");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(!challenge.contains("scope=\""), "no scope to name: {challenge}");
    }
    assert_eq!(t.received().len(), before + 2);
}

pub fn the_upstream_sees_claim_headers_and_the_payload(t: &Target, p: &Profile) {
    let before = t.received().len();
    let token = t.mint(
        &MintRequest::new(&p.alg(&["PS256"]), 300)
            .claim("realm_access", json!({"roles": ["reader", "writer"]}))
            .claim("org", json!({"tenant": "acme"})),
    );
    // Forged copies come along; the real values replace them. Three times: full path,
    // registry hit, hot path.
    for _ in 0..3 {
        let r = get(t, "/anything", Some(&token), &FORGED);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let seen = t.received().split_off(before);
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.header("x-user-id"), Some(t.subject.as_str()));
        assert_eq!(s.header("x-user-roles"), Some("reader,writer"));
        assert_eq!(s.header("x-org"), Some("{\"tenant\":\"acme\"}"));
        assert_eq!(s.header("x-jwt-payload"), token.split('.').nth(1));
        assert_eq!(s.header("authorization"), Some(format!("Bearer {token}").as_str()));
    }
    // A claim the token lacks writes nothing, and the forged copy is gone.
    let plain = t.mint(&MintRequest::new(&p.alg(&["PS256"]), 300));
    assert_eq!(get(t, "/anything", Some(&plain), &FORGED).status, 200);
    let last = t.received().pop().expect("forwarded");
    assert_eq!(last.header("x-user-roles"), None);
    assert_eq!(last.header("x-org"), None);
}

pub fn forged_claim_headers_are_removed_on_a_public_route(t: &Target, _p: &Profile) {
    let before = t.received().len();
    assert_eq!(get(t, "/healthz", None, &FORGED).status, 200);
    assert_eq!(get(t, "/catalog/x", None, &FORGED).status, 200, "optional, no token");
    let seen = t.received().split_off(before);
    assert_eq!(seen.len(), 2);
    for s in &seen {
        for (h, _) in FORGED {
            assert_eq!(s.header(h), None, "{h} reached the upstream on {}", s.path);
        }
    }
}

pub fn the_resource_metadata_document_and_challenge(t: &Target, _p: &Profile) {
    let before = t.received().len();
    let r = get(t, "/.well-known/oauth-protected-resource", None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    assert_eq!(doc["resource"], RESOURCE);
    assert_eq!(doc["authorization_servers"], json!(["https://issuer.test"]));
    assert_eq!(doc["scopes_supported"], json!(["read", "admin"]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert_eq!(t.received().len(), before, "the document is never forwarded");
    let attr = format!("resource_metadata=\"{METADATA_URL}\"");
    let r = get(t, "/private", None, &[]);
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").expect("challenge");
    assert!(challenge.contains(&attr), "{challenge}");
    assert!(!challenge.contains("error="), "a missing token has no error attribute: {challenge}");
    let r = get(t, "/private", Some("not.a.token"), &[]);
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").expect("challenge");
    assert!(challenge.contains(&attr) && challenge.contains("error=\"invalid_token\""), "{challenge}");
}

/// Under `report_only_config()`.
pub fn report_only_forwards_a_bad_token_and_audits_enforced_false(t: &Target, p: &Profile) {
    let before = t.received().len();
    let expired = t.mint(&MintRequest::new(&p.alg(&["RS256"]), -5 - p.clock_skew));
    let reader = t.mint(&MintRequest::new(&p.alg(&["RS256"]), 300).claim("scope", json!("read")));
    let r = get(t, "/private", Some(&expired), &FORGED);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get(t, "/staff/x", Some(&reader), &[]).status, 200);
    let missing_path = t.unique("/private-missing");
    assert_eq!(get(t, &missing_path, None, &[]).status, 200);
    let seen = t.received().split_off(before);
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].header("authorization"), Some(format!("Bearer {expired}").as_str()), "as it came");
    assert_eq!(seen[0].header("x-user-id"), None, "but never with a forged identity");
    let a = audits_eventually(t, &expired, 1);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0]["event"].as_str(), a[0]["reason"].as_str()),
        (Some("token_rejected"), Some("token_expired"))
    );
    assert_eq!(a[0]["enforced"], json!(false));
    let a = audits_eventually(t, &reader, 1);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!((a[0]["reason"].as_str(), &a[0]["enforced"]), (Some("insufficient_scope"), &json!(false)));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let missing = loop {
        let found: Vec<Value> = crate::envoy::audit_records(&t.log())
            .into_iter()
            .filter(|r| r["path"] == missing_path.as_str())
            .collect();
        if !found.is_empty() || std::time::Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(
        (missing[0]["reason"].as_str(), &missing[0]["enforced"]),
        (Some("missing_token"), &json!(false))
    );
}
