//! Refused requests: every error code the configuration can produce reaches the client as an
//! RFC 6750 challenge, and none reaches the upstream.

use serde_json::{json, Value};

use super::{error_code, revoke};
use crate::issuer::MintRequest;
use crate::keys::{now, raw_token};
use crate::profile::Profile;
use crate::target::Target;

/// A token whose session started just over the limit ago: through `iat`, the start claim's
/// fallback, when a token that old is not already too long-lived; else through the start
/// claim itself.
fn session_expired_token(t: &Target, p: &Profile, alg: &str) -> String {
    let session = p.session.as_ref().expect("this scenario needs a session limit");
    let start = now() as i64 - session.max_lifetime - 1;
    let claim = if session.max_lifetime + 61 <= p.max_token_lifetime { "iat" } else { &session.start_claim };
    t.mint(&MintRequest::new(alg, 60).claim(claim, json!(start)))
}

pub fn every_rejection_code_reaches_the_client_and_nothing_reaches_the_upstream(t: &Target, p: &Profile) {
    let before = t.received().len();
    let n = now() as i64;
    let rsa = p.alg(&["RS256"]);
    let alg = p.alg(&["HS256"]);
    let valid = t.mint(&MintRequest::new(&rsa, 300));
    let tampered = {
        // Same header and signature, claims rewritten to another subject.
        let parts: Vec<&str> = valid.split('.').collect();
        let other = t.mint(&MintRequest::new(&rsa, 300).claim("sub", json!("mallory")));
        format!("{}.{}.{}", parts[0], other.split('.').nth(1).unwrap(), parts[2])
    };
    let required = if p.required_claims.iter().any(|c| c == "sub") { "sub" } else { "exp" };
    let mut cases: Vec<(&str, String)> = vec![
        ("malformed_token", "not.a.jwt".into()),
        ("invalid_signature", tampered),
        (
            "unsupported_algorithm",
            raw_token(
                r#"{"alg":"none"}"#,
                &json!({"iss": "https://issuer.test", "sub": "a", "iat": n, "exp": n + 60, "aud": "api"})
                    .to_string(),
                b"no key is needed for alg none",
            ),
        ),
        ("invalid_issuer", t.mint(&MintRequest::new(&alg, 60).claim("iss", json!("https://evil.test")))),
        ("invalid_audience", t.mint(&MintRequest::new(&alg, 60).claim("aud", json!("billing")))),
        ("missing_claim", t.mint(&MintRequest::new(&alg, 60).claim(required, Value::Null))),
        ("token_expired", t.mint(&MintRequest::new(&alg, -1 - p.clock_skew))),
        (
            "token_not_yet_valid",
            t.mint(&MintRequest::new(&alg, 60).claim("nbf", json!(n + p.clock_skew + 120))),
        ),
    ];
    if p.session.is_some() {
        cases.push(("session_expired", session_expired_token(t, p, &alg)));
    }
    if !p.allows("HS256") {
        // A well-signed token with an algorithm the provider does not list.
        cases.push(("unsupported_algorithm", t.mint(&MintRequest::new("HS256", 60))));
    }
    if p.admin.is_some() {
        let jti = t.unique("jti-rejected");
        let revoked = t.mint(&MintRequest::new(&alg, 60).claim("jti", json!(jti)));
        revoke(t, p, "jti", &jti);
        cases.push(("token_revoked", revoked));
    }
    for (code, token) in &cases {
        let r = t.get("/denied", Some(token));
        assert_eq!(r.status, 401, "{code}: {}", r.body);
        assert_eq!(error_code(&r), *code);
        let challenge = r.header("www-authenticate").unwrap();
        let want = format!("{}, error=\"invalid_token\", error_description=\"", p.challenge());
        assert!(challenge.starts_with(&want), "{challenge}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header(&p.expires_in_header).is_none());
    }
    assert_eq!(t.received().len(), before, "a refused request reached the upstream");
}

pub fn a_request_without_a_token_gets_a_bare_challenge(t: &Target, p: &Profile) {
    let before = t.received().len();
    for auth in [None, Some("Basic dXNlcjpwYXNz")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
        let r = t.client.get(&t.url("/"), &headers);
        assert_eq!(r.status, 401);
        assert_eq!(r.header("www-authenticate"), Some(p.challenge().as_str()));
        assert_eq!(error_code(&r), "missing_token");
    }
    assert_eq!(t.received().len(), before);
}

pub fn session_lifetime_ends_a_token_that_has_not_expired(t: &Target, p: &Profile) {
    let session = p.session.as_ref().expect("this scenario needs a session limit");
    let alg = p.alg(&["EdDSA"]);
    let start = |ago: i64| json!(now() as i64 - ago);
    let old =
        t.mint(&MintRequest::new(&alg, 300).claim(&session.start_claim, start(session.max_lifetime + 1)));
    let r = t.get("/", Some(&old));
    assert_eq!(r.status, 401);
    assert_eq!(error_code(&r), "session_expired");
    let recent = t.mint(&MintRequest::new(&alg, 300).claim(&session.start_claim, start(60)));
    assert_eq!(t.get("/", Some(&recent)).status, 200);
}
