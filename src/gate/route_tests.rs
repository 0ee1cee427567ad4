//! The route step in the pipeline: public, optional, requirements (full and hot path),
//! claim headers, report-only, RFC 9728.

use serde_json::{json, Value};

use super::*;
use crate::header::{Edits, HeaderEdit};
use crate::testkit::*;

struct At(&'static str, &'static str);
impl RequestMeta for At {
    fn request_id(&self) -> Option<String> {
        None
    }
    fn path(&self) -> Option<String> {
        Some(self.1.into())
    }
    fn method(&self) -> Option<String> {
        Some(self.0.into())
    }
    fn header(&self, _name: &str) -> Option<String> {
        None
    }
}

fn run(cfg: &Config, host: &FakeHost, w: &Worker, at: At, token: Option<&str>) -> Verdict {
    let header = token.map(|t| format!("Bearer {t}"));
    check_request(cfg, host, w, &Request { credential_header: header.as_deref(), meta: &at, verified: None })
}

fn policy() -> Value {
    json!({
        "routes": [
            {"path_prefix": "/healthz", "policy": "public"},
            {"path_prefix": "/catalog/", "methods": ["GET"], "policy": "optional"},
            {"path_prefix": "/admin/", "required_scopes": ["admin"]},
            {"path_prefix": "/orders/", "required_claims": {"org.tenant": ["acme"]}}
        ],
        "claims_to_headers": [{"claim": "sub", "header": "x-user-id"},
                              {"claim": "roles", "header": "x-user-roles"}],
        "forward_payload_header": "x-jwt-payload",
        "resource_metadata": {"resource": "https://api.example.com",
                              "authorization_servers": ["https://idp.example"]}
    })
}

const CLEARED: [&str; 3] = ["x-user-id", "x-user-roles", "x-jwt-payload"];

fn cleared() -> Edits {
    Edits::new(CLEARED.iter().map(|h| HeaderEdit::Set((*h).into(), None)).collect())
}

#[test]
fn a_public_route_reads_no_token_and_removes_forged_headers() {
    let cfg = config(policy());
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    for token in [None, Some("garbage")] {
        let v = run(&cfg, &host, &w, At("GET", "/healthz/live"), token);
        assert_eq!(v, Verdict::Forward { expires_in: None, swap: None, headers: cleared() });
    }
    assert!(host.verdicts().is_empty() && host.audits().is_empty(), "the token was not looked at");
    for trick in ["/healthz/../admin/x", "/healthz/%2e%2e/admin/x", "//admin/x", "/healthz%2Fadmin"] {
        let Verdict::Deny(r) = run(&cfg, &host, &w, At("GET", trick), None) else { panic!("{trick} passed") };
        assert_eq!(r.status, 401, "{trick}");
    }
}

#[test]
fn an_optional_route_takes_no_token_but_refuses_a_bad_one() {
    let cfg = config(policy());
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    let v = run(&cfg, &host, &w, At("GET", "/catalog/1"), None);
    assert_eq!(v, Verdict::Forward { expires_in: None, swap: None, headers: cleared() });
    let bad = mint("RS256", json!({"exp": NOW - 5}));
    let Verdict::Deny(r) = run(&cfg, &host, &w, At("GET", "/catalog/1"), Some(&bad)) else {
        panic!("forwarded")
    };
    assert_eq!(r.status, 401);
    assert!(r.headers[0].1.contains(
        "resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource\", error=\"invalid_token\""
    ));
    let Verdict::Deny(r) = run(&cfg, &host, &w, At("POST", "/catalog/1"), None) else {
        panic!("POST is not optional")
    };
    assert_eq!(r.headers[0].1, "Bearer realm=\"tokenguard\", resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource\"");
}

#[test]
fn the_metadata_document_is_answered_locally() {
    let cfg = config(policy());
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    let Verdict::Deny(r) = run(&cfg, &host, &w, At("GET", "/.well-known/oauth-protected-resource?x"), None)
    else {
        panic!("forwarded")
    };
    assert_eq!(r.status, 200);
    let doc: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["resource"], "https://api.example.com");
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    let v = run(&cfg, &host, &w, At("POST", "/.well-known/oauth-protected-resource"), None);
    assert!(matches!(v, Verdict::Deny(ref r) if r.status == 401), "only GET is answered");
}

#[test]
fn requirements_hold_on_the_full_and_the_hot_path() {
    let cfg = config(policy());
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    let reader = mint("ES256", json!({"scope": "read", "org": {"tenant": "acme"}, "roles": ["a", "b"]}));
    let admin = mint("ES256", json!({"scope": "read admin", "sub": "root", "org": {"tenant": "initech"}}));
    // Three sights: the third is answered by the hot path.
    for i in 0..3 {
        let Verdict::Deny(r) = run(&cfg, &host, &w, At("GET", "/admin/users"), Some(&reader)) else {
            panic!("sight {i}: forwarded without the scope")
        };
        assert_eq!(r.status, 403);
        assert!(
            r.headers[0].1.ends_with("error=\"insufficient_scope\", scope=\"admin\""),
            "{}",
            r.headers[0].1
        );
        assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap()["error"], "insufficient_scope");
        assert!(matches!(
            run(&cfg, &host, &w, At("GET", "/orders/1"), Some(&reader)),
            Verdict::Forward { .. }
        ));
        let v = run(&cfg, &host, &w, At("GET", "/orders/1"), Some(&admin));
        assert!(matches!(v, Verdict::Deny(ref r) if r.status == 403), "sight {i}: another tenant");
        let Verdict::Forward { headers, .. } = run(&cfg, &host, &w, At("GET", "/admin/x"), Some(&admin))
        else {
            panic!("sight {i}: admin refused")
        };
        let payload = admin.split('.').nth(1).unwrap().to_string();
        let want = vec![
            HeaderEdit::Set("x-user-id".into(), Some("root".into())),
            HeaderEdit::Set("x-user-roles".into(), None),
            HeaderEdit::Set("x-jwt-payload".into(), Some(payload)),
        ];
        assert_eq!(headers, Edits::new(want), "sight {i}");
    }
    let rejected =
        host.verdicts().iter().filter(|c| **c == Counter::Rejected(RejectCode::InsufficientScope)).count();
    assert_eq!(rejected, 6);
    let audit = &host.audits()[0].1;
    assert_eq!(
        (audit["reason"].as_str(), audit["sub"].as_str()),
        (Some("insufficient_scope"), Some("alice"))
    );
    assert!(audit.get("enforced").is_none(), "only report-only says so");
}

#[test]
fn claim_headers_render_lists_and_skip_absent_claims() {
    let cfg = config(policy());
    let host = FakeHost::at(NOW);
    let t = mint("RS256", json!({"roles": ["a", "b"], "sub": null}));
    let cfg_no_sub =
        config(json!({"required_claims": ["exp"], "claims_to_headers": policy()["claims_to_headers"]}));
    let Verdict::Forward { headers, .. } =
        run(&cfg_no_sub, &host, &Worker::default(), At("GET", "/"), Some(&t))
    else {
        panic!("refused")
    };
    assert_eq!(
        headers,
        Edits::new(vec![
            HeaderEdit::Set("x-user-id".into(), None),
            HeaderEdit::Set("x-user-roles".into(), Some("a,b".into()))
        ])
    );
    drop(cfg);
}

#[test]
fn report_only_forwards_what_it_would_refuse_and_says_so() {
    let mut extra = policy();
    extra["report_only"] = json!(true);
    let cfg = config(extra);
    let host = FakeHost::at(NOW);
    let w = Worker::default();
    let expired = mint("RS256", json!({"exp": NOW - 5}));
    let reader = mint("RS256", json!({"scope": "read"}));
    for (path, token) in [("/x", Some(expired.as_str())), ("/x", None), ("/admin/x", Some(reader.as_str()))] {
        let v = run(&cfg, &host, &w, At("GET", path), token);
        assert_eq!(
            v,
            Verdict::Forward { expires_in: None, swap: None, headers: cleared() },
            "{path} {token:?}"
        );
    }
    let reasons: Vec<(String, Value)> = host
        .audits()
        .iter()
        .map(|(_, a)| (a["reason"].as_str().unwrap().to_string(), a["enforced"].clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("token_expired".into(), json!(false)),
            ("missing_token".into(), json!(false)),
            ("insufficient_scope".into(), json!(false)),
        ]
    );
    assert_eq!(
        host.verdicts(),
        vec![
            Counter::Rejected(RejectCode::TokenExpired),
            Counter::MissingToken,
            Counter::Rejected(RejectCode::InsufficientScope)
        ]
    );
}

#[test]
fn without_route_keys_nothing_is_read_or_edited() {
    struct NoPath;
    impl RequestMeta for NoPath {
        fn request_id(&self) -> Option<String> {
            None
        }
        fn path(&self) -> Option<String> {
            panic!("the path was read")
        }
        fn method(&self) -> Option<String> {
            panic!("the method was read")
        }
        fn header(&self, _name: &str) -> Option<String> {
            None
        }
    }
    let cfg = config(json!({}));
    let t = mint("RS256", json!({}));
    let header = format!("Bearer {t}");
    let req = Request { credential_header: Some(&header), meta: &NoPath, verified: None };
    let v = check_request(&cfg, &FakeHost::at(NOW), &Worker::default(), &req);
    assert_eq!(v, Verdict::Forward { expires_in: Some(300), swap: None, headers: Edits::default() });
}

/// The claim headers always describe the token the upstream receives: the new one after a
/// refresh or during the handoff, the old one when the refresh failed.
#[test]
fn claim_headers_follow_the_token_that_goes_upstream() {
    let cfg = config(json!({
        "refresh": {"cluster": "issuer", "authority": "issuer.test", "path": "/oauth/token",
                    "window_seconds": 60, "window_ratio": 1.0, "grace_seconds": 10},
        "claims_to_headers": [{"claim": "jti", "header": "x-jti"}]
    }));
    let jti = |v: &Verdict| match v {
        Verdict::Forward { headers, .. } => headers
            .iter()
            .find_map(|HeaderEdit::Set(h, v)| (h == "x-jti").then(|| v.clone().unwrap_or_default())),
        other => panic!("not forwarded: {other:?}"),
    };
    let run = |host: &FakeHost, w: &Worker, token: &str| {
        let header = format!("Bearer {token}");
        check_request(
            &cfg,
            host,
            w,
            &Request {
                credential_header: Some(&header),
                meta: &FakeRequest::refreshing(Some("/")),
                verified: None,
            },
        )
    };
    let old = mint("ES256", json!({"iat": NOW - 10, "exp": NOW + 30, "jti": "old"}));
    let (host, w) = (FakeHost::at(NOW), Worker::default());
    let Verdict::Refresh(plan) = run(&host, &w, &old) else { panic!("no refresh started") };
    let failed = complete_refresh(&cfg, &host, &w, &plan, Err(crate::refresh::Failure::Unreachable));
    assert_eq!(jti(&failed).as_deref(), Some("old"));
    let (host, w) = (FakeHost::at(NOW), Worker::default());
    let Verdict::Refresh(plan) = run(&host, &w, &old) else { panic!("no refresh started") };
    let new = mint("ES256", json!({"iat": NOW, "exp": NOW + 600, "jti": "new"}));
    let body = json!({"access_token": new, "token_type": "Bearer", "expires_in": 600});
    let swapped = complete_refresh(&cfg, &host, &w, &plan, Ok((Some(200), body.to_string().into_bytes())));
    assert_eq!(jti(&swapped).as_deref(), Some("new"));
    assert_eq!(jti(&run(&host, &w, &old)).as_deref(), Some("new"), "the handoff forwards the new token");
}
