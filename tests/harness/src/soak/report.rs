//! Memory samples during the run, and the report with its verdict.

use serde_json::Value;
use std::fmt::Write as _;

use super::{Settings, Shared, ADMIN_TOKEN};
use crate::http::Client;
use crate::stack::Stack;

#[derive(Debug, Clone)]
pub struct Sample {
    pub t_s: u64,
    /// Envoy's `server.memory_allocated` and `server.memory_heap_size` (bytes).
    pub allocated: u64,
    pub heap: u64,
    /// The whole process (includes the Wasm VMs' linear memory).
    pub rss: u64,
    /// The filter's shared data (from its admin stats endpoint).
    pub shared_bytes: u64,
    pub tracked_tokens: u64,
    pub revocations: u64,
    pub requests: u64,
}

pub(crate) fn sample(stack: &Stack, shared: &Shared, admin_url: &str) -> Sample {
    let stats = Client::new()
        .try_get(&format!("{admin_url}stats"), &[("x-admin-token", ADMIN_TOKEN)])
        .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
        .unwrap_or(Value::Null);
    Sample {
        t_s: shared.started.elapsed().as_secs(),
        allocated: stack.envoy.stat("server.memory_allocated").unwrap_or(0),
        heap: stack.envoy.stat("server.memory_heap_size").unwrap_or(0),
        rss: stack.envoy.rss_bytes().unwrap_or(0),
        shared_bytes: stats["shared_data"]["bytes"].as_u64().unwrap_or(0),
        tracked_tokens: stats["tracked_tokens"].as_u64().unwrap_or(0),
        revocations: stats["revocations"].as_u64().unwrap_or(0),
        requests: shared.counts.lock().map(|c| c.requests).unwrap_or(0),
    }
}

pub struct Report {
    pub text: String,
    pub failures: Vec<String>,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn mean(xs: &[u64]) -> f64 {
    xs.iter().sum::<u64>() as f64 / xs.len().max(1) as f64
}

/// Memory after warm-up (the first quarter of the run: the registry filling, V8 growing its
/// heaps) must level off: the mean of the last third of the remaining samples may exceed
/// the mean of the first third by at most 10% + 4 MiB. Steady growth fails this long
/// before it matters; GC sawtooth does not. Judged for Envoy's own allocations and for the
/// whole process (which includes the Wasm VMs' linear memory).
fn memory_verdict(samples: &[Sample], seconds: u64) -> (String, Vec<String>) {
    let mut lines = Vec::new();
    let mut fails = Vec::new();
    for (what, get) in
        [("memory_allocated", (|s: &Sample| s.allocated) as fn(&Sample) -> u64), ("RSS", |s: &Sample| s.rss)]
    {
        let steady: Vec<u64> = samples.iter().filter(|s| s.t_s * 4 >= seconds).map(get).collect();
        if steady.len() < 6 {
            fails.push(format!("{what}: too few samples after warm-up to judge"));
            continue;
        }
        let third = steady.len() / 3;
        let (first, last) = (mean(&steady[..third]), mean(&steady[steady.len() - third..]));
        let allowed = first * 1.10 + 4.0 * 1024.0 * 1024.0;
        let line = format!(
            "{what} after warm-up: first third {:.1} MiB, last third {:.1} MiB ({:+.1} MiB; limit {:.1} MiB)",
            first / 1048576.0,
            last / 1048576.0,
            (last - first) / 1048576.0,
            allowed / 1048576.0
        );
        if last > allowed {
            fails.push(format!("memory grew: {line}"));
        }
        lines.push(line);
    }
    (lines.join("; "), fails)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

impl Report {
    pub(crate) fn build(
        settings: &Settings,
        stack: &Stack,
        shared: &Shared,
        samples: Vec<Sample>,
        vms: u64,
    ) -> Report {
        let c = shared.counts.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default();
        let lost = shared.lost.lock().map(|l| l.clone()).unwrap_or_default();
        let elapsed = shared.started.elapsed().as_secs_f64();
        let stat = |n: &str| stack.envoy.stat(&format!("wasmcustom.tokenguard.{n}")).unwrap_or(0);
        let wasm = stack.envoy.wasm_stats();
        let wasm_bad: Vec<String> = wasm
            .iter()
            .filter(|(n, v)| *v > 0 && (n.contains("fail") || n.contains("reload")))
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let vms_now = stack.envoy.wasm_vms_created();
        let mut lat = c.latencies_us.clone();
        lat.sort_unstable();
        let (mem_line, mem_fails) = memory_verdict(&samples, settings.seconds);

        let mut failures = Vec::new();
        if c.server_errors > 0 {
            failures.push(format!("{} responses were 5xx", c.server_errors));
        }
        if c.transport_errors > 0 {
            failures.push(format!("{} requests got no HTTP answer", c.transport_errors));
        }
        if !lost.is_empty() {
            failures.push(format!("{} lost revocations", lost.len()));
        }
        if !wasm_bad.is_empty() || vms_now != vms {
            failures.push(format!("Wasm VM failure: {wasm_bad:?}, VMs created {vms} -> {vms_now}"));
        }
        if c.revocations == 0 || c.refreshed == 0 {
            failures.push("the run did no revocation or no refresh: it proves nothing".into());
        }
        failures.extend(mem_fails);

        let mut t = String::new();
        let _ = writeln!(t, "# tokenguard soak: {} s\n", settings.seconds);
        let _ = writeln!(
            t,
            "Envoy 1.40.0 (2 workers) with the filter, the test issuer and upstream on 127.0.0.1; \
             {} client threads x {} signed-in sessions, niced; issuer outages (5 s of 500s each \
             minute): {}. Configuration: `tokenguard_harness::soak::plugin_extra({})`.\n",
            settings.clients,
            settings.sessions_per_client,
            settings.issuer_outages,
            settings.registry_capacity
        );
        let _ = writeln!(
            t,
            "**Verdict: {}**\n",
            if failures.is_empty() { "pass".to_string() } else { format!("FAIL: {}", failures.join("; ")) }
        );
        let _ = writeln!(t, "| figure | value |\n| --- | --- |");
        let rows: Vec<(&str, String)> = vec![
            ("requests", format!("{} ({:.0}/s)", c.requests, c.requests as f64 / elapsed.max(1.0))),
            ("200", c.ok.to_string()),
            ("401 by code", format!("{:?}", c.refused)),
            ("5xx", c.server_errors.to_string()),
            ("other statuses", format!("{:?}", c.other_status)),
            ("transport errors", c.transport_errors.to_string()),
            ("lost revocations", lost.len().to_string()),
            ("revocations answered / probes", format!("{} / {}", c.revocations, c.revocation_probes)),
            ("new tokens: sign-ins / minted", format!("{} / {}", c.logins, c.mints)),
            ("refreshes seen by clients / handoffs seen", format!("{} / {}", c.refreshed, c.handoffs_seen)),
            (
                "filter: refresh started / succeeded / failed",
                format!(
                    "{} / {} / {}",
                    stat("refresh.started"),
                    stat("refresh.succeeded"),
                    stat("refresh.failed")
                ),
            ),
            (
                "filter: handoffs / evictions / registry conflicts",
                format!(
                    "{} / {} / {}",
                    stat("refresh.handoffs"),
                    stat("registry.evictions"),
                    stat("registry.conflicts")
                ),
            ),
            (
                "filter: signature verifications / registry hits",
                format!("{} / {}", stat("signature_verifications"), stat("registry.hits")),
            ),
            ("issuer outages", c.issuer_outages.to_string()),
            (
                "latency p50 / p99 / max (ms)",
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    percentile(&lat, 0.5),
                    percentile(&lat, 0.99),
                    percentile(&lat, 1.0)
                ),
            ),
            ("Wasm VMs created (start / end), failures", format!("{vms} / {vms_now}, {wasm_bad:?}")),
            ("memory", mem_line),
        ];
        for (k, v) in rows {
            let _ = writeln!(t, "| {k} | {v} |");
        }
        let _ = writeln!(t, "\n## Envoy memory and the filter's shared data over time\n");
        let _ = writeln!(t, "| t (s) | requests | memory_allocated (MiB) | heap_size (MiB) | RSS (MiB) | shared data (KiB) | tracked tokens | revocations in force |");
        let _ = writeln!(t, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for s in &samples {
            let _ = writeln!(
                t,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
                s.t_s,
                s.requests,
                mib(s.allocated),
                mib(s.heap),
                mib(s.rss),
                s.shared_bytes as f64 / 1024.0,
                s.tracked_tokens,
                s.revocations
            );
        }
        if !c.samples.is_empty() || !lost.is_empty() {
            let _ = writeln!(t, "\n## Odd answers and lost revocations (first ones)\n");
            for l in c.samples.iter().chain(lost.iter().take(20)) {
                let _ = writeln!(t, "- {l}");
            }
        }
        Report { text: t, failures }
    }
}
