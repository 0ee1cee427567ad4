//! The test issuer's OAuth 2.0 side: a realistic authorization server for refresh tests.
//!
//! - `POST /oauth/login` (test convenience): JSON `{"sub", "alg", "ttl", "refresh_ttl",
//!   "absolute_ttl", "auth_time"}` starts a token family and answers like a token endpoint.
//! - `POST /oauth/token`: RFC 6749 §6 `refresh_token` grant with rotation. Reusing a rotated
//!   refresh token revokes the whole family (RFC 9700 §4.14.2). A family past its absolute
//!   lifetime gets `invalid_grant` with `"reason": "absolute_lifetime_exceeded"`, distinct from
//!   an ordinary `"reason": "expired"`.
//! - `POST /oauth/revoke`: RFC 7009.
//! - `POST /control`: misbehave on demand (`mode`: normal, fail_500, garbage, huge, wrong_key,
//!   expired_token, hang_up; `delay_ms`; `access_ttl`; `omit_auth_time`: access tokens from
//!   login and the token endpoint carry no `auth_time`, still a `sid`).

use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

use crate::keys::{now, IssuerKeys};
use crate::server::Response;

#[derive(Debug, Clone)]
struct Family {
    sub: String,
    alg: String,
    auth_time: u64,
    absolute_expires_at: u64,
    revoked: bool,
}

#[derive(Debug, Clone)]
struct RefreshToken {
    family: String,
    used: bool,
    expires_at: u64,
}

#[derive(Debug, Clone)]
pub struct Control {
    pub mode: String,
    pub delay_ms: u64,
    /// Lifetime of access tokens the token endpoint issues.
    pub access_ttl: u64,
    /// Access tokens (from login and the token endpoint) carry no `auth_time`.
    pub omit_auth_time: bool,
}

impl Default for Control {
    fn default() -> Self {
        Control { mode: "normal".into(), delay_ms: 0, access_ttl: 300, omit_auth_time: false }
    }
}

#[derive(Default)]
pub struct OAuth {
    families: HashMap<String, Family>,
    refresh: HashMap<String, RefreshToken>,
    pub control: Control,
    seq: u64,
    /// The Authorization header of the last token request (to check client auth).
    pub last_client_auth: Option<String>,
}

fn form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Another issuer's keys, generated once: generating an RSA key per call took longer than
/// a refresh timeout on a loaded machine, turning "wrong key" into "timeout".
pub fn wrong_keys() -> &'static IssuerKeys {
    static KEYS: std::sync::OnceLock<IssuerKeys> = std::sync::OnceLock::new();
    KEYS.get_or_init(IssuerKeys::generate)
}

fn oauth_error(error: &str, description: &str, reason: Option<&str>) -> Response {
    let mut body = json!({"error": error, "error_description": description});
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    Response::json(400, &body)
}

impl OAuth {
    fn new_refresh(&mut self, family: &str, ttl: u64) -> String {
        self.seq += 1;
        let rt = format!("rt-{}-{}-{}", family, self.seq, now());
        self.refresh
            .insert(rt.clone(), RefreshToken { family: family.into(), used: false, expires_at: now() + ttl });
        rt
    }

    fn access_token(
        &self,
        keys: &IssuerKeys,
        issuer: &str,
        family_id: &str,
        f: &Family,
        ttl: i64,
        jti: u64,
    ) -> Result<String, String> {
        let n = now() as i64;
        let mut claims = json!({"iss": issuer, "sub": f.sub, "aud": "api", "iat": n, "exp": n + ttl,
                            "auth_time": f.auth_time, "sid": family_id, "jti": format!("at-{family_id}-{jti}")});
        if self.control.omit_auth_time {
            if let Some(c) = claims.as_object_mut() {
                c.remove("auth_time");
            }
        }
        keys.sign(&f.alg, &claims, None)
    }

    pub fn login(&mut self, keys: &IssuerKeys, issuer: &str, req: &Value) -> Response {
        self.seq += 1;
        let family_id = format!("fam-{}", self.seq);
        let n = now();
        let f = Family {
            sub: req["sub"].as_str().unwrap_or("alice").into(),
            alg: req["alg"].as_str().unwrap_or("ES256").into(),
            auth_time: req["auth_time"].as_u64().unwrap_or(n),
            absolute_expires_at: n + req["absolute_ttl"].as_u64().unwrap_or(86_400),
            revoked: false,
        };
        let ttl = req["ttl"].as_i64().unwrap_or(300);
        let refresh_ttl = req["refresh_ttl"].as_u64().unwrap_or(3600);
        let seq = self.seq;
        let at = match self.access_token(keys, issuer, &family_id, &f, ttl, seq) {
            Ok(t) => t,
            Err(e) => return Response::text(500, &e),
        };
        self.families.insert(family_id.clone(), f);
        let rt = self.new_refresh(&family_id, refresh_ttl);
        Response::json(
            200,
            &json!({"access_token": at, "token_type": "Bearer", "expires_in": ttl,
                                    "refresh_token": rt, "family": family_id}),
        )
    }

    /// The token endpoint. `counters` receives the outcome.
    pub fn token(
        &mut self,
        keys: &IssuerKeys,
        issuer: &str,
        auth: Option<&str>,
        body: &[u8],
        bump: &dyn Fn(&str),
    ) -> Response {
        bump("token_calls");
        self.last_client_auth = auth.map(str::to_owned);
        let delay = Some(Duration::from_millis(self.control.delay_ms)).filter(|d| !d.is_zero());
        let mut resp = self.token_answer(keys, issuer, auth, body, bump);
        resp.delay = delay;
        resp
    }

    /// RFC 6749 §4.4. Test clients authenticate with Basic `<id>:<id>-secret`.
    fn client_credentials(
        &mut self,
        keys: &IssuerKeys,
        issuer: &str,
        auth: Option<&str>,
        bump: &dyn Fn(&str),
    ) -> Response {
        use base64::Engine;
        let creds = auth
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(i, p)| (decode(i), decode(p))));
        let Some((id, _)) = creds.filter(|(id, secret)| *secret == format!("{id}-secret")) else {
            bump("token_invalid_client");
            let mut r = Response::json(
                401,
                &json!({"error": "invalid_client", "error_description": "bad client credentials"}),
            );
            r.headers.push(("www-authenticate".into(), "Basic realm=\"issuer\"".into()));
            return r;
        };
        self.seq += 1;
        let n = now() as i64;
        let ttl = self.control.access_ttl as i64;
        let claims = json!({"iss": issuer, "sub": id, "aud": "api", "iat": n, "exp": n + ttl, "jti": format!("cc-{}", self.seq)});
        match keys.sign("ES256", &claims, None) {
            Ok(t) => {
                bump("cc_ok");
                Response::json(200, &json!({"access_token": t, "token_type": "Bearer", "expires_in": ttl}))
            }
            Err(e) => Response::text(500, &e),
        }
    }

    fn token_answer(
        &mut self,
        keys: &IssuerKeys,
        issuer: &str,
        auth: Option<&str>,
        body: &[u8],
        bump: &dyn Fn(&str),
    ) -> Response {
        match self.control.mode.as_str() {
            "fail_500" => return Response::text(500, "internal error"),
            "garbage" => return Response::new(200, "application/json", "{not json at all"),
            "huge" => return Response::new(200, "application/json", vec![b' '; 5 * 1024 * 1024]),
            "hang_up" => {
                let mut r = Response::text(200, "");
                r.hang_up = true;
                return r;
            }
            _ => {}
        }
        let f = form(body);
        if f.get("grant_type").map(String::as_str) == Some("client_credentials") {
            return self.client_credentials(keys, issuer, auth, bump);
        }
        if f.get("grant_type").map(String::as_str) != Some("refresh_token") {
            return oauth_error("unsupported_grant_type", "refresh_token or client_credentials", None);
        }
        let Some(rt) = f.get("refresh_token").cloned() else {
            return oauth_error("invalid_request", "refresh_token is missing", None);
        };
        let Some(entry) = self.refresh.get(&rt).cloned() else {
            bump("token_invalid_grant");
            return oauth_error("invalid_grant", "unknown refresh token", None);
        };
        let Some(family) = self.families.get(&entry.family).cloned() else {
            return oauth_error("invalid_grant", "unknown token family", None);
        };
        if family.revoked {
            bump("token_invalid_grant");
            return oauth_error("invalid_grant", "token family revoked", Some("family_revoked"));
        }
        if entry.used {
            // RFC 9700 §4.14.2: a rotated refresh token used again means it leaked.
            if let Some(fam) = self.families.get_mut(&entry.family) {
                fam.revoked = true;
            }
            bump("reuse_detected");
            return oauth_error(
                "invalid_grant",
                "refresh token reuse detected; family revoked",
                Some("reuse_detected"),
            );
        }
        let n = now();
        if n >= family.absolute_expires_at {
            bump("token_invalid_grant");
            return oauth_error(
                "invalid_grant",
                "session reached its absolute lifetime; sign in again",
                Some("absolute_lifetime_exceeded"),
            );
        }
        if n >= entry.expires_at {
            bump("token_invalid_grant");
            return oauth_error("invalid_grant", "refresh token expired", Some("expired"));
        }
        if let Some(e) = self.refresh.get_mut(&rt) {
            e.used = true;
        }
        self.seq += 1;
        let seq = self.seq;
        let ttl = self.control.access_ttl as i64;
        let at = match self.control.mode.as_str() {
            "wrong_key" => wrong_keys().sign(
                &family.alg,
                &json!({"iss": issuer, "sub": family.sub, "aud": "api",
                "iat": n, "exp": n as i64 + ttl, "auth_time": family.auth_time, "sid": entry.family}),
                None,
            ),
            "expired_token" => self.access_token(keys, issuer, &entry.family, &family, -5, seq),
            _ => self.access_token(keys, issuer, &entry.family, &family, ttl, seq),
        };
        let at = match at {
            Ok(t) => t,
            Err(e) => return Response::text(500, &e),
        };
        let new_rt = self.new_refresh(&entry.family, entry.expires_at.saturating_sub(n).max(1));
        bump("token_ok");
        Response::json(
            200,
            &json!({"access_token": at, "token_type": "Bearer", "expires_in": ttl, "refresh_token": new_rt}),
        )
    }

    /// RFC 7009: always 200; a known refresh token's family is revoked.
    pub fn revoke(&mut self, body: &[u8], bump: &dyn Fn(&str)) -> Response {
        bump("revocations");
        if let Some(entry) = form(body).get("token").and_then(|t| self.refresh.get(t)).cloned() {
            if let Some(f) = self.families.get_mut(&entry.family) {
                f.revoked = true;
            }
        }
        Response::new(200, "text/plain", "")
    }

    pub fn set_control(&mut self, v: &Value) -> Response {
        if let Some(m) = v["mode"].as_str() {
            self.control.mode = m.into();
        }
        if let Some(d) = v["delay_ms"].as_u64() {
            self.control.delay_ms = d;
        }
        if let Some(t) = v["access_ttl"].as_u64() {
            self.control.access_ttl = t;
        }
        if let Some(o) = v["omit_auth_time"].as_bool() {
            self.control.omit_auth_time = o;
        }
        Response::json(
            200,
            &json!({"mode": self.control.mode, "delay_ms": self.control.delay_ms, "access_ttl": self.control.access_ttl,
                    "omit_auth_time": self.control.omit_auth_time}),
        )
    }
}
