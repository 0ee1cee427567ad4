//! The attacks of the security review, each tried against the gate natively.

use serde_json::json;

use super::credential::*;
use super::*;
use crate::refresh::PendingRefresh;
use crate::testkit::*;
use crate::verdict::Swap;

struct Presents(Option<&'static str>, Option<&'static str>);
impl RequestMeta for Presents {
    fn request_id(&self) -> Option<String> {
        None
    }
    fn path(&self) -> Option<String> {
        Some("/api/orders?access_token=SECRET&email=a@b".into())
    }
    fn method(&self) -> Option<String> {
        Some("GET".into())
    }
    fn header(&self, name: &str) -> Option<String> {
        match name {
            "x-refresh-token" => self.0.map(str::to_owned),
            "authorization" => self.1.map(str::to_owned),
            _ => None,
        }
    }
}

fn ask(cfg: &Config, host: &FakeHost, w: &Worker, header: &str, meta: &Presents) -> Verdict {
    check_request(cfg, host, w, &Request { credential_header: Some(header), meta, verified: None })
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn refresh_cfg(extra: serde_json::Value) -> Config {
    let mut v = json!({"refresh": {"cluster": "issuer", "authority": "issuer.test", "path": "/oauth/token",
        "window_seconds": 60, "window_ratio": 1.0, "grace_seconds": 10}});
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    config(v)
}

/// Refreshes `old` (spending refresh token rt-1) into a token minted with `new_claims`.
fn refreshed(cfg: &Config, host: &FakeHost, w: &Worker, old: &str, new_claims: serde_json::Value) -> String {
    let Verdict::Refresh(plan) = ask(cfg, host, w, &bearer(old), &Presents(Some("rt-1"), None)) else {
        panic!("no refresh started")
    };
    let new = mint("ES256", new_claims);
    let body = json!({"access_token": new, "token_type": "Bearer", "refresh_token": "rt-2"});
    let v = complete_refresh(cfg, host, w, &plan, Ok((Some(200), body.to_string().into_bytes())));
    assert!(matches!(v, Verdict::Forward { swap: Some(_), .. }), "{v:?}");
    new
}

fn handed(v: Verdict) -> Swap {
    match v {
        Verdict::Forward { swap: Some(s), .. } => s,
        other => panic!("no handoff: {other:?}"),
    }
}

#[test]
fn the_old_access_token_alone_never_buys_the_rotated_refresh_token() {
    let cfg = refresh_cfg(json!({}));
    let (host, w) = (FakeHost::at(NOW), Worker::default());
    let old = mint("ES256", json!({"iat": NOW - 10, "exp": NOW + 30}));
    let new = refreshed(&cfg, &host, &w, &old, json!({"iat": NOW, "exp": NOW + 600}));
    let alone = handed(ask(&cfg, &host, &w, &bearer(&old), &Presents(None, None)));
    assert_eq!((alone.access_token.as_str(), alone.refresh_token), (new.as_str(), None));
    let other = handed(ask(&cfg, &host, &w, &bearer(&old), &Presents(Some("rt-9"), None)));
    assert_eq!(other.refresh_token, None);
    let spender = handed(ask(&cfg, &host, &w, &bearer(&old), &Presents(Some("rt-1"), None)));
    assert_eq!(spender.refresh_token.as_deref(), Some("rt-2"));
}

#[test]
fn an_expired_replacement_is_not_handed_off() {
    let cfg = refresh_cfg(json!({"clock_skew_seconds": 0}));
    let (host, w) = (FakeHost::at(NOW), Worker::default());
    let old = mint("ES256", json!({"iat": NOW - 10, "exp": NOW + 30}));
    refreshed(&cfg, &host, &w, &old, json!({"iat": NOW, "exp": NOW + 5}));
    host.now.set(NOW + 6);
    let Verdict::Deny(r) = ask(&cfg, &host, &w, &bearer(&old), &Presents(None, None)) else {
        panic!("handed off")
    };
    assert!(r.body.contains("token_expired"), "{}", r.body);
}

#[test]
fn grace_is_bounded() {
    let mut v = config_json(json!({"refresh": {"cluster": "issuer", "authority": "a", "path": "/t",
        "grace_seconds": 301}}));
    let e = Config::from_json(v.clone()).err().expect("refused");
    assert_eq!(e.field, "refresh.grace_seconds");
    v["refresh"]["grace_seconds"] = json!(300);
    assert!(Config::from_json(v).is_ok());
}

#[test]
fn the_signature_twin_of_a_revoked_or_retired_token_is_the_same_token() {
    let cfg = refresh_cfg(json!({}));
    let (host, w) = (FakeHost::at(NOW), Worker::default());
    let t = mint("ES256", json!({"iat": NOW - 10, "exp": NOW + 300, "jti": "j-1"}));
    let twin = es256_twin(&t);
    assert_ne!(t, twin);
    assert_eq!(Fingerprint::of(&t), Fingerprint::of(&twin));
    // The twin verifies on its own...
    assert!(matches!(ask(&cfg, &host, &w, &bearer(&twin), &Presents(None, None)), Verdict::Forward { .. }));
    // ...but once the token is revoked (by its identity), both encodings are refused.
    let registry = Registry::new(&host, Layout::of(&cfg));
    let rev = Revocation {
        target: Target::hashed(crate::registry::revocation::Kind::Token, Fingerprint::of(&t).0),
        revoked_at: NOW,
        until: NOW + 900,
    };
    registry.revoke(rev, NOW).unwrap();
    for tok in [&t, &twin] {
        let Verdict::Deny(r) = ask(&cfg, &host, &w, &bearer(tok), &Presents(None, None)) else {
            panic!("accepted")
        };
        assert!(r.body.contains("token_revoked"));
    }
    // Retired by a refresh: after the grace the twin of the old token is refused too.
    let old = mint("ES256", json!({"iat": NOW - 10, "exp": NOW + 30, "jti": "j-2"}));
    refreshed(&cfg, &host, &w, &old, json!({"iat": NOW, "exp": NOW + 600}));
    host.now.set(NOW + 11);
    let Verdict::Deny(r) = ask(&cfg, &host, &w, &bearer(&es256_twin(&old)), &Presents(None, None)) else {
        panic!("twin of a retired token accepted")
    };
    assert!(r.body.contains("token_revoked"));
}

#[test]
fn a_cached_verification_never_excuses_another_signature() {
    let cfg = config(json!({}));
    let (host, w) = (FakeHost::at(NOW), Worker::default());
    let t = mint("ES256", json!({"iat": NOW - 10, "exp": NOW + 300}));
    assert!(matches!(ask(&cfg, &host, &w, &bearer(&t), &Presents(None, None)), Verdict::Forward { .. }));
    let (input, mut sig) = split_signature(&t);
    if let Some(b) = sig.get_mut(40) {
        *b ^= 1;
    }
    let forged = join_signature(&input, &sig);
    let Verdict::Deny(r) = ask(&cfg, &host, &w, &bearer(&forged), &Presents(None, None)) else {
        panic!("a forged signature rode on the cached one")
    };
    assert!(r.body.contains("invalid_signature"), "{}", r.body);
}

#[test]
fn a_refreshed_token_inherits_the_session_start() {
    let cfg = refresh_cfg(json!({"session": {"max_lifetime_seconds": 100}}));
    let (host, w) = (FakeHost::at(NOW), Worker::default());
    // Started at NOW - 90; the server's refreshed token says iat = NOW and no auth_time.
    let old = mint("ES256", json!({"iat": NOW - 90, "exp": NOW + 30}));
    let new = refreshed(&cfg, &host, &w, &old, json!({"iat": NOW, "exp": NOW + 600}));
    host.now.set(NOW + 9);
    assert!(matches!(ask(&cfg, &host, &w, &bearer(&new), &Presents(None, None)), Verdict::Forward { .. }));
    host.now.set(NOW + 10);
    let Verdict::Deny(r) = ask(&cfg, &host, &w, &bearer(&new), &Presents(None, None)) else {
        panic!("extended")
    };
    assert!(r.body.contains("session_expired"), "{}", r.body);
}

#[test]
fn a_sid_is_held_to_its_earliest_start() {
    let cfg = config(json!({"session": {"max_lifetime_seconds": 100}}));
    let (host, w) = (FakeHost::at(NOW), Worker::default());
    let first = mint("ES256", json!({"iat": NOW - 90, "exp": NOW + 300, "sid": "s-1"}));
    assert!(matches!(ask(&cfg, &host, &w, &bearer(&first), &Presents(None, None)), Verdict::Forward { .. }));
    // The client refreshed by itself: same sid, new iat, no auth_time.
    let sibling = mint("ES256", json!({"iat": NOW, "exp": NOW + 300, "sid": "s-1", "jti": "x"}));
    host.now.set(NOW + 10);
    let Verdict::Deny(r) = ask(&cfg, &host, &w, &bearer(&sibling), &Presents(None, None)) else {
        panic!("extended")
    };
    assert!(r.body.contains("session_expired"));
    let stranger = mint("ES256", json!({"iat": NOW, "exp": NOW + 300, "sid": "s-2"}));
    assert!(matches!(
        ask(&cfg, &host, &w, &bearer(&stranger), &Presents(None, None)),
        Verdict::Forward { .. }
    ));
}

#[test]
fn token_types_other_than_access_tokens_are_refused() {
    let cfg = config(json!({}));
    let (host, w) = (FakeHost::at(NOW), Worker::default());
    let c = claims(json!({})).to_string();
    for (typ, ok) in [
        ("logout+jwt", false),
        ("secevent+jwt", false),
        ("dpop+jwt", false),
        ("at+JWT", true),
        ("application/at+jwt", true),
        ("JWT", true),
    ] {
        let t = raw(&format!(r#"{{"alg":"HS256","kid":"hs-1","typ":"{typ}"}}"#), &c);
        match ask(&cfg, &host, &w, &bearer(&t), &Presents(None, None)) {
            Verdict::Forward { .. } => assert!(ok, "{typ} accepted"),
            Verdict::Deny(r) => {
                assert!(!ok, "{typ} refused: {}", r.body);
                assert!(r.body.contains("malformed_token") && r.body.contains(typ), "{}", r.body);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn audit_paths_carry_no_query() {
    let cfg = config(json!({}));
    let (host, w) = (FakeHost::at(NOW), Worker::default());
    ask(&cfg, &host, &w, "Bearer nope", &Presents(None, None));
    let audits = host.audits();
    assert_eq!(audits[0].1["path"], "/api/orders");
    assert!(host.lines.borrow().iter().all(|(_, l)| !l.contains("SECRET")));
}

#[test]
fn ambiguous_credentials_are_refused() {
    let cfg = config(json!({"token_source": {"cookie": "tg"}}));
    let (host, w) = (FakeHost::at(NOW), Worker::default());
    let t = mint("ES256", json!({}));
    let two = format!("tg={t}; other=1; tg={t}");
    let Verdict::Deny(r) = ask(&cfg, &host, &w, &two, &Presents(None, None)) else { panic!("picked one") };
    assert!(r.body.contains("malformed_token"));
    let both = format!("tg={t}");
    let bearer_too = Presents(None, Some("Bearer abc"));
    let Verdict::Deny(r) = ask(&cfg, &host, &w, &both, &bearer_too) else { panic!("picked one") };
    assert!(r.body.contains("malformed_token"));
    assert!(matches!(ask(&cfg, &host, &w, &both, &Presents(None, None)), Verdict::Forward { .. }));
    assert_eq!(without_cookie("a=1; tg=x; b=2", "tg").as_deref(), Some("a=1; b=2"));
    assert_eq!(without_cookie("tg=x", "tg").as_deref(), Some(""));
    assert_eq!(without_cookie("a=1", "tg"), None);
}

fn refresh_answer(cfg: &Config, host: &FakeHost, w: &Worker, plan: &PendingRefresh, new: &str) -> Verdict {
    let body = json!({"access_token": new, "token_type": "Bearer", "refresh_token": "rt-2"});
    complete_refresh(cfg, host, w, plan, Ok((Some(200), body.to_string().into_bytes())))
}

fn start(cfg: &Config, host: &FakeHost, w: &Worker, old: &str) -> PendingRefresh {
    match ask(cfg, host, w, &bearer(old), &Presents(Some("rt-1"), None)) {
        Verdict::Refresh(plan) => *plan,
        other => panic!("no refresh started: {other:?}"),
    }
}

#[test]
fn a_refresh_answer_for_another_subject_or_the_same_token_is_not_a_successor() {
    let cfg = refresh_cfg(json!({}));
    let (host, w) = (FakeHost::at(NOW), Worker::default());
    // A victim's due token, spent with the caller's own refresh token: the answer names the
    // caller. It must not replace the victim's token.
    let victim = mint("ES256", json!({"sub": "victim", "iat": NOW - 10, "exp": NOW + 30}));
    let plan = start(&cfg, &host, &w, &victim);
    let mallory = mint("ES256", json!({"sub": "mallory", "iat": NOW, "exp": NOW + 600}));
    let v = refresh_answer(&cfg, &host, &w, &plan, &mallory);
    assert!(matches!(v, Verdict::Forward { swap: None, .. }), "{v:?}");
    let failed = host.audits().into_iter().find(|(_, a)| a["event"] == "refresh_failed").expect("audited");
    assert!(failed.1["reason"].as_str().unwrap().contains("another subject"));
    host.now.set(NOW + 20);
    let v = ask(&cfg, &host, &w, &bearer(&victim), &Presents(None, None));
    assert!(matches!(v, Verdict::Forward { swap: None, .. }), "the victim was superseded: {v:?}");
    // The same token handed back is no refresh: its holder is not locked out after the grace.
    let same = mint("ES256", json!({"sub": "s", "iat": NOW + 20 - 10, "exp": NOW + 20 + 30}));
    let plan = start(&cfg, &host, &w, &same);
    let v = refresh_answer(&cfg, &host, &w, &plan, &same);
    assert!(matches!(v, Verdict::Forward { swap: None, .. }), "{v:?}");
    host.now.set(NOW + 35);
    assert!(matches!(ask(&cfg, &host, &w, &bearer(&same), &Presents(None, None)), Verdict::Forward { .. }));
}

#[test]
fn a_failed_refresh_judges_the_old_token_again() {
    let cfg = refresh_cfg(json!({"clock_skew_seconds": 0}));
    let (host, w) = (FakeHost::at(NOW), Worker::default());
    let old = mint("ES256", json!({"jti": "j-late", "iat": NOW - 10, "exp": NOW + 30}));
    let plan = start(&cfg, &host, &w, &old);
    // Revoked while the call was under way.
    let registry = Registry::new(&host, Layout::of(&cfg));
    let rev = Revocation {
        target: Target::new(crate::registry::revocation::Kind::Jti, "j-late"),
        revoked_at: NOW,
        until: NOW + 900,
    };
    registry.revoke(rev, NOW).unwrap();
    let v = complete_refresh(&cfg, &host, &w, &plan, Err(crate::refresh::Failure::Timeout));
    let Verdict::Deny(r) = v else { panic!("a revoked token was forwarded: {v:?}") };
    assert!(r.body.contains("token_revoked"));
    // Expired while the call was under way.
    let old = mint("ES256", json!({"iat": NOW - 10, "exp": NOW + 5}));
    let plan = start(&cfg, &host, &w, &old);
    host.now.set(NOW + 5);
    let v = complete_refresh(&cfg, &host, &w, &plan, Err(crate::refresh::Failure::Timeout));
    let Verdict::Deny(r) = v else { panic!("an expired token was forwarded: {v:?}") };
    assert!(r.body.contains("token_expired"));
}

#[test]
fn a_handoff_from_another_configuration_is_verified_again() {
    let cfg = refresh_cfg(json!({}));
    let (host, w) = (FakeHost::at(NOW), Worker::default());
    let old = mint("HS256", json!({"iat": NOW - 10, "exp": NOW + 30}));
    let new = refreshed(&cfg, &host, &w, &old, json!({"iat": NOW, "exp": NOW + 600}));
    assert_eq!(handed(ask(&cfg, &host, &w, &bearer(&old), &Presents(None, None))).access_token, new);
    // Reconfigured: the key that signed the new (ES256) token is gone.
    let mut next = refresh_cfg(json!({}));
    next.generation = cfg.generation.wrapping_add(1);
    for p in next.providers.iter_mut() {
        p.keys.entries.retain(|e| e.alg != crate::jwks::Alg::ES256);
    }
    let v = ask(&next, &host, &Worker::default(), &bearer(&old), &Presents(None, None));
    let Verdict::Deny(r) = v else { panic!("handed on unverified: {v:?}") };
    assert!(r.body.contains("invalid_signature"), "{}", r.body);
}

#[test]
fn refresh_tokens_never_travel_upstream() {
    let header = refresh_cfg(json!({}));
    assert_eq!(
        strip_refresh_token(&header, || panic!("the cookie is not read for a header source")),
        Some(HeaderEdit::Set("x-refresh-token".into(), None))
    );
    let mut v = config_json(json!({"refresh": {"cluster": "issuer", "authority": "a", "path": "/t",
        "refresh_token_cookie": "rt"}}));
    let cookie = Config::from_json(v.take()).unwrap();
    assert_eq!(
        strip_refresh_token(&cookie, || Some("a=1; rt=secret; b=2".into())),
        Some(HeaderEdit::Set("cookie".into(), Some("a=1; b=2".into())))
    );
    assert_eq!(
        strip_refresh_token(&cookie, || Some("rt=secret".into())),
        Some(HeaderEdit::Set("cookie".into(), None))
    );
    assert_eq!(strip_refresh_token(&cookie, || Some("a=1".into())), None);
    assert_eq!(strip_refresh_token(&config(json!({})), || None), None);
}
