//! Route policy end to end: the built filter in a real Envoy (two workers) with the test
//! issuer and upstream, running the route scenarios (`tokenguard_harness::scenarios::routes`,
//! which the compose harness runs too) on a fresh stack.

use serde_json::json;

use tokenguard_harness::envoy::{ConfigForm, Envoy, Options};
use tokenguard_harness::scenarios::routes;
use tokenguard_harness::stack::Stack;

fn stack() -> Stack {
    Stack::start(routes::config())
}

#[test]
fn a_public_path_without_a_token_reaches_the_upstream() {
    let s = stack();
    routes::a_public_path_without_a_token_reaches_the_upstream(&s.target(), &s.profile);
}

#[test]
fn path_tricks_do_not_pass_as_public() {
    let s = stack();
    routes::path_tricks_do_not_pass_as_public(&s.target(), &s.profile);
    assert_eq!(s.upstream.received().len(), 1, "only the plain public path");
}

#[test]
fn an_optional_route_takes_no_token_and_refuses_a_bad_one() {
    let s = stack();
    routes::an_optional_route_takes_no_token_and_refuses_a_bad_one(&s.target(), &s.profile);
}

#[test]
fn a_missing_scope_is_403_insufficient_scope() {
    let s = stack();
    routes::a_missing_scope_is_403_insufficient_scope(&s.target(), &s.profile);
    assert_eq!(s.envoy.stat("wasmcustom.tokenguard.requests.rejected.insufficient_scope"), Some(7));
}

#[test]
fn required_claims_match_a_nested_claim() {
    let s = stack();
    routes::required_claims_match_a_nested_claim(&s.target(), &s.profile);
}

#[test]
fn the_upstream_sees_claim_headers_and_the_payload() {
    let s = stack();
    routes::the_upstream_sees_claim_headers_and_the_payload(&s.target(), &s.profile);
    // The upstream's own record keeps repeated headers: the forged x-user-id came twice and
    // exactly one value arrived, the real one; on the token without roles or org, none.
    let received = s.upstream.received();
    for (i, r) in received.iter().enumerate() {
        let count = |h: &str| r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(h)).count();
        assert_eq!((count("x-user-id"), count("x-jwt-payload")), (1, 1), "{:?}", r.headers);
        let with_claims = usize::from(i < 3);
        assert_eq!((count("x-user-roles"), count("x-org")), (with_claims, with_claims), "{:?}", r.headers);
    }
    // Control: repeated headers do reach the upstream as sent when no one manages them.
    let t = s.target();
    let r = t.client.get(
        &t.url("/healthz"),
        &[("x-probe", "1"), ("x-probe", "2"), ("x-user-id", "a"), ("x-user-id", "b")],
    );
    assert_eq!(r.status, 200);
    let last = s.upstream.received().pop().expect("forwarded");
    let count = |h: &str| last.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(h)).count();
    assert_eq!((count("x-probe"), count("x-user-id")), (2, 0), "{:?}", last.headers);
}

#[test]
fn forged_claim_headers_are_removed_on_a_public_route() {
    let s = stack();
    routes::forged_claim_headers_are_removed_on_a_public_route(&s.target(), &s.profile);
}

#[test]
fn the_resource_metadata_document_and_challenge() {
    let s = stack();
    routes::the_resource_metadata_document_and_challenge(&s.target(), &s.profile);
}

#[test]
fn report_only_forwards_a_bad_token_and_audits_enforced_false() {
    let s = Stack::start(routes::report_only_config());
    routes::report_only_forwards_a_bad_token_and_audits_enforced_false(&s.target(), &s.profile);
    assert_eq!(s.envoy.stat("wasmcustom.tokenguard.requests.rejected.token_expired"), Some(1));
    assert_eq!(s.envoy.stat("wasmcustom.tokenguard.requests.rejected.insufficient_scope"), Some(1));
}

#[test]
fn a_claim_header_that_names_the_credential_keeps_envoy_from_starting() {
    let keys = tokenguard_harness::stack::demo_keys();
    let cfg = tokenguard_harness::stack::plugin_config(
        &keys,
        &json!({"claims_to_headers": [{"claim": "sub", "header": "Authorization"}]}),
    );
    let log = Envoy::expect_refusal(&Options {
        plugin_config: cfg,
        form: ConfigForm::Struct,
        upstream_port: 9,
        issuer_port: 9,
        concurrency: 2,
        plain_route: false,
        etcd_port: None,
    });
    assert!(
        log.contains("invalid configuration: claims_to_headers[0].header: \"authorization\" is reserved"),
        "{log}"
    );
}
