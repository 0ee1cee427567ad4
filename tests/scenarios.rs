//! The scenario suite the compose harness runs (`make compose-test`), here against a local
//! Envoy running the committed `envoy/envoy.yaml`: the same configuration, one shared stack,
//! the scenarios in the same order; and its fleet scenarios against two local replicas on
//! a real etcd.

use tokenguard_harness::fleet::Fleet;
use tokenguard_harness::scenarios::{run_suite, FLEET_SUITE};
use tokenguard_harness::stack::Stack;

#[test]
fn the_compose_suite_passes_against_the_committed_envoy_yaml() {
    let s = Stack::start_demo();
    let outcomes = run_suite(&s.target(), &s.profile, "");
    let failed: Vec<_> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn the_compose_fleet_scenarios_pass_against_two_local_replicas_on_etcd() {
    let f = Fleet::start(serde_json::json!({}));
    let outcomes = run_suite(&f.target(), &f.profile(), "fleet:");
    assert_eq!(outcomes.len(), FLEET_SUITE.len() + 1, "every fleet scenario ran, then the VM check");
    let failed: Vec<_> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
