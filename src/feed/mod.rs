//! The revocation feed: how tokenguard learns revocations made elsewhere (another replica,
//! the authorization server) and publishes its own.
//!
//! Wire format, for any authorization server to implement:
//!
//! `GET {path}?cursor=<cursor>&limit=500` (no cursor on a fresh process: everything in force)
//! answers `200` with
//! `{"cursor": "<opaque>", "has_more": false, "revocations": [ENTRY, ...]}` where an ENTRY
//! names exactly one of `jti`, `sub`, `sid`, `token_sha256` (64 hex digits, SHA-256 of the
//! whole token), plus `revoked_at` (NumericDate) and optionally `expires_at` (when the entry
//! may be forgotten). A `sub` entry covers that subject's tokens issued at or before
//! `revoked_at`.
//!
//! `POST {publish_path}` with one ENTRY as JSON publishes a revocation made through the admin
//! API; any 2xx means accepted.

use serde::Deserialize;
use serde_json::{json, Value};

pub mod poll;

use crate::config::FeedConfig;
use crate::refresh::{form_encode, Callout, Failure, MAX_RESPONSE_BYTES};
use crate::registry::revocation::{Kind, Revocation, Target};

/// Entries asked for per poll; `has_more` brings the rest on the next tick.
pub const PAGE_LIMIT: u32 = 500;
/// Feed answers are bigger than token answers: 500 entries of ~100 bytes, with headroom.
pub const MAX_FEED_BYTES: usize = 16 * MAX_RESPONSE_BYTES;

pub fn build_poll(cfg: &FeedConfig, cursor: &str) -> Callout {
    let mut path = format!("{}?limit={PAGE_LIMIT}", cfg.path);
    if !cursor.is_empty() {
        path.push_str(&format!("&cursor={}", form_encode(cursor)));
    }
    Callout {
        cluster: cfg.cluster.clone(),
        headers: vec![
            (":method".into(), "GET".into()),
            (":path".into(), path),
            (":authority".into(), cfg.authority.clone()),
            ("accept".into(), "application/json".into()),
        ],
        body: Vec::new(),
        timeout_ms: cfg.timeout_ms,
    }
}

/// The feed entry for a revocation (what `publish` sends and the feed serves).
pub fn entry_json(rev: &Revocation, value: &str) -> Value {
    let key = match rev.target.kind {
        Kind::Jti => "jti",
        Kind::Sub => "sub",
        Kind::Sid => "sid",
        Kind::Token => "token_sha256",
    };
    json!({key: value, "revoked_at": rev.revoked_at, "expires_at": rev.until})
}

pub fn build_publish(cfg: &FeedConfig, publish_path: &str, entry: &Value) -> Callout {
    Callout {
        cluster: cfg.cluster.clone(),
        headers: vec![
            (":method".into(), "POST".into()),
            (":path".into(), publish_path.to_string()),
            (":authority".into(), cfg.authority.clone()),
            ("content-type".into(), "application/json".into()),
        ],
        body: entry.to_string().into_bytes(),
        timeout_ms: cfg.timeout_ms,
    }
}

#[derive(Deserialize)]
struct RawPage {
    cursor: Option<Value>,
    #[serde(default)]
    has_more: bool,
    revocations: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    token_sha256: Option<String>,
    revoked_at: u64,
    #[serde(default)]
    expires_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    pub cursor: String,
    pub has_more: bool,
    pub revocations: Vec<Revocation>,
    /// Entries that named no (or several) targets, or a malformed hash: skipped, counted.
    pub skipped: usize,
}

/// 64 hex digits (either case) as 32 bytes.
pub(crate) fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Reads one feed page. `retention` bounds entries without `expires_at`; entries already
/// over are dropped.
pub fn parse_page(status: Option<u16>, body: &[u8], retention: u64, now: u64) -> Result<FeedPage, Failure> {
    let status = status.ok_or(Failure::Unreachable)?;
    if body.len() > MAX_FEED_BYTES {
        return Err(Failure::TooLarge);
    }
    if status == 504 {
        return Err(Failure::Timeout);
    }
    if status != 200 {
        return Err(Failure::Status(status));
    }
    let raw: RawPage =
        serde_json::from_slice(body).map_err(|_| Failure::BadResponse("not a revocation feed page"))?;
    let cursor = match raw.cursor {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(Failure::BadResponse("no cursor")),
    };
    let mut page = FeedPage { cursor, has_more: raw.has_more, revocations: Vec::new(), skipped: 0 };
    for e in raw.revocations {
        let target = match (e.jti, e.sub, e.sid, e.token_sha256) {
            (Some(v), None, None, None) => Some(Target::new(Kind::Jti, &v)),
            (None, Some(v), None, None) => Some(Target::new(Kind::Sub, &v)),
            (None, None, Some(v), None) => Some(Target::new(Kind::Sid, &v)),
            (None, None, None, Some(h)) => {
                hex32(&h.to_ascii_lowercase()).map(|h| Target::hashed(Kind::Token, h))
            }
            _ => None,
        };
        let until = e.expires_at.unwrap_or_else(|| e.revoked_at.saturating_add(retention));
        match target {
            Some(target) if until > now => {
                page.revocations.push(Revocation { target, revoked_at: e.revoked_at, until })
            }
            Some(_) => {}
            None => page.skipped += 1,
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_page() {
        let body = json!({"cursor": 17, "has_more": true, "revocations": [
            {"jti": "j1", "revoked_at": 100, "expires_at": 1000},
            {"sub": "alice", "revoked_at": 100},
            {"sid": "fam-1", "revoked_at": 100, "expires_at": 150},
            {"token_sha256": "AB".repeat(32), "revoked_at": 100},
            {"jti": "x", "sub": "y", "revoked_at": 100},
            {"token_sha256": "zz", "revoked_at": 100}
        ]});
        let p = parse_page(Some(200), body.to_string().as_bytes(), 500, 200).unwrap();
        assert_eq!((p.cursor.as_str(), p.has_more, p.skipped), ("17", true, 2));
        // The sid entry expired at 150: dropped.
        assert_eq!(p.revocations.len(), 3);
        assert_eq!(p.revocations[1].until, 600, "no expires_at: revoked_at + retention");
        assert_eq!(p.revocations[2].target, Target::hashed(Kind::Token, [0xab; 32]));
    }

    #[test]
    fn refuses_bad_pages() {
        assert_eq!(parse_page(Some(503), b"", 1, 1), Err(Failure::Status(503)));
        assert_eq!(parse_page(Some(504), b"", 1, 1), Err(Failure::Timeout));
        assert_eq!(parse_page(None, b"", 1, 1), Err(Failure::Unreachable));
        assert_eq!(
            parse_page(Some(200), b"[]", 1, 1),
            Err(Failure::BadResponse("not a revocation feed page"))
        );
        assert_eq!(
            parse_page(Some(200), br#"{"revocations": []}"#, 1, 1),
            Err(Failure::BadResponse("no cursor"))
        );
    }

    #[test]
    fn poll_and_publish_requests() {
        let cfg = FeedConfig {
            cluster: "issuer".into(),
            authority: "issuer.test".into(),
            path: "/revocations".into(),
            publish_path: Some("/revocations".into()),
            interval_seconds: 5,
            timeout_ms: 1000,
            max_staleness_seconds: None,
            startup_wait_ms: 3000,
        };
        let p = build_poll(&cfg, "a b");
        assert!(p.headers.contains(&(":path".into(), "/revocations?limit=500&cursor=a%20b".into())));
        let rev = Revocation { target: Target::new(Kind::Sub, "alice"), revoked_at: 5, until: 9 };
        let e = entry_json(&rev, "alice");
        assert_eq!(e, json!({"sub": "alice", "revoked_at": 5, "expires_at": 9}));
        let call = build_publish(&cfg, "/revocations", &e);
        assert_eq!(serde_json::from_slice::<Value>(&call.body).unwrap(), e);
    }
}
