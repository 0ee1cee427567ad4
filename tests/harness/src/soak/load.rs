//! The load: client threads with signed-in sessions that get refreshed, fresh tokens minted
//! for churn, and now and then a superseded token (the grace-period handoff).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Shared;
use crate::http::{Client, Response};

#[derive(Default, Debug)]
pub struct Counts {
    pub requests: u64,
    pub ok: u64,
    /// 401s by error code.
    pub refused: BTreeMap<String, u64>,
    pub server_errors: u64,
    pub other_status: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    /// First few 5xx or odd answers, for the report.
    pub samples: Vec<String>,
    pub logins: u64,
    pub mints: u64,
    pub refreshed: u64,
    pub handoffs_seen: u64,
    pub revocations: u64,
    pub revocation_probes: u64,
    pub issuer_outages: u64,
    pub latencies_us: Vec<u32>,
}

impl Counts {
    pub fn note_odd(&mut self, what: String) {
        if self.samples.len() < 20 {
            self.samples.push(what);
        }
    }
}

/// What revocations are matched on: the token and its claims.
#[derive(Debug, Clone)]
pub struct Facts {
    pub token: String,
    pub jti: Option<String>,
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub iat: Option<u64>,
}

impl Facts {
    pub fn of(token: &str) -> Facts {
        let claims: Value = token
            .split('.')
            .nth(1)
            .and_then(|c| B64.decode(c).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let s = |k: &str| claims[k].as_str().map(str::to_owned);
        Facts {
            token: token.to_string(),
            jti: s("jti"),
            sub: s("sub"),
            sid: s("sid"),
            iat: claims["iat"].as_u64(),
        }
    }
}

struct Session {
    access: String,
    refresh: Option<String>,
    /// The access token before the last refresh (valid for the grace period as a handoff).
    previous: Option<String>,
}

/// xorshift64*: enough randomness for choosing, with no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Rng((t ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

const USERS: u64 = 40;

fn login(issuer: &Client, issuer_url: &str, rng: &mut Rng, shared: &Shared) -> Option<Session> {
    let body = json!({"sub": format!("user-{}", rng.below(USERS)), "alg": "ES256", "ttl": 40});
    let r = issuer.try_post(&format!("{issuer_url}/oauth/login"), &[], &body.to_string())?;
    let v: Value = serde_json::from_str(&r.body).ok()?;
    if let Ok(mut c) = shared.counts.lock() {
        c.logins += 1;
    }
    Some(Session {
        access: v["access_token"].as_str()?.to_string(),
        refresh: v["refresh_token"].as_str().map(str::to_owned),
        previous: None,
    })
}

fn mint(issuer: &Client, issuer_url: &str, rng: &mut Rng, shared: &Shared) -> Option<String> {
    let alg = ["ES256", "EdDSA", "HS256", "RS256"][rng.below(4) as usize];
    let body = json!({"alg": alg, "ttl": 30 + rng.below(60), "claims": {"sub": format!("user-{}", rng.below(USERS))}});
    let r = issuer.try_post(&format!("{issuer_url}/mint"), &[], &body.to_string())?;
    if let Ok(mut c) = shared.counts.lock() {
        c.mints += 1;
    }
    (r.status == 200).then_some(r.body)
}

/// One client thread, until the stop flag.
pub fn client(id: u64, shared: &Shared, url: &str, issuer_url: &str, sessions: usize) {
    let mut rng = Rng::new(id + 1);
    let issuer = Client::new();
    let mut pool: Vec<Session> =
        (0..sessions).filter_map(|_| login(&issuer, issuer_url, &mut rng, shared)).collect();
    let mut envoy = Client::new();
    let mut sent_count = 0u64;
    let mut last_signin = Instant::now();
    while !shared.stop.load(Ordering::SeqCst) {
        sent_count += 1;
        // A new connection now and then, so requests spread over Envoy's workers.
        if sent_count.is_multiple_of(40) {
            envoy = Client::new();
        }
        // Every 5 s a new sign-in replaces a session (token churn): a session then lives
        // about 40 s, long enough to be refreshed a few times.
        if !pool.is_empty() && last_signin.elapsed() >= Duration::from_secs(5) {
            last_signin = Instant::now();
            let i = rng.below(pool.len() as u64) as usize;
            if let Some(s) = login(&issuer, issuer_url, &mut rng, shared) {
                pool[i] = s;
            }
        }
        let roll = rng.below(100);
        let (token, refresh, slot) = if roll < 10 || pool.is_empty() {
            // 10%: a freshly minted token, seen once (churn through the registry).
            match mint(&issuer, issuer_url, &mut rng, shared) {
                Some(t) => (t, None, None),
                None => continue,
            }
        } else {
            let i = rng.below(pool.len() as u64) as usize;
            let s = &pool[i];
            match (&s.previous, roll < 15) {
                // 5%: the superseded token (handed off during the grace, refused after it).
                (Some(prev), true) => (prev.clone(), None, None),
                _ => (s.access.clone(), s.refresh.clone(), Some(i)),
            }
        };
        let sent = Instant::now();
        let resp = send(&envoy, url, &token, refresh.as_deref());
        let latency = sent.elapsed();
        let Some(r) = resp else {
            if let Ok(mut c) = shared.counts.lock() {
                c.requests += 1;
                c.transport_errors += 1;
                c.note_odd(format!("transport error at {:?}", shared.started.elapsed()));
            }
            envoy = Client::new();
            continue;
        };
        let new_access = r.header("x-new-access-token").map(str::to_owned);
        if r.status == 200 {
            super::revocations::check_not_revoked(shared, &Facts::of(&token), sent, "sent");
            if let Some(n) = &new_access {
                super::revocations::check_not_revoked(shared, &Facts::of(n), sent, "handed");
            }
        }
        let mut replace = false;
        if let Ok(mut c) = shared.counts.lock() {
            c.requests += 1;
            c.latencies_us.push(latency.as_micros().min(u32::MAX as u128) as u32);
            match r.status {
                200 => {
                    c.ok += 1;
                    if new_access.is_some() {
                        if slot.is_some() {
                            c.refreshed += 1;
                        } else {
                            c.handoffs_seen += 1;
                        }
                    }
                }
                401 => {
                    let code = serde_json::from_str::<Value>(&r.body)
                        .ok()
                        .and_then(|v| v["error"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| "?".into());
                    *c.refused.entry(code).or_default() += 1;
                    replace = slot.is_some();
                }
                s if s >= 500 => {
                    c.server_errors += 1;
                    c.note_odd(format!("{s} at {:?}: {}", shared.started.elapsed(), r.body));
                }
                s => {
                    *c.other_status.entry(s).or_default() += 1;
                    c.note_odd(format!("{s} at {:?}: {}", shared.started.elapsed(), r.body));
                }
            }
        }
        if let Some(i) = slot {
            if replace {
                // Revoked or expired: the user signs in again.
                if let Some(s) = login(&issuer, issuer_url, &mut rng, shared) {
                    pool[i] = s;
                }
            } else if let Some(n) = new_access {
                let s = &mut pool[i];
                s.previous = Some(std::mem::replace(&mut s.access, n));
                if let Some(rt) = r.header("x-new-refresh-token") {
                    s.refresh = Some(rt.to_string());
                }
            }
            if rng.below(4) == 0 {
                publish(shared, Facts::of(&pool[i].access));
            }
        }
    }
}

fn send(c: &Client, url: &str, token: &str, refresh: Option<&str>) -> Option<Response> {
    let auth = format!("Bearer {token}");
    let mut h = vec![("authorization", auth.as_str())];
    if let Some(rt) = refresh {
        h.push(("x-refresh-token", rt));
    }
    c.try_get(url, &h)
}

/// Offers a session to the revoker (the 200 most recent).
fn publish(shared: &Shared, facts: Facts) {
    if let Ok(mut recent) = shared.recent.lock() {
        recent.push(facts);
        if recent.len() > 200 {
            recent.remove(0);
        }
    }
}
