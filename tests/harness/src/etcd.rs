//! A real etcd (Debian's `etcd-server`, 3.4) on loopback for one test: its own data directory,
//! free client and peer ports, killed when dropped. `make etcd` installs it; `ETCD_BIN` and
//! `ETCDCTL_BIN` override the binaries found on PATH.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::envoy::scratch_dir;
use crate::http::Client;

fn bin(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running single-member etcd; killed (and its data removed) when dropped. `stop` and
/// `restart` take `&self`, so a test can bring etcd back from another thread while its own
/// requests are held.
pub struct Etcd {
    child: Mutex<Option<Child>>,
    /// `user:password` etcdctl authenticates with, once etcd has authentication on.
    user: Mutex<Option<String>>,
    /// The client port: gRPC (HTTP/2 without TLS) and the JSON gateway (`/v3/...`) share it.
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    dir: PathBuf,
    /// More command-line flags (kept for restarts).
    flags: Vec<String>,
}

impl Etcd {
    pub fn start() -> Etcd {
        Self::start_with(&[])
    }

    /// With more command-line flags, e.g. `--auth-token-ttl 3`.
    pub fn start_with(flags: &[&str]) -> Etcd {
        // A free port can be taken between our probe and etcd's bind: a few tries.
        let mut logs = String::new();
        for _ in 0..3 {
            let dir = scratch_dir();
            let e = Etcd {
                child: Mutex::new(None),
                user: Mutex::new(None),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.join("etcd-data"),
                log_path: dir.join("etcd.log"),
                dir,
                flags: flags.iter().map(|f| f.to_string()).collect(),
            };
            match e.spawn() {
                Ok(()) => return e,
                Err(why) => logs.push_str(&format!("{why}\n{}\n", e.log())),
            }
        }
        panic!("etcd did not start:\n{logs}")
    }

    /// Starts (or restarts, with the same data and ports) the process; waits for `/health`.
    fn spawn(&self) -> Result<(), String> {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("etcd log");
        let child = Command::new(bin("ETCD_BIN", "etcd"))
            .args(["--name", "tg"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("tg={peer}")])
            .args(["--logger", "zap", "--log-level", "warn"])
            .args(&self.flags)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("spawn etcd ({e}); `make etcd` installs it"))?;
        *self.child.lock().expect("etcd child") = Some(child);
        self.wait_healthy()
    }

    fn wait_healthy(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let exited = self.child.lock().expect("etcd child").as_mut().map(|c| c.try_wait());
            if let Some(Ok(Some(status))) = exited {
                self.child.lock().expect("etcd child").take();
                return Err(format!("etcd exited with {status}"));
            }
            if self.gateway().healthy() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err("etcd not healthy in 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `host:port` of the client endpoint (for etcdctl, or an Envoy cluster).
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.endpoint())
    }

    /// Kills the process, keeping its data: `restart` brings it back as it was.
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().expect("etcd child").take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&self) {
        self.stop();
        self.spawn().unwrap_or_else(|e| panic!("{e}; log:\n{}", self.log()));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs `etcdctl` (API v3) against this etcd; panics if it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self.try_ctl(args);
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn try_ctl(&self, args: &[&str]) -> Output {
        let user = self.user.lock().expect("etcdctl user").clone();
        Command::new(bin("ETCDCTL_BIN", "etcdctl"))
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint(), "--command-timeout", "5s"])
            .args(user.iter().flat_map(|u| ["--user", u.as_str()]))
            .args(args)
            .output()
            .expect("run etcdctl; `make etcd` installs it")
    }

    /// Turns etcd's authentication on: a `root` user (password `root_password`, which
    /// etcdctl uses from now on) and `name`:`password` allowed to read and write `prefix`.
    pub fn enable_auth(&self, root_password: &str, name: &str, password: &str, prefix: &str) {
        self.ctl(&["user", "add", &format!("root:{root_password}")]);
        self.ctl(&["user", "add", &format!("{name}:{password}")]);
        self.ctl(&["role", "add", name]);
        self.ctl(&["role", "grant-permission", name, "--prefix=true", "readwrite", prefix]);
        self.ctl(&["user", "grant-role", name, name]);
        self.ctl(&["auth", "enable"]);
        *self.user.lock().expect("etcdctl user") = Some(format!("root:{root_password}"));
    }

    /// The JSON gateway on this etcd's client port.
    pub fn gateway(&self) -> Gateway {
        Gateway::new(&self.url(""))
    }

    /// Writes `key` = `value` through the gateway; `lease` 0 is none. Returns the revision.
    pub fn put(&self, key: &str, value: &str, lease: i64) -> i64 {
        self.gateway().put(key, value, lease)
    }

    /// The value under `key`, read through the gateway.
    pub fn get(&self, key: &str) -> Option<String> {
        self.gateway().get(key)
    }

    /// Grants a lease of `ttl` seconds; its id.
    pub fn grant(&self, ttl: i64) -> i64 {
        self.gateway().grant(ttl)
    }
}

/// etcd's JSON gateway (`/v3/...` on the client port): what a test or a scenario reaches
/// etcd with when it has no etcdctl at hand (the compose stack publishes the port only).
#[derive(Debug, Clone)]
pub struct Gateway {
    base: String,
}

impl Gateway {
    /// `base`: `http://host:port`, the etcd client URL.
    pub fn new(base: &str) -> Gateway {
        Gateway { base: base.trim_end_matches('/').to_string() }
    }

    /// A call to the gateway (`/v3/kv/put`, `/v3/lease/grant`, ...); its JSON answer.
    pub fn call(&self, path: &str, body: &Value) -> Value {
        let url = format!("{}{path}", self.base);
        let r = Client::new().post(&url, &[("content-type", "application/json")], &body.to_string());
        assert_eq!(r.status, 200, "POST {path}: {}", r.body);
        r.json()
    }

    /// Writes `key` = `value`; `lease` 0 is none. Returns the revision.
    pub fn put(&self, key: &str, value: &str, lease: i64) -> i64 {
        let body = json!({"key": B64.encode(key), "value": B64.encode(value), "lease": lease.to_string()});
        revision(&self.call("/v3/kv/put", &body))
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        let r = self.call("/v3/kv/range", &json!({"key": B64.encode(key)}));
        let value = r["kvs"].as_array()?.first()?["value"].as_str().unwrap_or_default();
        Some(unbase64(value))
    }

    /// Grants a lease of `ttl` seconds; its id.
    pub fn grant(&self, ttl: i64) -> i64 {
        let r = self.call("/v3/lease/grant", &json!({"TTL": ttl.to_string()}));
        int(&r["ID"]).expect("lease id")
    }

    /// Whether etcd answers its health check.
    pub fn healthy(&self) -> bool {
        let r = Client::new().try_get(&format!("{}/health", self.base), &[]);
        r.is_some_and(|r| r.status == 200 && r.json()["health"] == "true")
    }
}

/// A base64 value as etcd's JSON answers (gateway and `etcdctl -w json`) carry it, as text.
pub fn unbase64(value: &str) -> String {
    String::from_utf8(B64.decode(value).expect("base64 value")).expect("utf-8 value")
}

/// The gateway writes 64-bit integers as JSON strings.
fn int(v: &Value) -> Option<i64> {
    v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_i64())
}

fn revision(answer: &Value) -> i64 {
    int(&answer["header"]["revision"]).expect("revision in the answer")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
