//! The release artifact as Envoy operators load it: `envoy/dist.sh` (what `make dist` runs)
//! writes the versioned .wasm, its checksum and `envoy-remote.yaml`, and Envoy fetches the
//! plugin over HTTP through `vm_config.code.remote`, pinned by that checksum.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use tokenguard_harness::envoy::{repo_root, scratch_dir, wasm_path, Envoy};
use tokenguard_harness::http::Client;
use tokenguard_harness::issuer::{Issuer, MintRequest, DEFAULT_ISSUER};
use tokenguard_harness::server::{Response, Server};
use tokenguard_harness::stack::demo_keys;
use tokenguard_harness::upstream::Upstream;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const ADMIN: (&str, &str) = ("x-admin-token", "demo-admin-token-change-me");

fn sha256_hex(bytes: &[u8]) -> String {
    hmac_sha256::Hash::hash(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn wasm_name() -> String {
    format!("tokenguard-{VERSION}.wasm")
}

/// A dist directory, removed when dropped.
struct Dist(PathBuf);

impl std::ops::Deref for Dist {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dist {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs envoy/dist.sh on the built filter into a fresh directory, as `make dist` does into dist/.
fn make_dist() -> Dist {
    let out = scratch_dir();
    let run = Command::new(repo_root().join("envoy/dist.sh"))
        .arg(wasm_path())
        .arg(&out)
        .output()
        .expect("run envoy/dist.sh");
    assert!(run.status.success(), "envoy/dist.sh failed: {}", String::from_utf8_lossy(&run.stderr));
    Dist(out)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Serves `body` at `/tokenguard-<version>.wasm` (404 elsewhere) and counts the fetches.
struct PluginServer {
    server: Server,
    fetches: Arc<Mutex<Vec<String>>>,
}

impl PluginServer {
    fn start(body: Vec<u8>) -> PluginServer {
        let fetches = Arc::new(Mutex::new(Vec::new()));
        let seen = fetches.clone();
        let path = format!("/{}", wasm_name());
        let server = Server::start(
            "127.0.0.1:0",
            Arc::new(move |req| {
                seen.lock().unwrap().push(req.target.clone());
                if req.method == "GET" && req.path() == path {
                    Response::new(200, "application/wasm", body.clone())
                } else {
                    Response::text(404, "no such file\n")
                }
            }),
        );
        PluginServer { server, fetches }
    }

    fn fetches(&self) -> Vec<String> {
        self.fetches.lock().unwrap().clone()
    }
}

struct RemoteStack {
    issuer: Issuer,
    upstream: Upstream,
    plugin: PluginServer,
    envoy: Envoy,
}

/// dist's envoy-remote.yaml with only its ports moved onto this test's servers and `edits`
/// made (each `from` must occur exactly once); the plugin server serves `served`.
fn start_remote(dist: &Path, served: Vec<u8>, edits: &[(&str, &str)]) -> RemoteStack {
    let issuer = Issuer::start(demo_keys(), DEFAULT_ISSUER, "127.0.0.1:0");
    let upstream = Upstream::start("127.0.0.1:0");
    let plugin = PluginServer::start(served);
    let text = String::from_utf8(read(&dist.join("envoy-remote.yaml"))).unwrap();
    let mut moved = text
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 9901", "port_value: 0")
        .replace("port_value: 9101", &format!("port_value: {}", issuer.port))
        .replace("port_value: 9102", &format!("port_value: {}", upstream.port))
        .replace("port_value: 9103", &format!("port_value: {}", plugin.server.port));
    for (from, to) in edits {
        assert_eq!(moved.matches(from).count(), 1, "envoy-remote.yaml has no single {from:?}");
        moved = moved.replace(from, to);
    }
    let dir = scratch_dir();
    let cfg = dir.join("envoy.yaml");
    std::fs::write(&cfg, moved).unwrap();
    let envoy = Envoy::start_file(&cfg, dir, 2).unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"));
    RemoteStack { issuer, upstream, plugin, envoy }
}

#[test]
fn dist_holds_the_release_wasm_its_checksum_and_the_configs_that_pin_it() {
    let dist = make_dist();
    let wasm = read(&dist.join(wasm_name()));
    assert_eq!(wasm, read(&wasm_path()), "dist's .wasm is the release build, byte for byte");
    let sha = sha256_hex(&wasm);
    // `sha256sum -c` form, so an operator can check a download with the coreutils.
    let line = String::from_utf8(read(&dist.join(format!("{}.sha256", wasm_name())))).unwrap();
    assert_eq!(line, format!("{sha}  {}\n", wasm_name()));

    let remote = String::from_utf8(read(&dist.join("envoy-remote.yaml"))).unwrap();
    assert_eq!(remote.matches(&format!("sha256: \"{sha}\"")).count(), 1);
    assert!(!remote.contains("make dist fills it in"), "the placeholder is gone");
    assert!(remote.contains(&format!("uri: http://127.0.0.1:9103/{}", wasm_name())));
    for manifest in ["istio-wasmplugin.yaml", "envoy-gateway.yaml"] {
        let text = String::from_utf8(read(&dist.join(manifest))).unwrap();
        assert!(text.contains(&format!("registry.example.com/tokenguard-wasm:{VERSION}")), "{manifest}");
    }
}

#[test]
fn envoy_loads_the_dist_wasm_over_http_with_its_checksum_and_it_validates_tokens() {
    let dist = make_dist();
    let s = start_remote(&dist, read(&dist.join(wasm_name())), &[]);
    assert_eq!(s.plugin.fetches(), vec![format!("/{}", wasm_name())], "fetched once, at start");
    assert_eq!(s.envoy.stat("wasm.remote_load_fetch_successes"), Some(1));

    let c = Client::new();
    let r = c.get(&s.envoy.url("/hello"), &[]);
    assert_eq!((r.status, r.json()["error"].clone()), (401, json!("missing_token")), "{}", r.body);
    let good = s.issuer.mint(&MintRequest::new("ES256", 300));
    let r = c.get(&s.envoy.url("/hello"), &[("authorization", &format!("Bearer {good}"))]);
    assert_eq!(r.status, 200, "{}", r.body);
    let forged = format!("{}x", &good[..good.len() - 1]);
    let r = c.get(&s.envoy.url("/hello"), &[("authorization", &format!("Bearer {forged}"))]);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(s.upstream.received().len(), 1, "only the valid token reached the upstream");

    // The version, once per process (the main thread's two VMs and each worker's start).
    let announced = format!(": tokenguard {VERSION}");
    let lines: Vec<String> =
        s.envoy.log().lines().filter(|l| l.ends_with(&announced)).map(String::from).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let st = c.get(&s.envoy.url("/tokenguard/stats"), &[ADMIN]).json();
    assert_eq!(st["version"], VERSION);
}

/// The plugin server hands out a tampered file (a byte changed, as an attacker in the path or
/// a corrupted mirror would): Envoy refuses it. With `failure_policy: FAIL_RELOAD` (fail
/// closed) the listener still comes up, and every request on it is 503 from Envoy: none is
/// served unfiltered.
#[test]
fn envoy_refuses_a_plugin_whose_checksum_does_not_match() {
    let dist = make_dist();
    let mut tampered = read(&dist.join(wasm_name()));
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let s = start_remote(&dist, tampered, &[]);
    refused(&s, "a tampered file");

    // The genuine file under a checksum that is not its own: refused just the same.
    let genuine = read(&dist.join(wasm_name()));
    let (right, wrong) = (checksum_line(&genuine), checksum_line(b"some other build"));
    let s = start_remote(&dist, genuine, &[(&right, &wrong)]);
    refused(&s, "a wrong checksum");
}

fn checksum_line(wasm: &[u8]) -> String {
    format!("sha256: \"{}\"", sha256_hex(wasm))
}

/// Why every configuration we ship fails closed: with `FAIL_OPEN` a plugin Envoy refused is
/// skipped, and a tampered download turns token checking off without a single 401.
#[test]
fn a_refused_plugin_under_fail_open_would_let_every_request_through() {
    let dist = make_dist();
    let genuine = read(&dist.join(wasm_name()));
    let (right, wrong) = (checksum_line(&genuine), checksum_line(b"some other build"));
    let open =
        [(right.as_str(), wrong.as_str()), ("failure_policy: FAIL_RELOAD", "failure_policy: FAIL_OPEN")];
    let s = start_remote(&dist, genuine, &open);
    assert_eq!(s.envoy.stat("wasm.remote_load_fetch_failures"), Some(1));
    assert!(s.envoy.log().contains("Plugin tokenguard failed to load"));
    let r = Client::new().get(&s.envoy.url("/hello"), &[]);
    assert_eq!(r.status, 200, "no token, yet served: {}", r.body);
    assert_eq!(s.upstream.received().len(), 1, "the unchecked request reached the upstream");
}

fn refused(s: &RemoteStack, what: &str) {
    // Envoy fetched it (and, by its default retry policy, once more), then gave up.
    assert!(!s.plugin.fetches().is_empty(), "{what}: Envoy never fetched the plugin");
    assert_eq!(s.envoy.stat("wasm.remote_load_fetch_failures"), Some(1), "{what}");
    assert_eq!(s.envoy.stat("wasm.remote_load_fetch_successes"), Some(0), "{what}");
    let log = s.envoy.log();
    assert!(log.contains("Plugin tokenguard failed to load"), "{what}: {log}");
    assert!(log.contains("Plugin configured to fail closed failed to load"), "{what}");
    assert!(!log.contains(&format!(": tokenguard {VERSION}")), "{what}: no plugin VM started");

    let c = Client::new();
    let good = s.issuer.mint(&MintRequest::new("ES256", 300));
    for headers in [vec![], vec![("authorization", format!("Bearer {good}"))]] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = c.get(&s.envoy.url("/hello"), &h);
        assert_eq!(r.status, 503, "{what}: {}", r.body);
    }
    let r = c.get(&s.envoy.url("/tokenguard/stats"), &[ADMIN]);
    assert_eq!(r.status, 503, "{what}: no admin API either");
    assert!(s.upstream.received().is_empty(), "{what}: nothing reached the upstream");
}
