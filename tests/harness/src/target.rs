//! What a scenario may touch: Envoy's listener and admin port, the issuer's `/mint`, the
//! upstream's report of what it received, and Envoy's log. The local stack and the compose
//! stack both expose exactly these, so one scenario suite runs against either.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::envoy::audit_records;
use crate::etcd::Gateway;
use crate::http::{Client, Response};
use crate::issuer::MintRequest;
use crate::keys::fingerprint;
use crate::upstream::{Received, REPORT_PATH};

/// Where Envoy's log (with the audit lines) is read from.
#[derive(Debug, Clone)]
pub enum LogSource {
    /// A file Envoy's stderr goes to (the local harness).
    File(PathBuf),
    /// `docker logs <container>` (the compose harness).
    Docker(String),
}

/// What the fleet scenarios touch besides the first replica.
pub struct FleetTarget {
    /// The second replica's listener and admin port, base URLs.
    pub envoy_b: String,
    pub admin_b: String,
    /// etcd's JSON gateway: revocations written as any tool could.
    pub etcd: Gateway,
    /// The second replica's log.
    pub logs_b: LogSource,
}

pub struct Target {
    /// Base URLs, without a trailing slash.
    pub envoy: String,
    pub admin: String,
    pub issuer: String,
    pub upstream: String,
    pub logs: LogSource,
    /// One pooled connection: requests from it stay on one Envoy worker.
    pub client: Client,
    /// The `sub` of tokens minted here unless a scenario sets one: unique to this run, so a
    /// subject revoked on a long-lived stack (`make compose-up`'s curl lines revoke alice)
    /// never refuses a later run's tokens.
    pub subject: String,
    /// A second replica and the etcd both share revocations through, when the stack has them.
    pub fleet: Option<FleetTarget>,
    run: String,
    seq: AtomicU64,
}

impl Target {
    pub fn new(envoy: &str, admin: &str, issuer: &str, upstream: &str, logs: LogSource) -> Target {
        let trim = |u: &str| u.trim_end_matches('/').to_string();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let run = format!("{:x}", nanos % (1 << 40));
        Target {
            envoy: trim(envoy),
            admin: trim(admin),
            issuer: trim(issuer),
            upstream: trim(upstream),
            logs,
            client: Client::new(),
            subject: format!("alice-{run}"),
            fleet: None,
            run,
            seq: AtomicU64::new(1),
        }
    }

    /// The same target with a second replica (`envoy_b`, its admin port `admin_b`) and the
    /// etcd (`etcd`: its client URL) they share revocations through: the fleet scenarios run.
    pub fn with_fleet(mut self, envoy_b: &str, admin_b: &str, etcd: &str, logs_b: LogSource) -> Target {
        let trim = |u: &str| u.trim_end_matches('/').to_string();
        let etcd = Gateway::new(etcd);
        self.fleet = Some(FleetTarget { envoy_b: trim(envoy_b), admin_b: trim(admin_b), etcd, logs_b });
        self
    }

    /// A name no earlier run against this stack used: a long-lived stack (compose) keeps its
    /// revocations, so subjects, `jti`s and `sid`s that get revoked must be fresh.
    pub fn unique(&self, base: &str) -> String {
        format!("{base}-{}-{}", self.run, self.seq.fetch_add(1, Ordering::Relaxed))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.envoy)
    }

    /// GET through Envoy with `Authorization: Bearer <token>` when a token is given.
    pub fn get(&self, path: &str, token: Option<&str>) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.client.get(&self.url(path), &headers)
    }

    /// Mints a token through the issuer's HTTP API, with `sub` set to `self.subject` unless
    /// the request sets or removes it.
    pub fn mint(&self, req: &MintRequest) -> String {
        let mut req = req.clone();
        req.claims.entry("sub").or_insert_with(|| json!(self.subject));
        let r = Client::new().post(
            &format!("{}/mint", self.issuer),
            &[("content-type", "application/json")],
            &req.to_json().to_string(),
        );
        assert_eq!(r.status, 200, "mint {req:?}: {}", r.body);
        r.body
    }

    /// Every request the upstream received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let report = Client::new().get(&format!("{}{REPORT_PATH}", self.upstream), &[]).json();
        let list = report.as_array().unwrap_or_else(|| panic!("upstream report is not a list: {report}"));
        list.iter()
            .map(|r| Received::from_json(r).unwrap_or_else(|| panic!("bad report entry {r}")))
            .collect()
    }

    /// Envoy's log as it reached us so far (a container's log may lag a moment).
    pub fn log(&self) -> String {
        read_log(&self.logs)
    }

    /// Envoy's log with everything it wrote before this call. A container's log reaches
    /// `docker logs` a moment after Envoy wrote it, so this sends a marker (a unique
    /// malformed token, refused and audited) and waits until the marker's audit line is
    /// there: every line written before it is there too.
    pub fn synced_log(&self) -> String {
        let marker = self.unique("log-marker");
        let r = Client::new().get(&self.url("/"), &[("authorization", &format!("Bearer {marker}"))]);
        assert_eq!(r.status, 401, "the log marker was not refused: {}", r.body);
        let fp = fingerprint(&marker);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if audit_records(&log).iter().any(|a| a["token"] == fp.as_str()) {
                return log;
            }
            assert!(Instant::now() < deadline, "the log marker's audit line never appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every audit record Envoy logged before this call, in order (see `synced_log`).
    pub fn audit_records(&self) -> Vec<Value> {
        audit_records(&self.synced_log())
    }

    /// Audit records about one token, logged before this call.
    pub fn audits_for(&self, token: &str) -> Vec<Value> {
        let fp = fingerprint(token);
        self.audit_records().into_iter().filter(|r| r["token"] == fp.as_str()).collect()
    }

    /// The first line showing that a Wasm VM failed (a panic kills it), on either replica.
    pub fn vm_failure(&self) -> Option<String> {
        let b = self.fleet.as_ref().map(|f| read_log(&f.logs_b)).unwrap_or_default();
        [self.log(), b].iter().find_map(|log| {
            log.lines()
                .find(|l| l.contains("panicked at") || l.contains("Uncaught RuntimeError"))
                .map(str::to_owned)
        })
    }

    /// Envoy's `/stats/prometheus`.
    pub fn prometheus(&self) -> String {
        Client::new().get(&format!("{}/stats/prometheus", self.admin), &[]).body
    }

    /// A Prometheus sample without labels, by metric name.
    pub fn sample(&self, name: &str) -> Option<u64> {
        sample(&self.prometheus(), name)
    }

    /// Waits out the filter's per-worker counter batching (each worker publishes
    /// `requests.accepted` and `registry.hits` on its tick, every second), so that a reading
    /// taken next includes every request made before.
    pub fn settle_counters(&self) {
        std::thread::sleep(std::time::Duration::from_millis(1200));
    }

    /// A counter from `/stats?format=json`, by its full Envoy name.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let url = format!("{}/stats?format=json&filter=^{}$", self.admin, name.replace('.', "\\."));
        let stats = Client::new().get(&url, &[]).json();
        stats["stats"].as_array()?.iter().find(|s| s["name"] == name)?["value"].as_u64()
    }
}

/// Reads until `done` holds, for at most 3 s, and returns the last reading. For counters the
/// filter publishes on its workers' next tick (`requests.accepted`, `registry.hits`).
pub fn settled<T>(read: impl Fn() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let v = read();
        if done(&v) || std::time::Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A Prometheus sample without labels (`name value` or `name{} value`), by metric name.
pub fn sample(prom: &str, name: &str) -> Option<u64> {
    prom.lines()
        .find(|l| l.split_whitespace().next().map(|n| n.trim_end_matches("{}")) == Some(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A log as it reached us so far (a container's log may lag a moment).
pub fn read_log(logs: &LogSource) -> String {
    match logs {
        LogSource::File(p) => std::fs::read_to_string(p).unwrap_or_default(),
        LogSource::Docker(container) => {
            let out = Command::new("docker")
                .args(["logs", container])
                .output()
                .unwrap_or_else(|e| panic!("docker logs {container}: {e}"));
            assert!(
                out.status.success(),
                "docker logs {container}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Envoy logs to stderr; docker keeps the two streams apart.
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
        }
    }
}
