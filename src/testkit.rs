//! Shared fixtures for the core's unit tests: the test issuer's keys and configs built on them.

use serde_json::{json, Value};
use std::sync::OnceLock;
use tokenguard_harness::keys::raw_token;
use tokenguard_harness::IssuerKeys;

use std::cell::RefCell;

use crate::config::Config;
use crate::host::{Clock, Level, Log, Metrics, SharedData, WriteError};
use crate::metrics::Counter;
use crate::registry::fake::FakeShared;

pub const ISS: &str = "https://issuer.test";
pub const NOW: u64 = 1_800_000_000;

/// The demo issuer's committed keys: the same ones the e2e tests and `make run` use.
pub fn keys() -> &'static IssuerKeys {
    static KEYS: OnceLock<IssuerKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy/demo/issuer-keys.json");
        IssuerKeys::load(&path).expect("demo keys")
    })
}

pub fn all_algorithms() -> Vec<&'static str> {
    tokenguard_harness::keys::ALGORITHMS.to_vec()
}

/// A plugin configuration trusting the test issuer for every algorithm, merged with `extra`.
pub fn config_json(extra: Value) -> Value {
    let mut base = json!({
        "providers": [{
            "issuer": ISS,
            "audiences": ["api"],
            "algorithms": all_algorithms(),
            "jwks": keys().filter_jwks(),
        }],
        "clock_skew_seconds": 0,
        "required_claims": ["exp", "iat", "sub"],
    });
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

pub fn config(extra: Value) -> Config {
    match Config::from_json(config_json(extra)) {
        Ok(c) => c,
        Err(e) => panic!("config: {e}"),
    }
}

/// `revocation_store.etcd` on cluster `etcd` under `prefix`, every other field its default.
pub fn etcd_store(prefix: &str) -> crate::config::EtcdConfig {
    let store = json!({"etcd": {"cluster": "etcd", "prefix": prefix}});
    config(json!({"revocation_store": store})).revocation_store.unwrap_or_else(|| unreachable!())
}

/// Standard claims valid at `NOW` for five minutes, with `over` applied (null removes).
pub fn claims(over: Value) -> Value {
    let mut c =
        json!({"iss": ISS, "sub": "alice", "aud": "api", "iat": NOW - 10, "exp": NOW + 300, "jti": "j1"});
    if let (Some(b), Some(o)) = (c.as_object_mut(), over.as_object()) {
        for (k, v) in o {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

pub fn mint(alg: &str, over: Value) -> String {
    keys().sign(alg, &claims(over), None).expect("sign")
}

pub fn mint_kid(alg: &str, over: Value, kid: &str) -> String {
    keys().sign(alg, &claims(over), Some(kid)).expect("sign")
}

pub fn raw(header: &str, claims: &str) -> String {
    raw_token(header, claims, &keys().hmac)
}

/// A small deterministic generator (xorshift64*) for the verifiers' randomized tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn limb(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for chunk in b.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_be_bytes());
        }
        b
    }
}

/// Claims of varied size and content for jwt-simple to sign.
pub fn random_claims(rng: &mut Rng) -> jwt_simple::prelude::JWTClaims<Value> {
    use jwt_simple::prelude::{Claims, Duration};
    let pad: String = (0..rng.below(300)).map(|_| char::from(b'a' + rng.below(26) as u8)).collect();
    let custom = json!({"n": rng.next(), "pad": pad, "roles": ["a", "b"]});
    Claims::with_custom_claims(custom, Duration::from_secs(300))
        .with_subject(format!("user-{}", rng.next()))
        .with_issuer(ISS)
}

/// jwt-simple's options for a signature-only check, as `jwks::Verifier` gave them when it
/// still verified through jwt-simple: its clock is pinned to the epoch with zero tolerance and
/// future tokens accepted, so every time comparison it makes passes for any in-range
/// timestamp. The cross-checks against jwt-simple use them.
pub fn jwt_simple_options() -> Option<jwt_simple::prelude::VerificationOptions> {
    use jwt_simple::prelude::{Duration, UnixTimeStamp, VerificationOptions};
    Some(VerificationOptions {
        accept_future: true,
        time_tolerance: Some(Duration::from_secs(0)),
        artificial_time: Some(UnixTimeStamp::from_secs(0)),
        max_token_length: Some(crate::token::MAX_TOKEN_BYTES),
        ..Default::default()
    })
}

/// A compact JWS as its signing input and decoded signature.
pub fn split_signature(token: &str) -> (String, Vec<u8>) {
    use base64::Engine;
    let (input, sig) = token.rsplit_once('.').unwrap();
    (input.to_string(), base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).unwrap())
}

/// The inverse of `split_signature`.
pub fn join_signature(input: &str, sig: &[u8]) -> String {
    use base64::Engine;
    format!("{input}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig))
}

/// The `(r, n - s)` twin of an ES256 token: another encoding that verifies as well.
pub fn es256_twin(token: &str) -> String {
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc,
        0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
    ];
    let (input, sig) = split_signature(token);
    let (r, s) = sig.split_at(32);
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = (d + 256 * borrow) as u8;
    }
    join_signature(&input, &[r, &out[..]].concat())
}

/// An in-memory host: a settable clock, captured log lines and counters, shared data with
/// Envoy's CAS rules.
#[derive(Default)]
pub struct FakeHost {
    pub now: std::cell::Cell<u64>,
    pub lines: RefCell<Vec<(Level, String)>>,
    pub counts: RefCell<Vec<Counter>>,
    pub shared: FakeShared,
}

impl SharedData for FakeHost {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.shared.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        self.shared.set(key, value, cas)
    }
    fn change_count(&self) -> Option<u64> {
        self.shared.change_count()
    }
    fn note_change(&self) {
        self.shared.note_change()
    }
}

impl Clock for FakeHost {
    fn now(&self) -> u64 {
        self.now.get()
    }
}
impl Log for FakeHost {
    fn log(&self, level: Level, message: &str) {
        self.lines.borrow_mut().push((level, message.to_string()));
    }
}
impl Metrics for FakeHost {
    fn count(&self, counter: Counter) {
        self.counts.borrow_mut().push(counter);
    }
    fn value(&self, counter: Counter) -> Option<u64> {
        Some(self.counts.borrow().iter().filter(|c| **c == counter).count() as u64)
    }
}

impl FakeHost {
    pub fn at(now: u64) -> FakeHost {
        let h = FakeHost::default();
        h.now.set(now);
        h
    }
    pub fn audits(&self) -> Vec<(Level, Value)> {
        self.lines
            .borrow()
            .iter()
            .filter_map(|(l, m)| m.strip_prefix("audit ").map(|j| (*l, serde_json::from_str(j).unwrap())))
            .collect()
    }
    pub fn verdicts(&self) -> Vec<Counter> {
        self.counts
            .borrow()
            .iter()
            .copied()
            .filter(|c| matches!(c, Counter::Accepted | Counter::MissingToken | Counter::Rejected(_)))
            .collect()
    }
}

/// A request's facts for the gate's unit tests: what `RequestMeta` would read off Envoy.
pub struct FakeRequest {
    pub request_id: Option<&'static str>,
    pub path: Option<&'static str>,
    pub method: &'static str,
    pub headers: &'static [(&'static str, &'static str)],
}

impl FakeRequest {
    /// `GET {path}` with the refresh token `rt-1` in `x-refresh-token`, the default source.
    pub const fn refreshing(path: Option<&'static str>) -> FakeRequest {
        FakeRequest { request_id: None, path, method: "GET", headers: &[("x-refresh-token", "rt-1")] }
    }
}

impl crate::gate::RequestMeta for FakeRequest {
    fn request_id(&self) -> Option<String> {
        self.request_id.map(str::to_owned)
    }
    fn path(&self) -> Option<String> {
        self.path.map(str::to_owned)
    }
    fn method(&self) -> Option<String> {
        Some(self.method.to_owned())
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }
}
