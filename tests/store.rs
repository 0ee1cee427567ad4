//! End to end: one Envoy (two workers) on `revocation_store.etcd` with a real etcd, for
//! what a single process does with its store: hold requests until the first list, refuse
//! with 503 once `startup_wait_ms` is over, fail closed after `max_staleness_seconds` out of
//! touch, recover. Several replicas and outages with known revocations: tests/fleet.rs.

use serde_json::json;
use std::time::{Duration, Instant};

use tokenguard_harness::fleet::{code, eventually, revoked, store_config};
use tokenguard_harness::issuer::MintRequest;
use tokenguard_harness::stack::Stack;

fn ok() -> (u16, String) {
    (200, String::new())
}

fn unavailable() -> (u16, String) {
    (503, "temporarily_unavailable".into())
}

/// Requests made at once on a fresh Envoy whose etcd is down, then comes up `late` later:
/// each one's outcome and how long it took.
fn held_until_etcd_is_up(s: &Stack, tokens: &[&String], late: Duration) -> Vec<((u16, String), Duration)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = tokens
            .iter()
            .map(|t| {
                scope.spawn(move || {
                    let start = Instant::now();
                    (code(&s.envoy, t), start.elapsed())
                })
            })
            .collect();
        std::thread::sleep(late);
        s.etcd().restart();
        handles.into_iter().map(|h| h.join().expect("request thread")).collect()
    })
}

#[test]
fn a_fresh_process_holds_requests_until_its_first_list_then_decides_on_it() {
    let s = Stack::start_on_etcd(json!({}), json!({"startup_wait_ms": 15000}), |etcd| {
        etcd.put("/tokenguard/revoked/jti/jti-listed", r#"{"reason": "before Envoy started"}"#, 0);
        etcd.stop();
    });
    let listed = s.mint(MintRequest::new("RS256", 300).claim("jti", json!("jti-listed")));
    let fine = s.mint(MintRequest::new("EdDSA", 300));
    let done = held_until_etcd_is_up(&s, &[&listed, &fine, &fine], Duration::from_millis(1500));
    for (i, (_, held)) in done.iter().enumerate() {
        assert!(*held >= Duration::from_millis(1000), "request {i} was not held ({held:?})");
    }
    assert_eq!(done[0].0, revoked(), "held, then refused by the list");
    assert_eq!((done[1].0.clone(), done[2].0.clone()), (ok(), ok()));
    assert!(s.upstream.received().len() == 2, "only the two valid requests went upstream");
}

#[test]
fn past_startup_wait_without_a_list_requests_get_503_until_etcd_answers() {
    let s = Stack::start_on_etcd(json!({}), json!({"startup_wait_ms": 1000}), |etcd| etcd.stop());
    let token = s.mint(MintRequest::new("ES256", 300));
    let start = Instant::now();
    assert_eq!(code(&s.envoy, &token), unavailable(), "no list within startup_wait_ms");
    eprintln!("refused after {:?} (startup_wait_ms 1000)", start.elapsed());
    assert!(s.upstream.received().is_empty());
    s.etcd().restart();
    eventually(Duration::from_secs(15), "served once etcd is back", || {
        (code(&s.envoy, &token) == ok()).then_some(())
    });
}

#[test]
fn max_staleness_fails_closed_while_out_of_touch_and_not_while_etcd_is_idle() {
    let cfg = json!({"max_staleness_seconds": 6}); // the smallest allowed
    let s = Stack::start_on_etcd(json!({}), cfg, |_| {});
    let token = s.mint(MintRequest::new("RS256", 300));
    assert_eq!(code(&s.envoy, &token), ok());
    // etcd up and silent (nothing written) for longer than max_staleness: still in touch.
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(9) {
        assert_eq!(code(&s.envoy, &token), ok(), "etcd is up, only idle ({:?})", quiet.elapsed());
        std::thread::sleep(Duration::from_millis(250));
    }
    s.etcd().stop();
    eventually(Duration::from_secs(20), "fails closed once stale", || {
        let seen = code(&s.envoy, &token);
        assert!(seen == ok() || seen == unavailable(), "{seen:?}");
        (seen == unavailable()).then_some(())
    });
    s.etcd().restart();
    eventually(Duration::from_secs(20), "serves again after recovery", || {
        (code(&s.envoy, &token) == ok()).then_some(())
    });
}

#[test]
fn the_store_configuration_is_checked_at_load() {
    let keys = tokenguard_harness::stack::demo_keys();
    for bad in [json!({"cluster": ""}), json!({"timeout_ms": 0}), json!({"prefix": "no-slash"})] {
        let plugin = tokenguard_harness::stack::plugin_config(&keys, &store_config(&bad));
        let log = tokenguard_harness::envoy::Envoy::expect_refusal(&tokenguard_harness::envoy::Options {
            plugin_config: plugin,
            form: tokenguard_harness::envoy::ConfigForm::StringValue,
            upstream_port: 1,
            issuer_port: 1,
            concurrency: 1,
            plain_route: false,
            etcd_port: Some(1),
        });
        assert!(log.contains("revocation_store"), "the refusal names the section for {bad}: {log}");
    }
}
