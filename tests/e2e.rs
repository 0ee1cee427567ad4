//! End-to-end: the built filter in a real Envoy 1.40 (two workers), with the test issuer
//! and an upstream on loopback. Each test asserts what the client, the upstream and the
//! audit log saw. Run through `make test`, which builds the .wasm and installs Envoy.
//!
//! Most tests run a scenario from `tokenguard_harness::scenarios` (the suite the compose
//! harness runs too) on a fresh stack with the configuration the scenario is about; on a
//! fresh stack they also check the totals the scenario can only check as differences.

use serde_json::json;

use tokenguard_harness::envoy::{ConfigForm, Envoy, Options};
use tokenguard_harness::issuer::MintRequest;
use tokenguard_harness::scenarios::{forwarding, observability, rejections};
use tokenguard_harness::stack::{demo_keys, plugin_config, Stack};
use tokenguard_harness::target::sample;

/// Seed 000 TC1: a 5 s token is valid at once and refused after 6 s (no leeway).
#[test]
fn tc1_token_expires_after_its_ttl() {
    let s = Stack::start(json!({"clock_skew_seconds": 0}));
    forwarding::token_expires_after_its_ttl(&s.target(), &s.profile);
    assert_eq!(s.upstream.received().len(), 1);
}

/// Seed 000 TC2: a 60 s token 10 s before expiry produces exactly one near_expiry event.
#[test]
fn tc2_near_expiry_warning_fires_once() {
    let s = Stack::start(json!({"near_expiry_warning_seconds": 10}));
    observability::near_expiry_warning_fires_once(&s.target(), &s.profile);
    assert_eq!(s.envoy.stat("wasmcustom.tokenguard.near_expiry_warnings"), Some(1));
}

#[test]
fn session_lifetime_ends_a_token_that_has_not_expired() {
    let s = Stack::start(json!({"session": {"max_lifetime_seconds": 3600, "start_claim": "auth_time"}}));
    rejections::session_lifetime_ends_a_token_that_has_not_expired(&s.target(), &s.profile);
}

#[test]
fn every_rejection_code_reaches_the_client_and_nothing_reaches_the_upstream() {
    let s = Stack::start(json!({"session": {"max_lifetime_seconds": 600}}));
    rejections::every_rejection_code_reaches_the_client_and_nothing_reaches_the_upstream(
        &s.target(),
        &s.profile,
    );
    assert!(s.upstream.received().is_empty(), "a refused request reached the upstream");
}

#[test]
fn a_request_without_a_token_gets_a_bare_challenge() {
    let s = Stack::start(json!({}));
    rejections::a_request_without_a_token_gets_a_bare_challenge(&s.target(), &s.profile);
    assert!(s.upstream.received().is_empty());
}

#[test]
fn the_client_learns_how_long_its_token_has_left() {
    let s = Stack::start(json!({}));
    forwarding::the_client_learns_how_long_its_token_has_left(&s.target(), &s.profile);
}

#[test]
fn a_rejection_writes_one_audit_line_without_the_token() {
    let s = Stack::start(json!({}));
    observability::a_rejection_writes_one_audit_line_without_the_token(&s.target(), &s.profile);
}

#[test]
fn counters_are_visible_to_prometheus() {
    let s = Stack::start(json!({"near_expiry_warning_seconds": 0}));
    observability::counters_are_visible_to_prometheus(&s.target(), &s.profile);
    let prom = s.envoy.prometheus();
    assert_eq!(sample(&prom, "tokenguard_requests_accepted"), Some(3), "{prom}");
    assert_eq!(sample(&prom, "tokenguard_requests_rejected_token_expired"), Some(2));
    assert_eq!(sample(&prom, "tokenguard_requests_missing_token"), Some(1));
    assert_eq!(sample(&prom, "tokenguard_requests_rejected_invalid_signature"), Some(0));
}

#[test]
fn an_invalid_configuration_keeps_envoy_from_starting_and_names_the_field() {
    let keys = demo_keys();
    let mut plugin = plugin_config(&keys, &json!({"clock_skew_seconds": 30}));
    plugin["providers"][0]["algorithms"] = json!(["RS256", "none"]);
    let log = Envoy::expect_refusal(&Options {
        plugin_config: plugin,
        form: ConfigForm::StringValue,
        upstream_port: 9,
        issuer_port: 9,
        concurrency: 2,
        plain_route: false,
        etcd_port: None,
    });
    assert!(
        log.contains(
            "tokenguard: invalid configuration: providers[0].algorithms[1]: unsupported algorithm \"none\""
        ),
        "{log}"
    );
    let log = Envoy::expect_refusal(&Options {
        plugin_config: plugin_config(&keys, &json!({"clock_skew": 30})),
        form: ConfigForm::Struct,
        upstream_port: 9,
        issuer_port: 9,
        concurrency: 2,
        plain_route: false,
        etcd_port: None,
    });
    assert!(log.contains("invalid configuration: clock_skew: unknown field `clock_skew`"), "{log}");
}

#[test]
fn a_struct_configuration_written_as_yaml_works() {
    let s =
        Stack::start_with(json!({"clock_skew_seconds": 5, "expires_in_header": "x-ttl"}), ConfigForm::Struct);
    let token = s.mint(MintRequest::new("RS384", 90));
    let r = s.get("/", Some(&token));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("x-ttl").is_some());
    let expired = s.mint(MintRequest::new("RS384", -3));
    assert_eq!(s.get("/", Some(&expired)).status, 200, "within the 5 s leeway");
}

#[test]
fn both_workers_enforce_the_same_policy() {
    let s = Stack::start(json!({}));
    forwarding::both_workers_enforce_the_same_policy(&s.target(), &s.profile);
    assert_eq!(s.upstream.received().len(), 8);
    assert_eq!(s.envoy.stat("wasmcustom.tokenguard.requests.accepted"), Some(8));
}
