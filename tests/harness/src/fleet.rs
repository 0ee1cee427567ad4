//! A fleet on loopback (issue 17): one real etcd, the test issuer and upstream, and Envoy
//! replicas (separate processes, two workers each) loading the filter with
//! `revocation_store.etcd` and an HTTP/2 `etcd` cluster. Tests revoke the way an operator
//! would (etcdctl, on a lease) or through a replica's admin API, and read back what etcd holds.

use serde_json::{json, Value};
use std::fmt::Display;
use std::time::{Duration, Instant};

use crate::envoy::{ConfigForm, Envoy, Options};
use crate::etcd::Etcd;
use crate::http::{Client, Response};
use crate::issuer::{Issuer, MintRequest, DEFAULT_ISSUER};
use crate::link::Link;
use crate::profile::Profile;
use crate::stack::{demo_keys, plugin_config};
use crate::target::{LogSource, Target};
use crate::upstream::Upstream;

pub const ADMIN_TOKEN: &str = "fleet-admin-token-0123456789";
pub const PREFIX: &str = "/tokenguard/";
/// The lease the tests put revocations on: longer than any token they mint lives.
pub const LEASE_SECONDS: i64 = 900;

/// `revocation_store.etcd` as the tests run it, `store` merged over it, and the admin API.
pub fn store_config(store: &Value) -> Value {
    let mut etcd = json!({"cluster": "etcd", "authority": "etcd", "prefix": PREFIX,
                          "timeout_ms": 1000, "startup_wait_ms": 3000});
    for (k, v) in store.as_object().into_iter().flatten() {
        etcd[k] = v.clone();
    }
    json!({"revocation_store": {"etcd": etcd}, "admin": {"path_prefix": "/tokenguard/", "token": ADMIN_TOKEN}})
}

pub struct Fleet {
    pub etcd: Etcd,
    /// The replicas reach etcd through this relay: `link.cut()` partitions them from it.
    pub link: Link,
    pub issuer: Issuer,
    pub upstream: Upstream,
    /// Envoy processes with the same configuration, each with its own shared data.
    pub replicas: Vec<Envoy>,
    plugin: Value,
}

impl Fleet {
    /// etcd up, two replicas, `store` merged into `revocation_store.etcd`.
    pub fn start(store: Value) -> Fleet {
        Self::start_with(json!({}), store, 2, |_| {})
    }

    /// `extra`: more top-level plugin configuration; `prepare` runs on etcd before the
    /// replicas start (to write revocations, or to `stop` it: `etcd.restart()` brings it
    /// back on the same port).
    pub fn start_with(extra: Value, store: Value, replicas: usize, prepare: impl FnOnce(&Etcd)) -> Fleet {
        Self::start_on(Etcd::start(), extra, store, replicas, prepare)
    }

    /// Like `start_with`, on an etcd the caller started (`Etcd::start_with` its own flags).
    pub fn start_on(
        etcd: Etcd,
        extra: Value,
        store: Value,
        replicas: usize,
        prepare: impl FnOnce(&Etcd),
    ) -> Fleet {
        let link = Link::start(etcd.client_port);
        prepare(&etcd);
        let keys = demo_keys();
        let mut cfg = store_config(&store);
        for (k, v) in extra.as_object().into_iter().flatten() {
            cfg[k] = v.clone();
        }
        let plugin = plugin_config(&keys, &cfg);
        let issuer = Issuer::start(keys, DEFAULT_ISSUER, "127.0.0.1:0");
        let upstream = Upstream::start("127.0.0.1:0");
        let mut fleet = Fleet { etcd, link, issuer, upstream, replicas: Vec::new(), plugin };
        for _ in 0..replicas {
            let envoy = fleet.start_replica();
            fleet.replicas.push(envoy);
        }
        fleet
    }

    pub fn a(&self) -> &Envoy {
        &self.replicas[0]
    }

    pub fn b(&self) -> &Envoy {
        &self.replicas[1]
    }

    /// The plugin configuration the replicas run with, as the scenarios see it.
    pub fn profile(&self) -> Profile {
        Profile::of(&self.plugin)
    }

    /// What the scenarios may touch: replica A, with B and etcd as its fleet.
    pub fn target(&self) -> Target {
        let admin = |e: &Envoy| format!("http://127.0.0.1:{}", e.admin_port);
        let (a, b) = (self.a(), self.b());
        let upstream = format!("http://127.0.0.1:{}", self.upstream.port);
        Target::new(&a.url(""), &admin(a), &self.issuer.url(), &upstream, LogSource::File(a.log_path.clone()))
            .with_fleet(&b.url(""), &admin(b), &self.etcd.url(""), LogSource::File(b.log_path.clone()))
    }

    /// The Envoy options every replica runs with.
    pub fn options(&self) -> Options {
        Options {
            plugin_config: self.plugin.clone(),
            form: ConfigForm::StringValue,
            upstream_port: self.upstream.port,
            issuer_port: self.issuer.port,
            concurrency: 2,
            plain_route: false,
            etcd_port: Some(self.link.port),
        }
    }

    /// A new Envoy process with the fleet's configuration (not added to `replicas`).
    pub fn start_replica(&self) -> Envoy {
        Envoy::start(&self.options())
    }

    /// Kills replica `i` and starts a fresh process in its place: empty shared data.
    pub fn restart(&mut self, i: usize) {
        drop(self.replicas.remove(i));
        let fresh = self.start_replica();
        self.replicas.insert(i, fresh);
    }

    pub fn mint(&self, req: MintRequest) -> String {
        self.issuer.mint(&req)
    }

    /// Revokes with etcdctl, as an operator would: a lease of `LEASE_SECONDS`, then
    /// `etcdctl put --lease <id> <prefix>revoked/<kind>/<value> '{"revoked_at": ..}'`
    /// (`revoked_at` omitted when `None`). Returns the write's revision.
    pub fn revoke_with_etcdctl(&self, kind: &str, value: &str, revoked_at: Option<u64>) -> i64 {
        let body = match revoked_at {
            Some(t) => json!({"revoked_at": t, "reason": "revoked with etcdctl by a test"}),
            None => json!({"reason": "revoked with etcdctl by a test"}),
        };
        self.put_with_etcdctl(&revoked_key(kind, value), &body.to_string())
    }

    /// `etcdctl put --lease` of any key and value; the write's revision.
    pub fn put_with_etcdctl(&self, key: &str, value: &str) -> i64 {
        // `lease grant` answers "lease <hex id> granted with TTL(900s)".
        let granted = self.etcd.ctl(&["lease", "grant", &LEASE_SECONDS.to_string()]);
        let lease =
            granted.split_whitespace().nth(1).unwrap_or_else(|| panic!("lease grant: {granted}")).to_string();
        let out = self.etcd.ctl(&["put", "--lease", &lease, "-w", "json", key, value]);
        let v: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("etcdctl put -w json: {e}: {out}"));
        v["header"]["revision"].as_i64().expect("the put's revision")
    }

    /// What etcd holds under `<prefix>revoked/<kind>/<value>`: its JSON value and its lease.
    pub fn stored(&self, kind: &str, value: &str) -> Option<(Value, i64)> {
        let key = revoked_key(kind, value);
        let out = self.etcd.ctl(&["get", "-w", "json", &key]);
        let v: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("etcdctl get -w json: {e}: {out}"));
        let kv = v["kvs"].as_array()?.first()?.clone();
        let raw = crate::etcd::unbase64(kv["value"].as_str().unwrap_or_default());
        let json = serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{key} holds no JSON ({e}): {raw}"));
        Some((json, kv["lease"].as_i64().unwrap_or(0)))
    }

    /// Every key etcd holds under the prefix.
    pub fn stored_keys(&self) -> Vec<String> {
        let out = self.etcd.ctl(&["get", "--prefix", PREFIX, "--keys-only"]);
        out.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
    }

    /// The time to live etcd reports for `lease` (seconds; -1 once it is gone).
    pub fn lease_ttl(&self, lease: i64) -> i64 {
        let out = self.etcd.ctl(&["lease", "timetolive", &format!("{lease:x}"), "-w", "json"]);
        let v: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("timetolive -w json: {e}: {out}"));
        v["ttl"].as_i64().expect("ttl")
    }

    /// `POST /tokenguard/revoke?<key>=<value>` on `envoy`'s admin API.
    pub fn admin_revoke(&self, envoy: &Envoy, key: &str, value: &str) -> Response {
        let url = crate::http::revoke_url(&envoy.url(""), "/tokenguard/", key, value);
        Client::new().post(&url, &[("x-admin-token", ADMIN_TOKEN)], "")
    }
}

pub fn revoked_key(kind: &str, value: &str) -> String {
    format!("{PREFIX}revoked/{kind}/{value}")
}

/// Status and error code of `GET /` with `token`, on a fresh connection (so, over time, on
/// either worker). The code is empty on a 2xx.
pub fn code(envoy: &Envoy, token: &str) -> (u16, String) {
    let r = Client::new().get(&envoy.url("/"), &[("authorization", &format!("Bearer {token}"))]);
    outcome(&r)
}

pub fn outcome(r: &Response) -> (u16, String) {
    let code = if (200..300).contains(&r.status) {
        String::new()
    } else {
        serde_json::from_str::<Value>(&r.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("(body: {})", r.body.chars().take(120).collect::<String>()))
    };
    (r.status, code)
}

pub fn revoked() -> (u16, String) {
    (401, "token_revoked".into())
}

/// Polls `f` every 50 ms until it gives a value; panics naming `what` after `within`. A
/// liveness deadline, not a speed assertion: pick it generously.
pub fn eventually<T>(within: Duration, what: impl Display, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `envoy` refuses `token` as revoked; returns how long that took (reported by
/// the tests, never asserted on).
pub fn until_revoked(envoy: &Envoy, token: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let seen = code(envoy, token);
        if seen == revoked() {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not refused as revoked within {within:?}: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
