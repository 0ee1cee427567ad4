//! A real etcd (Debian's `etcd-server`, 3.4) on loopback for one test: its own data directory,
//! free client and peer ports, killed when dropped. `make etcd` installs it; `ETCD_BIN` and
//! `ETCDCTL_BIN` override the binaries found on PATH.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
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

/// A running single-member etcd; killed (and its data removed) when dropped.
pub struct Etcd {
    child: Option<Child>,
    /// The client port: gRPC (HTTP/2 without TLS) and the JSON gateway (`/v3/...`) share it.
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    dir: PathBuf,
}

impl Etcd {
    pub fn start() -> Etcd {
        // A free port can be taken between our probe and etcd's bind: a few tries.
        let mut logs = String::new();
        for _ in 0..3 {
            let dir = scratch_dir();
            let mut e = Etcd {
                child: None,
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.join("etcd-data"),
                log_path: dir.join("etcd.log"),
                dir,
            };
            match e.spawn() {
                Ok(()) => return e,
                Err(why) => logs.push_str(&format!("{why}\n{}\n", e.log())),
            }
        }
        panic!("etcd did not start:\n{logs}")
    }

    /// Starts (or restarts, with the same data and ports) the process; waits for `/health`.
    fn spawn(&mut self) -> Result<(), String> {
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
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("spawn etcd ({e}); `make etcd` installs it"))?;
        self.child = Some(child);
        self.wait_healthy()
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = Client::new();
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(format!("etcd exited with {status}"));
            }
            let health = http.try_get(&self.url("/health"), &[]);
            if health.is_some_and(|r| r.status == 200 && r.json()["health"] == "true") {
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
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
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
        Command::new(bin("ETCDCTL_BIN", "etcdctl"))
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint(), "--command-timeout", "5s"])
            .args(args)
            .output()
            .expect("run etcdctl; `make etcd` installs it")
    }

    /// A call to the JSON gateway (`/v3/kv/put`, `/v3/lease/grant`, ...); its JSON answer.
    pub fn gateway(&self, path: &str, body: &Value) -> Value {
        let r =
            Client::new().post(&self.url(path), &[("content-type", "application/json")], &body.to_string());
        assert_eq!(r.status, 200, "POST {path}: {}", r.body);
        r.json()
    }

    /// Writes `key` = `value` through the gateway; `lease` 0 is none. Returns the revision.
    pub fn put(&self, key: &str, value: &str, lease: i64) -> i64 {
        let body = json!({"key": B64.encode(key), "value": B64.encode(value), "lease": lease.to_string()});
        revision(&self.gateway("/v3/kv/put", &body))
    }

    /// The value under `key`, read through the gateway.
    pub fn get(&self, key: &str) -> Option<String> {
        let r = self.gateway("/v3/kv/range", &json!({"key": B64.encode(key)}));
        let value = r["kvs"].as_array()?.first()?["value"].as_str().unwrap_or_default();
        Some(String::from_utf8(B64.decode(value).expect("base64 value")).expect("utf-8 value"))
    }

    /// Grants a lease of `ttl` seconds; its id.
    pub fn grant(&self, ttl: i64) -> i64 {
        let r = self.gateway("/v3/lease/grant", &json!({"TTL": ttl.to_string()}));
        int(&r["ID"]).expect("lease id")
    }
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
