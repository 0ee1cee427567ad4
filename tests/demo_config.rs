//! The configurations we tell people to copy must work as written.

use serde_json::json;
use std::time::Duration;

use tokenguard_harness::envoy::repo_root;
use tokenguard_harness::http::Client;
use tokenguard_harness::issuer::MintRequest;
use tokenguard_harness::stack::Stack;

/// `envoy/envoy.yaml` as committed, with only its ports and the .wasm path moved so the
/// test cannot collide with a running `make run`.
#[test]
fn the_committed_envoy_yaml_validates_tokens() {
    let Stack { issuer, upstream, envoy, .. } = Stack::start_demo();
    let c = Client::new();
    let good = issuer.mint(&MintRequest::new("RS256", 300));
    let r = c.get(&envoy.url("/hello"), &[("authorization", &format!("Bearer {good}"))]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("x-token-expires-in").is_some());
    assert_eq!(upstream.received().len(), 1);

    let expired = issuer.mint(&MintRequest::new("ES256", -60));
    let r = c.get(&envoy.url("/hello"), &[("authorization", &format!("Bearer {expired}"))]);
    assert_eq!((r.status, r.json()["error"].clone()), (401, json!("token_expired")));
    // HS256 is not in the demo's allowlist.
    let hs = issuer.mint(&MintRequest::new("HS256", 300));
    let r = c.get(&envoy.url("/hello"), &[("authorization", &format!("Bearer {hs}"))]);
    assert_eq!(r.json()["error"], "unsupported_algorithm");
    std::thread::sleep(Duration::from_millis(50));
    assert!(envoy.audit_records().iter().any(|a| a["reason"] == "token_expired"));

    // Refresh through the demo issuer: a 1 s token is due at once (20% of 1 s), and valid
    // within the 30 s leeway after its exp.
    let login: serde_json::Value = c
        .post(&format!("{}/oauth/login", issuer.url()), &[], r#"{"sub":"bob","alg":"ES256","ttl":1}"#)
        .json();
    std::thread::sleep(Duration::from_millis(1100));
    let at = login["access_token"].as_str().unwrap();
    let rt = login["refresh_token"].as_str().unwrap();
    let r =
        c.get(&envoy.url("/hello"), &[("authorization", &format!("Bearer {at}")), ("x-refresh-token", rt)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("x-new-access-token").is_some() && r.header("x-new-refresh-token").is_some());
    assert_eq!(issuer.counter("token_calls"), 1);

    // The revoke line `make run` prints works as written.
    let admin = [("x-admin-token", "demo-admin-token-change-me")];
    let r = c.post(&envoy.url("/tokenguard/revoke?sub=alice"), &admin, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = c.get(&envoy.url("/hello"), &[("authorization", &format!("Bearer {good}"))]);
    assert_eq!(r.json()["error"], "token_revoked");
    let st = c.get(&envoy.url("/tokenguard/stats"), &admin).json();
    assert_eq!(st["revocations"], 1);
    assert_eq!(upstream.received().len(), 2, "admin requests never reach the upstream");

    // Keys come by discovery; the rotation line `make run` prints works as written: a token
    // under the new key is accepted at first sight.
    assert_eq!(issuer.counter("discovery"), 1);
    let r = c.post(&format!("{}/control", issuer.url()), &[], r#"{"rotate_key":true}"#);
    let kid = r.json()["kid"].as_str().unwrap().to_owned();
    let rotated = c.get(&format!("{}/mint?alg=ES256&ttl=300&sub=carol", issuer.url()), &[]).body;
    assert!(rotated.starts_with("ey"), "{rotated}");
    let r = c.get(&envoy.url("/hello"), &[("authorization", &format!("Bearer {rotated}"))]);
    assert_eq!(r.status, 200, "{}", r.body);
    std::thread::sleep(Duration::from_millis(50));
    let audit = envoy.audit_records().into_iter().find(|a| a["event"] == "keys_rotated").unwrap();
    assert!(audit["reason"].as_str().unwrap().contains(&kid), "{audit}");
}

/// The Istio manifest carries the same plugin configuration as envoy.yaml, key for key.
#[test]
fn the_istio_manifest_matches_envoy_yaml() {
    let block = |file: &str, start: &str, end: &str| -> Vec<String> {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        let from = text.find(start).unwrap_or_else(|| panic!("{file}: no {start}"));
        let rest = &text[from..];
        let to = rest.find(end).unwrap_or(rest.len());
        rest[..to].lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
    };
    let envoy = block("envoy/envoy.yaml", "providers:", "- name: envoy.filters.http.router");
    let istio = block("envoy/istio-wasmplugin.yaml", "providers:", "\n\n");
    assert_eq!(envoy, istio);
}
