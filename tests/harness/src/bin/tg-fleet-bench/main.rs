//! `make bench-fleet`: how fast revocations written to etcd reach a fleet of Envoy replicas
//! (issue 17), measured on loopback with one real etcd and real Envoy processes (two workers
//! each) loading the built filter. Writes `bench/results/fleet.md` and a dated copy.
//!
//! Phases: 200 revocations one at a time; a storm of 1000 per second for ~10 s with a sampled
//! subset timed; shared-data bytes per revocation; then a fresh replica loading 100,000
//! revocations already in etcd. Speed is recorded, never asserted.

mod load;
mod propagate;
mod report;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use tokenguard_harness::envoy::{ConfigForm, Envoy, Options};
use tokenguard_harness::etcd::Etcd;
use tokenguard_harness::http::Client;
use tokenguard_harness::issuer::{Issuer, MintRequest, DEFAULT_ISSUER};
use tokenguard_harness::stack::{demo_keys, plugin_config};
use tokenguard_harness::upstream::Upstream;

pub const ADMIN: &str = "bench-fleet-admin-token-0123";
pub const PREFIX: &str = "/tokenguard/";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What the run is told through the environment (defaults: what the issue asks):
/// `FLEET_SEQUENTIAL`, `FLEET_STORM_RATE` (per second), `FLEET_STORM_SECONDS`,
/// `FLEET_STORM_SAMPLE`, `FLEET_LOAD`, `FLEET_POLL_US`.
pub struct Plan {
    pub sequential: usize,
    pub storm_rate: u64,
    pub storm_seconds: u64,
    /// Every `storm_sample`-th storm revocation is timed.
    pub storm_sample: usize,
    pub load: usize,
    /// Sleep between two polls of one replica.
    pub poll: Duration,
}

impl Plan {
    fn from_env() -> Plan {
        Plan {
            sequential: env_num("FLEET_SEQUENTIAL", 200) as usize,
            storm_rate: env_num("FLEET_STORM_RATE", 1000),
            storm_seconds: env_num("FLEET_STORM_SECONDS", 10),
            storm_sample: env_num("FLEET_STORM_SAMPLE", 20).max(1) as usize,
            load: env_num("FLEET_LOAD", 100_000) as usize,
            poll: Duration::from_micros(env_num("FLEET_POLL_US", 500)),
        }
    }
}

/// etcd, the issuer and upstream, and the plugin configuration every replica runs.
pub struct World {
    pub etcd: Etcd,
    pub issuer: Issuer,
    pub upstream: Upstream,
    pub plugin: Value,
}

impl World {
    fn start(max_revocations: usize) -> World {
        let etcd = Etcd::start();
        let issuer = Issuer::start(demo_keys(), DEFAULT_ISSUER, "127.0.0.1:0");
        let upstream = Upstream::start("127.0.0.1:0");
        // startup_wait_ms high: a fresh replica holds requests until the whole list is in.
        let store =
            json!({"cluster": "etcd", "timeout_ms": 2000, "startup_wait_ms": 60000, "prefix": PREFIX});
        let cfg = json!({
            "revocation_store": {"etcd": store},
            "admin": {"path_prefix": "/tokenguard/", "token": ADMIN},
            "registry": {"max_revocations": max_revocations},
        });
        World { plugin: plugin_config(&demo_keys(), &cfg), etcd, issuer, upstream }
    }

    /// A token naming `jti`, valid long enough for the whole run.
    pub fn token(&self, jti: &str) -> String {
        self.issuer.mint(&MintRequest::new("ES256", 1800).claim("jti", json!(jti)))
    }

    /// One more Envoy process (two workers) with an HTTP/2 cluster `etcd`, its listener ready.
    pub fn replica(&self) -> Envoy {
        let opts = Options {
            plugin_config: self.plugin.clone(),
            form: ConfigForm::StringValue,
            upstream_port: self.upstream.port,
            issuer_port: self.issuer.port,
            concurrency: 2,
            plain_route: false,
            etcd_port: Some(self.etcd.client_port),
        };
        Envoy::start(&opts)
    }
}

/// Writes to etcd through its JSON gateway on one kept-alive connection (so a write costs
/// one HTTP round trip and etcd's commit, not a process start as `etcdctl` would).
pub struct Gateway {
    client: Client,
    url: String,
}

impl Gateway {
    pub fn new(etcd: &Etcd) -> Gateway {
        Gateway { client: Client::new(), url: etcd.url("") }
    }

    fn call(&self, path: &str, body: &Value) -> Value {
        let r = self.client.post(&format!("{}{path}", self.url), &[], &body.to_string());
        assert_eq!(r.status, 200, "POST {path}: {}", r.body);
        r.json()
    }

    pub fn revoke_jti(&self, jti: &str) {
        self.call("/v3/kv/put", &put_op(jti));
    }

    /// Many revocations in one transaction (etcd's default `--max-txn-ops` is 128).
    pub fn revoke_many(&self, jtis: &[String]) {
        let ops: Vec<Value> = jtis.iter().map(|j| json!({"request_put": put_op(j)})).collect();
        let r = self.call("/v3/kv/txn", &json!({"success": ops}));
        assert_eq!(r["succeeded"], json!(true), "txn: {r}");
    }

    /// One page of 1000 keys under `<prefix>revoked/` from `from` (inclusive), pinned to
    /// `revision` (0: the newest), as the filter lists: the next start key (the last key
    /// plus a zero byte), the revision read, and whether more keys follow.
    pub fn page(&self, from: &[u8], revision: i64) -> (Vec<u8>, i64, bool) {
        let end = format!("{PREFIX}revoked0");
        let r = self.call(
            "/v3/kv/range",
            &json!({"key": B64.encode(from), "range_end": B64.encode(end), "limit": 1000, "revision": revision}),
        );
        let last = r["kvs"].as_array().and_then(|k| k.last()).and_then(|kv| kv["key"].as_str());
        let mut next = last.and_then(|k| B64.decode(k).ok()).unwrap_or_default();
        next.push(0);
        let rev = r["header"]["revision"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0);
        (next, rev, r["more"].as_bool().unwrap_or(false))
    }

    /// How many keys are under `<prefix>revoked/`.
    pub fn revocations(&self) -> u64 {
        let from = format!("{PREFIX}revoked/");
        let end = format!("{PREFIX}revoked0"); // '0' follows '/': the prefix's range end
        let r = self.call(
            "/v3/kv/range",
            &json!({"key": B64.encode(from), "range_end": B64.encode(end), "count_only": true}),
        );
        r["count"].as_str().and_then(|c| c.parse().ok()).unwrap_or(0)
    }
}

fn put_op(jti: &str) -> Value {
    json!({"key": B64.encode(format!("{PREFIX}revoked/jti/{jti}")), "value": B64.encode(r#"{"reason":"bench"}"#)})
}

/// The filter's admin `stats` on one replica.
pub fn stats(e: &Envoy) -> Value {
    Client::new().get(&e.url("/tokenguard/stats"), &[("x-admin-token", ADMIN)]).json()
}

/// The pid of the process whose command line holds `needle` (a path unique to it).
pub fn pid_with(needle: &Path) -> Option<u32> {
    let needle = needle.display().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|d| {
        let pid: u32 = d.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(d.path().join("cmdline")).ok()?;
        String::from_utf8_lossy(&cmd).contains(&needle).then_some(pid)
    })
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (proc(5)).
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

pub fn envoy_pid(e: &Envoy) -> Option<u32> {
    pid_with(&e.log_path.parent()?.join("envoy.json"))
}

fn main() {
    let plan = Plan::from_env();
    let mut out = report::Report::new(&plan);
    let world = World::start(plan.load.max(20_000) * 2);
    let fleet = [world.replica(), world.replica()];
    eprintln!(
        "fleet-bench: etcd on {}, replicas on {} and {}",
        world.etcd.endpoint(),
        fleet[0].port,
        fleet[1].port
    );
    out.baseline(&fleet);
    out.sequential(propagate::sequential(&world, &fleet, &plan));
    out.storm(propagate::storm(&world, &fleet, &plan));
    drop(fleet);
    out.load(load::fresh_replica(&world, &plan));
    out.write();
}
