//! The store's format: how a revocation is written to etcd and read back, so that any tool
//! (etcdctl, an authorization server, another replica's admin API) can revoke.
//!
//! Under the configured prefix:
//! - key `<prefix>revoked/<kind>/<value>`, `<kind>` one of `jti`, `sub`, `sid`, `token`
//!   (`<value>` is the claim as issued, or for `token` 64 hex digits: the SHA-256 of the
//!   token's signing input, its fingerprint);
//! - value a JSON object `{"revoked_at": <unix seconds>, "reason": "..."}`, both optional
//!   except `revoked_at` for `sub` and `sid`, where it separates the tokens revoked (issued
//!   at or before it) from later ones. Without it a `jti` or `token` revocation counts from
//!   when this process read it (etcd keeps no write time). Other members are ignored.
//!
//! Anything else under the prefix is the filter's own (refresh claims) and not read here. A
//! revocation key that breaks these rules is skipped and counted, never guessed at. Deleting
//! a key (or its lease expiring) withdraws nothing: an entry is kept until no token it can
//! name is still valid (`revoked_at` + the retention), whatever etcd does.

use serde::Deserialize;
use serde_json::{json, Value};

use super::proto::{Event, KeyValue, EVENT_PUT};
use crate::registry::revocation::{Kind, Revocation, Target};

/// Longer values are not revocations this filter wrote or documented: skipped unparsed.
pub const MAX_VALUE_BYTES: usize = 4096;

#[derive(Deserialize)]
struct RawValue {
    #[serde(default)]
    revoked_at: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)] // read to refuse a non-string reason; kept only in etcd
    reason: Option<String>,
}

/// Only an object: serde would also read a struct from an array (`[1]` as `revoked_at` 1).
fn raw_value(value: &[u8]) -> Option<RawValue> {
    match serde_json::from_slice::<Value>(value).ok()? {
        v @ Value::Object(_) => RawValue::deserialize(v).ok(),
        _ => None,
    }
}

/// What one key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A revocation in force.
    Revoked(Revocation),
    /// A revocation whose tokens have all expired by now: nothing to apply.
    Expired,
    /// Under `<prefix>revoked/` but breaking the format: skipped and counted.
    Malformed(&'static str),
    /// Not a revocation key (the filter's own keys, or outside the prefix).
    Other,
}

fn kind_named(name: &str) -> Option<Kind> {
    Some(match name {
        "jti" => Kind::Jti,
        "sub" => Kind::Sub,
        "sid" => Kind::Sid,
        "token" => Kind::Token,
        _ => return None,
    })
}

/// Reads one key and its value. `retention` is how long a revocation must outlive its
/// `revoked_at` (the longest token lifetime plus leeway); `now` in unix seconds.
pub fn parse(prefix: &[u8], key: &[u8], value: &[u8], retention: u64, now: u64) -> Entry {
    let Some(rest) = key.strip_prefix(prefix).and_then(|r| r.strip_prefix(b"revoked/")) else {
        return Entry::Other;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return Entry::Malformed("key is not UTF-8");
    };
    let Some((kind, name)) = rest.split_once('/') else {
        return Entry::Malformed("key names no kind");
    };
    let Some(kind) = kind_named(kind) else {
        return Entry::Malformed("unknown kind");
    };
    let target = match kind {
        Kind::Token => match crate::token::Fingerprint::from_hex(name) {
            Some(h) => Target::hashed(Kind::Token, h.0),
            None => return Entry::Malformed("token is not 64 hex digits"),
        },
        _ if name.is_empty() => return Entry::Malformed("empty value"),
        _ => Target::new(kind, name),
    };
    if value.len() > MAX_VALUE_BYTES {
        return Entry::Malformed("value too long");
    }
    let Some(raw) = raw_value(value) else {
        return Entry::Malformed("value is not the documented JSON object");
    };
    let revoked_at = match (kind, raw.revoked_at) {
        (_, Some(t)) => t,
        (Kind::Sub | Kind::Sid, None) => return Entry::Malformed("revoked_at is required for sub and sid"),
        (Kind::Jti | Kind::Token, None) => now,
    };
    let until = revoked_at.saturating_add(retention);
    if until <= now {
        return Entry::Expired;
    }
    Entry::Revoked(Revocation { target, revoked_at, until })
}

/// The revocations read from a list page or a batch of watch events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub revocations: Vec<Revocation>,
    /// Malformed revocation keys: skipped, counted (a metric, an audit line).
    pub skipped: usize,
}

impl Batch {
    fn take(&mut self, entry: Entry) {
        match entry {
            Entry::Revoked(r) => self.revocations.push(r),
            Entry::Malformed(_) => self.skipped += 1,
            Entry::Expired | Entry::Other => {}
        }
    }
}

/// The revocations among a Range answer's keys.
pub fn from_kvs(prefix: &[u8], kvs: &[KeyValue], retention: u64, now: u64) -> Batch {
    let mut batch = Batch::default();
    for kv in kvs {
        batch.take(parse(prefix, &kv.key, &kv.value, retention, now));
    }
    batch
}

/// The revocations among a watch answer's events: puts only (a delete withdraws nothing).
pub fn from_events(prefix: &[u8], events: &[Event], retention: u64, now: u64) -> Batch {
    let mut batch = Batch::default();
    for kv in events.iter().filter(|e| e.r#type == EVENT_PUT).filter_map(|e| e.kv.as_ref()) {
        batch.take(parse(prefix, &kv.key, &kv.value, retention, now));
    }
    batch
}

/// The key a revocation of `kind` naming `name` is written under (for `Kind::Token`, `name`
/// is the fingerprint's 64 lowercase hex digits).
pub fn key(prefix: &[u8], kind: Kind, name: &str) -> Vec<u8> {
    [prefix, b"revoked/", kind.as_str().as_bytes(), b"/", name.as_bytes()].concat()
}

/// The value a revocation is written with.
pub fn value(revoked_at: u64, reason: Option<&str>) -> Vec<u8> {
    let mut v = json!({"revoked_at": revoked_at});
    if let (Some(r), Some(o)) = (reason, v.as_object_mut()) {
        o.insert("reason".into(), Value::String(r.into()));
    }
    v.to_string().into_bytes()
}

#[cfg(test)]
mod tests;
