//! End-to-end: the shared registry and revocations in a real Envoy with two workers. Most
//! tests run a scenario from `tokenguard_harness::scenarios` (see tests/e2e.rs).

use serde_json::{json, Value};

use tokenguard_harness::http::Client;
use tokenguard_harness::issuer::MintRequest;
use tokenguard_harness::keys::now;
use tokenguard_harness::scenarios::{self, observability, registry};
use tokenguard_harness::stack::{demo_keys, Stack};

const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";

fn admin_config(extra: Value) -> Value {
    let mut cfg = json!({"admin": {"path_prefix": "/tokenguard/", "token": ADMIN_TOKEN}});
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    cfg
}

fn stats(s: &Stack) -> Value {
    scenarios::admin_stats(&s.target(), &s.profile)
}

fn revoke(s: &Stack, key: &str, value: &str) -> Value {
    scenarios::revoke(&s.target(), &s.profile, key, value)
}

#[test]
fn revocation_by_each_key_is_enforced_by_every_worker() {
    let s = Stack::start(admin_config(json!({})));
    let changes = || s.envoy.stat("wasmcustom.tokenguard.revocation_changes").unwrap_or(0);
    let before = changes();
    // Each worker adds one at start: Envoy keeps the gauge, once per process.
    assert!(before >= 2, "{before}");
    registry::revocation_by_each_key_is_enforced_by_every_worker(&s.target(), &s.profile);
    // What the hot path reads to learn of a revocation made on another worker.
    assert_eq!(changes(), before + 4, "one change per revocation, process-wide");
    let revoked = s.envoy.audit_records().into_iter().filter(|a| a["event"] == "token_revoked").count();
    assert_eq!(revoked, 4);
    assert_eq!(stats(&s)["revocations"], 4);
    assert_eq!(s.upstream.received().len(), 5 * 6 + 8, "only the bystander got through");
}

#[test]
fn revoke_all_for_a_subject_spares_tokens_issued_after_it() {
    let s = Stack::start(admin_config(json!({})));
    registry::revoke_all_for_a_subject_spares_tokens_issued_after_it(&s.target(), &s.profile);
}

#[test]
fn a_known_token_skips_signature_verification() {
    let s = Stack::start(json!({}));
    registry::a_known_token_skips_signature_verification(&s.target(), &s.profile);
    assert_eq!(s.envoy.stat("wasmcustom.tokenguard.signature_verifications"), Some(2));
    assert_eq!(s.envoy.stat("wasmcustom.tokenguard.registry.hits"), Some(10));
}

#[test]
fn near_expiry_warns_once_per_process_across_workers() {
    let s = Stack::start(json!({"near_expiry_warning_seconds": 10}));
    observability::near_expiry_warns_once_per_process_across_workers(&s.target(), &s.profile);
    assert_eq!(s.envoy.stat("wasmcustom.tokenguard.near_expiry_warnings"), Some(1));
}

#[test]
fn the_admin_api_needs_its_token_and_never_reaches_the_upstream() {
    let s = Stack::start(admin_config(json!({})));
    registry::the_admin_api_needs_its_token_and_never_reaches_the_upstream(&s.target(), &s.profile);
    assert!(s.upstream.received().is_empty(), "an admin request reached the upstream");
    let denied = s.envoy.audit_records().into_iter().filter(|a| a["event"] == "admin_denied").count();
    assert_eq!(denied, 4);
    assert_eq!(stats(&s)["capacity"], 10_000);
}

/// Tens of thousands of distinct short-lived tokens: the registry stays at capacity, the
/// shared-data key count stays fixed, and Envoy's memory stays within a stated bound.
#[test]
fn a_flood_of_distinct_tokens_stays_bounded() {
    const CAPACITY: u64 = 2_000;
    const TOKENS: usize = 20_000;
    let s = Stack::start(admin_config(
        json!({"registry": {"capacity": CAPACITY}, "near_expiry_warning_seconds": 0}),
    ));
    let keys = demo_keys();
    let t0 = now();
    let tokens: Vec<String> = (0..TOKENS)
        .map(|i| {
            let claims = json!({"iss": "https://issuer.test", "sub": format!("flood-{i}"), "aud": "api",
                                "iat": t0, "exp": t0 + 120 + (i % 60) as u64, "jti": format!("flood-{i}")});
            keys.sign("HS256", &claims, None).unwrap()
        })
        .collect();
    let memory = || s.envoy.stat("server.memory_allocated").unwrap_or(0);
    let warm = s.mint(MintRequest::new("HS256", 300));
    s.get("/", Some(&warm));
    let mem_before = memory();

    let chunks: Vec<Vec<String>> = tokens.chunks(TOKENS / 4).map(|c| c.to_vec()).collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let url = s.envoy.url("/");
            std::thread::spawn(move || {
                let c = Client::new();
                let mut failures = std::collections::BTreeMap::new();
                let mut ok = 0;
                for t in &chunk {
                    let r = c.get(&url, &[("authorization", &format!("Bearer {t}"))]);
                    if r.status == 200 {
                        ok += 1;
                    } else {
                        *failures.entry(format!("{} {}", r.status, r.body)).or_insert(0) += 1;
                    }
                }
                if !failures.is_empty() {
                    eprintln!("flood failures: {failures:?}");
                }
                ok
            })
        })
        .collect();
    let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(ok, TOKENS);

    let st = stats(&s);
    let active = st["active_tokens"].as_u64().unwrap();
    assert!(active <= CAPACITY, "{st}");
    assert!(active >= CAPACITY * 9 / 10, "the registry should be nearly full: {st}");
    assert!(st["evictions"].as_u64().unwrap() >= (TOKENS as u64) - CAPACITY, "{st}");
    assert_eq!(
        st["shared_data"]["keys"],
        CAPACITY / 8 + 16 + 64 + 3,
        "token, revocation and handoff buckets plus 3 control keys"
    );
    let bytes = st["shared_data"]["bytes"].as_u64().unwrap();
    assert!(bytes <= CAPACITY * 160, "{bytes} bytes for {CAPACITY} records");
    let growth = memory().saturating_sub(mem_before);
    eprintln!("flood: {st}\nEnvoy memory_allocated grew by {growth} bytes");
    // Stated bound: 16 MiB over the whole flood (registry bytes, V8 heaps, Envoy buffers).
    assert!(growth < 16 * 1024 * 1024, "memory grew by {growth} bytes");
}

/// Revocations and token records live in shared data under the `vm_id`, so a new plugin
/// configuration (what a control plane pushes) keeps them.
#[test]
fn revocations_and_records_survive_a_plugin_config_update() {
    let mut s = Stack::start_dynamic(admin_config(json!({})));
    let revoked = s.mint(MintRequest::new("ES256", 300).claim("jti", json!("jti-survivor")));
    let tracked = s.mint(MintRequest::new("ES256", 300));
    assert_eq!(s.get("/", Some(&revoked)).status, 200);
    assert_eq!(s.get("/", Some(&tracked)).status, 200);
    revoke(&s, "jti", "jti-survivor");
    assert_eq!(s.get("/", Some(&revoked)).json()["error"], "token_revoked");

    s.reconfigure(admin_config(json!({"expires_in_header": "x-seconds-left"})));
    let r = s.get("/", Some(&tracked));
    assert_eq!(r.status, 200);
    assert!(r.header("x-seconds-left").is_some(), "the new configuration is in force");
    assert_eq!(s.get("/", Some(&revoked)).json()["error"], "token_revoked", "the revocation survived");
    let st = stats(&s);
    assert_eq!(st["revocations"], 1);
    assert!(st["tracked_tokens"].as_u64().unwrap() >= 2, "records survived: {st}");
}
