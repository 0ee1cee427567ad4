//! The Markdown record: `bench/results/fleet.md` and `bench/results/fleet-<date>.md`.

use std::fmt::Write as _;
use std::time::Duration;
use tokenguard_harness::envoy::{envoy_bin, repo_root, Envoy};

use crate::load::{Answer, Load};
use crate::propagate::{Seen, Storm, Timed};
use crate::{stats, Plan};

pub struct Report {
    md: String,
    /// Replica 1's resident memory before any revocation.
    rss0: Option<u64>,
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}

fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            out.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default().to_string()
        })
        .unwrap_or_default()
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

impl Report {
    pub fn new(plan: &Plan) -> Report {
        let mut md = String::from("# Fleet propagation (etcd → Envoy replicas)\n\n");
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let _ = writeln!(
            md,
            "Recorded by `make bench-fleet` (tests/harness/src/bin/tg-fleet-bench) on {} UTC. \
             One etcd ({}), Envoy {} replicas with two workers each loading the release \
             `tokenguard.wasm`, the test issuer and upstream, all on loopback of a {}-core \
             machine shared with other work (load average at start: {}); numbers are noisy.\n",
            sh("date", &["-u", "+%Y-%m-%d %H:%M"]),
            sh("etcd", &["--version"]),
            sh(&envoy_bin().display().to_string(), &["--version"])
                .split("version: ")
                .nth(1)
                .and_then(|v| v.split('/').nth(1))
                .unwrap_or_default(),
            sh("nproc", &[]),
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        );
        let _ = writeln!(
            md,
            "Writes: etcd's JSON gateway (`POST /v3/kv/put`, key `/tokenguard/revoked/jti/<id>`, \
             no lease) on a kept-alive HTTP/1.1 connection; the clock starts just before the \
             write is sent, so every latency includes etcd's commit (shown separately). Each \
             replica is polled by its own thread on a kept-alive connection, one request every \
             {} µs plus its round trip; a latency is the answer time of the first `401 \
             token_revoked`, and the *window* is the time from the start of the last admitted \
             request to that answer: the revocation took effect inside it, so it is the \
             resolution.\n",
            plan.poll.as_micros()
        );
        Report { md, rss0: None }
    }

    pub fn baseline(&mut self, fleet: &[Envoy]) {
        self.rss0 = fleet.first().and_then(Envoy::rss_bytes);
        let s = fleet.first().map(stats).unwrap_or_default();
        let _ = writeln!(
            self.md,
            "Replica 1 at start: RSS {}, shared data {} bytes, {} revocations.\n",
            self.rss0.map_or("?".into(), mib),
            s["shared_data"]["bytes"],
            s["revocations"]
        );
    }

    fn table(&mut self, timed: &Timed) {
        self.md
            .push_str("| replica | timed | missed (>10 s) | p50 ms | p99 ms | max ms | median window ms |\n");
        self.md.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
        let mut both: Vec<Option<Duration>> =
            vec![Some(Duration::ZERO); timed.replicas.first().map_or(0, Vec::len)];
        for (r, seen) in timed.replicas.iter().enumerate() {
            for (b, s) in both.iter_mut().zip(seen) {
                *b = match (*b, s) {
                    (Some(b), Some(s)) => Some(b.max(s.latency)),
                    _ => None,
                };
            }
            let found: Vec<Seen> = seen.iter().flatten().copied().collect();
            self.row(
                &format!("{}", r + 1),
                seen.len(),
                &found.iter().map(|s| s.latency).collect::<Vec<_>>(),
                {
                    let mut w: Vec<Duration> = found.iter().map(|s| s.window).collect();
                    w.sort();
                    Some(pct(&w, 0.5))
                },
            );
        }
        let all: Vec<Duration> = both.iter().flatten().copied().collect();
        self.row("every replica (the later of the two)", both.len(), &all, None);
        self.md.push('\n');
    }

    fn row(&mut self, name: &str, n: usize, lat: &[Duration], window: Option<Duration>) {
        let mut v = lat.to_vec();
        v.sort();
        let _ = writeln!(
            self.md,
            "| {name} | {n} | {} | {} | {} | {} | {} |",
            n - v.len(),
            ms(pct(&v, 0.5)),
            ms(pct(&v, 0.99)),
            ms(v.last().copied().unwrap_or_default()),
            window.map_or("".into(), ms)
        );
    }

    pub fn sequential(&mut self, timed: Timed) {
        let _ = writeln!(self.md, "## One at a time\n\n{} revocations, 20 ms apart.\n", timed.acks.len());
        self.table(&timed);
        let mut acks = timed.acks.clone();
        acks.sort();
        let _ = writeln!(
            self.md,
            "etcd's acknowledgement of the write (included above): p50 {} ms, p99 {} ms.\n",
            ms(pct(&acks, 0.5)),
            ms(pct(&acks, 0.99))
        );
    }

    pub fn storm(&mut self, s: Storm) {
        let rate = s.written as f64 / s.write_time.as_secs_f64();
        let _ = writeln!(
            self.md,
            "## Storm\n\n{} revocations written by 4 connections paced at the target rate, in \
             {:.1} s ({rate:.0} per second achieved); every {}th one timed ({} samples), polled \
             by one thread per replica that cycles through the samples in flight.\n",
            s.written,
            s.write_time.as_secs_f64(),
            s.written / s.timed.replicas.first().map_or(1, Vec::len).max(1),
            s.timed.replicas.first().map_or(0, Vec::len),
        );
        self.table(&s.timed);
        self.md.push_str("CPU during the writes, the sampled polling included (CPU seconds per second; 1.0 = one core):\n\n");
        for (name, c) in &s.cpu {
            let _ = writeln!(self.md, "- {name}: {c:.2}");
        }
        let (b0, r0, t0) = s.before;
        let (b1, r1, t1) = s.after;
        let per = (b1 as f64 - b0 as f64) / (r1 as f64 - r0 as f64).max(1.0);
        let _ = writeln!(
            self.md,
            "\n## Bytes per revocation in shared data\n\nReplica 1's admin `stats` before and \
             after the storm: shared data {b0} → {b1} bytes, revocations {r0} → {r1}, tracked \
             tokens {t0} → {t1}: **{per:.1} bytes per revocation** (the storm added no tracked \
             token when the two counts match; each entry is 49 bytes: kind, SHA-256 of the \
             value, revoked_at, until, in 16 keys).\n"
        );
    }

    fn answer(a: &Answer) -> String {
        format!("{} `{}` after {:.2} s", a.status, a.error, a.after_ready.as_secs_f64())
    }

    pub fn load(&mut self, l: Load) {
        let n = l.stats["revocations"].as_u64().unwrap_or(0);
        let bytes = l.stats["shared_data"]["bytes"].as_u64().unwrap_or(0);
        let _ = writeln!(
            self.md,
            "## A fresh replica loading {} revocations\n\nThe two replicas above stopped; {} \
             more written in transactions of 128 puts from two connections in {:.1} s ({:.0} \
             keys per second). Then a third replica (`startup_wait_ms` 60000) started: its \
             listener was ready {:.2} s after the spawn (polled every 50 ms). From that moment \
             two requests sent at once (held until the list is applied):\n\n\
             - revoked token: {}\n- unrevoked token: {}\n\nFrom the spawn until both were \
             answered: **{:.2} s**.\n",
            l.in_etcd,
            l.written,
            l.write_time.as_secs_f64(),
            l.written as f64 / l.write_time.as_secs_f64().max(1e-9),
            l.spawn_to_ready.as_secs_f64(),
            Self::answer(&l.revoked),
            Self::answer(&l.unrevoked),
            (l.spawn_to_ready + l.revoked.after_ready.max(l.unrevoked.after_ready)).as_secs_f64(),
        );
        self.md.push_str(
            "Revocations applied (counter `revocation_store.entries`) against seconds after ready:\n\n",
        );
        self.md.push_str("| s | applied |\n| --- | --- |\n");
        let step = (l.curve.len() / 16).max(1);
        for (i, (t, v)) in l.curve.iter().enumerate() {
            if i % step == 0 || i + 1 == l.curve.len() {
                let _ = writeln!(self.md, "| {t:.2} | {v} |");
            }
        }
        let _ = writeln!(
            self.md,
            "\nCPU from ready to both answers: the new replica {:.2} s (one worker follows etcd), \
             etcd {:.2} s. etcd alone serving the same list (pages of 1000 pinned to one \
             revision, through its JSON gateway, after the load): {:.2} s in {} pages, the \
             first {} ms, the last {} ms.\n\
             \nAfter the load its admin `stats`: {n} revocations, shared data {bytes} bytes ({:.1} \
             per revocation, token records included); RSS {} (replica 1 at start: {}).\n",
            l.cpu_seconds,
            l.etcd_cpu_seconds,
            l.etcd_pages.iter().sum::<Duration>().as_secs_f64(),
            l.etcd_pages.len(),
            l.etcd_pages.first().map_or("?".into(), |d| ms(*d)),
            l.etcd_pages.last().map_or("?".into(), |d| ms(*d)),
            bytes as f64 / n.max(1) as f64,
            l.rss.map_or("?".into(), mib),
            self.rss0.map_or("?".into(), mib),
        );
    }

    pub fn write(&self) {
        let dir = repo_root().join("bench/results");
        let _ = std::fs::create_dir_all(&dir);
        let dated = dir.join(format!("fleet-{}.md", sh("date", &["-u", "+%Y-%m-%d"])));
        for p in [dir.join("fleet.md"), dated] {
            std::fs::write(&p, &self.md).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        }
        print!("{}", self.md);
    }
}
