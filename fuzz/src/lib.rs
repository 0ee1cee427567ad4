//! What the fuzz targets share: an in-memory host with Envoy's shared-data rules, and
//! configurations built once from the demo issuer's committed keys.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{json, Value};
use tokenguard::config::Config;
use tokenguard::host::{Clock, Level, Log, Metrics, SharedData, WriteError};
use tokenguard::metrics::Counter;
use tokenguard_harness::IssuerKeys;

pub const ISS: &str = "https://issuer.test";
/// A fixed clock: the seeds' tokens are valid at this time.
pub const NOW: u64 = 1_800_000_000;
pub const ADMIN_TOKEN: &str = "fuzz-admin-token-0123456789";

pub fn keys() -> &'static IssuerKeys {
    static KEYS: OnceLock<IssuerKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../envoy/demo/issuer-keys.json");
        IssuerKeys::load(&path).expect("demo keys")
    })
}

/// The e2e tests' plugin configuration (every algorithm, audience `api`), plus `extra`.
pub fn config_json(extra: Value) -> Value {
    let mut cfg = json!({
        "providers": [{
            "issuer": ISS,
            "audiences": ["api"],
            "algorithms": tokenguard_harness::keys::ALGORITHMS,
            "jwks": keys().filter_jwks(),
        }],
        "clock_skew_seconds": 30,
        "required_claims": ["exp", "iat", "sub"],
        "session": {"max_lifetime_seconds": 86400},
        "admin": {"path_prefix": "/tokenguard/", "token": ADMIN_TOKEN},
        "refresh": {"cluster": "issuer", "authority": "issuer.test", "path": "/oauth/token",
                    "client_id": "gateway", "client_secret": "gateway-secret-value"},
        "registry": {"capacity": 64, "max_revocations": 32},
    });
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    cfg
}

/// The configuration with the token in `Authorization: Bearer`.
pub fn header_config() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| Config::from_json(config_json(json!({}))).expect("config"))
}

/// The same, reading the token from the cookie `at`.
pub fn cookie_config() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| {
        Config::from_json(config_json(json!({"token_source": {"cookie": "at"}}))).expect("config")
    })
}

/// An in-memory host: a fixed clock, counters, log lines kept for inspection, and shared
/// data with Envoy's CAS rules (a stale CAS fails, an absent key accepts any CAS).
#[derive(Default)]
pub struct FakeHost {
    pub now: u64,
    pub lines: RefCell<Vec<String>>,
    counters: RefCell<HashMap<Counter, u64>>,
    data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
}

impl FakeHost {
    pub fn at(now: u64) -> FakeHost {
        FakeHost { now, ..Default::default() }
    }
}

impl Clock for FakeHost {
    fn now(&self) -> u64 {
        self.now
    }
}

impl Log for FakeHost {
    fn log(&self, _level: Level, message: &str) {
        self.lines.borrow_mut().push(message.to_string());
    }
}

impl Metrics for FakeHost {
    fn count(&self, counter: Counter) {
        *self.counters.borrow_mut().entry(counter).or_default() += 1;
    }
    fn value(&self, counter: Counter) -> Option<u64> {
        Some(self.counters.borrow().get(&counter).copied().unwrap_or(0))
    }
}

impl SharedData for FakeHost {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.data.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        let mut data = self.data.borrow_mut();
        if let (Some((_, current)), Some(cas)) = (data.get(key), cas) {
            if *current != cas {
                return Err(WriteError::CasMismatch);
            }
        }
        self.next_cas.set(self.next_cas.get().wrapping_add(1).max(1));
        data.insert(key.to_string(), (value.to_vec(), self.next_cas.get()));
        Ok(())
    }
}

/// Request facts for the gate: none beyond the credential.
pub struct NoMeta;

impl tokenguard::gate::RequestMeta for NoMeta {
    fn request_id(&self) -> Option<String> {
        None
    }
    fn path(&self) -> Option<String> {
        Some("/fuzz".into())
    }
    fn method(&self) -> Option<String> {
        Some("GET".into())
    }
    fn header(&self, _name: &str) -> Option<String> {
        None
    }
}
