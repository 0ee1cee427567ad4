//! The soak: Envoy with the filter, the issuer and the upstream on loopback, driven for a
//! set time with token churn, refreshes and revocations, while Envoy's memory is sampled.
//!
//! What it proves, and fails on: no 5xx and no transport error; no lost revocation (a
//! request sent after a revocation was answered, carrying or handed a token it covers, that
//! got a 200); no Wasm VM failure; memory that levels off instead of growing without bound.
//! Everything stays on 127.0.0.1 and stops by itself at the deadline.

mod load;
mod report;
mod revocations;

use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::Client;
use crate::stack::Stack;
pub use report::Report;

pub const ADMIN_TOKEN: &str = "soak-admin-token-0123456789abcdef";

/// What a run does. All from the environment in `tg-soak`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seconds: u64,
    /// Client threads sending requests as fast as they are answered.
    pub clients: usize,
    /// Sessions (signed-in users with a refresh token) each client keeps.
    pub sessions_per_client: usize,
    /// Memory sample period.
    pub sample_seconds: u64,
    /// Every minute the issuer fails for a few seconds (refreshes then fail and back off).
    pub issuer_outages: bool,
    /// `registry.capacity`: small enough by default that token churn keeps evicting.
    pub registry_capacity: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            seconds: 120,
            clients: 4,
            sessions_per_client: 8,
            sample_seconds: 5,
            issuer_outages: true,
            registry_capacity: 1000,
        }
    }
}

/// The plugin configuration under soak: refresh, admin API, and a registry small enough
/// that token churn keeps evicting; short token lifetimes so revocations expire and are
/// swept within a run.
pub fn plugin_extra(registry_capacity: u64) -> Value {
    json!({
        "clock_skew_seconds": 5,
        "max_token_lifetime_seconds": 120,
        "near_expiry_warning_seconds": 15,
        "registry": {"capacity": registry_capacity, "max_revocations": 5000},
        "admin": {"path_prefix": "/tokenguard/", "token": ADMIN_TOKEN},
        "refresh": {
            "cluster": "issuer", "authority": "issuer.test", "path": "/oauth/token",
            "timeout_ms": 1000, "window_seconds": 30, "window_ratio": 1.0,
            "client_id": "gateway", "client_secret": "soak-client-secret",
            "grace_seconds": 10, "escalate_after_failures": 5,
        },
    })
}

/// State the load, the revoker and the sampler share.
pub(crate) struct Shared {
    pub stop: AtomicBool,
    pub started: Instant,
    pub counts: Mutex<load::Counts>,
    pub revoked: Mutex<revocations::Revoked>,
    /// Recently seen sessions, for the revoker to pick from.
    pub recent: Mutex<Vec<load::Facts>>,
    pub lost: Mutex<Vec<String>>,
}

pub fn run(settings: &Settings) -> Report {
    let stack = Stack::start(plugin_extra(settings.registry_capacity));
    let issuer = stack.issuer.url();
    // Refreshed tokens live 40 s: due 10 s after issue (window 30 s), so every session is
    // refreshed every ten seconds or so.
    let c = Client::new();
    assert_eq!(c.post(&format!("{issuer}/control"), &[], r#"{"access_ttl": 40}"#).status, 200);
    let vms_at_start = stack.envoy.wasm_vms_created();

    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        started: Instant::now(),
        counts: Mutex::new(load::Counts::default()),
        revoked: Mutex::new(revocations::Revoked::default()),
        recent: Mutex::new(Vec::new()),
        lost: Mutex::new(Vec::new()),
    });
    let url = stack.envoy.url("/soak");
    let admin_url = stack.envoy.url("/tokenguard/");
    let mut threads = Vec::new();
    for id in 0..settings.clients {
        let (sh, url, issuer, n) =
            (shared.clone(), url.clone(), issuer.clone(), settings.sessions_per_client);
        threads.push(std::thread::spawn(move || load::client(id as u64, &sh, &url, &issuer, n)));
    }
    {
        let (sh, url, admin_url) = (shared.clone(), url.clone(), admin_url.clone());
        threads.push(std::thread::spawn(move || revocations::revoker(&sh, &url, &admin_url)));
    }
    if settings.issuer_outages {
        let (sh, issuer) = (shared.clone(), issuer.clone());
        threads.push(std::thread::spawn(move || outages(&sh, &issuer)));
    }

    let deadline = shared.started + Duration::from_secs(settings.seconds);
    let mut samples = Vec::new();
    while Instant::now() < deadline {
        samples.push(report::sample(&stack, &shared, &admin_url));
        let next = Instant::now() + Duration::from_secs(settings.sample_seconds);
        while Instant::now() < next.min(deadline) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    samples.push(report::sample(&stack, &shared, &admin_url));
    let _ = c.post(&format!("{issuer}/control"), &[], r#"{"mode": "normal", "delay_ms": 0}"#);
    Report::build(settings, &stack, &shared, samples, vms_at_start)
}

/// Every minute, the token endpoint answers 500 for five seconds.
fn outages(shared: &Shared, issuer: &str) {
    let c = Client::new();
    let mut minute = 1;
    while !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
        let t = shared.started.elapsed().as_secs();
        if t >= minute * 60 {
            let _ = c.try_post(&format!("{issuer}/control"), &[], r#"{"mode": "fail_500"}"#);
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.try_post(&format!("{issuer}/control"), &[], r#"{"mode": "normal"}"#);
            if let Ok(mut counts) = shared.counts.lock() {
                counts.issuer_outages += 1;
            }
            minute += 1;
        }
    }
}
