//! The riskiest part of the fleet store (issue 17): a proxy-wasm plugin reaching etcd over
//! Envoy's own gRPC client. A test-only plugin (tests/grpc-probe) relays requests built by
//! tokenguard's `src/etcd` from a real Envoy (two workers) to the harness's real etcd over an
//! HTTP/2 cluster, as unary calls and as streams; the answers are read with `src/etcd` too.

use prost::Message;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokenguard::etcd::proto::{self, decode};
use tokenguard::etcd::sync::{Call, Sync, Watched};
use tokenguard::etcd::{self, store, Rpc};
use tokenguard::registry::revocation::{Kind, Target};
use tokenguard_harness::envoy::{repo_root, scratch_dir, Envoy};
use tokenguard_harness::etcd::Etcd;
use tokenguard_harness::http::Client;

/// Builds the probe plugin once per test binary (its own target dir, like bench/floor).
fn probe_wasm() -> PathBuf {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let root = repo_root();
        let target = root.join("target/grpc-probe");
        let status = Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
            .args(["build", "--release", "--target", "wasm32-wasip1", "--manifest-path"])
            .arg(root.join("tests/grpc-probe/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("run cargo");
        assert!(status.success(), "building tests/grpc-probe failed");
        target.join("wasm32-wasip1/release/tokenguard_grpc_probe.wasm")
    })
    .clone()
}

/// Envoy with the probe on its listener and `etcd`, an HTTP/2 cluster to etcd's client port.
fn envoy_to(etcd: &Etcd) -> Envoy {
    let probe = json!({"name": "probe", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": "probe", "root_id": "probe", "vm_config": {
            "vm_id": "probe", "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": probe_wasm().display().to_string()}}}}}});
    let router = json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}});
    let hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "direct_response": {"status": 500, "body": {"inline_string": "the probe did not answer"}}}]}]},
        "http_filters": [probe, router]});
    let etcd_cluster = json!({
        "name": "etcd", "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": "etcd", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "127.0.0.1", "port_value": etcd.client_port}}}}]}]}});
    let bootstrap = json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{"name": "ingress",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
            "clusters": [etcd_cluster]}});
    let dir = scratch_dir();
    let config = dir.join("envoy.json");
    std::fs::write(&config, bootstrap.to_string()).expect("write config");
    Envoy::start_file(&config, dir, 2).unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"))
}

const PREFIX: &[u8] = b"/tokenguard/";
const RETENTION: u64 = 3600;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// Sends `req` to `rpc` through the probe; `stream` collects that many answers from a stream.
/// `Err` is the failure Envoy reported (a gRPC status).
fn relay(
    envoy: &Envoy,
    rpc: Rpc,
    req: &impl Message,
    token: Option<&str>,
    stream: Option<usize>,
) -> Result<Vec<Vec<u8>>, String> {
    let message = hex(&req.encode_to_vec());
    let n = stream.map(|n| n.to_string());
    let mut headers =
        vec![("x-grpc-service", rpc.service), ("x-grpc-method", rpc.method), ("x-grpc-message", &message)];
    headers.extend(token.map(|t| ("x-grpc-token", t)));
    headers.extend(n.as_deref().map(|n| ("x-grpc-stream", n)));
    let r = Client::new().get(&envoy.url("/"), &headers);
    match r.status {
        200 => Ok(r.body.split(',').map(unhex).collect()),
        502 => Err(r.header("x-probe-error").unwrap_or_default().to_string()),
        s => panic!("the probe answered {s}: {}\n{}", r.body, envoy.log()),
    }
}

fn call<R: Message + Default>(
    envoy: &Envoy,
    rpc: Rpc,
    req: &impl Message,
    token: Option<&str>,
) -> Result<R, String> {
    let answer = relay(envoy, rpc, req, token, None)?;
    Ok(decode(answer.first().expect("one answer"))
        .unwrap_or_else(|| panic!("{} answer undecodable", rpc.method)))
}

fn watch(envoy: &Envoy, req: &proto::WatchRequest, messages: usize) -> Vec<proto::WatchResponse> {
    let answers = relay(envoy, etcd::WATCH, req, None, Some(messages)).expect("watch");
    answers.iter().map(|a| decode(a).expect("WatchResponse")).collect()
}

#[test]
fn the_list_reads_revocations_page_by_page_from_one_revision() {
    let etcd = Etcd::start();
    let envoy = envoy_to(&etcd);
    let t = now();
    etcd.ctl(&["put", "/tokenguard/revoked/sub/alice", &format!(r#"{{"revoked_at": {t}}}"#)]);
    etcd.ctl(&["put", "/tokenguard/revoked/jti/j1", "{}"]);
    etcd.ctl(&["put", "/tokenguard/refresh/x", "not a revocation"]);
    etcd.ctl(&["put", "/tokenguardian/revoked/jti/j2", "{}"]); // outside the prefix
    let first: proto::RangeResponse =
        call(&envoy, etcd::RANGE, &etcd::list_page(PREFIX, None, 0, 2), None).expect("first page");
    let pinned = first.header.as_ref().map(|h| h.revision).expect("header");
    assert!(first.more, "3 keys under the prefix, 2 asked for");
    assert_eq!(first.kvs.len(), 2);
    // A write between pages is not in this list (the watch from `pinned + 1` brings it).
    etcd.put("/tokenguard/revoked/jti/later", "{}", 0);
    let last = first.kvs.last().map(|kv| kv.key.clone()).expect("a key");
    let second: proto::RangeResponse =
        call(&envoy, etcd::RANGE, &etcd::list_page(PREFIX, Some(&last), pinned, 2), None)
            .expect("second page");
    assert!(!second.more);
    let keys: Vec<String> =
        first.kvs.iter().chain(&second.kvs).map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect();
    assert_eq!(
        keys,
        ["/tokenguard/refresh/x", "/tokenguard/revoked/jti/j1", "/tokenguard/revoked/sub/alice"]
    );
    let mut revoked = store::from_kvs(PREFIX, &first.kvs, RETENTION, t);
    revoked.revocations.extend(store::from_kvs(PREFIX, &second.kvs, RETENTION, t).revocations);
    let targets: Vec<Target> = revoked.revocations.iter().map(|r| r.target).collect();
    assert_eq!(targets, [Target::new(Kind::Jti, "j1"), Target::new(Kind::Sub, "alice")]);
    assert_eq!(revoked.revocations.last().map(|r| r.revoked_at), Some(t));
    let none: proto::RangeResponse =
        call(&envoy, etcd::RANGE, &etcd::list_page(b"/nothing/", None, 0, 10), None).expect("empty");
    assert!(none.kvs.is_empty() && !none.more);
}

#[test]
fn a_watch_stream_replays_and_then_follows_changes() {
    let etcd = Etcd::start();
    let envoy = envoy_to(&etcd);
    let first = etcd.put("/tokenguard/revoked/jti/w", "{}", 0);
    // From a past revision: the `created` answer, then the replayed write.
    let answers = watch(&envoy, &etcd::watch_prefix(PREFIX, first), 2);
    assert!(answers[0].created);
    let batch = store::from_events(PREFIX, &answers[1].events, RETENTION, now());
    assert_eq!(batch.revocations.first().map(|r| r.target), Some(Target::new(Kind::Jti, "w")));
    // From the next revision: the stream stays open until a later write arrives on it.
    let port = envoy.port;
    let req = hex(&etcd::watch_prefix(PREFIX, first + 1).encode_to_vec());
    let waiting = std::thread::spawn(move || {
        let headers = [
            ("x-grpc-service", "etcdserverpb.Watch"),
            ("x-grpc-method", "Watch"),
            ("x-grpc-message", req.as_str()),
            ("x-grpc-stream", "2"),
        ];
        Client::new().get(&format!("http://127.0.0.1:{port}/"), &headers)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!waiting.is_finished(), "the watch answered before any change");
    let second = etcd.put("/tokenguard/revoked/sub/bob", &format!(r#"{{"revoked_at": {}}}"#, now()), 0);
    let r = waiting.join().expect("watch request");
    assert_eq!(r.status, 200, "{:?}", r.headers);
    let event: proto::WatchResponse =
        r.body.split(',').nth(1).map(|a| decode(&unhex(a)).expect("decode")).expect("2 answers");
    assert_eq!(event.events.first().and_then(|e| e.kv.as_ref()).map(|kv| kv.mod_revision), Some(second));
    assert_eq!(event.header.map(|h| h.revision), Some(second));
}

#[test]
fn a_watch_from_a_compacted_revision_is_cancelled_with_the_compaction() {
    let etcd = Etcd::start();
    let envoy = envoy_to(&etcd);
    etcd.put("/tokenguard/revoked/jti/a", "{}", 0);
    let rev = etcd.put("/tokenguard/revoked/jti/b", "{}", 0);
    etcd.ctl(&["compact", &rev.to_string()]);
    let answers = watch(&envoy, &etcd::watch_prefix(PREFIX, 1), 2);
    let cancel = answers.iter().find(|a| a.canceled).unwrap_or_else(|| panic!("no cancel: {answers:?}"));
    assert_eq!(cancel.compact_revision, rev, "the compaction tells where a fresh list must start");
}

#[test]
fn the_refresh_claim_is_taken_once_on_a_lease() {
    let etcd = Etcd::start();
    let envoy = envoy_to(&etcd);
    let lease: proto::LeaseGrantResponse =
        call(&envoy, etcd::LEASE_GRANT, &proto::LeaseGrantRequest { ttl: 30, id: 0 }, None).expect("grant");
    assert!(lease.id != 0 && lease.ttl == 30 && lease.error.is_empty(), "{lease:?}");
    let claim = etcd::create_if_absent(b"/tokenguard/refresh/t1", b"replica-a", lease.id);
    let won: proto::TxnResponse = call(&envoy, etcd::TXN, &claim, None).expect("txn");
    assert!(won.succeeded);
    let other = etcd::create_if_absent(b"/tokenguard/refresh/t1", b"replica-b", lease.id);
    let lost: proto::TxnResponse = call(&envoy, etcd::TXN, &other, None).expect("txn");
    assert!(!lost.succeeded, "the key exists: the second claim fails");
    let holder = match lost.responses.first().and_then(|r| r.response.as_ref()) {
        Some(proto::Response::Range(r)) => r.kvs.first().cloned().expect("the claim's key"),
        other => panic!("expected the claim read back: {other:?}"),
    };
    assert_eq!((holder.value.as_slice(), holder.lease), (&b"replica-a"[..], lease.id));
    let keep = watch_keep_alive(&envoy, lease.id);
    assert_eq!((keep.id, keep.ttl), (lease.id, 30), "renewed to its full TTL");
    etcd.ctl(&["lease", "revoke", &format!("{:x}", lease.id)]);
    // A claim on a lease that is gone is refused (NOT_FOUND): a replica needs a fresh lease.
    let stale = call::<proto::TxnResponse>(&envoy, etcd::TXN, &other, None).expect_err("lease revoked");
    assert!(stale.starts_with("grpc status 5 etcdserver: requested lease not found"), "{stale}");
    let fresh: proto::LeaseGrantResponse =
        call(&envoy, etcd::LEASE_GRANT, &proto::LeaseGrantRequest { ttl: 30, id: 0 }, None).expect("grant");
    let retry = etcd::create_if_absent(b"/tokenguard/refresh/t1", b"replica-b", fresh.id);
    let again: proto::TxnResponse = call(&envoy, etcd::TXN, &retry, None).expect("txn");
    assert!(again.succeeded, "the old lease took its claim with it: the key is free");
}

fn watch_keep_alive(envoy: &Envoy, id: i64) -> proto::LeaseKeepAliveResponse {
    let answers = relay(envoy, etcd::LEASE_KEEP_ALIVE, &proto::LeaseKeepAliveRequest { id }, None, Some(1));
    decode(answers.expect("keep-alive").first().expect("one")).expect("LeaseKeepAliveResponse")
}

#[test]
fn with_etcd_authentication_the_token_goes_in_the_metadata() {
    let etcd = Etcd::start();
    let envoy = envoy_to(&etcd);
    etcd.ctl(&["user", "add", "root:rootpw"]);
    etcd.ctl(&["user", "add", "tg:tgpw"]);
    etcd.ctl(&["role", "add", "tg"]);
    etcd.ctl(&["role", "grant-permission", "tg", "--prefix=true", "readwrite", "/tokenguard/"]);
    etcd.ctl(&["user", "grant-role", "tg", "tg"]);
    etcd.ctl(&["auth", "enable"]);
    let list = etcd::list_page(PREFIX, None, 0, 10);
    let anonymous = call::<proto::RangeResponse>(&envoy, etcd::RANGE, &list, None);
    assert!(anonymous.is_err(), "auth is on: {anonymous:?}");
    let wrong = proto::AuthenticateRequest { name: "tg".into(), password: "nope".into() };
    let refused = call::<proto::AuthenticateResponse>(&envoy, etcd::AUTHENTICATE, &wrong, None);
    assert!(refused.is_err(), "{refused:?}");
    let login = proto::AuthenticateRequest { name: "tg".into(), password: "tgpw".into() };
    let token =
        call::<proto::AuthenticateResponse>(&envoy, etcd::AUTHENTICATE, &login, None).expect("login").token;
    assert!(!token.is_empty());
    let listed: proto::RangeResponse =
        call(&envoy, etcd::RANGE, &list, Some(&token)).expect("authorized list");
    assert!(listed.kvs.is_empty());
    let outside = etcd::list_page(b"/other/", None, 0, 10);
    assert!(
        call::<proto::RangeResponse>(&envoy, etcd::RANGE, &outside, Some(&token)).is_err(),
        "role is the prefix only"
    );
}

#[test]
fn etcd_down_is_a_grpc_failure_the_plugin_sees() {
    let etcd = Etcd::start();
    let envoy = envoy_to(&etcd);
    let get = etcd::list_page(PREFIX, None, 0, 1);
    assert!(call::<proto::RangeResponse>(&envoy, etcd::RANGE, &get, None).is_ok());
    etcd.stop();
    let error = call::<proto::RangeResponse>(&envoy, etcd::RANGE, &get, None).expect_err("etcd is down");
    eprintln!("etcd stopped, the unary call reports: {error}");
    assert!(error.starts_with("grpc status 14"), "UNAVAILABLE expected: {error}");
    let stream = relay(&envoy, etcd::WATCH, &etcd::watch_prefix(PREFIX, 0), None, Some(1)).expect_err("down");
    eprintln!("etcd stopped, the stream reports: {stream}");
    assert!(stream.starts_with("stream closed with grpc status 14"), "{stream}");
    etcd.restart();
    assert!(
        call::<proto::RangeResponse>(&envoy, etcd::RANGE, &get, None).is_ok(),
        "calls work again once etcd is back"
    );
}

/// Drives `sync` through the probe: list pages until it watches; returns the names applied
/// (kind/value as the key says) and the malformed keys skipped.
fn list(envoy: &Envoy, sync: &mut Sync) -> (Vec<Target>, usize) {
    let (mut applied, mut skipped) = (Vec::new(), 0);
    while let Call::Range(req) = sync.call() {
        let page: proto::RangeResponse = call(envoy, etcd::RANGE, &req, None).expect("list page");
        let batch = sync.on_page(&page, RETENTION, now()).expect("a sound page");
        applied.extend(batch.revocations.iter().map(|r| r.target));
        skipped += batch.skipped;
    }
    (applied, skipped)
}

#[test]
fn the_sync_machine_follows_a_real_etcd_through_compaction() {
    let etcd = Etcd::start();
    let envoy = envoy_to(&etcd);
    let t = now();
    etcd.ctl(&["put", "/tokenguard/revoked/jti/a", "{}"]);
    etcd.ctl(&["put", "/tokenguard/revoked/sub/b", &format!(r#"{{"revoked_at": {t}}}"#)]);
    etcd.ctl(&["put", "/tokenguard/revoked/sid/no-time", "{}"]);
    let mut sync = Sync::new(PREFIX);
    let (applied, skipped) = list(&envoy, &mut sync);
    assert_eq!(applied, [Target::new(Kind::Jti, "a"), Target::new(Kind::Sub, "b")]);
    assert_eq!(skipped, 1, "the sid without revoked_at");
    assert!(sync.listed && sync.watching());
    // A write after the list arrives on the watch.
    let d = etcd.put("/tokenguard/revoked/jti/d", "{}", 0);
    let Call::Watch(req) = sync.call() else { panic!("watching") };
    for answer in watch(&envoy, &req, 2) {
        if let Watched::Apply(b) = sync.on_watch(&answer, RETENTION, now()) {
            assert!(b.revocations.iter().all(|r| r.target == Target::new(Kind::Jti, "d")));
        }
    }
    assert_eq!(sync.applied_revision(), d);
    // Writes while the stream is down, then compacted away: the watch is cancelled and a
    // fresh list brings them.
    etcd.put("/tokenguard/revoked/jti/e", "{}", 0);
    let f = etcd.put("/tokenguard/revoked/jti/f", "{}", 0);
    etcd.ctl(&["compact", &f.to_string()]);
    let Call::Watch(req) = sync.call() else { panic!("watching") };
    let outcomes: Vec<Watched> =
        watch(&envoy, &req, 2).iter().map(|a| sync.on_watch(a, RETENTION, now())).collect();
    assert_eq!(outcomes.last(), Some(&Watched::Restart), "{outcomes:?}");
    let (applied, _) = list(&envoy, &mut sync);
    assert!(applied.contains(&Target::new(Kind::Jti, "e")) && applied.contains(&Target::new(Kind::Jti, "f")));
    assert_eq!(sync.applied_revision(), f);
}
