//! A fresh replica starting with `plan.load` revocations already in etcd: how long until it
//! answers a revoked token `401` and an unrevoked one `200` (it holds requests until its
//! first full list is applied), and what that list costs in shared data and memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::{clock_ticks, cpu_ticks, envoy_pid, pid_with, stats, Gateway, Plan, World, PREFIX};

/// etcd's default `--max-txn-ops`.
const TXN_OPS: usize = 128;
const BULK_WRITERS: usize = 2;
const ENTRIES: &str = "wasmcustom.tokenguard.revocation_store.entries";

pub struct Answer {
    pub status: u16,
    pub error: String,
    /// From the listener being ready to the answer.
    pub after_ready: Duration,
}

pub struct Load {
    pub in_etcd: u64,
    pub written: usize,
    pub write_time: Duration,
    /// From spawning Envoy to its listener being ready (the harness polls every 50 ms).
    pub spawn_to_ready: Duration,
    pub revoked: Answer,
    pub unrevoked: Answer,
    /// (seconds after ready, revocations the following worker had applied).
    pub curve: Vec<(f64, u64)>,
    pub stats: serde_json::Value,
    pub rss: Option<u64>,
    /// CPU seconds from ready to both answers: the new replica, etcd.
    pub cpu_seconds: f64,
    pub etcd_cpu_seconds: f64,
    /// etcd alone serving the same paged list through its gateway: every page, in order.
    pub etcd_pages: Vec<Duration>,
}

/// Lists every revocation through the gateway in pages of 1000 pinned to one revision, as
/// the filter does over gRPC: what etcd itself (plus the gateway's JSON) costs per page.
fn list_through_gateway(world: &World) -> Vec<Duration> {
    let gateway = Gateway::new(&world.etcd);
    let mut times = Vec::new();
    let (mut from, mut revision) = (format!("{PREFIX}revoked/").into_bytes(), 0);
    loop {
        let t = Instant::now();
        let (next, rev, more) = gateway.page(&from, revision);
        times.push(t.elapsed());
        if !more {
            return times;
        }
        (from, revision) = (next, rev);
    }
}

fn cpu_since(pid: Option<u32>, ticks0: Option<u64>) -> f64 {
    match (pid.and_then(cpu_ticks), ticks0) {
        (Some(t1), Some(t0)) => (t1 - t0) as f64 / clock_ticks() as f64,
        _ => f64::NAN,
    }
}

/// Writes `n` revocations `bulk-<i>` in transactions of `TXN_OPS`, from two connections.
fn bulk_write(world: &World, n: usize) -> Duration {
    let start = Instant::now();
    let jtis: Vec<String> = (0..n).map(|i| format!("bulk-{i}")).collect();
    let chunks: Vec<&[String]> = jtis.chunks(TXN_OPS).collect();
    std::thread::scope(|s| {
        for w in 0..BULK_WRITERS {
            let chunks = &chunks;
            s.spawn(move || {
                let gateway = Gateway::new(&world.etcd);
                for c in chunks.iter().skip(w).step_by(BULK_WRITERS) {
                    gateway.revoke_many(c);
                }
            });
        }
    });
    start.elapsed()
}

/// One request with a long timeout (the replica holds it while it lists).
fn ask(url: &str, token: &str, ready: Instant) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let auth = format!("Bearer {token}");
    loop {
        match agent.get(url).header("authorization", &auth).call() {
            Ok(mut r) => {
                let body = r.body_mut().read_to_string().unwrap_or_default();
                let error = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                return Answer { status: r.status().as_u16(), error, after_ready: ready.elapsed() };
            }
            Err(e) => {
                eprintln!("fleet-bench: GET during load: {e}; again");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

pub fn fresh_replica(world: &World, plan: &Plan) -> Load {
    let gateway = Gateway::new(&world.etcd);
    let already = gateway.revocations() as usize;
    let n = plan.load.saturating_sub(already);
    eprintln!("fleet-bench: {already} revocations in etcd; writing {n} more");
    let write_time = bulk_write(world, n);
    let in_etcd = gateway.revocations();
    let victim = if n > 0 { format!("bulk-{}", n - 1) } else { "seq-0".into() };
    let (revoked_token, fine_token) = (world.token(&victim), world.token("never-revoked"));
    let spawned = Instant::now();
    let envoy = world.replica();
    let ready = Instant::now();
    let spawn_to_ready = ready - spawned;
    let (pid, etcd_pid) = (envoy_pid(&envoy), pid_with(&world.etcd.data_dir));
    let (ticks0, etcd_ticks0) = (pid.and_then(cpu_ticks), etcd_pid.and_then(cpu_ticks));
    let done = AtomicBool::new(false);
    let url = envoy.url("/api");
    let (revoked, unrevoked, curve) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut curve = Vec::new();
            while !done.load(Ordering::Relaxed) {
                curve.push((ready.elapsed().as_secs_f64(), envoy.stat(ENTRIES).unwrap_or(0)));
                std::thread::sleep(Duration::from_millis(250));
            }
            curve.push((ready.elapsed().as_secs_f64(), envoy.stat(ENTRIES).unwrap_or(0)));
            curve
        });
        let a = s.spawn(|| ask(&url, &revoked_token, ready));
        let b = s.spawn(|| ask(&url, &fine_token, ready));
        let (a, b) = (a.join().expect("ask"), b.join().expect("ask"));
        done.store(true, Ordering::Relaxed);
        (a, b, sampler.join().expect("sampler"))
    });
    let (cpu_seconds, etcd_cpu_seconds) = (cpu_since(pid, ticks0), cpu_since(etcd_pid, etcd_ticks0));
    Load {
        in_etcd,
        written: n,
        write_time,
        spawn_to_ready,
        revoked,
        unrevoked,
        curve,
        stats: stats(&envoy),
        rss: envoy.rss_bytes(),
        cpu_seconds,
        etcd_cpu_seconds,
        etcd_pages: list_through_gateway(world),
    }
}
