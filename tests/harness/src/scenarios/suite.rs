//! The suite the compose harness runs (and `tests/scenarios.rs` runs against a local Envoy
//! with the same configuration), with a summary line per scenario.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use super::{fleet, forwarding, keys, observability, registry, rejections, routes, Scenario};
use crate::profile::Profile;
use crate::target::Target;

/// Every scenario that runs under `envoy/envoy.yaml`'s configuration, in the order run.
pub const SUITE: &[(&str, Scenario)] = &[
    ("valid token forwarded with its time left", forwarding::the_client_learns_how_long_its_token_has_left),
    ("token expires after exp + leeway", forwarding::token_expires_after_its_ttl),
    ("both workers enforce the same policy", forwarding::both_workers_enforce_the_same_policy),
    (
        "every rejection code reaches the client",
        rejections::every_rejection_code_reaches_the_client_and_nothing_reaches_the_upstream,
    ),
    ("missing token gets a bare challenge", rejections::a_request_without_a_token_gets_a_bare_challenge),
    ("session lifetime ends a valid token", rejections::session_lifetime_ends_a_token_that_has_not_expired),
    ("rejection writes one audit line", observability::a_rejection_writes_one_audit_line_without_the_token),
    ("prometheus counters move", observability::counters_are_visible_to_prometheus),
    ("near-expiry warning fires once", observability::near_expiry_warning_fires_once),
    (
        "near-expiry warns once across workers",
        observability::near_expiry_warns_once_per_process_across_workers,
    ),
    ("revocation enforced by every worker", registry::revocation_by_each_key_is_enforced_by_every_worker),
    ("revoke-all spares later tokens", registry::revoke_all_for_a_subject_spares_tokens_issued_after_it),
    ("known token skips verification", registry::a_known_token_skips_signature_verification),
    (
        "admin API guarded, never upstream",
        registry::the_admin_api_needs_its_token_and_never_reaches_the_upstream,
    ),
    ("rotated key accepted at first sight", keys::a_rotated_key_is_accepted_at_first_sight_by_every_worker),
    ("random-kid flood fetches rarely", keys::a_random_kid_flood_fetches_at_most_once_per_min_refetch),
    ("last good keys serve while down", keys::the_last_good_keys_serve_while_the_key_server_is_down),
    ("route: public path without a token", routes::a_public_path_without_a_token_reaches_the_upstream),
    ("route: path tricks are not public", routes::path_tricks_do_not_pass_as_public),
    ("route: optional, none and bad token", routes::an_optional_route_takes_no_token_and_refuses_a_bad_one),
    ("route: missing scope is 403", routes::a_missing_scope_is_403_insufficient_scope),
    ("route: nested required claim", routes::required_claims_match_a_nested_claim),
    ("route: claim headers and payload", routes::the_upstream_sees_claim_headers_and_the_payload),
    ("route: forged headers removed on public", routes::forged_claim_headers_are_removed_on_a_public_route),
    ("route: RFC 9728 document and challenge", routes::the_resource_metadata_document_and_challenge),
];

/// The fleet scenarios: run after `SUITE` when the target has a second replica and etcd.
pub const FLEET_SUITE: &[(&str, Scenario)] = &[
    (
        "fleet: admin revoke on 1, refused on 2",
        fleet::an_admin_revocation_on_one_replica_is_refused_on_the_other,
    ),
    ("fleet: etcd write refused on both", fleet::a_revocation_written_to_etcd_is_refused_on_both_replicas),
];

#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub seconds: f64,
    /// The failure message, or `None` when the scenario passed.
    pub failure: Option<String>,
}

/// Runs the scenarios whose name contains `filter` (all when empty), one after another,
/// printing a line for each, then checks that the Wasm VM never failed. The fleet
/// scenarios run too when the target has a fleet.
pub fn run_suite(t: &Target, p: &Profile, filter: &str) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let fleet = if t.fleet.is_some() { FLEET_SUITE } else { &[] };
    for (name, scenario) in SUITE.iter().chain(fleet).filter(|(n, _)| n.contains(filter)) {
        let start = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| scenario(t, p)));
        let failure = result.err().map(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into())
        });
        let outcome = Outcome { name: name.to_string(), seconds: start.elapsed().as_secs_f64(), failure };
        report(&outcome);
        outcomes.push(outcome);
    }
    let failure = t.vm_failure().map(|line| format!("the Wasm VM failed: {line}"));
    let outcome = Outcome { name: "no Wasm VM failure in Envoy's log".into(), seconds: 0.0, failure };
    report(&outcome);
    outcomes.push(outcome);
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    let seconds: f64 = outcomes.iter().map(|o| o.seconds).sum();
    println!("scenarios: {} passed, {failed} failed ({seconds:.1} s)", outcomes.len() - failed);
    outcomes
}

fn report(o: &Outcome) {
    match &o.failure {
        None => println!("  ok    {:<42} {:>5.1} s", o.name, o.seconds),
        Some(f) => {
            // The whole message (and where) is in the panic's own report above.
            let first: String = f.lines().next().unwrap_or_default().chars().take(160).collect();
            println!("  FAIL  {:<42} {:>5.1} s  {first}", o.name, o.seconds)
        }
    }
}
