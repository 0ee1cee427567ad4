//! The filter itself following a real etcd (issue 17), one Envoy process with two workers:
//! the wiring from configuration to the shared revocation set, both ways. The two-replica
//! fleet tests build on the same pieces.

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
}

fn start(etcd: Etcd, store: Value) -> One {
    let issuer = Issuer::start(demo_keys(), DEFAULT_ISSUER, "127.0.0.1:0");
    let upstream = Upstream::start("127.0.0.1:0");
    let mut etcd_cfg = json!({"cluster": "etcd", "timeout_ms": 500, "startup_wait_ms": 5000});
    for (k, v) in store.as_object().into_iter().flatten() {
        etcd_cfg[k] = v.clone();
    }
    let plugin = plugin_config(
        &demo_keys(),
        &json!({"revocation_store": {"etcd": etcd_cfg}, "admin": {"path_prefix": "/tokenguard/", "token": ADMIN}}),
    );
    let opts = Options {
        plugin_config: plugin,
        form: ConfigForm::StringValue,
        upstream_port: upstream.port,
        issuer_port: issuer.port,
        concurrency: 2,
        plain_route: false,
        etcd_port: Some(etcd.client_port),
    };
    let envoy = Envoy::start(&opts);
    One { etcd, issuer, _upstream: upstream, envoy }
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
