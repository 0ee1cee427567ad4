//! The admin API (off unless `admin` is configured): revoke tokens, read statistics.
//!
//! Requests under `admin.path_prefix` are answered by the filter itself and never reach the
//! upstream. Each must carry `x-admin-token`, compared in constant time.

use serde_json::{json, Map, Value};

use crate::audit::{emit, Event, Record};
use crate::config::{AdminConfig, Config};
use crate::host::Host;
use crate::metrics::Counter;
use crate::registry::record::State;
use crate::registry::revocation::{Kind, Revocation, Target};
use crate::registry::{Layout, Registry, RevokeError};
use crate::reject::{LocalReply, RejectCode};
use crate::token::Fingerprint;

pub const ADMIN_TOKEN_HEADER: &str = "x-admin-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Revoke,
    Stats,
    /// Under the prefix but no such endpoint, or the wrong method.
    Unknown,
}

/// Classifies a request; `None` when it is not an admin request at all.
pub fn route(admin: &AdminConfig, method: &str, path: &str) -> Option<Route> {
    let path = path.split('?').next().unwrap_or_default();
    let rest = path.strip_prefix(admin.path_prefix.as_str())?;
    Some(match (method, rest) {
        ("POST", "revoke") => Route::Revoke,
        ("GET", "stats") => Route::Stats,
        _ => Route::Unknown,
    })
}

/// Compared in constant time, so response timing does not reveal how much of a guess matched.
pub fn authorized(admin: &AdminConfig, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| crate::mac::constant_time_eq(p.as_bytes(), admin.token.as_bytes()))
}

fn reply(status: u32, body: Value) -> LocalReply {
    LocalReply {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string(),
    }
}

fn error(status: u32, code: &str, description: &str) -> LocalReply {
    crate::reject::error_reply(status, code, description)
}

/// An admin answer, and a write to etcd to make before sending it (a revocation made here is
/// written through so every replica learns it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAnswer {
    pub reply: LocalReply,
    pub publish: Option<crate::etcd::write::Write>,
}

impl From<LocalReply> for AdminAnswer {
    fn from(reply: LocalReply) -> Self {
        AdminAnswer { reply, publish: None }
    }
}

/// The admin reply once the write to etcd is over (`committed`: etcd said it stored it; false
/// when a call failed or the deadline passed): counted, audited when not committed (the
/// revocation then holds on this replica only), and its body's `committed` says which.
pub fn publish_finished(host: &impl Host, reply: LocalReply, committed: bool) -> LocalReply {
    if committed {
        host.count(Counter::RevocationPublished);
    } else {
        host.count(Counter::RevocationPublishFailed);
        let mut r = Record::new(Event::RevocationPublishFailed, host.now());
        r.reason = Some("etcd did not commit the revocation; it holds on this replica only".into());
        emit(host, r);
    }
    with_committed(reply, committed)
}

/// The reply once the write is done: the body says whether etcd committed it.
fn with_committed(mut reply: LocalReply, committed: bool) -> LocalReply {
    if let Ok(Value::Object(mut v)) = serde_json::from_str::<Value>(&reply.body) {
        v.insert("committed".into(), json!(committed));
        reply.body = Value::Object(v).to_string();
    }
    reply
}

/// An admin request as the headers show it: it is answered before any body is read, so
/// that it never travels on to the upstream.
pub struct AdminRequest<'a> {
    pub route: Route,
    pub presented_token: Option<&'a str>,
    /// The query string, without the `?`.
    pub query: &'a str,
    /// The request carries a body (`content-length` above 0, or `transfer-encoding`).
    pub has_body: bool,
    pub request_id: Option<String>,
}

/// Answers an admin request.
pub fn handle(cfg: &Config, admin: &AdminConfig, host: &impl Host, req: AdminRequest) -> AdminAnswer {
    let AdminRequest { route, presented_token, query, has_body, request_id } = req;
    let now = host.now();
    if !authorized(admin, presented_token) {
        host.count(Counter::AdminDenied);
        let mut r = Record::new(Event::AdminDenied, now);
        r.reason =
            Some(if presented_token.is_some() { "wrong admin token" } else { "no admin token" }.into());
        r.request_id = request_id;
        emit(host, r);
        let mut resp = error(401, "unauthorized", "admin requests need a valid x-admin-token header");
        resp.headers.push(("www-authenticate".into(), "X-Admin-Token".into()));
        return resp.into();
    }
    match route {
        Route::Unknown => error(404, "not_found", "admin endpoints: POST revoke, GET stats").into(),
        Route::Stats => reply(200, stats(cfg, host)).into(),
        // Reading a body would mean letting the headers on towards the upstream first.
        Route::Revoke if has_body => error(
            400,
            "invalid_request",
            "give the revocation as query parameters (jti, sub, sid or token_sha256); the body is never read",
        )
        .into(),
        Route::Revoke => revoke(cfg, host, query, request_id),
    }
}

/// What a revoke request names, parsed from its query.
#[derive(Debug, Clone, PartialEq)]
pub struct RevokeTarget {
    pub target: Target,
    /// How the answer and the audit line show the target (a token only by fingerprint).
    pub shown: Value,
    /// For `token_sha256`: the token's fingerprint, to mark its registry record.
    pub fingerprint: Option<Fingerprint>,
    /// What the target's etcd key names: the value, or for a token the hex of its
    /// fingerprint (never the token itself).
    pub store_name: String,
}

/// Parses a revoke request's query: exactly one non-empty parameter of `jti`, `sub`,
/// `sid`, `token_sha256` (64 hex digits: the SHA-256 of the token's signing input, so no
/// token ever travels in a URL). Values are percent-decoded (`+` is a space, as in forms).
/// The error is the `error_description` of the 400. Pure, so it can be fuzzed.
pub fn parse_revoke_query(query: &str) -> Result<RevokeTarget, &'static str> {
    const USAGE: &str = "give exactly one non-empty parameter: jti, sub, sid or token_sha256";
    let mut found: Option<(String, String)> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k).ok_or(USAGE)?, percent_decode(v).ok_or(USAGE)?);
        if !matches!(k.as_str(), "jti" | "sub" | "sid" | "token_sha256") || found.is_some() || v.is_empty() {
            return Err(USAGE);
        }
        found = Some((k, v));
    }
    let (k, v) = found.ok_or(USAGE)?;
    let one = |kind: Kind, v: String| RevokeTarget {
        target: Target::new(kind, &v),
        shown: json!({ kind.as_str(): v }),
        fingerprint: None,
        store_name: v,
    };
    Ok(match k.as_str() {
        "jti" => one(Kind::Jti, v),
        "sub" => one(Kind::Sub, v),
        "sid" => one(Kind::Sid, v),
        _ => {
            let fp = Fingerprint::from_hex(&v).ok_or("token_sha256 must be 64 hex digits")?;
            RevokeTarget {
                target: Target::hashed(Kind::Token, fp.0),
                shown: json!({"token": fp.short()}),
                fingerprint: Some(fp),
                store_name: fp.hex(),
            }
        }
    })
}

/// `application/x-www-form-urlencoded` decoding of one name or value; `None` for a broken
/// escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn revoke(cfg: &Config, host: &impl Host, query: &str, request_id: Option<String>) -> AdminAnswer {
    let now = host.now();
    let RevokeTarget { target, shown, fingerprint, store_name } = match parse_revoke_query(query) {
        Ok(t) => t,
        Err(why) => return error(400, "invalid_request", why).into(),
    };
    let retention = cfg.revocation_retention_seconds();
    let until = now.saturating_add(retention);
    let registry = Registry::new(host, Layout::of(cfg));
    let rev = Revocation { target, revoked_at: now, until };
    match registry.revoke(rev, now) {
        Ok(()) => {}
        Err(RevokeError::Full) => {
            return error(507, "revocations_full", "the revocation store is full (registry.max_revocations)")
                .into()
        }
        Err(RevokeError::Conflict) => {
            return error(503, "temporarily_unavailable", "concurrent updates; retry").into()
        }
        Err(RevokeError::Corrupt) => {
            return error(500, "internal_error", "stored revocations are unreadable").into()
        }
    }
    if let Some(fp) = fingerprint {
        // Best effort: the revocation entry already refuses the token.
        let _ = registry.set_state(&fp.0, State::Revoked);
    }
    host.count(Counter::RevocationAdded);
    let mut r = Record::new(Event::TokenRevoked, now);
    r.target = Some(shown.clone());
    r.token = fingerprint.map(|f| f.short());
    r.reason = Some("admin".into());
    r.request_id = request_id;
    emit(host, r);
    let publish = cfg
        .revocation_store
        .as_ref()
        .map(|etcd| crate::etcd::write::Write::revocation(etcd, &rev, &store_name, retention));
    AdminAnswer { reply: reply(200, json!({"revoked": shown, "revoked_at": now, "until": until})), publish }
}

fn stats(cfg: &Config, host: &impl Host) -> Value {
    let now = host.now();
    let registry = Registry::new(host, Layout::of(cfg));
    let census = registry.census(now);
    let v = |c| host.value(c).unwrap_or(0);
    let rejected: Map<String, Value> =
        RejectCode::ALL.iter().map(|c| (c.as_str().to_string(), json!(v(Counter::Rejected(*c))))).collect();
    json!({
        "version": crate::version::VERSION,
        "active_tokens": census.active_tokens,
        "tracked_tokens": census.tracked_tokens,
        "revocations": census.revocations,
        "capacity": registry.layout.capacity(),
        "max_revocations": registry.layout.max_revocations(),
        "evictions": v(Counter::RegistryEvicted),
        "shared_data": {"keys": census.keys, "bytes": census.bytes},
        "signature_verifications": v(Counter::SignatureVerified),
        "registry_hits": v(Counter::RegistryHit),
        "requests": {
            "accepted": v(Counter::Accepted),
            "missing_token": v(Counter::MissingToken),
            "rejected": rejected,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_queries() {
        let t = parse_revoke_query("sub=alice").unwrap();
        assert_eq!(
            (t.target, t.shown, t.fingerprint),
            (Target::new(Kind::Sub, "alice"), json!({"sub": "alice"}), None)
        );
        let t = parse_revoke_query("sub=auth0%7C42+x").unwrap();
        assert_eq!(t.shown, json!({"sub": "auth0|42 x"}));
        let fp = Fingerprint::of("a.b.c");
        let t = parse_revoke_query(&format!("token_sha256={}", fp.hex().to_uppercase())).unwrap();
        assert_eq!(t.shown, json!({"token": fp.short()}));
        assert_eq!((t.target, t.store_name), (Target::hashed(Kind::Token, fp.0), fp.hex()));
        for bad in [
            "sub=",
            "sub=a&jti=b",
            "sub=a&sub=b",
            "user=a",
            "",
            "&",
            "token=a.b.c",
            "token_sha256=abc",
            "token_sha256=zz",
            "sub=%ff",
            "sub=%4",
            "sub=%zz",
        ] {
            assert!(parse_revoke_query(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes() {
        let a = AdminConfig { path_prefix: "/tokenguard/".into(), token: "x".repeat(16) };
        assert_eq!(route(&a, "POST", "/tokenguard/revoke"), Some(Route::Revoke));
        assert_eq!(route(&a, "GET", "/tokenguard/stats?x=1"), Some(Route::Stats));
        assert_eq!(route(&a, "GET", "/tokenguard/revoke"), Some(Route::Unknown));
        assert_eq!(route(&a, "GET", "/api/stats"), None);
    }

    #[test]
    fn a_write_through_is_counted_and_a_failed_one_audited_and_said_in_the_reply() {
        use crate::host::Metrics;
        let reply = || reply(200, json!({"revoked": {"jti": "j1"}}));
        for published in [true, false] {
            let host = crate::testkit::FakeHost::at(crate::testkit::NOW);
            let done = publish_finished(&host, reply(), published);
            let body: Value = serde_json::from_str(&done.body).unwrap();
            assert_eq!((done.status, body["committed"].clone()), (200, json!(published)));
            assert_eq!(body["revoked"], json!({"jti": "j1"}));
            let counted =
                if published { Counter::RevocationPublished } else { Counter::RevocationPublishFailed };
            assert_eq!(host.value(counted), Some(1));
            let audited = host.audits().iter().any(|(_, a)| a["event"] == "revocation_publish_failed");
            assert_eq!(audited, !published);
        }
    }
}
