//! Reading what a key server answers: a JWK Set (RFC 7517 §5), an OpenID Provider
//! configuration (OpenID Connect Discovery 1.0 §3, §4.3) and `Cache-Control: max-age`.
//! Everything here reads untrusted bytes: nothing panics, every size is bounded.

use serde::Deserialize;

use crate::config::{HttpUrl, MAX_CACHE_SECONDS, MIN_CACHE_SECONDS};
use crate::jwks::{Alg, JwkSet, KeySet};
use crate::refresh::Failure;

/// A key set bigger than this is refused unread: real ones are a few KiB.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// A discovery document bigger than this is refused unread.
pub const MAX_DISCOVERY_BYTES: usize = 64 * 1024;
/// Keys per set beyond this are refused: each costs a verifier build on every worker.
pub const MAX_KEYS: usize = 64;

/// A callout's answer, as the host read it.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: Option<u16>,
    pub cache_control: Option<String>,
    pub body: Vec<u8>,
}

/// A usable key set: the body to share, its verifiers' kids, and how long it stays fresh.
pub struct Fetched {
    pub body: Vec<u8>,
    pub cache_control: Option<String>,
    pub keys: KeySet,
    pub skipped: usize,
}

/// Only key types a public set may hold: an `oct` key is an HMAC secret, which a published
/// set must never carry (anyone could sign with it), so it is dropped.
fn public_only(mut set: JwkSet) -> JwkSet {
    set.keys.retain(|k| k.kty != "oct");
    set
}

/// Parses a JWK Set and builds its verifiers for `algorithms`. Keys of other types or with
/// bad parameters are skipped (counted), not fatal; the set must leave at least one key.
pub fn jwks(body: &[u8], algorithms: &[Alg]) -> Result<(KeySet, usize), Failure> {
    if body.len() > MAX_JWKS_BYTES {
        return Err(Failure::TooLarge);
    }
    let set: JwkSet = json(body).ok_or(Failure::BadResponse("not a JSON key set"))?;
    if set.keys.len() > MAX_KEYS {
        return Err(Failure::BadResponse("too many keys"));
    }
    let (keys, skipped) = KeySet::build_lenient(&public_only(set), algorithms);
    if keys.entries.is_empty() {
        return Err(Failure::BadResponse("no usable key for the provider's algorithms"));
    }
    Ok((keys, skipped))
}

/// A JWKS answer checked before it may replace anything: status 200 and a usable set.
pub fn jwks_answer(answer: Answer, algorithms: &[Alg]) -> Result<Fetched, Failure> {
    match answer.status {
        Some(200) => {}
        Some(s) => return Err(Failure::Status(s)),
        None => return Err(Failure::BadResponse("no status")),
    }
    let (keys, skipped) = jwks(&answer.body, algorithms)?;
    Ok(Fetched { body: answer.body, cache_control: answer.cache_control, keys, skipped })
}

/// JSON text is UTF-8 (RFC 8259 §8.1) throughout, members the parser skips included
/// (serde_json does not check those).
fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_str(std::str::from_utf8(body).ok()?).ok()
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// The `jwks_uri` of a discovery document whose `issuer` is exactly `issuer` (§4.3: a
/// mismatch means the document is not this provider's and must not be used).
pub fn discovery(body: &[u8], issuer: &str) -> Result<HttpUrl, Failure> {
    if body.len() > MAX_DISCOVERY_BYTES {
        return Err(Failure::TooLarge);
    }
    let doc: Discovery = json(body).ok_or(Failure::BadResponse("not a discovery document"))?;
    if doc.issuer != issuer {
        return Err(Failure::BadResponse("discovery issuer differs from the configured issuer"));
    }
    HttpUrl::parse(&doc.jwks_uri).ok_or(Failure::BadResponse("discovery jwks_uri is not an http(s) URL"))
}

pub fn discovery_answer(answer: &Answer, issuer: &str) -> Result<HttpUrl, Failure> {
    match answer.status {
        Some(200) => discovery(&answer.body, issuer),
        Some(s) => Err(Failure::Status(s)),
        None => Err(Failure::BadResponse("no status")),
    }
}

/// Seconds the answer stays fresh: `max-age` clamped to 60 s .. 1 day, else `default`.
/// `no-cache`/`no-store` mean "ask again soon": the floor.
pub fn freshness(cache_control: Option<&str>, default: u64) -> u64 {
    let Some(cc) = cache_control else { return default };
    let mut age = None;
    for directive in cc.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return MIN_CACHE_SECONDS;
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            age = v.trim_matches('"').parse::<u64>().ok().or(Some(u64::MAX));
        }
    }
    age.map_or(default, |a| a.clamp(MIN_CACHE_SECONDS, MAX_CACHE_SECONDS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn algs() -> Vec<Alg> {
        vec![Alg::RS256, Alg::ES256]
    }

    #[test]
    fn a_key_set_needs_one_usable_key() {
        let keys = crate::testkit::keys().public_jwks();
        let (set, skipped) = jwks(keys.to_string().as_bytes(), &algs()).unwrap();
        assert_eq!(set.entries.len(), 2, "the RSA and the P-256 key");
        assert_eq!(skipped, 0);
        let only_bad = json!({"keys": [{"kty": "RSA", "kid": "x", "n": "AQAB", "e": "AQAB"},
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]});
        assert!(matches!(jwks(only_bad.to_string().as_bytes(), &algs()), Err(Failure::BadResponse(_))));
        for body in [&b"{}"[..], b"[]", b"{\"keys\": []}", b"not json", b""] {
            assert!(jwks(body, &algs()).is_err(), "{body:?}");
        }
        assert_eq!(jwks(&vec![b' '; MAX_JWKS_BYTES + 1], &algs()).err(), Some(Failure::TooLarge));
        let mut mixed = crate::testkit::keys().public_jwks();
        mixed["keys"]
            .as_array_mut()
            .unwrap()
            .push(json!({"kty": "RSA", "kid": "bad", "n": "AQAB", "e": "AQAB"}));
        assert_eq!(jwks(mixed.to_string().as_bytes(), &algs()).unwrap().1, 1, "a bad key is skipped");
        let answer = Answer { status: Some(500), cache_control: None, body: keys.to_string().into_bytes() };
        assert_eq!(jwks_answer(answer, &algs()).err(), Some(Failure::Status(500)));
    }

    #[test]
    fn discovery_wants_the_exact_issuer() {
        let doc = json!({"issuer": "https://idp/realms/a", "jwks_uri": "https://idp/realms/a/certs"});
        let uri = discovery(doc.to_string().as_bytes(), "https://idp/realms/a").unwrap();
        assert_eq!((uri.authority.as_str(), uri.path.as_str()), ("idp", "/realms/a/certs"));
        assert!(discovery(doc.to_string().as_bytes(), "https://idp/realms/a/").is_err());
        assert!(discovery(doc.to_string().as_bytes(), "https://idp/realms/b").is_err());
        let bad = json!({"issuer": "https://idp/realms/a", "jwks_uri": "file:///etc/passwd"});
        assert!(discovery(bad.to_string().as_bytes(), "https://idp/realms/a").is_err());
        assert!(discovery(b"{\"issuer\": 1}", "x").is_err());
        let good = br#"{"issuer": "x", "jwks_uri": "https://idp/c", "other": "?"}"#.to_vec();
        assert!(discovery(&good, "x").is_ok());
        let latin1: Vec<u8> = good.iter().map(|b| if *b == b'?' { 0xff } else { *b }).collect();
        assert!(discovery(&latin1, "x").is_err(), "JSON text is UTF-8, skipped members too");
    }

    #[test]
    fn max_age_is_clamped() {
        assert_eq!(freshness(None, 600), 600);
        assert_eq!(freshness(Some("public, max-age=3600"), 600), 3600);
        assert_eq!(freshness(Some("max-age=5"), 600), 60);
        assert_eq!(freshness(Some("max-age=99999999999"), 600), 86_400);
        assert_eq!(freshness(Some("max-age=nonsense"), 600), 86_400);
        assert_eq!(freshness(Some("no-cache"), 600), 60);
        assert_eq!(freshness(Some("private"), 600), 600);
    }
}
