//! The filter itself following a real etcd (issue 17): Envoy processes with two workers
//! each, one etcd, the test issuer and upstream, all on loopback. The wiring from
//! configuration to the shared revocation set both ways, and the fleet's refresh claim.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokenguard_harness::envoy::{ConfigForm, Envoy, Options};
use tokenguard_harness::etcd::Etcd;
use tokenguard_harness::http::Client;
use tokenguard_harness::issuer::{Issuer, MintRequest, DEFAULT_ISSUER};
use tokenguard_harness::stack::{demo_keys, plugin_config};
use tokenguard_harness::upstream::Upstream;

const ADMIN: &str = "0123456789abcdef0123";

struct One {
    etcd: Etcd,
    issuer: Issuer,
    _upstream: Upstream,
    envoy: Envoy,
    /// More replicas, for the fleet tests.
    others: Vec<Envoy>,
}

fn start(etcd: Etcd, store: Value) -> One {
    start_fleet(etcd, store, json!({}), 1)
}

/// `replicas` Envoy processes on one etcd; `extra` merged into the plugin configuration.
fn start_fleet(etcd: Etcd, store: Value, extra: Value, replicas: usize) -> One {
    let issuer = Issuer::start(demo_keys(), DEFAULT_ISSUER, "127.0.0.1:0");
    let upstream = Upstream::start("127.0.0.1:0");
    let mut etcd_cfg = json!({"cluster": "etcd", "timeout_ms": 500, "startup_wait_ms": 5000});
    for (k, v) in store.as_object().into_iter().flatten() {
        etcd_cfg[k] = v.clone();
    }
    let mut cfg = json!({"revocation_store": {"etcd": etcd_cfg}, "admin": {"path_prefix": "/tokenguard/", "token": ADMIN}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        cfg[k] = v.clone();
    }
    let plugin = plugin_config(&demo_keys(), &cfg);
    let mut envoys: Vec<Envoy> = (0..replicas).map(|_| replica(&etcd, &issuer, &upstream, &plugin)).collect();
    let envoy = envoys.remove(0);
    One { etcd, issuer, _upstream: upstream, envoy, others: envoys }
}

fn replica(etcd: &Etcd, issuer: &Issuer, upstream: &Upstream, plugin: &Value) -> Envoy {
    let plugin = plugin.clone();
    let opts = Options {
        plugin_config: plugin,
        form: ConfigForm::StringValue,
        upstream_port: upstream.port,
        issuer_port: issuer.port,
        concurrency: 2,
        plain_route: false,
        etcd_port: Some(etcd.client_port),
    };
    Envoy::start(&opts)
}

impl One {
    fn token(&self, claims: Value) -> String {
        let mut req = MintRequest::new("ES256", 300);
        for (k, v) in claims.as_object().into_iter().flatten() {
            req = req.claim(k, v.clone());
        }
        self.issuer.mint(&req)
    }

    /// The status on a fresh connection (so successive calls spread over both workers).
    fn status(&self, token: &str) -> u16 {
        let auth = format!("Bearer {token}");
        Client::new().get(&self.envoy.url("/api"), &[("authorization", &auth)]).status
    }

    /// Waits (bounded) until `token` gets `want` on several fresh connections in a row.
    fn until_status(&self, token: &str, want: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if (0..4).all(|_| self.status(token) == want) {
                return;
            }
            assert!(Instant::now() < deadline, "never {want}; log:\n{}", self.envoy.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn revocations_in_etcd_before_start_and_written_later_are_refused_by_every_worker() {
    let etcd = Etcd::start();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    etcd.put("/tokenguard/revoked/jti/early", "{}", 0);
    let one = start(etcd, json!({}));
    let early = one.token(json!({"jti": "early"}));
    // The very first request of the process already knows it (held for the list).
    assert_eq!(one.status(&early), 401);
    let later = one.token(json!({"jti": "later"}));
    assert_eq!(one.status(&later), 200);
    one.etcd.put("/tokenguard/revoked/jti/later", &json!({"reason": "test"}).to_string(), 0);
    one.until_status(&later, 401);
    // A subject revocation with revoked_at spares tokens issued after it.
    let before = one.token(json!({"sub": "bob", "iat": now - 10}));
    one.etcd.put("/tokenguard/revoked/sub/bob", &json!({"revoked_at": now - 5}).to_string(), 0);
    one.until_status(&before, 401);
    let after = one.token(json!({"sub": "bob", "iat": now}));
    assert_eq!(one.status(&after), 200);
    assert!(one.envoy.stat("wasmcustom.tokenguard.revocation_store.entries").unwrap_or(0) >= 3);
}

#[test]
fn an_admin_revocation_is_committed_to_etcd_on_a_lease() {
    let one = start(Etcd::start(), json!({}));
    let r =
        Client::new().post(&one.envoy.url("/tokenguard/revoke?sub=carol"), &[("x-admin-token", ADMIN)], "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["committed"], json!(true), "{}", r.body);
    let stored: Value =
        serde_json::from_str(&one.etcd.get("/tokenguard/revoked/sub/carol").expect("written")).expect("JSON");
    assert_eq!(stored["reason"], json!("admin"));
    assert!(stored["revoked_at"].as_u64().is_some());
    let lease = one.etcd.ctl(&["get", "/tokenguard/revoked/sub/carol", "-w", "json"]);
    assert!(lease.contains("\"lease\""), "on a lease: {lease}");
}

#[test]
fn with_etcd_down_known_revocations_hold_and_the_outage_is_audited_once() {
    let one = start(Etcd::start(), json!({}));
    let gone = one.token(json!({"jti": "gone"}));
    one.etcd.put("/tokenguard/revoked/jti/gone", "{}", 0);
    one.until_status(&gone, 401);
    let one = one;
    one.etcd.stop();
    let fine = one.token(json!({"jti": "fine"}));
    std::thread::sleep(Duration::from_secs(4));
    for _ in 0..6 {
        assert_eq!(one.status(&gone), 401);
        assert_eq!(one.status(&fine), 200);
    }
    one.etcd.restart();
    let meanwhile = one.token(json!({"jti": "meanwhile"}));
    one.etcd.put("/tokenguard/revoked/jti/meanwhile", "{}", 0);
    one.until_status(&meanwhile, 401);
    let audits = one.envoy.audit_records();
    let count = |e: &str| audits.iter().filter(|a| a["event"] == e).count();
    assert_eq!(count("revocation_store_unreachable"), 1, "{audits:?}");
    assert_eq!(count("revocation_store_recovered"), 1, "{audits:?}");
}

/// Issue 17: one due token, 30 concurrent requests spread over two replicas, the token
/// endpoint slow enough for them all to overlap. The fleet's claim in etcd lets exactly one
/// replica call out; the rotated refresh token keeps working, and the old token is retired
/// on both replicas once the grace is over.
#[test]
fn thirty_requests_over_two_replicas_make_one_refresh_and_the_rotation_keeps_working() {
    let refresh = json!({
        "cluster": "issuer", "authority": "issuer.test", "path": "/oauth/token", "timeout_ms": 3000,
        "window_seconds": 30, "window_ratio": 1.0, "client_id": "gateway",
        "client_secret": "gateway-secret-value", "grace_seconds": 3,
    });
    let fleet = start_fleet(Etcd::start(), json!({}), json!({"refresh": refresh}), 2);
    let replicas = [&fleet.envoy, &fleet.others[0]];
    let issuer = |path: &str, body: Value| {
        Client::new().post(&format!("{}{path}", fleet.issuer.url()), &[], &body.to_string())
    };
    assert_eq!(issuer("/control", json!({"delay_ms": 400})).status, 200);
    let login = issuer("/oauth/login", json!({"sub": "alice", "alg": "ES256", "ttl": 20})).json();
    let (access, refresh_token) = (
        login["access_token"].as_str().expect("access").to_string(),
        login["refresh_token"].as_str().expect("refresh").to_string(),
    );
    let handles: Vec<_> = (0..30)
        .map(|i| {
            let url = replicas[i % 2].url("/api");
            let (auth, rt) = (format!("Bearer {access}"), refresh_token.clone());
            std::thread::spawn(move || {
                let r = Client::new()
                    .get(&url, &[("authorization", auth.as_str()), ("x-refresh-token", rt.as_str())]);
                (
                    r.status,
                    r.header("x-new-access-token").map(str::to_owned),
                    r.header("x-new-refresh-token").map(str::to_owned),
                )
            })
        })
        .collect();
    let answers: Vec<_> = handles.into_iter().map(|h| h.join().expect("thread")).collect();
    assert!(answers.iter().all(|(s, _, _)| *s == 200), "{answers:?}");
    assert_eq!(fleet.issuer.counter("token_calls"), 1, "exactly one refresh across the fleet");
    let (new_access, new_refresh) = answers
        .iter()
        .find_map(|(_, a, r)| Some((a.clone()?, r.clone()?)))
        .expect("someone was handed the new tokens");
    let deferred: usize = replicas
        .iter()
        .map(|e| e.audit_records().iter().filter(|a| a["event"] == "refresh_deferred").count())
        .sum();
    assert!(deferred >= 1, "the other replica stood back");
    // The rotated refresh token keeps working: spent at the token endpoint as a client
    // would, it is accepted (no reuse was detected, so the family is alive).
    assert_eq!(issuer("/control", json!({"delay_ms": 0})).status, 200);
    let form = format!("grant_type=refresh_token&refresh_token={new_refresh}&client_id=gateway");
    let basic = "Basic Z2F0ZXdheTpnYXRld2F5LXNlY3JldC12YWx1ZQ=="; // gateway:gateway-secret-value
    let spent = Client::new().post(
        &format!("{}/oauth/token", fleet.issuer.url()),
        &[("content-type", "application/x-www-form-urlencoded"), ("authorization", basic)],
        &form,
    );
    assert_eq!(spent.status, 200, "{}", spent.body);
    assert_eq!(fleet.issuer.counter("reuse_detected"), 0);
    // After the grace the old token is refused on both replicas (retired fleet-wide).
    let deadline = Instant::now() + Duration::from_secs(10);
    for e in replicas {
        let auth = format!("Bearer {access}");
        loop {
            let r = Client::new().get(&e.url("/api"), &[("authorization", auth.as_str())]);
            if r.status == 401 {
                assert_eq!(r.json()["error"], json!("token_revoked"));
                break;
            }
            assert!(Instant::now() < deadline, "the old token was never retired: {}", e.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let auth = format!("Bearer {new_access}");
    for e in replicas {
        let r = Client::new().get(&e.url("/api"), &[("authorization", auth.as_str())]);
        assert_eq!(r.status, 200, "the new token works on every replica: {}", r.body);
    }
}

/// etcd with authentication on: the filter authenticates once, sends the token as gRPC
/// metadata on every call and on the watch, and a wrong password means no list (held, then
/// 503), audited, never a token accepted on unknown revocations.
fn etcd_with_auth() -> Etcd {
    let etcd = Etcd::start();
    etcd.ctl(&["user", "add", "root:rootpw"]);
    etcd.ctl(&["user", "add", "tg:tgpw"]);
    etcd.ctl(&["role", "add", "tg"]);
    etcd.ctl(&["role", "grant-permission", "tg", "--prefix=true", "readwrite", "/tokenguard/"]);
    etcd.ctl(&["user", "grant-role", "tg", "tg"]);
    etcd.ctl(&["auth", "enable"]);
    etcd
}

#[test]
fn with_etcd_authentication_the_filter_follows_and_writes_as_its_user() {
    let etcd = etcd_with_auth();
    etcd.ctl(&["--user", "root:rootpw", "put", "/tokenguard/revoked/jti/early", "{}"]);
    let one = start(etcd, json!({"username": "tg", "password": "tgpw"}));
    assert_eq!(one.status(&one.token(json!({"jti": "early"}))), 401);
    let later = one.token(json!({"jti": "later"}));
    assert_eq!(one.status(&later), 200);
    one.etcd.ctl(&["--user", "root:rootpw", "put", "/tokenguard/revoked/jti/later", "{}"]);
    one.until_status(&later, 401);
    let r = Client::new().post(
        &one.envoy.url("/tokenguard/revoke?jti=by-admin"),
        &[("x-admin-token", ADMIN)],
        "",
    );
    assert_eq!(r.json()["committed"], json!(true), "{}", r.body);
    assert!(!one.envoy.log().contains("tgpw"), "the password never reaches the log");

    let wrong =
        start(etcd_with_auth(), json!({"username": "tg", "password": "nope", "startup_wait_ms": 1500}));
    let t = wrong.token(json!({"jti": "any"}));
    assert_eq!(wrong.status(&t), 503, "nothing is known: fail closed");
    let audits = wrong.envoy.audit_records();
    assert!(audits.iter().any(|a| a["event"] == "revocation_store_unreachable"), "{audits:?}");
}

/// Standard base64, for the JSON gateway's keys and values.
fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A list longer than one page (1,000 keys) is applied whole before the first request is
/// decided: 2,500 revocations written before Envoy starts, in transactions of 100.
#[test]
fn a_list_of_many_pages_is_applied_before_the_first_request() {
    let etcd = Etcd::start();
    for batch in 0..25 {
        let ops: Vec<Value> = (0..100)
            .map(|i| {
                let key = format!("/tokenguard/revoked/jti/bulk-{}", batch * 100 + i);
                json!({"request_put": {"key": b64(key.as_bytes()), "value": b64(b"{}")}})
            })
            .collect();
        etcd.gateway().call("/v3/kv/txn", &json!({"success": ops}));
    }
    let one = start(etcd, json!({}));
    assert_eq!(one.status(&one.token(json!({"jti": "bulk-2499"}))), 401, "on the last page");
    assert_eq!(one.status(&one.token(json!({"jti": "bulk-0"}))), 401, "on the first page");
    assert_eq!(one.status(&one.token(json!({"jti": "bulk-2500"}))), 200);
    assert_eq!(one.envoy.stat("wasmcustom.tokenguard.revocation_store.entries"), Some(2500));
}
