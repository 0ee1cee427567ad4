//! The test token issuer: mints tokens with any algorithm and claims, serves its JWKS, and
//! counts what it was asked. Later it grows the OAuth 2.0 token endpoint.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::keys::{now, IssuerKeys};
use crate::keyserver::KeyServer;
use crate::oauth::OAuth;
use crate::server::{Request, Response, Server};

pub const DEFAULT_ISSUER: &str = "https://issuer.test";
pub const DEFAULT_AUDIENCE: &str = "api";

struct State {
    keys: IssuerKeys,
    issuer: String,
    counters: Mutex<BTreeMap<String, u64>>,
    seq: AtomicU64,
    oauth: Mutex<OAuth>,
    keyserver: Mutex<KeyServer>,
}

/// A running issuer; stops when dropped.
pub struct Issuer {
    pub port: u16,
    _server: Server,
    state: Arc<State>,
}

/// What to mint. Unset fields get sensible defaults (see `claims`).
#[derive(Debug, Clone)]
pub struct MintRequest {
    pub alg: String,
    pub ttl: i64,
    pub kid: Option<String>,
    /// Claims to set or override (a JSON null removes a default claim).
    pub claims: Map<String, Value>,
}

impl MintRequest {
    pub fn new(alg: &str, ttl: i64) -> MintRequest {
        MintRequest { alg: alg.into(), ttl, kid: None, claims: Map::new() }
    }

    pub fn claim(mut self, name: &str, value: Value) -> MintRequest {
        self.claims.insert(name.into(), value);
        self
    }

    /// The body of `POST /mint`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"alg": self.alg, "ttl": self.ttl, "claims": self.claims});
        if let Some(kid) = &self.kid {
            v["kid"] = json!(kid);
        }
        v
    }

    pub fn from_json(v: &Value) -> Result<MintRequest, String> {
        let alg = v.get("alg").and_then(Value::as_str).unwrap_or("RS256").to_string();
        let ttl = v.get("ttl").and_then(Value::as_i64).unwrap_or(300);
        let kid = v.get("kid").and_then(Value::as_str).map(str::to_owned);
        let claims = match v.get("claims") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err("claims must be an object".into()),
        };
        Ok(MintRequest { alg, ttl, kid, claims })
    }
}

impl State {
    fn claims(&self, req: &MintRequest) -> Value {
        let now = now() as i64;
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut c = json!({
            "iss": self.issuer,
            "sub": "alice",
            "aud": DEFAULT_AUDIENCE,
            "iat": now,
            "exp": (now + req.ttl).max(0),
            "jti": format!("jti-{now}-{n}"),
            "sid": format!("sid-{n}"),
        });
        if let Some(obj) = c.as_object_mut() {
            for (k, v) in &req.claims {
                if v.is_null() {
                    obj.remove(k);
                } else {
                    obj.insert(k.clone(), v.clone());
                }
            }
        }
        c
    }

    fn mint(&self, req: &MintRequest) -> Result<String, String> {
        self.bump("mint");
        let claims = self.claims(req);
        if req.alg == "ES256" {
            // A rotated key: named by its kid, or the newest for a token without one.
            if let Ok(ks) = self.keyserver.lock() {
                let key = match req.kid.as_deref() {
                    Some(kid) => ks.key(kid),
                    None => ks.current().map(|(_, k)| k),
                };
                if let Some(key) = key {
                    return crate::keys::sign_es256(key, &claims);
                }
            }
        }
        self.keys.sign(&req.alg, &claims, req.kid.as_deref())
    }

    fn bump(&self, name: &str) {
        if let Ok(mut c) = self.counters.lock() {
            *c.entry(name.to_string()).or_default() += 1;
        }
    }
}

impl Issuer {
    pub fn start(keys: IssuerKeys, issuer: &str, addr: &str) -> Issuer {
        let state = Arc::new(State {
            keys,
            issuer: issuer.into(),
            counters: Mutex::new(BTreeMap::new()),
            seq: AtomicU64::new(1),
            oauth: Mutex::new(OAuth::default()),
            keyserver: Mutex::new(KeyServer::default()),
        });
        let st = state.clone();
        let server = Server::start(addr, Arc::new(move |req: &Request| route(&st, req)));
        // Generated ahead, off the request path (see `oauth::wrong_keys`).
        std::thread::spawn(|| {
            crate::oauth::wrong_keys();
        });
        Issuer { port: server.port, _server: server, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn mint(&self, req: &MintRequest) -> String {
        self.state.mint(req).unwrap_or_else(|e| panic!("mint: {e}"))
    }

    pub fn keys(&self) -> &IssuerKeys {
        &self.state.keys
    }

    /// Sets controls as `POST /control` does (`mode`, `delay_ms`, `access_ttl`,
    /// `omit_auth_time`), without a request: usable before Envoy starts.
    pub fn control(&self, v: &Value) {
        if let Ok(mut o) = self.state.oauth.lock() {
            let _ = o.set_control(v);
        }
    }

    /// The Authorization header the token endpoint last received.
    pub fn last_client_auth(&self) -> Option<String> {
        self.state.oauth.lock().ok().and_then(|o| o.last_client_auth.clone())
    }

    /// Publishes a new P-256 key and signs ES256 tokens with it from now on; returns its kid.
    pub fn rotate_key(&self) -> String {
        self.state.keyserver.lock().expect("key server").rotate()
    }

    /// Withdraws a kid from the published key set.
    pub fn remove_key(&self, kid: &str) {
        self.state.keyserver.lock().expect("key server").remove(kid);
    }

    /// Key server controls, as `POST /control` takes them (`jwks_down`, `jwks_max_age`,
    /// `jwks_delay_ms`, `rotate_key`, `remove_key`).
    pub fn key_control(&self, v: &Value) {
        let _ = self.state.keyserver.lock().expect("key server").control(v);
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.state.counters.lock().map(|c| c.get(name).copied().unwrap_or(0)).unwrap_or(0)
    }
}

fn query(url: &str) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some((_, q)) = url.split_once('?') {
        for pair in q.split('&') {
            if let Some((k, v)) = pair.split_once('=') {
                let v = v.replace("%3A", ":").replace("%2F", "/");
                let val = v.parse::<i64>().map(Value::from).unwrap_or(Value::String(v));
                m.insert(k.to_string(), val);
            }
        }
    }
    m
}

fn route(st: &State, req: &Request) -> Response {
    // Every request, whatever its path: hostile-token tests prove the filter never calls out.
    st.bump("requests");
    let url = req.target.as_str();
    let body = String::from_utf8_lossy(&req.body);
    match (req.method.as_str(), req.path()) {
        ("GET", "/.well-known/jwks.json") => {
            st.bump("jwks");
            st.keyserver.lock().expect("key server").jwks_response(&st.keys)
        }
        ("GET", "/.well-known/openid-configuration") => {
            st.bump("discovery");
            st.keyserver.lock().expect("key server").discovery_response(&st.issuer)
        }
        // GET /mint?alg=RS256&ttl=60&sub=bob: handy from curl. Other query keys become claims.
        ("GET", "/mint") => {
            let mut q = query(url);
            let alg = q.remove("alg").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or("RS256".into());
            let ttl = q.remove("ttl").and_then(|v| v.as_i64()).unwrap_or(300);
            let kid = q.remove("kid").and_then(|v| v.as_str().map(str::to_owned));
            let req = MintRequest { alg, ttl, kid, claims: q };
            mint_response(st, &req)
        }
        // POST /mint {"alg": ..., "ttl": ..., "kid": ..., "claims": {...}}
        ("POST", "/mint") => match serde_json::from_str::<Value>(&body)
            .map_err(|e| e.to_string())
            .and_then(|v| MintRequest::from_json(&v))
        {
            Ok(req) => mint_response(st, &req),
            Err(e) => Response::text(400, &e),
        },
        ("POST", "/oauth/login") => {
            let v: Value = serde_json::from_str(&body).unwrap_or(json!({}));
            let mut o = st.oauth.lock().expect("oauth state");
            o.login(&st.keys, &st.issuer, &v)
        }
        ("POST", "/oauth/token") => {
            let mut o = st.oauth.lock().expect("oauth state");
            o.token(&st.keys, &st.issuer, req.header("authorization"), &req.body, &|c| st.bump(c))
        }
        ("POST", "/oauth/revoke") => st.oauth.lock().expect("oauth state").revoke(&req.body, &|c| st.bump(c)),
        ("POST", "/control") => {
            let v: Value = serde_json::from_str(&body).unwrap_or(json!({}));
            let key_keys = ["rotate_key", "remove_key", "jwks_down", "jwks_max_age", "jwks_delay_ms"];
            if key_keys.iter().any(|k| v.get(k).is_some()) {
                let kid = st.keyserver.lock().expect("key server").control(&v);
                return Response::json(200, &json!({"kid": kid}));
            }
            st.oauth.lock().expect("oauth state").set_control(&v)
        }
        ("GET", "/stats") => {
            let c = st.counters.lock().map(|c| c.clone()).unwrap_or_default();
            Response::json(200, &json!(c))
        }
        _ => Response::text(404, "not found"),
    }
}

fn mint_response(st: &State, req: &MintRequest) -> Response {
    match st.mint(req) {
        Ok(t) => Response::text(200, &t),
        Err(e) => Response::text(400, &e),
    }
}
