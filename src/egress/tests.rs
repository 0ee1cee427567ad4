use super::*;
use crate::config::EgressGrant;
use crate::registry::fake::FakeShared;

fn cfg() -> EgressConfig {
    EgressConfig {
        cluster: "issuer".into(),
        authority: "issuer.test".into(),
        path: "/oauth/token".into(),
        timeout_ms: 1000,
        grant: EgressGrant::ClientCredentials { scope: Some("read write".into()), audience: None },
        client_id: Some("svc".into()),
        client_secret: Some("svc-secret".into()),
        header: "authorization".into(),
        prefix: "Bearer ".into(),
        window_seconds: 120,
        window_ratio: 0.2,
        max_request_seconds: 5,
        wait_ms: 2000,
        escalate_after_failures: 3,
        retry_seconds: 5,
    }
}

#[test]
fn usable_and_due() {
    let c = cfg();
    let st =
        EgressState { access_token: "t".into(), expires_at: 1100, fetched_at: 1000, ..Default::default() };
    // 100 s token: window min(120, 20) = 20 s, plus 2 s lead for the renewal itself.
    assert!(st.usable(&c, 1000) && !st.due(&c, 1000));
    assert!(!st.due(&c, 1077));
    assert!(st.due(&c, 1078));
    assert!(st.usable(&c, 1094) && !st.usable(&c, 1095), "must outlive max_request_seconds");
    assert!(EgressState::default().due(&c, 0));
}

#[test]
fn one_lease_at_a_time_and_backoff() {
    let c = cfg();
    let store = FakeShared::default();
    assert!(try_lease(&store, &c, 10).unwrap().is_some());
    assert!(try_lease(&store, &c, 10).unwrap().is_none(), "leased");
    struct H(FakeShared, std::cell::RefCell<Vec<String>>);
    impl crate::host::Clock for H {
        fn now(&self) -> u64 {
            11
        }
    }
    impl crate::host::Log for H {
        fn log(&self, _l: crate::host::Level, m: &str) {
            self.1.borrow_mut().push(m.to_string());
        }
    }
    impl crate::host::Metrics for H {
        fn count(&self, _c: Counter) {}
        fn value(&self, _c: Counter) -> Option<u64> {
            None
        }
    }
    impl SharedData for H {
        fn get(&self, k: &str) -> (Option<Vec<u8>>, Option<u32>) {
            self.0.get(k)
        }
        fn set(&self, k: &str, v: &[u8], cas: Option<u32>) -> Result<(), crate::host::WriteError> {
            self.0.set(k, v, cas)
        }
    }
    let host = H(store, Default::default());
    for _ in 0..3 {
        complete(&c, &host, Err(Failure::Status(500)));
    }
    let st = state(&host);
    assert_eq!((st.failures, st.next_attempt_at), (3, 11 + 20));
    assert_eq!(host.1.borrow().iter().filter(|l| l.contains("egress_escalation")).count(), 1);
    let body = serde_json::json!({"access_token": "tok", "token_type": "Bearer", "expires_in": 60});
    complete(&c, &host, Ok((Some(200), body.to_string().into_bytes())));
    let st = state(&host);
    assert_eq!((st.access_token.as_str(), st.expires_at, st.failures), ("tok", 71, 0));
    assert!(!host.1.borrow().iter().any(|l| l.contains("\"tok\"")), "the token is never logged");
    assert_eq!(
        check(&c, &host, 11),
        Verdict::Inject { name: "authorization".into(), value: crate::verdict::Secret("Bearer tok".into()) }
    );
    assert!(matches!(check(&c, &host, 70), Verdict::Hold { .. }));
    assert_eq!(
        format!("{:?}", check(&c, &host, 11)),
        "Inject { name: \"authorization\", value: <redacted> }"
    );
}

#[test]
fn fetch_requests() {
    let c = cfg();
    let call = build_fetch(&c, &EgressState::default());
    assert_eq!(String::from_utf8(call.body).unwrap(), "grant_type=client_credentials&scope=read%20write");
    assert!(call.headers.iter().any(|(k, v)| k == "authorization" && v.starts_with("Basic ")));
    let mut rt = c.clone();
    rt.grant = EgressGrant::RefreshToken { refresh_token: "configured".into() };
    let body = |st: &EgressState| String::from_utf8(build_fetch(&rt, st).body).unwrap();
    assert!(body(&EgressState::default()).ends_with("refresh_token=configured"));
    let rotated = EgressState { refresh_token: "rotated".into(), ..Default::default() };
    assert!(body(&rotated).ends_with("refresh_token=rotated"), "the newest refresh token is used");
}
