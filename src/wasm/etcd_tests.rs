//! The etcd glue driven through the ABI double: the calls and the watch stream the filter
//! makes, what it does with each answer, and the deadlines and liveness checks the tick
//! enforces. The same behaviours against a real etcd and Envoy: tests/etcd_filter.rs.

use prost::Message;
use serde_json::{json, Value};

use super::double::{Action, Grpc, Process, Vm};
use super::tests::{bearer, get, near_expiry, refreshing, send, start, ADMIN};
use crate::etcd::proto::*;
use crate::testkit::{config_json, mint, NOW};

fn etcd_config(extra: Value) -> Value {
    let mut cfg = json!({
        "admin": {"path_prefix": "/tokenguard/", "token": ADMIN},
        "revocation_store": {"etcd": {"cluster": "etcd", "timeout_ms": 300, "startup_wait_ms": 1000}}
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        cfg[k] = v.clone();
    }
    config_json(cfg)
}

fn only(vm: &Vm, method: &str) -> Grpc {
    let open: Vec<Grpc> = vm.grpc().into_iter().filter(|g| g.method == method).collect();
    assert_eq!(open.len(), 1, "one {method} expected: {:?}", vm.grpc());
    open.into_iter().next().unwrap_or_else(|| unreachable!())
}

fn kv(key: &str, value: &str, rev: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        mod_revision: rev,
        create_revision: rev,
        ..Default::default()
    }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

/// A fresh process, its held request, and the watch open after a list at revision 5 that
/// revoked jti "gone".
fn listed(process: &std::sync::Arc<Process>) -> (Vm, u32, Grpc) {
    let mut vm = start(process, &etcd_config(json!({})));
    let (id, action) = send(&mut vm, &get("/", Some(&bearer(&mint("EdDSA", json!({"jti": "gone"}))))));
    assert_eq!(action, Action::Pause, "undecidable before etcd's list is applied");
    vm.tick();
    let range = only(&vm, "Range");
    assert_eq!((range.cluster.as_str(), range.service.as_str()), ("etcd", "etcdserverpb.KV"));
    assert_eq!(range.context, vm.root(), "the root context follows etcd");
    let page = RangeResponse {
        header: header(5),
        kvs: vec![kv("/tokenguard/revoked/jti/gone", "{}", 4)],
        more: false,
        count: 1,
    };
    vm.grpc_answer(range.token, Ok(&page.encode_to_vec()));
    let watch = only(&vm, "Watch");
    let create = WatchRequest::decode(watch.sent[0].as_slice()).expect("a watch request");
    match create.request_union {
        Some(WatchRequestUnion::Create(c)) => {
            assert_eq!((c.key.as_slice(), c.start_revision), (&b"/tokenguard/"[..], 6))
        }
        other => panic!("{other:?}"),
    }
    (vm, id, watch)
}

#[test]
fn the_list_decides_held_requests_and_the_watch_brings_later_revocations() {
    let process = Process::new(NOW, &["etcd"]);
    let (mut vm, id, watch) = listed(&process);
    vm.tick();
    let reply = vm.reply(id).unwrap_or_else(|| panic!("still held: {:?}", vm.logs()));
    assert_eq!((reply.status, reply.json()["error"].clone()), (401, json!("token_revoked")));
    let later = mint("EdDSA", json!({"jti": "later"}));
    assert_eq!(send(&mut vm, &get("/", Some(&bearer(&later)))).1, Action::Continue);
    let created = WatchResponse { header: header(5), created: true, ..Default::default() };
    vm.grpc_message(watch.token, &created.encode_to_vec());
    let put = Event { r#type: EVENT_PUT, kv: Some(kv("/tokenguard/revoked/jti/later", "{}", 7)) };
    let events = WatchResponse { header: header(7), events: vec![put], ..Default::default() };
    vm.grpc_message(watch.token, &events.encode_to_vec());
    let (id, _) = send(&mut vm, &get("/", Some(&bearer(&later))));
    assert_eq!(vm.reply(id).map(|r| r.status), Some(401), "a watched revocation is enforced at once");
    assert_eq!(process.metric("tokenguard.revocation_store.entries"), Some(2));
}

#[test]
fn a_silent_watch_is_asked_for_progress_and_given_up_when_it_does_not_answer() {
    let process = Process::new(NOW, &["etcd"]);
    let (mut vm, _, watch) = listed(&process);
    vm.grpc_message(
        watch.token,
        &WatchResponse { header: header(5), created: true, ..Default::default() }.encode_to_vec(),
    );
    process.advance_ms(2000);
    vm.tick();
    let sent = only(&vm, "Watch").sent;
    assert_eq!(sent.len(), 2, "a progress request after 2 s of silence");
    assert_eq!(sent[1], [0x1a, 0]);
    // An answer proves the stream alive: it stays.
    vm.grpc_message(watch.token, &WatchResponse { header: header(5), ..Default::default() }.encode_to_vec());
    process.advance_ms(2000);
    vm.tick();
    process.advance_ms(400);
    vm.tick();
    assert!(vm.grpc().is_empty(), "a progress request unanswered within timeout_ms ends the stream");
    let audits: Vec<Value> =
        vm.audits().into_iter().filter(|a| a["event"] == "revocation_store_unreachable").collect();
    assert_eq!(audits.len(), 1, "{:?}", vm.audits());
    assert!(audits[0]["reason"].as_str().is_some_and(|r| r.contains("silent")), "{audits:?}");
    // After the backoff (at most a second the first time) it resumes where it was.
    process.advance_ms(1000);
    vm.tick();
    let again = only(&vm, "Watch");
    match WatchRequest::decode(again.sent[0].as_slice()).ok().and_then(|w| w.request_union) {
        Some(WatchRequestUnion::Create(c)) => assert_eq!(c.start_revision, 6, "no relist: resumed"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_compacted_watch_lists_afresh_and_a_failed_call_backs_off_audited_once() {
    let process = Process::new(NOW, &["etcd"]);
    let (mut vm, _, watch) = listed(&process);
    let cancelled =
        WatchResponse { header: header(50), canceled: true, compact_revision: 40, ..Default::default() };
    vm.grpc_message(watch.token, &cancelled.encode_to_vec());
    assert!(vm.grpc().is_empty(), "the cancelled stream is closed");
    vm.tick();
    let range = only(&vm, "Range");
    let ask = RangeRequest::decode(range.sent[0].as_slice()).expect("a range");
    assert_eq!(ask.revision, 0, "a fresh list, not pinned to a compacted revision");
    vm.grpc_answer(range.token, Err(14));
    for _ in 0..3 {
        vm.tick();
    }
    assert!(vm.grpc().is_empty(), "backing off");
    process.advance_ms(1000);
    vm.tick();
    let range = only(&vm, "Range");
    process.advance_ms(300);
    vm.tick();
    assert!(vm.grpc().is_empty(), "the call's deadline is enforced by the tick");
    let outages = vm.audits().into_iter().filter(|a| a["event"] == "revocation_store_unreachable").count();
    assert_eq!(outages, 1);
    assert!(process.metric("tokenguard.revocation_store.failures").is_some_and(|n| n >= 2));
    let _ = range;
}

#[test]
fn etcd_never_answering_means_503_after_the_start_up_wait() {
    let process = Process::new(NOW, &["etcd"]);
    let mut vm = start(&process, &etcd_config(json!({})));
    let (id, action) = send(&mut vm, &get("/", Some(&bearer(&mint("EdDSA", json!({}))))));
    assert_eq!(action, Action::Pause);
    vm.tick();
    let health = vm.calls().into_iter().find(|c| c.header(":path") == Some("/health"));
    assert!(health.is_some_and(|c| c.cluster == "etcd"), "the cluster is checked with a plain call first");
    process.advance_ms(1000);
    vm.tick();
    let reply = vm.reply(id).unwrap_or_else(|| panic!("still held: {:?}", vm.logs()));
    assert_eq!((reply.status, reply.json()["error"].clone()), (503, json!("temporarily_unavailable")));
}

#[test]
fn an_unknown_cluster_is_logged_and_never_called_with_grpc() {
    let process = Process::new(NOW, &[]);
    let mut vm = start(&process, &etcd_config(json!({})));
    vm.tick();
    vm.tick();
    assert!(vm.grpc().is_empty());
    assert!(vm.logs().iter().any(|l| l.contains("not a cluster Envoy knows")), "{:?}", vm.logs());
}

fn revoke(vm: &mut Vm) -> u32 {
    send(vm, &super::tests::admin_revoke("sub=alice")).0
}

#[test]
fn an_admin_revocation_is_written_on_a_lease_and_the_reply_says_it_was_committed() {
    let process = Process::new(NOW, &["etcd"]);
    let mut vm = start(&process, &etcd_config(json!({})));
    vm.tick(); // the cluster check
    let id = revoke(&mut vm);
    assert!(vm.reply(id).is_none(), "waits for etcd");
    let grant = only(&vm, "LeaseGrant");
    assert_eq!(grant.context, id, "from the admin request's own context");
    let ttl = LeaseGrantRequest::decode(grant.sent[0].as_slice()).map(|g| g.ttl).unwrap_or_default();
    assert!(ttl >= 300, "outlives the tokens it names: {ttl}");
    vm.grpc_answer(
        grant.token,
        Ok(&LeaseGrantResponse { header: header(3), id: 77, ttl, error: String::new() }.encode_to_vec()),
    );
    let put = only(&vm, "Put");
    let req = PutRequest::decode(put.sent[0].as_slice()).expect("a put");
    assert_eq!((req.key.as_slice(), req.lease), (&b"/tokenguard/revoked/sub/alice"[..], 77));
    assert!(put.metadata.is_empty() && !put.sent.iter().any(|m| String::from_utf8_lossy(m).contains(ADMIN)));
    vm.grpc_answer(put.token, Ok(&PutResponse { header: header(4) }.encode_to_vec()));
    let reply = vm.reply(id).expect("answered");
    assert_eq!((reply.status, reply.json()["committed"].clone()), (200, json!(true)));
    // etcd refusing the lease: not committed, audited, and the revocation holds here.
    let id = revoke(&mut vm);
    vm.grpc_answer(only(&vm, "LeaseGrant").token, Err(8));
    assert_eq!(vm.reply(id).map(|r| r.json()["committed"].clone()), Some(json!(false)));
    assert!(vm.audits().iter().any(|a| a["event"] == "revocation_publish_failed"));
    // No answer at all: the tick answers at twice timeout_ms.
    let id = revoke(&mut vm);
    process.advance_ms(600);
    vm.tick();
    assert_eq!(vm.reply(id).map(|r| r.json()["committed"].clone()), Some(json!(false)));
}

fn refresh_with_etcd() -> Value {
    let mut cfg = super::tests::refresh_config();
    cfg["revocation_store"] = json!({"etcd": {"cluster": "etcd", "timeout_ms": 300, "startup_wait_ms": 0}});
    cfg
}

/// A fresh process with the list applied (empty), ready to decide requests.
fn synced(process: &std::sync::Arc<Process>, cfg: &Value) -> Vm {
    let mut vm = start(process, cfg);
    vm.tick();
    let range = only(&vm, "Range");
    vm.grpc_answer(
        range.token,
        Ok(&RangeResponse { header: header(2), ..Default::default() }.encode_to_vec()),
    );
    vm
}

#[test]
fn a_refresh_claimed_by_another_replica_forwards_the_old_token_without_calling_out() {
    let process = Process::new(NOW, &["etcd", "issuer"]);
    let mut vm = synced(&process, &refresh_with_etcd());
    let old = near_expiry();
    let id = refreshing(&mut vm, &old);
    assert!(vm.calls().iter().all(|c| c.cluster != "issuer"), "no token endpoint call before the claim");
    let grant = only(&vm, "LeaseGrant");
    vm.grpc_answer(
        grant.token,
        Ok(&LeaseGrantResponse { header: header(3), id: 9, ttl: 60, error: String::new() }.encode_to_vec()),
    );
    let txn = only(&vm, "Txn");
    let ask = TxnRequest::decode(txn.sent[0].as_slice()).expect("a txn");
    let key = String::from_utf8_lossy(&ask.compare[0].key).into_owned();
    assert!(
        key.starts_with("/tokenguard/refresh/") && key.len() == "/tokenguard/refresh/".len() + 64,
        "{key}"
    );
    assert!(!txn
        .sent
        .iter()
        .any(|m| String::from_utf8_lossy(m).contains(&old) || String::from_utf8_lossy(m).contains("r1")));
    let theirs = RangeResponse { kvs: vec![kv(&key, r#"{"holder":"12345"}"#, 3)], ..Default::default() };
    let lost = TxnResponse {
        header: header(3),
        succeeded: false,
        responses: vec![ResponseOp { response: Some(Response::Range(theirs)) }],
    };
    vm.grpc_answer(txn.token, Ok(&lost.encode_to_vec()));
    assert_eq!(vm.resumed(id), 1, "the request goes on");
    assert_eq!(vm.upstream_header(id, "authorization"), Some(bearer(&old)), "with its old token");
    assert!(vm.calls().iter().all(|c| c.cluster != "issuer"), "no call out");
    assert!(vm.audits().iter().any(|a| a["event"] == "refresh_deferred"));
    // Not tried again while the claim lasts.
    let (next, action) = send(&mut vm, &{
        let mut h = get("/", Some(&bearer(&old)));
        h.push(("x-refresh-token", "r1".into()));
        h
    });
    assert_eq!(action, Action::Continue, "forwarded at once: {:?}", vm.reply(next));
    assert!(vm.grpc().iter().all(|g| g.method != "LeaseGrant"));
}

#[test]
fn a_claim_etcd_does_not_answer_falls_back_to_this_process_and_says_so() {
    let process = Process::new(NOW, &["etcd", "issuer"]);
    let mut vm = synced(&process, &refresh_with_etcd());
    let id = refreshing(&mut vm, &near_expiry());
    let _ = only(&vm, "LeaseGrant");
    process.advance_ms(600);
    vm.tick();
    let call = vm
        .calls()
        .into_iter()
        .find(|c| c.cluster == "issuer")
        .expect("the token endpoint, without the claim");
    let audit = vm.audits().into_iter().find(|a| a["event"] == "refresh_unclaimed").expect("audited");
    assert!(audit["reason"].as_str().is_some_and(|r| r.contains("did not answer")), "{audit}");
    vm.answer(call.token, None, b"");
    assert_eq!(vm.resumed(id), 1, "the request went on after the failed refresh");
}

#[test]
fn a_watch_etcd_closes_is_reopened_from_the_last_revision_applied() {
    let process = Process::new(NOW, &["etcd"]);
    let (mut vm, _, watch) = listed(&process);
    let put = Event { r#type: EVENT_PUT, kv: Some(kv("/tokenguard/revoked/jti/x", "{}", 9)) };
    vm.grpc_message(
        watch.token,
        &WatchResponse { header: header(9), events: vec![put], ..Default::default() }.encode_to_vec(),
    );
    vm.grpc_end(watch.token, 14);
    assert!(vm.grpc().is_empty());
    process.advance_ms(1000);
    vm.tick();
    match WatchRequest::decode(only(&vm, "Watch").sent[0].as_slice()).ok().and_then(|w| w.request_union) {
        Some(WatchRequestUnion::Create(c)) => assert_eq!(c.start_revision, 10),
        other => panic!("{other:?}"),
    }
}

/// One worker follows etcd for the process; the others decide on what it applied. A worker
/// that stops ticking (its VM gone) is replaced once its lease lapses.
#[test]
fn one_worker_follows_etcd_and_another_takes_over_when_it_stops() {
    let process = Process::new(NOW, &["etcd"]);
    let p = process.clone();
    std::thread::spawn(move || {
        let (mut a, _, _) = listed(&p);
        a.tick();
    })
    .join()
    .expect("worker a");
    let mut b = start(&process, &etcd_config(json!({})));
    let gone = mint("EdDSA", json!({"jti": "gone"}));
    let (id, action) = send(&mut b, &get("/", Some(&bearer(&gone))));
    assert_eq!(action, Action::Pause, "refused at once: the list worker a applied holds here");
    assert_eq!(b.reply(id).map(|r| r.status), Some(401));
    b.tick();
    assert!(b.grpc().is_empty(), "worker a's lease still runs: b does not call etcd");
    process.advance_ms(3000);
    b.tick();
    let range = only(&b, "Range");
    assert_eq!(range.context, b.root(), "b follows etcd now, from a fresh list");
}

#[test]
fn with_max_staleness_a_silent_etcd_means_503_until_it_answers_again() {
    let process = Process::new(NOW, &["etcd"]);
    let mut vm = start(
        &process,
        &etcd_config(json!({"revocation_store": {"etcd": {"cluster": "etcd",
        "timeout_ms": 300, "max_staleness_seconds": 6}}})),
    );
    let ok = mint("EdDSA", json!({"exp": NOW + 3000}));
    let (held, _) = send(&mut vm, &get("/", Some(&bearer(&ok))));
    vm.tick();
    vm.grpc_answer(
        only(&vm, "Range").token,
        Ok(&RangeResponse { header: header(2), ..Default::default() }.encode_to_vec()),
    );
    vm.tick();
    assert_eq!(vm.resumed(held), 1);
    let watch = only(&vm, "Watch");
    vm.grpc_end(watch.token, 14);
    for _ in 0..7 {
        process.advance_ms(1000);
        vm.tick();
        for g in vm.grpc() {
            vm.grpc_end(g.token, 14); // etcd stays down
        }
    }
    let (id, action) = send(&mut vm, &get("/", Some(&bearer(&ok))));
    assert_eq!(action, Action::Pause);
    assert_eq!(vm.reply(id).map(|r| r.status), Some(503), "7 s without an answer, 6 allowed");
    assert!(process.metric("tokenguard.revocation_store.stale_rejections").is_some_and(|n| n >= 1));
    // etcd answers again: the next call's answer is a contact.
    process.advance_ms(30_000);
    vm.tick();
    let g = vm.grpc().into_iter().next().expect("a call after the backoff");
    if g.method == "Watch" {
        vm.grpc_message(
            g.token,
            &WatchResponse { header: header(2), created: true, ..Default::default() }.encode_to_vec(),
        );
    } else {
        vm.grpc_answer(
            g.token,
            Ok(&RangeResponse { header: header(2), ..Default::default() }.encode_to_vec()),
        );
    }
    assert_eq!(send(&mut vm, &get("/", Some(&bearer(&ok)))).1, Action::Continue);
}

#[test]
fn the_watch_asks_for_a_member_with_a_leader() {
    let process = Process::new(NOW, &["etcd"]);
    let (_vm, _, watch) = listed(&process);
    assert!(watch.metadata.contains(&("hasleader".into(), "true".into())), "{:?}", watch.metadata);
}

/// A refresh under the fleet's claim: the token endpoint is called once the claim is ours,
/// and the old token's retirement (in force at the grace's end, on a lease of its own) is
/// written by the root context after the request has gone on.
#[test]
fn a_refresh_under_the_claim_retires_the_old_token_fleet_wide_from_the_root() {
    let process = Process::new(NOW, &["etcd", "issuer"]);
    let mut vm = synced(&process, &refresh_with_etcd());
    let old = near_expiry();
    let id = refreshing(&mut vm, &old);
    let grant = only(&vm, "LeaseGrant");
    let claim_ttl = LeaseGrantRequest::decode(grant.sent[0].as_slice()).map(|g| g.ttl).unwrap_or_default();
    assert!(claim_ttl <= 15, "the claim only outlives the call and the retirement's journey: {claim_ttl}");
    vm.grpc_answer(
        grant.token,
        Ok(&LeaseGrantResponse { header: header(3), id: 5, ttl: 11, error: String::new() }.encode_to_vec()),
    );
    let txn = only(&vm, "Txn");
    vm.grpc_answer(
        txn.token,
        Ok(&TxnResponse { header: header(4), succeeded: true, responses: vec![] }.encode_to_vec()),
    );
    let call = vm
        .calls()
        .into_iter()
        .find(|c| c.cluster == "issuer")
        .expect("the token endpoint, once the claim is ours");
    let new = mint("RS256", json!({"exp": NOW + 600, "sid": "s1", "jti": "j2"}));
    let answer =
        json!({"access_token": new, "refresh_token": "r2", "token_type": "Bearer", "expires_in": 600});
    vm.answer(call.token, Some(200), answer.to_string().as_bytes());
    assert_eq!(vm.upstream_header(id, "authorization"), Some(bearer(&new)));
    vm.end(id);
    vm.tick();
    let grant = only(&vm, "LeaseGrant");
    assert_eq!(grant.context, vm.root(), "written from the root: the request is over");
    let ttl = LeaseGrantRequest::decode(grant.sent[0].as_slice()).map(|g| g.ttl).unwrap_or_default();
    assert!(ttl >= 30, "the retirement lasts as long as the old token could be shown: {ttl}");
    vm.grpc_answer(
        grant.token,
        Ok(&LeaseGrantResponse { header: header(5), id: 6, ttl, error: String::new() }.encode_to_vec()),
    );
    let put = PutRequest::decode(only(&vm, "Put").sent[0].as_slice()).expect("a put");
    let key = String::from_utf8_lossy(&put.key).into_owned();
    assert!(key.starts_with("/tokenguard/revoked/token/"), "{key}");
    let value: Value = serde_json::from_slice(&put.value).unwrap_or_default();
    assert_eq!((value["revoked_at"].clone(), put.lease), (json!(NOW + 10), 6), "in force at the grace's end");
    assert!(!String::from_utf8_lossy(&put.value).contains("r2"), "no token in etcd");
}

/// A token another replica refreshed has its retirement pending in the shared set: it is
/// not refreshed again here (that would spend its refresh token twice).
#[test]
fn a_token_with_a_pending_retirement_is_not_refreshed_again() {
    let process = Process::new(NOW, &["etcd", "issuer"]);
    let mut vm = start(&process, &refresh_with_etcd());
    vm.tick();
    let old = near_expiry();
    let fp = crate::token::Fingerprint::of(&old).hex();
    let key = format!("/tokenguard/revoked/token/{fp}");
    let retired = kv(&key, &json!({"revoked_at": NOW + 10}).to_string(), 2);
    let page = RangeResponse { header: header(2), kvs: vec![retired], ..Default::default() };
    vm.grpc_answer(only(&vm, "Range").token, Ok(&page.encode_to_vec()));
    let mut h = get("/", Some(&bearer(&old)));
    h.push(("x-refresh-token", "r1".into()));
    let (id, action) = send(&mut vm, &h);
    assert_eq!(action, Action::Continue, "forwarded with the old token during the grace: {:?}", vm.reply(id));
    assert!(vm.grpc().iter().all(|g| g.method != "LeaseGrant"), "no claim asked for");
    assert!(vm.calls().iter().all(|c| c.cluster != "issuer"), "no token endpoint call");
    process.advance_ms(11_000);
    let (id, _) = send(&mut vm, &get("/", Some(&bearer(&old))));
    assert_eq!(
        vm.reply(id).map(|r| r.json()["error"].clone()),
        Some(json!("token_revoked")),
        "after the grace"
    );
}

/// The same for a token that has expired meanwhile, under `refresh_expired`: another
/// replica already spent its refresh token, so it is refused as expired, not refreshed.
#[test]
fn an_expired_token_with_a_pending_retirement_is_not_refreshed_again() {
    let process = Process::new(NOW, &["etcd", "issuer"]);
    let mut cfg = refresh_with_etcd();
    cfg["refresh"]["refresh_expired"] = json!(true);
    let mut vm = start(&process, &cfg);
    vm.tick();
    let old = crate::testkit::mint("RS256", json!({"iat": NOW - 600, "exp": NOW - 5, "sid": "s1"}));
    let fp = crate::token::Fingerprint::of(&old).hex();
    let retired =
        kv(&format!("/tokenguard/revoked/token/{fp}"), &json!({"revoked_at": NOW + 10}).to_string(), 2);
    let page = RangeResponse { header: header(2), kvs: vec![retired], ..Default::default() };
    vm.grpc_answer(only(&vm, "Range").token, Ok(&page.encode_to_vec()));
    let mut h = get("/", Some(&bearer(&old)));
    h.push(("x-refresh-token", "r1".into()));
    let (id, _) = send(&mut vm, &h);
    assert_eq!(vm.reply(id).map(|r| r.json()["error"].clone()), Some(json!("token_expired")));
    assert!(vm.grpc().iter().all(|g| g.method != "Txn"), "no claim asked for");
    assert!(vm.calls().iter().all(|c| c.cluster != "issuer"), "no token endpoint call");
}

/// etcd refuses a watch under an auth token it no longer knows (it restarted) by cancelling
/// it, not with UNAUTHENTICATED: the replica must log in again, not retry the dead token.
#[test]
fn a_watch_cancelled_under_authentication_logs_in_again() {
    let process = Process::new(NOW, &["etcd"]);
    let mut vm = start(
        &process,
        &etcd_config(json!({"revocation_store": {"etcd": {"cluster": "etcd",
        "timeout_ms": 300, "username": "tg", "password": "pw"}}})),
    );
    vm.tick();
    let login = only(&vm, "Authenticate");
    let ask = AuthenticateRequest::decode(login.sent[0].as_slice()).expect("a login");
    assert_eq!((ask.name.as_str(), ask.password.as_str()), ("tg", "pw"));
    let ok = AuthenticateResponse { header: header(1), token: "t1".into() };
    vm.grpc_answer(login.token, Ok(&ok.encode_to_vec()));
    let range = only(&vm, "Range");
    assert!(range.metadata.contains(&("token".into(), "t1".into())), "{:?}", range.metadata);
    vm.grpc_answer(
        range.token,
        Ok(&RangeResponse { header: header(2), ..Default::default() }.encode_to_vec()),
    );
    let watch = only(&vm, "Watch");
    let refused = WatchResponse {
        header: header(2),
        canceled: true,
        cancel_reason: "permission denied".into(),
        ..Default::default()
    };
    vm.grpc_message(watch.token, &refused.encode_to_vec());
    process.advance_ms(1000);
    vm.tick();
    assert_eq!(only(&vm, "Authenticate").context, vm.root(), "a new login, not the dead token again");
    assert!(!vm.logs().iter().any(|l| l.contains("pw")), "the password is never logged");
}

/// The hot path with the etcd store and a staleness limit costs no more host calls than
/// without: the store's say is remembered per worker, not read per request.
#[test]
fn the_hot_path_with_the_etcd_store_makes_no_extra_host_calls() {
    let process = Process::new(NOW, &["etcd"]);
    let store = json!({"etcd": {"cluster": "etcd", "max_staleness_seconds": 30}});
    let cfg = config_json(json!({"revocation_store": store}));
    let mut vm = start(&process, &cfg);
    vm.tick();
    let kvs = (0..50).map(|n| kv(&format!("/tokenguard/revoked/jti/n{n}"), "{}", 2)).collect();
    vm.grpc_answer(
        only(&vm, "Range").token,
        Ok(&RangeResponse { header: header(2), kvs, ..Default::default() }.encode_to_vec()),
    );
    let token = mint("ES256", json!({"jti": "fine"}));
    for _ in 0..2 {
        let (seen, action) = send(&mut vm, &get("/", Some(&bearer(&token))));
        assert_eq!(action, Action::Continue);
        vm.end(seen);
    }
    let _ = super::double::take_host_calls();
    let (id, action) = send(&mut vm, &get("/", Some(&bearer(&token))));
    assert_eq!(action, Action::Continue);
    let calls = super::double::take_host_calls();
    let want = [
        ("proxy_get_current_time_nanoseconds", 1),
        ("proxy_get_header_map_value", 1),
        ("proxy_get_metric", 1),
    ];
    assert_eq!(calls, want);
    vm.end(id);
}
