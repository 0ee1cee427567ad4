//! The scenario suite the compose harness runs (`make compose-test`), here against a local
//! Envoy running the committed `envoy/envoy.yaml`: the same configuration, one shared stack,
//! the scenarios in the same order.

use tokenguard_harness::scenarios::run_suite;
use tokenguard_harness::stack::Stack;

#[test]
fn the_compose_suite_passes_against_the_committed_envoy_yaml() {
    let s = Stack::start_demo();
    let outcomes = run_suite(&s.target(), &s.profile, "");
    let failed: Vec<_> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
