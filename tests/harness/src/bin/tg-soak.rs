//! The soak (`make soak`): see `tokenguard_harness::soak`.
//!
//!   SOAK_SECONDS=120 SOAK_CLIENTS=4 SOAK_REPORT=bench/soak.md tg-soak
//!
//! Needs ENVOY_BIN and TOKENGUARD_WASM (the Makefile sets both). Prints the report, writes
//! it to SOAK_REPORT when set, and exits 1 on any 5xx, transport error, lost revocation,
//! Wasm VM failure or unbounded memory growth.

use tokenguard_harness::soak::{run, Settings};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let d = Settings::default();
    let settings = Settings {
        seconds: env("SOAK_SECONDS", d.seconds),
        clients: env("SOAK_CLIENTS", d.clients as u64) as usize,
        sessions_per_client: env("SOAK_SESSIONS", d.sessions_per_client as u64) as usize,
        sample_seconds: env("SOAK_SAMPLE_SECONDS", d.sample_seconds),
        issuer_outages: env("SOAK_ISSUER_OUTAGES", 1) == 1,
        registry_capacity: env("SOAK_REGISTRY_CAPACITY", d.registry_capacity),
    };
    eprintln!("tg-soak: {settings:?}");
    let report = run(&settings);
    println!("{}", report.text);
    if let Some(path) = std::env::var_os("SOAK_REPORT") {
        if let Err(e) = std::fs::write(&path, &report.text) {
            eprintln!("tg-soak: cannot write {}: {e}", path.to_string_lossy());
            std::process::exit(2);
        }
    }
    if !report.failures.is_empty() {
        eprintln!("tg-soak: FAIL: {}", report.failures.join("; "));
        std::process::exit(1);
    }
    eprintln!("tg-soak: pass");
}
