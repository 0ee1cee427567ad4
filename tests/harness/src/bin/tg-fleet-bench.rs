//! Measures the fleet's revocation store (issue 17) on loopback: one real etcd, two Envoy
//! replicas (two workers each) with the built filter. Prints a Markdown report; asserts
//! nothing. Needs what the e2e tests need (ENVOY_BIN, TOKENGUARD_WASM, etcd on PATH).
//!
//!   tg-fleet-bench [--revocations 200] [--storm-rate 1000] [--storm-probes 50] [--load 100000]
//!
//! - propagation: from the etcd write (a Put on a lease, through etcd's gateway) returning to
//!   the first refusal on each replica, for tokens in use (each accepted by both first);
//! - the same under a storm of unrelated revocations written at `--storm-rate` per second;
//! - a fresh replica's start with `--load` revocations in etcd: until its first request is
//!   answered (held for the whole list), and its resident memory against a fresh replica
//!   started on an empty store (an upper bound on bytes per revocation: it counts the list's
//!   transient buffers too).

use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use tokenguard_harness::envoy::Envoy;
use tokenguard_harness::etcd::Gateway;
use tokenguard_harness::fleet::{revoked, revoked_key, Fleet};
use tokenguard_harness::http::Client;
use tokenguard_harness::issuer::MintRequest;
use tokenguard_harness::keys::now;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name);
    at.and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} N")))
}

fn main() {
    let (n, rate, probes, load) = (
        arg("--revocations", 200),
        arg("--storm-rate", 1000),
        arg("--storm-probes", 50),
        arg("--load", 100_000),
    );
    let registry = json!({"registry": {"max_revocations": load + rate * 60 + n + probes + 10_000}});
    let f = Fleet::start_with(registry, json!({}), 2, |_| {});
    let gw = f.etcd.gateway();
    let lease = gw.grant(3600);
    println!("# Fleet revocation store: measurements\n");
    println!("etcd 3.4 (loopback), 2 Envoy replicas x 2 workers, {} cores, {}\n", cores(), stamp());
    let quiet = propagation(&f, &gw, lease, "quiet", n);
    report(&format!("propagation, {n} revocations, nothing else written"), &quiet);
    let (stormy, achieved) = storm(&f, &gw, lease, rate, probes);
    report(
        &format!("propagation, {probes} revocations during a storm ({achieved:.0} writes/s achieved)"),
        &stormy,
    );
    fresh_replica(&f, &gw, lease, load);
    println!("\n## How measured\n");
    println!("`make fleet-bench` (tests/harness/src/bin/tg-fleet-bench.rs), niced, on a shared machine.");
    println!("Each tracked token is accepted by both replicas first; the clock starts when etcd's");
    println!("gateway answered the Put (the commit is a little earlier) and each replica is asked in");
    println!("turn without pause on one kept-alive connection (one worker), A before B, so B's times");
    println!("include one request to A per round. The storm writes unrelated revocations in");
    println!("transactions of up to 100 keys. Memory is Envoy's VmRSS two seconds after the first");
    println!("request, against a replica started on the store before the load was written.");
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn stamp() -> String {
    format!("unix time {}", now())
}

/// For `n` tokens in use: write the revocation, then ask both replicas without pause until
/// each refuses; the time from the write's answer to each replica's first refusal.
fn propagation(f: &Fleet, gw: &Gateway, lease: i64, tag: &str, n: u64) -> Vec<(Duration, Duration)> {
    let clients = [Client::new(), Client::new()];
    let mut out = Vec::new();
    for i in 0..n {
        let jti = format!("bench-{tag}-{i}-{}", now());
        let token = f.mint(MintRequest::new("ES256", 600).claim("jti", json!(jti)));
        for (c, e) in clients.iter().zip(&f.replicas) {
            assert_eq!(ask(c, e, &token).0, 200, "setup: the token is accepted first");
        }
        gw.put(&revoked_key("jti", &jti), &json!({"reason": "bench"}).to_string(), lease);
        let written = Instant::now();
        let mut seen: [Option<Duration>; 2] = [None, None];
        while seen.iter().any(Option::is_none) {
            for (k, (c, e)) in clients.iter().zip(&f.replicas).enumerate() {
                if seen[k].is_none() && ask(c, e, &token) == revoked() {
                    seen[k] = Some(written.elapsed());
                }
            }
            assert!(written.elapsed() < Duration::from_secs(30), "revocation {jti} lost");
        }
        out.push((seen[0].unwrap_or_default(), seen[1].unwrap_or_default()));
    }
    out
}

fn ask(c: &Client, e: &Envoy, token: &str) -> (u16, String) {
    tokenguard_harness::fleet::outcome(&c.get(&e.url("/"), &[("authorization", &format!("Bearer {token}"))]))
}

/// Unrelated revocations written at `rate` per second (in transactions of up to 100) while
/// `probes` tracked ones are measured. Returns the measurements and the rate achieved.
fn storm(f: &Fleet, gw: &Gateway, lease: i64, rate: u64, probes: u64) -> (Vec<(Duration, Duration)>, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let (s, w, g) = (stop.clone(), written.clone(), gw.clone());
    let writer = std::thread::spawn(move || {
        let start = Instant::now();
        let batch = (rate / 100).clamp(1, 100);
        while !s.load(Ordering::SeqCst) {
            let due = start.elapsed().as_secs_f64() * rate as f64;
            let done = w.load(Ordering::SeqCst);
            if (done as f64) < due {
                put_many(&g, lease, done, batch);
                w.fetch_add(batch, Ordering::SeqCst);
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        start.elapsed()
    });
    std::thread::sleep(Duration::from_millis(500)); // the storm is under way
    let measured = propagation(f, gw, lease, "storm", probes);
    stop.store(true, Ordering::SeqCst);
    let lasted = writer.join().expect("storm writer");
    (measured, written.load(Ordering::SeqCst) as f64 / lasted.as_secs_f64())
}

/// `count` filler revocations from number `from` in one etcd transaction.
fn put_many(gw: &Gateway, lease: i64, from: u64, count: u64) {
    let value = B64.encode(json!({"reason": "filler"}).to_string());
    let ops: Vec<_> = (from..from + count)
        .map(|i| {
            let key = B64.encode(revoked_key("jti", &format!("filler-{i}")));
            json!({"request_put": {"key": key, "value": value, "lease": lease.to_string()}})
        })
        .collect();
    gw.call("/v3/kv/txn", &json!({"success": ops}));
}

fn fresh_replica(f: &Fleet, gw: &Gateway, lease: i64, load: u64) {
    let probe = f.mint(MintRequest::new("ES256", 600));
    let empty = started(f, &probe).1;
    for i in 0..load.div_ceil(100) {
        put_many(gw, lease, 1_000_000_000 + i * 100, 100);
    }
    let total = revocations_in(f);
    let last = f.mint(MintRequest::new("ES256", 600).claim("jti", json!("bench-last")));
    gw.put(&revoked_key("jti", "bench-last"), "{}", lease);
    let ((answered, took), full) = started(f, &last);
    println!("\n## A fresh replica with {total} revocations in etcd\n");
    println!(
        "- Envoy start to ready: {:?}; then its first request answered after {took:?} ({} {})",
        answered.0, answered.1 .0, answered.1 .1
    );
    let (e, l) = (empty.unwrap_or(0), full.unwrap_or(0));
    println!(
        "- resident memory: {} MiB on an empty store, {} MiB with them: {} bytes per revocation at most",
        e >> 20,
        l >> 20,
        l.saturating_sub(e) / total.max(1)
    );
}

type Start = ((Duration, (u16, String)), Duration);

/// Starts a replica, sends `token` at once (held until the list is applied), and reads its
/// memory; ((start time, answer), the answer's wait) and the resident bytes.
fn started(f: &Fleet, token: &str) -> (Start, Option<u64>) {
    let t = Instant::now();
    let e = f.start_replica();
    let ready = t.elapsed();
    let asked = Instant::now();
    let answer = ask(&Client::new(), &e, token);
    let took = asked.elapsed();
    std::thread::sleep(Duration::from_secs(2)); // let the list's buffers go
    (((ready, answer), took), e.rss_bytes())
}

/// Keys under `<prefix>revoked/` (the gateway writes the count as a string).
fn revocations_in(f: &Fleet) -> u64 {
    let (from, to) = (B64.encode("/tokenguard/revoked/"), B64.encode("/tokenguard/revoked0"));
    let r = f.etcd.gateway().call("/v3/kv/range", &json!({"key": from, "range_end": to, "count_only": true}));
    r["count"].as_str().and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn report(title: &str, samples: &[(Duration, Duration)]) {
    println!("\n## {title}\n\n| replica | p50 | p90 | p99 | max |\n| --- | --- | --- | --- | --- |");
    for (name, pick) in [("A", 0), ("B", 1)] {
        let mut v: Vec<Duration> = samples.iter().map(|s| if pick == 0 { s.0 } else { s.1 }).collect();
        v.sort();
        let at = |q: f64| v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default();
        println!("| {name} | {:?} | {:?} | {:?} | {:?} |", at(0.5), at(0.9), at(0.99), at(1.0));
    }
}
