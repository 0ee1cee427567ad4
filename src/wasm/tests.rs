//! The proxy-wasm layer driven natively through the ABI (`double`): what Envoy would see the
//! filter do, caught in seconds. The same behaviours are proven in a real Envoy by tests/.

use serde_json::{json, Value};

use super::double::{Action, Process, Vm};
use crate::testkit::{config_json, mint, NOW};

pub(super) const ADMIN: &str = "0123456789abcdef-admin";

pub(super) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// An admin revocation (`query`: `jti=...`, `sub=...`), with the admin token.
pub(super) fn admin_revoke(query: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "POST".into()),
        (":path", format!("/tokenguard/revoke?{query}")),
        (":authority", "api".into()),
        ("x-admin-token", ADMIN.into()),
    ]
}

pub(super) fn get(path: &str, authorization: Option<&str>) -> Vec<(&'static str, String)> {
    let mut h =
        vec![(":method", "GET".to_string()), (":path", path.to_string()), (":authority", "api".into())];
    if let Some(a) = authorization {
        h.push(("authorization", a.to_string()));
    }
    h
}

pub(super) fn send(vm: &mut Vm, headers: &[(&'static str, String)]) -> (u32, Action) {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    vm.request(&h)
}

pub(super) fn refresh_config() -> Value {
    config_json(json!({"refresh": {"cluster": "issuer", "authority": "issuer.test", "path": "/oauth/token",
        "window_seconds": 60, "window_ratio": 1.0, "grace_seconds": 10, "timeout_ms": 500}}))
}

pub(super) fn start(process: &std::sync::Arc<Process>, cfg: &Value) -> Vm {
    Vm::start(process, cfg).unwrap_or_else(|logs| panic!("refused: {logs:?}"))
}

#[test]
fn a_valid_token_goes_on_and_its_response_learns_the_seconds_left() {
    let process = Process::new(NOW, &[]);
    let mut vm = start(&process, &config_json(json!({})));
    assert_eq!(vm.tick_period_ms(), 100, "the tick that enforces deadlines is set at configure");
    let token = mint("ES256", json!({}));
    let (id, action) = send(&mut vm, &get("/orders?page=2", Some(&bearer(&token))));
    assert_eq!(action, Action::Continue);
    assert!(vm.reply(id).is_none());
    assert_eq!(vm.upstream_header(id, "authorization"), Some(bearer(&token)));
    let response = vm.respond(id, &[(":status", "200")]);
    assert!(response.contains(&("x-token-expires-in".into(), "300".into())), "{response:?}");
    // Accepted requests are counted in the worker and published on its tick.
    assert_eq!(process.metric("tokenguard.requests.accepted"), Some(0));
    vm.tick();
    assert_eq!(process.metric("tokenguard.requests.accepted"), Some(1));
}

#[test]
fn a_refused_request_is_answered_at_the_headers_and_audited_without_its_query() {
    let process = Process::new(NOW, &[]);
    let mut vm = start(&process, &config_json(json!({})));
    let (id, action) = send(&mut vm, &get("/orders", None));
    assert_eq!(action, Action::Pause);
    let reply = vm.reply(id).expect("a local reply");
    assert_eq!((reply.status, reply.json()["error"].clone()), (401, json!("missing_token")));
    assert!(reply.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")), "{reply:?}");
    assert_eq!(process.metric("tokenguard.requests.missing_token"), Some(1));

    let expired = mint("ES256", json!({"exp": NOW - 1}));
    let (id, action) = send(&mut vm, &get("/orders?secret=1", Some(&bearer(&expired))));
    assert_eq!(action, Action::Pause);
    assert_eq!(vm.reply(id).map(|r| r.json()["error"].clone()), Some(json!("token_expired")));
    let audit = vm.audits().into_iter().find(|a| a["event"] == "token_rejected");
    let audit = audit.unwrap_or_else(|| panic!("not audited: {:?}", vm.logs()));
    assert_eq!(audit["path"], "/orders", "the query string never reaches the log");
    assert!(!vm.logs().iter().any(|l| l.contains("secret=1") || l.contains(&expired)));
}

#[test]
fn a_configuration_error_is_refused_at_configure_and_names_the_field() {
    let process = Process::new(NOW, &[]);
    let Err(logs) = Vm::start(&process, &config_json(json!({"clock_skew_seconds": -5}))) else {
        panic!("a negative leeway was accepted");
    };
    assert!(
        logs.iter().any(|l| l.contains("invalid configuration") && l.contains("clock_skew_seconds")),
        "{logs:?}"
    );
}

#[test]
fn an_admin_revocation_on_one_worker_holds_on_another_and_the_admin_token_never_travels() {
    let process = Process::new(NOW, &[]);
    let cfg = config_json(json!({"admin": {"path_prefix": "/tokenguard/", "token": ADMIN}}));
    let token = mint("RS256", json!({"jti": "stolen"}));
    let (p, c, t) = (process.clone(), cfg.clone(), token.clone());
    std::thread::spawn(move || {
        let mut a = start(&p, &c);
        // A client that sends the admin token to an ordinary path does not leak it upstream.
        let mut h = get("/", Some(&bearer(&t)));
        h.push(("x-admin-token", ADMIN.into()));
        let (id, action) = send(&mut a, &h);
        assert_eq!(action, Action::Continue);
        assert_eq!(a.upstream_header(id, "x-admin-token"), None);
        let (id, action) = send(&mut a, &admin_revoke("jti=stolen"));
        assert_eq!(action, Action::Pause, "an admin request never goes upstream");
        assert_eq!(a.reply(id).map(|r| r.status), Some(200));
    })
    .join()
    .unwrap();
    // Another worker: its own VM and caches, the same process's shared data.
    let mut b = start(&process, &cfg);
    let (id, action) = send(&mut b, &get("/", Some(&bearer(&token))));
    assert_eq!(action, Action::Pause);
    let reply = b.reply(id).expect("refused");
    assert_eq!((reply.status, reply.json()["error"].clone()), (401, json!("token_revoked")));
}

pub(super) fn near_expiry() -> String {
    mint("RS256", json!({"exp": NOW + 30, "sid": "s1"}))
}

pub(super) fn refreshing(vm: &mut Vm, old: &str) -> u32 {
    let mut h = get("/", Some(&bearer(old)));
    h.push(("x-refresh-token", "r1".into()));
    let (id, action) = send(vm, &h);
    assert_eq!(action, Action::Pause, "held while the token endpoint answers");
    id
}

#[test]
fn a_refresh_is_one_callout_and_its_answer_resumes_the_request_with_the_new_token() {
    let process = Process::new(NOW, &["issuer"]);
    let mut vm = start(&process, &refresh_config());
    let old = near_expiry();
    let id = refreshing(&mut vm, &old);
    let calls = vm.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!((call.cluster.as_str(), call.context), ("issuer", id));
    assert_eq!(call.header(":method"), Some("POST"));
    assert_eq!(call.header(":path"), Some("/oauth/token"));
    assert_eq!(call.header(":authority"), Some("issuer.test"));
    let body = String::from_utf8_lossy(&call.body).into_owned();
    assert!(body.contains("grant_type=refresh_token") && body.contains("refresh_token=r1"), "{body}");
    let new = mint("RS256", json!({"exp": NOW + 600, "sid": "s1", "jti": "j2"}));
    let answer =
        json!({"access_token": new, "refresh_token": "r2", "token_type": "Bearer", "expires_in": 600});
    vm.answer(call.token, Some(200), answer.to_string().as_bytes());
    assert_eq!(vm.resumed(id), 1);
    assert_eq!(vm.upstream_header(id, "authorization"), Some(bearer(&new)));
    assert_eq!(vm.upstream_header(id, "x-refresh-token"), None, "refresh tokens are not for the upstream");
    let response = vm.respond(id, &[(":status", "200")]);
    assert!(response.contains(&("x-new-access-token".into(), new.clone())), "{response:?}");
    assert!(response.contains(&("x-new-refresh-token".into(), "r2".into())), "{response:?}");
    assert!(
        !vm.logs().iter().any(|l| l.contains(&new) || l.contains("r2") || l.contains("r1")),
        "no secret logged"
    );
}

#[test]
fn a_refresh_past_its_deadline_goes_on_once_and_a_late_answer_changes_nothing() {
    let process = Process::new(NOW, &["issuer"]);
    let mut vm = start(&process, &refresh_config());
    let old = near_expiry();
    let id = refreshing(&mut vm, &old);
    let token = vm.calls()[0].token;
    vm.tick();
    assert_eq!(vm.resumed(id), 0, "not before the deadline");
    process.advance_ms(600);
    vm.tick();
    assert_eq!(vm.resumed(id), 1, "the tick enforces the deadline Envoy may not");
    assert_eq!(vm.upstream_header(id, "authorization"), Some(bearer(&old)), "the old token is still valid");
    let new = mint("RS256", json!({"exp": NOW + 600, "sid": "s1", "jti": "j2"}));
    vm.answer(token, Some(200), json!({"access_token": new, "expires_in": 600}).to_string().as_bytes());
    assert_eq!(vm.resumed(id), 1, "resumed exactly once");
    assert_eq!(vm.upstream_header(id, "authorization"), Some(bearer(&old)));
}

#[test]
fn a_failed_call_and_an_unknown_cluster_fail_the_refresh_without_losing_the_request() {
    let process = Process::new(NOW, &["issuer"]);
    let mut vm = start(&process, &refresh_config());
    let old = near_expiry();
    let id = refreshing(&mut vm, &old);
    let token = vm.calls()[0].token;
    vm.answer(token, None, b"");
    assert_eq!(vm.resumed(id), 1);
    assert_eq!(vm.upstream_header(id, "authorization"), Some(bearer(&old)));
    assert!(vm.audits().iter().any(|a| a["event"] == "refresh_failed"), "{:?}", vm.audits());

    // No such cluster: Envoy refuses the dispatch; the request is not left hanging.
    let lonely = Process::new(NOW, &[]);
    let mut vm = start(&lonely, &refresh_config());
    let mut h = get("/", Some(&bearer(&old)));
    h.push(("x-refresh-token", "r1".into()));
    let (id, action) = send(&mut vm, &h);
    assert_eq!(action, Action::Continue);
    assert!(vm.calls().is_empty() && vm.reply(id).is_none());
}

#[test]
fn a_stream_that_ends_while_held_takes_its_state_with_it() {
    let process = Process::new(NOW, &["issuer"]);
    let mut vm = start(&process, &refresh_config());
    let id = refreshing(&mut vm, &near_expiry());
    vm.end(id);
    assert!(vm.calls().is_empty(), "Envoy cancels a gone stream's calls");
    process.advance_ms(600);
    vm.tick(); // the deadline of a gone stream: nothing to resume, nothing to crash on
    let (id, action) = send(&mut vm, &get("/", Some(&bearer(&mint("EdDSA", json!({}))))));
    assert_eq!((action, vm.reply(id).is_none()), (Action::Continue, true), "the worker still serves");
}

fn egress_config() -> Value {
    json!({"mode": "egress", "egress": {"cluster": "issuer", "authority": "issuer.test", "path": "/oauth/token",
        "grant": "client_credentials", "client_id": "svc", "client_secret": "s3cret"}})
}

#[test]
fn egress_fetches_once_per_process_and_every_worker_injects_the_token() {
    let process = Process::new(NOW, &["issuer"]);
    let (p, c) = (process.clone(), egress_config());
    let fetched = std::thread::spawn(move || {
        let mut a = start(&p, &c);
        a.tick();
        let calls = a.calls();
        assert_eq!(calls.len(), 1, "the first worker to tick takes the lease and fetches");
        assert!(calls[0].header("authorization").is_some_and(|h| h.starts_with("Basic ")));
        let token = mint("ES256", json!({"sub": "svc", "exp": NOW + 3600}));
        let answer = json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600});
        a.answer(calls[0].token, Some(200), answer.to_string().as_bytes());
        assert!(!a.logs().iter().any(|l| l.contains("s3cret") || l.contains(&token)), "no secret logged");
        token
    })
    .join()
    .unwrap();
    let mut b = start(&process, &egress_config());
    b.tick();
    assert!(b.calls().is_empty(), "a second worker does not fetch a token the process has");
    let (id, action) = send(&mut b, &get("/", None));
    assert_eq!(action, Action::Continue);
    assert_eq!(b.upstream_header(id, "authorization"), Some(bearer(&fetched)));
}

#[test]
fn remote_keys_are_fetched_once_and_a_request_held_for_them_is_decided_on_them() {
    let process = Process::new(NOW, &["idp"]);
    let cfg = config_json(json!({"providers": [{"issuer": crate::testkit::ISS, "audiences": ["api"],
        "algorithms": ["ES256"], "remote_jwks": {"cluster": "idp", "uri": "https://keys.test:8443/certs"}}]}));
    let mut vm = start(&process, &cfg);
    let token = mint("ES256", json!({}));
    let (id, action) = send(&mut vm, &get("/", Some(&bearer(&token))));
    assert_eq!((action, vm.reply(id).is_none()), (Action::Pause, true), "no keys yet: held, not refused");
    vm.tick();
    let calls = vm.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].cluster.as_str(), calls[0].context),
        ("idp", vm.root()),
        "fetched from the root context"
    );
    assert_eq!(calls[0].header(":method"), Some("GET"));
    assert_eq!(calls[0].header(":authority"), Some("keys.test:8443"));
    assert_eq!(calls[0].header(":path"), Some("/certs"));
    let set = crate::testkit::keys().filter_jwks().to_string();
    vm.answer_with(calls[0].token, Some(200), &[("cache-control", "max-age=300")], set.as_bytes());
    vm.tick();
    assert_eq!((vm.resumed(id), vm.reply(id).is_none()), (1, true), "decided on the fetched keys");
    assert!(vm.audits().iter().any(|a| a["event"] == "keys_ready"), "{:?}", vm.audits());
    process.advance_ms(60_000);
    vm.tick();
    assert!(vm.calls().is_empty(), "fresh for max-age: no fetch a minute later");
    let (_, action) = send(&mut vm, &get("/", Some(&bearer(&mint("ES256", json!({"jti": "j2"}))))));
    assert_eq!(action, Action::Continue);
}

#[test]
fn a_public_route_needs_no_token_and_claim_headers_are_never_the_clients() {
    let process = Process::new(NOW, &[]);
    let cfg = config_json(json!({"routes": [{"path_prefix": "/healthz", "policy": "public"}],
        "claims_to_headers": [{"claim": "sub", "header": "x-user-id"}]}));
    let mut vm = start(&process, &cfg);
    let mut forged = get("/healthz", None);
    forged.push(("x-user-id", "admin".into()));
    let (id, action) = send(&mut vm, &forged);
    assert_eq!(action, Action::Continue);
    assert_eq!(vm.upstream_header(id, "x-user-id"), None, "removed on a public route too");
    let mut with_token = get("/orders", Some(&bearer(&mint("EdDSA", json!({})))));
    with_token.push(("x-user-id", "admin".into()));
    let (id, action) = send(&mut vm, &with_token);
    assert_eq!(action, Action::Continue);
    assert_eq!(
        vm.upstream_header(id, "x-user-id").as_deref(),
        Some("alice"),
        "the verified claim, not the forged one"
    );
    let (id, action) = send(&mut vm, &get("/healthz/../orders", None));
    assert_eq!(
        (action, vm.reply(id).map(|r| r.status)),
        (Action::Pause, Some(401)),
        "no path trick is public"
    );
}

/// A worker answering a token from its hot path sees a revocation another worker just made
/// on its very next request (no tick between), through the process-wide change count.
#[test]
fn a_revocation_on_one_worker_ends_the_hot_path_on_another_at_once() {
    for gauge_kept in [true, false] {
        let process = Process::new(NOW, &[]);
        if !gauge_kept {
            process.reject_stat("tokenguard.revocation_changes");
        }
        let cfg = config_json(json!({"admin": {"path_prefix": "/tokenguard/", "token": ADMIN}}));
        let token = mint("RS256", json!({"jti": "stolen"}));
        // Worker A starts first (starting counts as a change), then waits for its turn.
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let (p, c) = (process.clone(), cfg.clone());
        let a = std::thread::spawn(move || {
            let mut a = start(&p, &c);
            ready_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            let (id, _) = send(&mut a, &admin_revoke("jti=stolen"));
            assert_eq!(a.reply(id).map(|r| r.status), Some(200));
        });
        ready.recv().unwrap();
        let mut b = start(&process, &cfg);
        for _ in 0..3 {
            let (id, action) = send(&mut b, &get("/", Some(&bearer(&token))));
            assert_eq!(action, Action::Continue);
            b.end(id);
        }
        let _ = super::double::take_host_calls();
        let (id, _) = send(&mut b, &get("/", Some(&bearer(&token))));
        b.end(id);
        let reads = super::double::take_host_calls();
        let epoch_read = if gauge_kept { "proxy_get_metric" } else { "proxy_get_shared_data" };
        assert!(reads.iter().any(|(call, _)| *call == epoch_read), "{gauge_kept}: {reads:?}");
        go.send(()).unwrap();
        a.join().unwrap();
        let (id, action) = send(&mut b, &get("/", Some(&bearer(&token))));
        assert_eq!(action, Action::Pause, "gauge kept: {gauge_kept}");
        assert_eq!(b.reply(id).map(|r| r.json()["error"].clone()), Some(json!("token_revoked")));
    }
}

/// The hot path's host calls, counted: what a token accepted a moment ago costs besides the
/// filter's own work. Each one is a crossing of the Wasm boundary (see docs/architecture.md).
#[test]
fn the_hot_path_makes_few_host_calls() {
    let process = Process::new(NOW, &[]);
    let mut vm = start(&process, &config_json(json!({})));
    let token = mint("ES256", json!({}));
    // First sight, then second sight (remembered from there on), then the hot path.
    for _ in 0..2 {
        let (seen, _) = send(&mut vm, &get("/orders", Some(&bearer(&token))));
        vm.respond(seen, &[(":status", "200")]);
        vm.end(seen);
    }
    let _ = super::double::take_host_calls();
    let (id, action) = send(&mut vm, &get("/orders", Some(&bearer(&token))));
    assert_eq!(action, Action::Continue);
    let request = super::double::take_host_calls();
    vm.respond(id, &[(":status", "200")]);
    let response = super::double::take_host_calls();
    // The clock (expiry), the credential, and the revocation change count (a revocation
    // made on another worker or replica must be seen at once: a gauge read, not the shared
    // versions); then the seconds-left header.
    let want = [
        ("proxy_get_current_time_nanoseconds", 1),
        ("proxy_get_header_map_value", 1),
        ("proxy_get_metric", 1),
    ];
    assert_eq!(request, want);
    assert_eq!(response, [("proxy_replace_header_map_value", 1)]);
}

/// The route policy's hot path (issue 16's bench row: 20 rules, 3 claim headers): the route
/// step reads the method and path, and each claim header is one write.
#[test]
fn the_hot_path_with_routes_and_claim_headers_adds_only_those_host_calls() {
    let process = Process::new(NOW, &[]);
    let rules: Vec<Value> = (0..20)
        .map(|i| match i % 4 {
            0 => json!({"path_prefix": format!("/svc-{i}/"), "policy": "public"}),
            1 => json!({"path_exact": format!("/svc-{i}/status"), "methods": ["GET"], "policy": "optional"}),
            2 => json!({"path_prefix": format!("/svc-{i}/"), "required_scopes": ["admin"]}),
            _ => {
                json!({"path_exact": format!("/svc-{i}/status"), "required_claims": {"org.tenant": ["acme"]}})
            }
        })
        .collect();
    let headers: Vec<Value> =
        ["sub", "iss", "jti"].iter().map(|c| json!({"claim": c, "header": format!("x-claim-{c}")})).collect();
    let mut vm = start(&process, &config_json(json!({"routes": rules, "claims_to_headers": headers})));
    let token = mint("ES256", json!({"jti": "j1"}));
    for _ in 0..2 {
        let (seen, _) = send(&mut vm, &get("/", Some(&bearer(&token))));
        vm.end(seen);
    }
    let _ = super::double::take_host_calls();
    let (id, action) = send(&mut vm, &get("/", Some(&bearer(&token))));
    assert_eq!(action, Action::Continue);
    let calls = super::double::take_host_calls();
    assert_eq!(vm.upstream_header(id, "x-claim-jti"), Some("j1".into()));
    let want = [
        ("proxy_get_current_time_nanoseconds", 1),
        ("proxy_get_header_map_value", 2), // the credential, and :path for the rules
        ("proxy_get_metric", 1),
        ("proxy_replace_header_map_value", 3), // one per claim header
    ];
    assert_eq!(calls, want);
}
