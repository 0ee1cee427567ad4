//! The riskiest part of the fleet store (issue 17): a proxy-wasm plugin reaching etcd over
//! Envoy's own gRPC client. A test-only plugin (tests/grpc-probe) sends tokenguard's etcd
//! messages (src/etcd/proto.rs) from a real Envoy (two workers) to the harness's real etcd
//! over an HTTP/2 cluster, as a unary call (`KV.Range`) and a stream (`Watch`).

use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use tokenguard_harness::envoy::{repo_root, scratch_dir, Envoy};
use tokenguard_harness::etcd::Etcd;
use tokenguard_harness::http::{Client, Response};

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

fn ask(envoy: &Envoy, headers: &[(&str, &str)]) -> Response {
    Client::new().get(&envoy.url("/"), headers)
}

#[test]
fn a_unary_range_reaches_etcd_through_envoy() {
    let etcd = Etcd::start();
    let envoy = envoy_to(&etcd);
    let value = r#"{"revoked_at": 1796300000}"#;
    etcd.ctl(&["put", "/tokenguard/revoked/sub/alice", value]);
    let revision = etcd.put("/tokenguard/revoked/jti/j1", "{}", 0);
    let r = ask(&envoy, &[("x-etcd-key", "/tokenguard/revoked/sub/alice")]);
    assert_eq!((r.status, r.body.as_str()), (200, value), "{:?}\n{}", r.headers, envoy.log());
    assert_eq!(
        r.header("x-etcd-revision"),
        Some(revision.to_string().as_str()),
        "the answer's header decoded"
    );
    let none = ask(&envoy, &[("x-etcd-key", "/tokenguard/revoked/sub/bob")]);
    assert_eq!(none.status, 404, "{:?}", none.headers);
    // Several calls on both workers, each its own request: the cluster serves them all.
    for _ in 0..6 {
        assert_eq!(ask(&envoy, &[("x-etcd-key", "/tokenguard/revoked/jti/j1")]).body, "{}");
    }
}

#[test]
fn a_watch_stream_replays_and_then_follows_changes() {
    let etcd = Etcd::start();
    let envoy = envoy_to(&etcd);
    let first = etcd.put("/tokenguard/revoked/jti/w", "one", 0);
    // From a past revision: etcd replays the write.
    let from = first.to_string();
    let r = ask(&envoy, &[("x-etcd-key", "/tokenguard/revoked/jti/w"), ("x-etcd-watch-from", &from)]);
    assert_eq!((r.status, r.body.as_str()), (200, "one"), "{:?}\n{}", r.headers, envoy.log());
    assert_eq!(r.header("x-etcd-revision"), Some(from.as_str()));
    // From the next revision: the stream stays open until a later write arrives on it.
    let next = (first + 1).to_string();
    let port = envoy.port;
    let waiting = std::thread::spawn(move || {
        Client::new().get(
            &format!("http://127.0.0.1:{port}/"),
            &[("x-etcd-key", "/tokenguard/revoked/jti/w"), ("x-etcd-watch-from", &next)],
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!waiting.is_finished(), "the watch answered before any change");
    let second = etcd.put("/tokenguard/revoked/jti/w", "two", 0);
    let r = waiting.join().expect("watch request");
    assert_eq!((r.status, r.body.as_str()), (200, "two"), "{:?}", r.headers);
    assert_eq!(r.header("x-etcd-revision"), Some(second.to_string().as_str()));
}

#[test]
fn etcd_down_is_a_grpc_failure_the_plugin_sees() {
    let mut etcd = Etcd::start();
    let envoy = envoy_to(&etcd);
    etcd.put("/k", "v", 0);
    assert_eq!(ask(&envoy, &[("x-etcd-key", "/k")]).status, 200);
    etcd.stop();
    let r = ask(&envoy, &[("x-etcd-key", "/k")]);
    assert_eq!(r.status, 502, "{:?}", r.headers);
    let error = r.header("x-probe-error").unwrap_or_default().to_string();
    eprintln!("etcd stopped, the unary call reports: {error}");
    assert!(error.starts_with("grpc status 14"), "UNAVAILABLE expected: {error}");
    let w = ask(&envoy, &[("x-etcd-key", "/k"), ("x-etcd-watch-from", "1")]);
    eprintln!("etcd stopped, the stream reports: {:?}", w.header("x-probe-error"));
    assert_eq!(w.status, 502);
    etcd.restart();
    let back = ask(&envoy, &[("x-etcd-key", "/k")]);
    assert_eq!((back.status, back.body.as_str()), (200, "v"), "calls work again once etcd is back");
}
