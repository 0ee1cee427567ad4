use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

use super::parse::Answer;
use super::*;
use crate::gate::{check_request, Request, Worker};
use crate::host::{Level, Metrics};
use crate::refresh::Failure;
use crate::testkit::*;
use crate::verdict::Verdict;

fn cfg_with(remote: Value) -> Config {
    config(json!({"providers": [{"issuer": ISS, "audiences": ["api"], "algorithms": ["RS256", "ES256"],
        "remote_jwks": remote}]}))
}

fn cfg() -> Config {
    cfg_with(json!({"cluster": "idp", "uri": "https://issuer.test/jwks", "min_refetch_seconds": 30}))
}

fn jwks_answer(set: &Value, cache_control: Option<&str>) -> Result<Answer, Failure> {
    Ok(Answer {
        status: Some(200),
        cache_control: cache_control.map(Into::into),
        body: set.to_string().into_bytes(),
    })
}

/// A fresh P-256 key under `kid`, and its public JWK.
fn new_key(kid: &str) -> (ES256KeyPair, Value) {
    let key = ES256KeyPair::generate().with_key_id(kid);
    let p = key.public_key().public_key().to_bytes_uncompressed();
    let (x, y) = p[1..].split_at(32);
    (key, json!({"kty": "EC", "kid": kid, "crv": "P-256", "x": B64.encode(x), "y": B64.encode(y)}))
}

/// The demo key set with `jwk` added.
fn demo_set_with(jwk: Value) -> Value {
    let mut set = keys().public_jwks();
    set["keys"].as_array_mut().unwrap().push(jwk);
    set
}

fn sign(key: &ES256KeyPair) -> String {
    let c = claims(json!({}));
    let mut jc = jwt_simple::claims::Claims::with_custom_claims(json!({}), Duration::from_secs(300));
    jc.issuer = c["iss"].as_str().map(Into::into);
    jc.subject = Some("alice".into());
    jc.audiences = Some(Audiences::AsString("api".into()));
    jc.issued_at = Some(UnixTimeStamp::from_secs(NOW - 10));
    jc.expires_at = Some(UnixTimeStamp::from_secs(NOW + 300));
    key.sign(jc).unwrap()
}

fn ask(cfg: &Config, host: &FakeHost, worker: &Worker, token: &str) -> Verdict {
    let header = format!("Bearer {token}");
    check_request(
        cfg,
        host,
        worker,
        &Request {
            credential_header: Some(&header),
            meta: &FakeRequest { request_id: None, path: Some("/"), method: "GET", headers: &[] },
            verified: None,
        },
    )
}

fn status(v: &Verdict) -> u32 {
    match v {
        Verdict::Forward { .. } => 200,
        Verdict::Deny(r) => r.status,
        Verdict::Hold { .. } => 0,
        _ => 1,
    }
}

/// One fetch cycle as the tick would run it: lease, answer.
fn fetch(cfg: &Config, host: &FakeHost, answer: Result<Answer, Failure>) -> bool {
    let p = &cfg.providers[0];
    let Some(call) = fetch::start(p, host, host.now.get()) else { return false };
    assert!(call.headers.contains(&(":method".into(), "GET".into())));
    fetch::finish(p, host, answer, 7);
    true
}

#[test]
fn one_fetcher_per_process_and_versions_only_on_change() {
    let (cfg, host) = (cfg(), FakeHost::at(NOW));
    let p = &cfg.providers[0];
    let call = fetch::start(p, &host, NOW).expect("due at start-up");
    assert!(call.headers.contains(&(":authority".into(), "issuer.test".into())));
    assert!(call.headers.contains(&(":path".into(), "/jwks".into())));
    assert!(fetch::start(p, &host, NOW).is_none(), "the lease keeps a second worker out");
    let set = keys().public_jwks();
    fetch::finish(p, &host, jwks_answer(&set, Some("max-age=300")), 7);
    let st = state::read(&host, &Keys::of(p).state);
    assert_eq!((st.version, st.status, st.fresh_until), (1, Status::Ready, NOW + 300));
    assert!(st.refresh_at < st.fresh_until && st.refresh_at >= NOW + 240);
    assert!(fetch::start(p, &host, NOW + 1).is_none(), "fresh: nothing due");
    host.now.set(st.refresh_at);
    assert!(fetch(&cfg, &host, jwks_answer(&set, None)));
    let st2 = state::read(&host, &Keys::of(p).state);
    assert_eq!(st2.version, 1, "same bytes: same version, no rebuild anywhere");
    assert_eq!(st2.fresh_until, st.refresh_at + 600, "no max-age: cache_seconds");
    let ready = host.audits().iter().filter(|(_, a)| a["event"] == "keys_ready").count();
    assert_eq!(ready, 1);
    assert_eq!(host.value(Counter::KeysFetches), Some(2));
}

#[test]
fn a_worker_rebuilds_only_on_a_new_version() {
    let (cfg, host) = (cfg(), FakeHost::at(NOW));
    let mut wk = WorkerKeys::default();
    wk.sync(&cfg, &host);
    assert_eq!(wk.get(ISS).unwrap().version, 0);
    fetch(&cfg, &host, jwks_answer(&keys().public_jwks(), None));
    wk.sync(&cfg, &host);
    let installed = wk.get(ISS).unwrap();
    assert_eq!((installed.version, installed.keys.entries.len()), (1, 2));
    let before = installed.keys.entries.as_ptr();
    wk.sync(&cfg, &host);
    assert_eq!(wk.get(ISS).unwrap().keys.entries.as_ptr(), before, "unchanged: not rebuilt");
}

#[test]
fn start_up_holds_then_serves() {
    let (cfg, host) = (cfg(), FakeHost::at(NOW));
    let worker = Worker::default();
    let token = mint("RS256", json!({}));
    match ask(&cfg, &host, &worker, &token) {
        Verdict::Hold { wait_ms, reason, .. } => {
            assert_eq!((wait_ms, reason), (3000, HoldReason::KeysStartup));
        }
        other => panic!("{other:?}"),
    }
    let reply = HoldReason::KeysStartup
        .timeout_response(&host, &crate::reject::Challenge { realm: "r", resource_metadata: None });
    assert_eq!(reply.status, 503);
    assert!(reply.headers.iter().any(|(k, _)| k == "retry-after"));
    assert!(reply.body.contains("temporarily_unavailable"));
    fetch(&cfg, &host, jwks_answer(&keys().public_jwks(), None));
    assert_eq!(status(&ask(&cfg, &host, &worker, &token)), 200);
}

#[test]
fn an_unknown_kid_refetches_once_and_the_new_key_is_accepted() {
    let (cfg, host) = (cfg(), FakeHost::at(NOW));
    let worker = Worker::default();
    let mut set = keys().public_jwks();
    fetch(&cfg, &host, jwks_answer(&set, None));
    let (new, jwk) = new_key("rotated-1");
    let token = sign(&new);
    let v = ask(&cfg, &host, &worker, &token);
    assert!(matches!(v, Verdict::Hold { reason: HoldReason::KeyRefetch, .. }), "{v:?}");
    assert_eq!(host.value(Counter::KidMissRefetch), Some(1));
    // A flood of other unknown kids while the refetch is pending: held, no new refetch.
    let (other, _) = new_key("random");
    assert!(matches!(ask(&cfg, &host, &worker, &sign(&other)), Verdict::Hold { .. }));
    assert_eq!(host.value(Counter::KidMissRefetch), Some(1));
    set["keys"].as_array_mut().unwrap().push(jwk);
    assert!(fetch(&cfg, &host, jwks_answer(&set, None)), "the refetch is due despite freshness");
    assert_eq!(status(&ask(&cfg, &host, &worker, &token)), 200, "decided on the new set");
    let rotated = host.audits().into_iter().find(|(_, a)| a["event"] == "keys_rotated").unwrap().1;
    assert!(rotated["reason"].as_str().unwrap().contains("rotated-1"), "{rotated}");
    // Still unknown after the refetch: refused at once, and no refetch before 30 s.
    let v = ask(&cfg, &host, &worker, &sign(&other));
    assert_eq!(status(&v), 401);
    assert_eq!(host.value(Counter::KidMissRateLimited), Some(1));
    assert!(fetch::start(&cfg.providers[0], &host, NOW).is_none());
    host.now.set(NOW + 30);
    assert!(matches!(ask(&cfg, &host, &worker, &sign(&other)), Verdict::Hold { .. }));
    assert_eq!(host.value(Counter::KidMissRefetch), Some(2));
}

#[test]
fn a_removed_key_stops_verifying_even_when_cached() {
    let (cfg, host) = (cfg(), FakeHost::at(NOW));
    let worker = Worker::default();
    let (key, jwk) = new_key("old");
    fetch(&cfg, &host, jwks_answer(&demo_set_with(jwk), None));
    let token = sign(&key);
    for _ in 0..3 {
        assert_eq!(status(&ask(&cfg, &host, &worker, &token)), 200, "verified, recorded, hot");
    }
    host.now.set(NOW + 700);
    assert!(fetch(&cfg, &host, jwks_answer(&keys().public_jwks(), None)));
    worker.keys.borrow_mut().sync(&cfg, &host);
    let v = ask(&cfg, &host, &worker, &token);
    assert!(matches!(v, Verdict::Hold { .. } | Verdict::Deny(_)), "{v:?}");
    fetch(&cfg, &host, jwks_answer(&keys().public_jwks(), None));
    assert_eq!(status(&ask(&cfg, &host, &worker, &token)), 401);
}

#[test]
fn a_key_withdrawn_by_another_workers_fetch_is_refused_on_every_worker_at_once() {
    let (cfg, host) = (cfg(), FakeHost::at(NOW));
    let (a, b) = (Worker::default(), Worker::default());
    let (old, old_jwk) = new_key("old");
    fetch(&cfg, &host, jwks_answer(&demo_set_with(old_jwk), None));
    let token = sign(&old);
    for _ in 0..3 {
        assert_eq!(status(&ask(&cfg, &host, &b, &token)), 200, "verified, recorded, then b's hot path");
    }
    assert_eq!(b.accepted.borrow().len(), 1, "b remembers it");
    // The issuer withdraws "old" and signs with "new": worker a meets the new kid, the
    // refetch brings the set without "old", and a syncs as the fetch's answer does.
    let (new, new_jwk) = new_key("new");
    let fresh = sign(&new);
    assert!(matches!(ask(&cfg, &host, &a, &fresh), Verdict::Hold { reason: HoldReason::KeyRefetch, .. }));
    assert!(fetch(&cfg, &host, jwks_answer(&demo_set_with(new_jwk), None)));
    a.keys.borrow_mut().sync(&cfg, &host);
    assert_eq!(status(&ask(&cfg, &host, &a, &fresh)), 200);
    // No tick on b since: its next request still must not take the old key's word.
    let before = host.value(Counter::Rejected(crate::reject::RejectCode::InvalidSignature)).unwrap_or(0);
    assert_eq!(status(&ask(&cfg, &host, &b, &token)), 401, "refused on b, hot path and registry alike");
    assert_eq!(host.value(Counter::Rejected(crate::reject::RejectCode::InvalidSignature)), Some(before + 1));
    assert_eq!(status(&ask(&cfg, &host, &b, &fresh)), 200, "b verifies under the new set");
}

#[test]
fn failures_keep_the_keys_back_off_and_go_stale_then_unavailable() {
    let (cfg, host) = (
        cfg_with(json!({"cluster": "idp", "uri": "http://idp/jwks", "max_stale_seconds": 100})),
        FakeHost::at(NOW),
    );
    let p = &cfg.providers[0];
    let worker = Worker::default();
    let token = mint("RS256", json!({}));
    fetch(&cfg, &host, jwks_answer(&keys().public_jwks(), Some("max-age=60")));
    host.now.set(NOW + 61);
    for (i, answer) in [
        Err(Failure::Timeout),
        Ok(Answer { status: Some(200), cache_control: None, body: b"{\"keys\": []}".to_vec() }),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(fetch(&cfg, &host, answer), "attempt {i}");
        assert!(fetch::start(p, &host, host.now.get()).is_none(), "backing off");
        host.now.set(host.now.get() + 2);
    }
    let st = state::read(&host, &Keys::of(p).state);
    assert_eq!((st.version, st.failures), (1, 2), "the good set stays");
    fetch::observe(p, &host, &st, host.now.get());
    fetch::observe(p, &host, &st, host.now.get());
    worker.keys.borrow_mut().sync(&cfg, &host);
    assert_eq!(status(&ask(&cfg, &host, &worker, &token)), 200, "stale keys still serve");
    host.now.set(NOW + 60 + 101);
    let st = state::read(&host, &Keys::of(p).state);
    fetch::observe(p, &host, &st, host.now.get());
    worker.keys.borrow_mut().sync(&cfg, &host);
    let v = ask(&cfg, &host, &worker, &mint("RS256", json!({"iat": NOW + 150, "exp": NOW + 400})));
    assert_eq!(status(&v), 503);
    let events: Vec<String> =
        host.audits().iter().map(|(_, a)| a["event"].as_str().unwrap().to_owned()).collect();
    let of = |e: &str| events.iter().filter(|x| *x == e).count();
    assert_eq!((of("keys_ready"), of("keys_stale"), of("keys_unavailable")), (1, 1, 1), "{events:?}");
    assert_eq!(host.value(Counter::KeysFailure("timeout")), Some(1));
    assert_eq!(host.value(Counter::KeysFailure("bad_response")), Some(1));
}

#[test]
fn discovery_then_the_key_set_and_rediscovery_after_failures() {
    let cfg = cfg_with(json!({"cluster": "idp"}));
    let host = FakeHost::at(NOW);
    let p = &cfg.providers[0];
    let call = fetch::start(p, &host, NOW).unwrap();
    assert!(call.headers.contains(&(":path".into(), "/.well-known/openid-configuration".into())));
    let doc = json!({"issuer": ISS, "jwks_uri": "https://keys.elsewhere/certs"});
    fetch::finish(
        p,
        &host,
        Ok(Answer { status: Some(200), cache_control: None, body: doc.to_string().into_bytes() }),
        1,
    );
    assert!(host.lines.borrow().iter().any(|(l, m)| *l == Level::Error && m.contains("keys.elsewhere")));
    let call = fetch::start(p, &host, NOW).expect("the key set right after");
    assert!(call.headers.contains(&(":authority".into(), "keys.elsewhere".into())));
    assert!(call.headers.contains(&(":path".into(), "/certs".into())));
    fetch::finish(p, &host, jwks_answer(&keys().public_jwks(), None), 1);
    assert_eq!(state::read(&host, &Keys::of(p).state).version, 1);
    // A wrong issuer in the document is a failure, not a key source.
    let (cfg2, host2) = (cfg_with(json!({"cluster": "idp"})), FakeHost::at(NOW));
    let bad = json!({"issuer": "https://evil.test", "jwks_uri": "https://evil.test/certs"});
    fetch(
        &cfg2,
        &host2,
        Ok(Answer { status: Some(200), cache_control: None, body: bad.to_string().into_bytes() }),
    );
    assert!(state::read(&host2, &Keys::of(&cfg2.providers[0]).state).jwks_path.is_empty());
    // Three failed key fetches in a row: discovery again.
    let mut t = NOW + 1000;
    for _ in 0..3 {
        host.now.set(t);
        let call = fetch::start(p, &host, t).unwrap();
        assert!(call.headers.contains(&(":path".into(), "/certs".into())));
        fetch::finish(p, &host, Err(Failure::Unreachable), 1);
        t += 400;
    }
    host.now.set(t);
    let call = fetch::start(p, &host, t).unwrap();
    assert!(call.headers.contains(&(":path".into(), "/.well-known/openid-configuration".into())));
}

#[test]
fn remote_config_is_strict() {
    let err = |remote: Value, extra: Value| {
        let mut p = json!({"issuer": ISS, "algorithms": ["RS256"], "remote_jwks": remote});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        Config::from_json(config_json(json!({"providers": [p]}))).err().map(|e| e.field)
    };
    assert_eq!(err(json!({"cluster": "idp"}), json!({})), None);
    assert_eq!(err(json!({}), json!({})).as_deref(), Some("providers[0].remote_jwks"));
    assert_eq!(err(json!({"cluster": ""}), json!({})).as_deref(), Some("providers[0].remote_jwks.cluster"));
    assert_eq!(
        err(json!({"cluster": "c", "uri": "ftp://x"}), json!({})).as_deref(),
        Some("providers[0].remote_jwks.uri")
    );
    assert_eq!(
        err(json!({"cluster": "c", "cache_seconds": 59}), json!({})).as_deref(),
        Some("providers[0].remote_jwks.cache_seconds")
    );
    assert_eq!(
        err(json!({"cluster": "c", "min_refetch_seconds": 0}), json!({})).as_deref(),
        Some("providers[0].remote_jwks.min_refetch_seconds")
    );
    assert_eq!(
        err(json!({"cluster": "c", "timeout_ms": 0}), json!({})).as_deref(),
        Some("providers[0].remote_jwks.timeout_ms")
    );
    assert_eq!(
        err(json!({"cluster": "c", "startup_wait_ms": 60001}), json!({})).as_deref(),
        Some("providers[0].remote_jwks.startup_wait_ms")
    );
    assert_eq!(
        err(json!({"cluster": "c", "max_stale_seconds": 604801}), json!({})).as_deref(),
        Some("providers[0].remote_jwks.max_stale_seconds")
    );
    assert_eq!(
        err(json!({"cluster": "c", "nope": 1}), json!({})).as_deref(),
        Some("providers[0].remote_jwks.nope")
    );
    assert_eq!(
        err(json!({"cluster": "c"}), json!({"algorithms": ["HS256"]})).as_deref(),
        Some("providers[0].algorithms")
    );
    assert_eq!(
        err(json!({"cluster": "c"}), json!({"issuer": "not-a-url"})).as_deref(),
        Some("providers[0].remote_jwks.uri")
    );
    let none =
        Config::from_json(config_json(json!({"providers": [{"issuer": ISS, "algorithms": ["RS256"]}]})));
    assert_eq!(none.err().map(|e| e.field).as_deref(), Some("providers[0]"));
}
