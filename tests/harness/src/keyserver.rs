//! The test issuer's key server: OpenID discovery and a JWKS with `Cache-Control`, keys
//! that rotate (new P-256 keys under new kids) and can be withdrawn, and failure on command.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

use crate::keys::IssuerKeys;
use crate::server::Response;

/// What the key server publishes and how it answers.
#[derive(Default)]
pub struct KeyServer {
    /// Keys added by rotation, newest last: (kid, key).
    rotated: Vec<(String, ES256KeyPair)>,
    /// kids withdrawn from the published set (rotated or built-in).
    removed: Vec<String>,
    /// Answer 503 to discovery and JWKS requests.
    pub down: bool,
    /// `Cache-Control: max-age` of the JWKS answer; `None`: no header.
    pub max_age: Option<u64>,
    /// Answer the JWKS after this long (a slow key server).
    pub delay_ms: u64,
    seq: u64,
}

impl KeyServer {
    /// Adds a new P-256 signing key; returns its kid. ES256 tokens minted without a kid
    /// use the newest key from then on.
    pub fn rotate(&mut self) -> String {
        self.seq += 1;
        let kid = format!("rotated-{}-{}", crate::keys::now(), self.seq);
        self.rotated.push((kid.clone(), ES256KeyPair::generate().with_key_id(&kid)));
        kid
    }

    pub fn remove(&mut self, kid: &str) {
        self.removed.push(kid.to_owned());
    }

    /// The newest rotated key, for ES256 tokens without an explicit kid.
    pub fn current(&self) -> Option<&(String, ES256KeyPair)> {
        self.rotated.last()
    }

    pub fn key(&self, kid: &str) -> Option<&ES256KeyPair> {
        self.rotated.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }

    pub fn jwks(&self, keys: &IssuerKeys) -> Value {
        let mut set = keys.public_jwks();
        if let Some(list) = set["keys"].as_array_mut() {
            for (kid, key) in &self.rotated {
                let p = key.public_key().public_key().to_bytes_uncompressed();
                let (x, y) = p[1..].split_at(32);
                list.push(json!({"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256", "alg": "ES256",
                                 "x": B64.encode(x), "y": B64.encode(y)}));
            }
            list.retain(|k| !self.removed.iter().any(|r| Some(r.as_str()) == k["kid"].as_str()));
        }
        set
    }

    pub fn jwks_response(&self, keys: &IssuerKeys) -> Response {
        if self.down {
            return Response::text(503, "key server down");
        }
        let mut r = Response::json(200, &self.jwks(keys));
        if let Some(age) = self.max_age {
            r.headers.push(("cache-control".into(), format!("public, max-age={age}")));
        }
        if self.delay_ms > 0 {
            r.delay = Some(std::time::Duration::from_millis(self.delay_ms));
        }
        r
    }

    pub fn discovery_response(&self, issuer: &str) -> Response {
        if self.down {
            return Response::text(503, "key server down");
        }
        Response::json(
            200,
            &json!({"issuer": issuer, "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "id_token_signing_alg_values_supported": ["RS256", "ES256"]}),
        )
    }

    /// `POST /control` keys: `rotate_key` (true), `remove_key` (a kid), `jwks_down`,
    /// `jwks_max_age`, `jwks_delay_ms`. Returns the new kid on rotation.
    pub fn control(&mut self, v: &Value) -> Option<String> {
        if let Some(d) = v["jwks_down"].as_bool() {
            self.down = d;
        }
        if let Some(a) = v["jwks_max_age"].as_u64() {
            self.max_age = Some(a);
        }
        if let Some(d) = v["jwks_delay_ms"].as_u64() {
            self.delay_ms = d;
        }
        if let Some(kid) = v["remove_key"].as_str() {
            self.remove(kid);
        }
        (v["rotate_key"] == json!(true)).then(|| self.rotate())
    }
}
