//! Propagation: from the moment a revocation is sent to etcd to the first `401
//! token_revoked` for a token naming it, on each replica; one at a time, then in a storm.

use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::time::{Duration, Instant};
use tokenguard_harness::envoy::Envoy;
use tokenguard_harness::http::Client;

use crate::{cpu_ticks, envoy_pid, pid_with, stats, Gateway, Plan, World};

/// Longest a sample is polled before it is counted as never seen.
const GIVE_UP: Duration = Duration::from_secs(10);

/// One revocation seen (or not) by one replica.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    /// From the write's start to the answer of the first refusing request.
    pub latency: Duration,
    /// From the last admitting request's start to that answer: the true moment lies inside.
    pub window: Duration,
}

/// Per replica, one entry per timed revocation (`None`: not refused within `GIVE_UP`).
pub struct Timed {
    pub replicas: Vec<Vec<Option<Seen>>>,
    /// How long etcd took to acknowledge each write (sequential only).
    pub acks: Vec<Duration>,
}

pub struct Storm {
    pub timed: Timed,
    pub written: usize,
    /// From the first write's start to the last write's acknowledgement.
    pub write_time: Duration,
    /// CPU seconds per wall second during the writes: each replica, then etcd.
    pub cpu: Vec<(String, f64)>,
    /// Shared-data bytes and revocations on the first replica, before and after.
    pub before: (u64, u64, u64),
    pub after: (u64, u64, u64),
}

fn revoked(client: &Client, url: &str, auth: &str) -> bool {
    let r = client.get(url, &[("authorization", auth)]);
    r.status == 401 && r.body.contains("token_revoked")
}

/// Polls one replica with `token` from `t0` until it is refused.
fn watch(replica: &Envoy, token: &str, t0: Instant, poll: Duration) -> Option<Seen> {
    let (client, url, auth) = (Client::new(), replica.url("/api"), format!("Bearer {token}"));
    let mut last = t0;
    loop {
        let sent = Instant::now();
        if revoked(&client, &url, &auth) {
            return Some(Seen { latency: t0.elapsed(), window: last.elapsed() });
        }
        last = sent;
        if t0.elapsed() > GIVE_UP {
            return None;
        }
        std::thread::sleep(poll);
    }
}

/// Both replicas admit `token` (its first sight, signature checked, is not what is timed).
fn warm(fleet: &[Envoy], token: &str) {
    let auth = format!("Bearer {token}");
    for e in fleet {
        let r = Client::new().get(&e.url("/api"), &[("authorization", &auth)]);
        assert_eq!(r.status, 200, "a fresh token is admitted: {}", r.body);
    }
}

pub fn sequential(world: &World, fleet: &[Envoy], plan: &Plan) -> Timed {
    let gateway = Gateway::new(&world.etcd);
    let tokens: Vec<(String, String)> =
        (0..plan.sequential).map(|i| format!("seq-{i}")).map(|j| (world.token(&j), j)).collect();
    let mut timed = Timed { replicas: vec![Vec::new(); fleet.len()], acks: Vec::new() };
    for (n, (token, jti)) in tokens.iter().enumerate() {
        warm(fleet, token);
        let t0 = Instant::now();
        let seen: Vec<Option<Seen>> = std::thread::scope(|s| {
            let pollers: Vec<_> =
                fleet.iter().map(|e| s.spawn(move || watch(e, token, t0, plan.poll))).collect();
            gateway.revoke_jti(jti);
            timed.acks.push(t0.elapsed());
            pollers.into_iter().map(|p| p.join().expect("poller")).collect()
        });
        for (r, s) in seen.into_iter().enumerate() {
            timed.replicas[r].push(s);
        }
        if n % 50 == 49 {
            eprintln!("fleet-bench: {} sequential revocations timed", n + 1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    timed
}

/// A timed storm revocation a poller is waiting for.
struct Pending {
    slot: usize,
    auth: String,
    t0: Instant,
    last: Instant,
}

/// One replica's poller during the storm: every pending sample polled in turn.
fn storm_poller(
    replica: &Envoy,
    rx: Receiver<(usize, String, Instant)>,
    n: usize,
    poll: Duration,
) -> Vec<Option<Seen>> {
    let (client, url) = (Client::new(), replica.url("/api"));
    let mut out = vec![None; n];
    let mut pending: Vec<Pending> = Vec::new();
    let mut open = true;
    while open || !pending.is_empty() {
        loop {
            match rx.try_recv() {
                Ok((slot, token, t0)) => {
                    pending.push(Pending { slot, auth: format!("Bearer {token}"), t0, last: t0 })
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        pending.retain_mut(|p| {
            let sent = Instant::now();
            if revoked(&client, &url, &p.auth) {
                let window = p.last.elapsed();
                if let Some(o) = out.get_mut(p.slot) {
                    *o = Some(Seen { latency: p.t0.elapsed(), window });
                }
                return false;
            }
            p.last = sent;
            p.t0.elapsed() < GIVE_UP
        });
        std::thread::sleep(poll);
    }
    out
}

const WRITERS: usize = 4;

pub fn storm(world: &World, fleet: &[Envoy], plan: &Plan) -> Storm {
    let total = (plan.storm_rate * plan.storm_seconds) as usize;
    let spacing = Duration::from_secs_f64(1.0 / plan.storm_rate.max(1) as f64);
    let samples = total.div_ceil(plan.storm_sample);
    let tokens: Vec<String> =
        (0..samples).map(|i| world.token(&format!("storm-{}", i * plan.storm_sample))).collect();
    for t in &tokens {
        warm(fleet, t);
    }
    let shared = |e: &Envoy| {
        let s = stats(e);
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        (n(&s["shared_data"]["bytes"]), n(&s["revocations"]), n(&s["tracked_tokens"]))
    };
    let before = shared(&fleet[0]);
    let mut pids: Vec<(String, Option<u32>)> =
        fleet.iter().enumerate().map(|(i, e)| (format!("Envoy replica {}", i + 1), envoy_pid(e))).collect();
    pids.push(("etcd".into(), pid_with(&world.etcd.data_dir)));
    let ticks0: Vec<Option<u64>> = pids.iter().map(|(_, p)| p.and_then(cpu_ticks)).collect();
    let start = Instant::now();
    let (replicas, write_time, cpu) = std::thread::scope(|s| {
        let (txs, pollers): (Vec<_>, Vec<_>) = fleet
            .iter()
            .map(|e| {
                let (tx, rx) = channel();
                (tx, s.spawn(move || storm_poller(e, rx, samples, plan.poll)))
            })
            .unzip();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (txs, tokens) = (txs.clone(), &tokens);
                s.spawn(move || {
                    let gateway = Gateway::new(&world.etcd);
                    for i in (w..total).step_by(WRITERS) {
                        let due = start + spacing * i as u32;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        if i % plan.storm_sample == 0 {
                            let t0 = Instant::now();
                            for tx in &txs {
                                let _ = tx.send((
                                    i / plan.storm_sample,
                                    tokens[i / plan.storm_sample].clone(),
                                    t0,
                                ));
                            }
                        }
                        gateway.revoke_jti(&format!("storm-{i}"));
                    }
                })
            })
            .collect();
        drop(txs);
        for w in writers {
            w.join().expect("writer");
        }
        let write_time = start.elapsed();
        let cpu: Vec<(String, f64)> = pids
            .iter()
            .zip(&ticks0)
            .map(|((name, pid), t0)| {
                let used = match (pid.and_then(cpu_ticks), t0) {
                    (Some(t1), Some(t0)) => (t1 - t0) as f64 / crate::clock_ticks() as f64,
                    _ => f64::NAN,
                };
                (name.clone(), used / write_time.as_secs_f64())
            })
            .collect();
        let replicas = pollers.into_iter().map(|p| p.join().expect("poller")).collect();
        (replicas, write_time, cpu)
    });
    let want = before.1 + total as u64;
    let deadline = Instant::now() + GIVE_UP;
    let mut after = shared(&fleet[0]);
    while after.1 < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = shared(&fleet[0]);
    }
    Storm { timed: Timed { replicas, acks: Vec::new() }, written: total, write_time, cpu, before, after }
}
