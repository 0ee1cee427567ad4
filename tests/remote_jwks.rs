//! End-to-end: a provider's keys fetched from the test issuer's key server (remote JWKS and
//! OpenID discovery) by a real Envoy with two workers: rotation, withdrawal, a random-kid
//! flood, the key server down at start-up and later, one fetch per process.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

use tokenguard_harness::envoy::ConfigForm;
use tokenguard_harness::http::{Client, Response};
use tokenguard_harness::issuer::{MintRequest, DEFAULT_ISSUER};
use tokenguard_harness::stack::Stack;

/// A provider with only remote keys, through the `issuer` cluster; `remote` merged in.
/// Without `uri`: discovery.
fn remote_config(remote: Value) -> Value {
    let mut r = json!({"cluster": "issuer", "timeout_ms": 1000});
    for (k, v) in remote.as_object().unwrap() {
        r[k] = v.clone();
    }
    json!({"providers": [{"issuer": DEFAULT_ISSUER, "audiences": ["api"], "algorithms": ["RS256", "ES256"],
                          "remote_jwks": r}]})
}

const URI: &str = "https://issuer.test/.well-known/jwks.json";

fn start(remote: Value, prepare: impl FnOnce(&tokenguard_harness::issuer::Issuer)) -> Stack {
    Stack::start_prepared(remote_config(remote), ConfigForm::StringValue, false, prepare)
}

/// A request on a new connection: Envoy spreads connections over its workers.
fn fresh(s: &Stack, token: &str) -> Response {
    Client::new().get(&s.envoy.url("/"), &[("authorization", &format!("Bearer {token}"))])
}

fn error(r: &Response) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_owned()
}

fn until_ok(s: &Stack, token: &str, within: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let r = fresh(s, token);
        if r.status == 200 {
            return t.elapsed();
        }
        assert!(t.elapsed() < within, "not accepted within {within:?}: {} {}", r.status, r.body);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn discovery_end_to_end_then_a_rotated_key_is_accepted_on_first_sight() {
    let s = start(json!({"min_refetch_seconds": 1}), |_| {});
    let rs = s.mint(MintRequest::new("RS256", 300));
    until_ok(&s, &rs, Duration::from_secs(10));
    assert_eq!(s.issuer.counter("discovery"), 1, "discovered once");
    let fetched = s.issuer.counter("jwks");
    assert_eq!(fetched, 1, "one key fetch for the whole process");
    // The issuer rotates; its first ES256 token under the new kid is accepted, not refused.
    let kid = s.issuer.rotate_key();
    let rotated_at = Instant::now();
    let token = s.mint(MintRequest::new("ES256", 300));
    let first = fresh(&s, &token);
    let took = rotated_at.elapsed();
    assert_eq!(first.status, 200, "first new-key token: {}", first.body);
    eprintln!("rotation to first accepted new-key token: {took:?}");
    assert_eq!(s.issuer.counter("jwks"), fetched + 1, "one refetch for the unknown kid");
    assert_eq!(s.issuer.counter("discovery"), 1);
    // Every worker answers the same on the new set.
    for _ in 0..12 {
        assert_eq!(fresh(&s, &token).status, 200);
        assert_eq!(fresh(&s, &rs).status, 200);
    }
    let rotated = s.envoy.audit_records().into_iter().filter(|a| a["event"] == "keys_rotated").count();
    assert_eq!(rotated, 1);
    let audit = s.envoy.audit_records().into_iter().find(|a| a["event"] == "keys_rotated").unwrap();
    assert!(audit["reason"].as_str().unwrap().contains(&kid), "{audit}");
    assert_eq!(s.envoy.stat("wasmcustom.tokenguard.remote_jwks.kid_miss_refetches"), Some(1));
    let age = s.envoy.stat("wasmcustom.tokenguard.remote_jwks.key_set_age_seconds.https___issuer_test");
    assert!(age.is_some_and(|a| a < 60), "the key-set age gauge: {age:?}");
    // More rotations, each outside the refetch rate limit: each first token is accepted.
    let mut took = vec![took];
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1100));
        s.issuer.rotate_key();
        let t = Instant::now();
        let r = fresh(&s, &s.mint(MintRequest::new("ES256", 300)));
        took.push(t.elapsed());
        assert_eq!(r.status, 200, "{}", r.body);
    }
    eprintln!("rotation to first accepted new-key token, 4 rotations: {took:?}");
    assert_eq!(s.issuer.counter("jwks"), fetched + 4, "one refetch per rotation");
}

#[test]
fn a_removed_key_stops_verifying_even_for_tokens_seen_before() {
    let mut old_kid = String::new();
    let s = start(json!({"uri": URI, "min_refetch_seconds": 1}), |i| old_kid = i.rotate_key());
    let old = s.mint(MintRequest::new("ES256", 300));
    until_ok(&s, &old, Duration::from_secs(10));
    for _ in 0..4 {
        assert_eq!(s.get("/", Some(&old)).status, 200, "verified, then from the registry and the hot path");
    }
    // The issuer withdraws the old key and signs with a new one; the new token's refetch
    // brings the set without the old key.
    s.issuer.remove_key(&old_kid);
    s.issuer.rotate_key();
    std::thread::sleep(Duration::from_millis(1100));
    let new = s.mint(MintRequest::new("ES256", 300));
    assert_eq!(fresh(&s, &new).status, 200);
    for _ in 0..6 {
        let r = fresh(&s, &old);
        assert_eq!((r.status, error(&r)), (401, "invalid_signature".into()), "{}", r.body);
    }
    let r = s.get("/", Some(&old));
    assert_eq!(r.status, 401, "the connection whose worker cached it refuses it too");
    let removed = s.envoy.audit_records().into_iter().find(|a| a["event"] == "keys_rotated").unwrap();
    assert!(removed["reason"].as_str().unwrap().contains(&old_kid), "{removed}");
}

#[test]
fn a_random_kid_flood_costs_at_most_one_fetch_per_min_refetch_seconds() {
    let s = start(json!({"uri": URI, "min_refetch_seconds": 30}), |_| {});
    let good = s.mint(MintRequest::new("RS256", 300));
    until_ok(&s, &good, Duration::from_secs(10));
    let before = s.issuer.counter("jwks");
    let started = Instant::now();
    let tokens: Vec<String> = (0..1000)
        .map(|i| {
            let mut m = MintRequest::new("ES256", 300);
            m.kid = Some(format!("random-{i}-{}", rand_suffix(i)));
            s.mint(m)
        })
        .collect();
    let mut handles = Vec::new();
    for chunk in tokens.chunks(250) {
        let (url, chunk) = (s.envoy.url("/"), chunk.to_vec());
        handles.push(std::thread::spawn(move || {
            let c = Client::new();
            chunk
                .iter()
                .map(|t| c.get(&url, &[("authorization", &format!("Bearer {t}"))]).status)
                .collect::<Vec<u16>>()
        }));
    }
    let statuses: Vec<u16> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let elapsed = started.elapsed();
    assert!(statuses.iter().all(|s| *s == 401), "every random kid refused");
    let fetches = s.issuer.counter("jwks") - before;
    let allowed = 1 + elapsed.as_secs() / 30;
    eprintln!("1000 random-kid tokens in {elapsed:?}: {fetches} key fetch(es)");
    assert!(fetches >= 1 && fetches <= allowed, "{fetches} fetches in {elapsed:?}");
    let refused = s.envoy.stat("wasmcustom.tokenguard.remote_jwks.kid_miss_rate_limited").unwrap_or(0);
    assert!(refused >= 900, "{refused}");
    assert_eq!(s.get("/", Some(&good)).status, 200, "the real key still serves");
}

fn rand_suffix(i: usize) -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    t.rotate_left(i as u32 % 64) ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[test]
fn key_server_down_at_start_up_gives_503_then_200_once_it_is_up() {
    let s = start(json!({"startup_wait_ms": 300}), |i| i.key_control(&json!({"jwks_down": true})));
    let token = s.mint(MintRequest::new("RS256", 300));
    let r = fresh(&s, &token);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(error(&r), "temporarily_unavailable");
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    assert!(s.upstream.received().is_empty(), "nothing reached the upstream");
    s.issuer.key_control(&json!({"jwks_down": false}));
    let took = until_ok(&s, &token, Duration::from_secs(40));
    eprintln!("accepted {took:?} after the key server came up (backoff)");
    let events: Vec<String> =
        s.envoy.audit_records().iter().filter_map(|a| a["event"].as_str().map(str::to_owned)).collect();
    let of = |e: &str| events.iter().filter(|x| *x == e).count();
    assert_eq!((of("keys_unavailable"), of("keys_ready")), (1, 1), "audited once per change: {events:?}");
}

#[test]
fn key_server_down_later_keeps_serving_on_the_last_good_keys() {
    let s = start(json!({"uri": URI, "min_refetch_seconds": 1}), |_| {});
    let token = s.mint(MintRequest::new("RS256", 300));
    until_ok(&s, &token, Duration::from_secs(10));
    s.issuer.key_control(&json!({"jwks_down": true}));
    // An unknown kid makes the filter refetch; the fetch fails.
    let mut m = MintRequest::new("ES256", 300);
    m.kid = Some("unknown-kid".into());
    let stranger = s.mint(m);
    assert_eq!(fresh(&s, &stranger).status, 401);
    let failures = s.envoy.stat("wasmcustom.tokenguard.remote_jwks.failures.status");
    assert!(failures.is_some_and(|f| f >= 1), "{failures:?}");
    for _ in 0..10 {
        assert_eq!(fresh(&s, &token).status, 200, "the last good keys still serve");
    }
    let fresh_token = s.mint(MintRequest::new("ES256", 300).claim("sub", json!("bob")));
    assert_eq!(fresh(&s, &fresh_token).status, 200, "a new token under a known key too");
}

/// Two minutes of wall time: `Cache-Control: max-age=60` (the floor) is refreshed ahead of
/// expiry by one worker of the process, so the issuer sees the initial fetch plus one per
/// interval, never one per worker.
#[test]
fn exactly_one_fetch_per_interval_per_process() {
    let s = start(json!({}), |i| i.key_control(&json!({"jwks_max_age": 60})));
    let token = s.mint(MintRequest::new("RS256", 300));
    until_ok(&s, &token, Duration::from_secs(10));
    let t0 = Instant::now();
    assert_eq!(s.issuer.counter("jwks"), 1);
    // Refreshes fall 48..54 s after each fetch: two by 115 s, the third not before ~144 s.
    while t0.elapsed() < Duration::from_secs(115) {
        assert_eq!(fresh(&s, &token).status, 200);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(s.issuer.counter("jwks"), 3, "initial + one per interval, for the whole process");
    assert_eq!(s.issuer.counter("discovery"), 1);
    assert!(s.envoy.audit_records().iter().all(|a| a["event"] != "keys_rotated"), "same set: no rotation");
}

/// A token obtained by refresh is validated against the fetched keys: the refresh succeeds
/// (the client is handed the new token) and the new token is accepted on its own.
#[test]
fn a_refreshed_token_is_verified_with_the_fetched_keys() {
    let mut cfg = remote_config(json!({"uri": URI}));
    cfg["refresh"] = json!({"cluster": "issuer", "authority": "issuer.test", "path": "/oauth/token",
        "timeout_ms": 800, "window_seconds": 30, "window_ratio": 1.0,
        "client_id": "gateway", "client_secret": "gateway-secret-value"});
    cfg["near_expiry_warning_seconds"] = json!(0);
    let s = Stack::start_prepared(cfg, ConfigForm::StringValue, false, |_| {});
    let body = json!({"sub": "alice", "alg": "ES256", "ttl": 20});
    let login = s.client.post(&format!("{}/oauth/login", s.issuer.url()), &[], &body.to_string()).json();
    let (access, refresh) =
        (login["access_token"].as_str().unwrap(), login["refresh_token"].as_str().unwrap());
    let auth = format!("Bearer {access}");
    let r = s.client.get(&s.envoy.url("/api"), &[("authorization", &auth), ("x-refresh-token", refresh)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let new = r.header("x-new-access-token").expect("refreshed: the new token passed validation").to_owned();
    assert_ne!(new, access);
    assert_eq!(s.issuer.counter("token_calls"), 1);
    assert_eq!(fresh(&s, &new).status, 200, "the new token on its own");
}
