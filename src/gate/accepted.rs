//! Each worker's memory of tokens it has just accepted: the hot path.
//!
//! A token is remembered from its second sight on (the registry already knew it), so a
//! flood of one-shot tokens does not churn the cache.
//!
//! A request carrying a token this worker accepted a moment ago needs no SHA-256, no
//! decoding and no registry read: the answer is the same until something time-dependent or
//! shared changes. Entries are keyed by the whole token (a lookup compares every byte, so no
//! altered token can match) and are only trusted while all of these hold:
//! - `now` is in `[accepted_at, fresh_until)`, where `fresh_until` is the earliest moment
//!   the full path would act differently: the near-expiry warning, the refresh window, the
//!   session limit, the registry's `last_seen` refresh, and expiry itself;
//! - the process-wide revocation epoch is the one seen at acceptance: every revocation
//!   (admin API, etcd, refresh reuse) bumps it, and marking a record revoked always comes
//!   with one, so any revocation anywhere sends the worker back to the full path;
//! - and the token's revocation facts are still checked on every hit, as on the full path.
//!
//! A superseded token is never remembered: after its grace it must be refused.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::registry::revocation::{Target, TokenFacts};
use crate::token::Fingerprint;

/// Entries per worker. The hot set of a gateway is the tokens of its active clients; a
/// full cache drops arbitrary entries, which costs each of those one full-path request.
pub const MAX_ENTRIES: usize = 2048;
/// Longer tokens are not remembered, bounding the cache to a few MiB per worker.
pub const MAX_TOKEN_BYTES: usize = 2048;

pub struct Entry {
    /// The configuration that accepted it (`Config::generation`).
    pub config_gen: u32,
    pub fingerprint: Fingerprint,
    pub sub: Option<String>,
    pub jti: Option<String>,
    pub sid: Option<String>,
    pub iat: Option<u64>,
    pub exp: u64,
    pub accepted_at: u64,
    pub fresh_until: u64,
    pub revocation_epoch: u64,
    /// What a revocation of this token would name, hashed once here rather than per request.
    pub targets: Vec<Target>,
    /// The whole claim set, when route rules have requirements to check against it.
    pub claims: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// The upstream header edits made when it was accepted: handed out as they are.
    pub upstream: crate::header::Edits,
}

impl Entry {
    pub fn facts(&self) -> TokenFacts<'_> {
        TokenFacts {
            fp: &self.fingerprint.0,
            jti: self.jti.as_deref(),
            sub: self.sub.as_deref(),
            sid: self.sid.as_deref(),
            iat: self.iat,
        }
    }

    /// Whether the full path would, at `now`, accept the token exactly as it did before.
    pub fn fresh(&self, config_gen: u32, now: u64, revocation_epoch: u64) -> bool {
        self.config_gen == config_gen
            && self.accepted_at <= now
            && now < self.fresh_until
            && self.revocation_epoch == revocation_epoch
    }
}

/// Hashes a token by its length and last 16 bytes, which lie in the signature: a
/// signature is unpredictable for anyone without the key, and only tokens that verified
/// get in, so nobody can fill a bucket on purpose. Equality still compares every byte.
/// Hashing all of a 500-byte token with SipHash cost more than the rest of a cache hit.
#[derive(Default)]
pub struct TailHasher(u64);

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        let tail = bytes.get(bytes.len().saturating_sub(16)..).unwrap_or_default();
        let mut h = self.0 ^ (bytes.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for chunk in tail.chunks(8) {
            let mut word = [0u8; 8];
            for (w, b) in word.iter_mut().zip(chunk) {
                *w = *b;
            }
            h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517C_C1B7_2722_0A95);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Default)]
pub struct AcceptedCache {
    entries: HashMap<Box<str>, Entry, BuildHasherDefault<TailHasher>>,
}

impl AcceptedCache {
    pub fn get(&self, token: &str) -> Option<&Entry> {
        self.entries.get(token)
    }

    pub fn forget(&mut self, token: &str) {
        self.entries.remove(token);
    }

    pub fn remember(&mut self, token: &str, entry: Entry) {
        if token.len() > MAX_TOKEN_BYTES || entry.fresh_until <= entry.accepted_at {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(token) {
            // Make room for a quarter of the cache at once, so a stream of first-seen tokens
            // pays for this scan once per MAX_ENTRIES / 4 inserts, not on every one.
            let now = entry.accepted_at;
            self.entries.retain(|_, e| e.fresh_until > now);
            let excess = self.entries.len().saturating_sub(MAX_ENTRIES / 4 * 3);
            let victims: Vec<Box<str>> = self.entries.keys().take(excess).cloned().collect();
            for k in victims {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(token.into(), entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::revocation::Revocation;

    fn entry(accepted_at: u64, fresh_until: u64) -> Entry {
        let mut e = Entry {
            config_gen: 1,
            fingerprint: Fingerprint([7; 32]),
            sub: Some("alice".into()),
            jti: None,
            sid: None,
            iat: Some(accepted_at),
            exp: fresh_until + 100,
            accepted_at,
            fresh_until,
            revocation_epoch: 3,
            targets: Vec::new(),
            claims: None,
            upstream: Default::default(),
        };
        e.targets = Revocation::targets_of(&e.facts());
        e
    }

    #[test]
    fn fresh_only_inside_its_window_and_epoch() {
        let e = entry(100, 200);
        assert!(e.fresh(1, 100, 3));
        assert!(e.fresh(1, 199, 3));
        assert!(!e.fresh(1, 200, 3), "the full path takes over at fresh_until");
        assert!(!e.fresh(1, 99, 3), "a clock that went back is not trusted");
        assert!(!e.fresh(1, 150, 4), "any new revocation sends the token back to the full path");
        assert!(!e.fresh(2, 150, 3), "another configuration decides afresh");
        assert_eq!(e.targets.len(), 2, "token and subject");
    }

    #[test]
    fn bounded_and_exact() {
        let mut c = AcceptedCache::default();
        for i in 0..MAX_ENTRIES + 10 {
            c.remember(&format!("t{i}"), entry(100, 200));
        }
        assert!(c.len() <= MAX_ENTRIES && c.len() > MAX_ENTRIES / 2, "{}", c.len());
        c.remember("x", entry(100, 200));
        assert!(c.get("x").is_some());
        assert!(c.get("x ").is_none() && c.get("X").is_none(), "only the same bytes match");
        c.remember(&"y".repeat(MAX_TOKEN_BYTES + 1), entry(100, 200));
        assert!(c.get(&"y".repeat(MAX_TOKEN_BYTES + 1)).is_none(), "long tokens are not kept");
        c.remember("stale", entry(100, 100));
        assert!(c.get("stale").is_none(), "nothing to gain from an entry that is never fresh");
        c.forget("x");
        assert!(c.get("x").is_none());
    }

    #[test]
    fn the_tail_hash_tells_tokens_apart_by_their_signature_end() {
        use std::hash::BuildHasher;
        let b = BuildHasherDefault::<TailHasher>::default();
        let h = |s: &str| b.hash_one(s);
        assert_ne!(h("aaaa.bbbb.sig1"), h("aaaa.bbbb.sig2"));
        assert_ne!(h("x"), h("xx"));
        assert_eq!(h(""), h(""));
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first() {
        let mut c = AcceptedCache::default();
        for i in 0..MAX_ENTRIES {
            c.remember(&format!("t{i}"), entry(100, if i == 0 { 300 } else { 150 }));
        }
        c.remember("new", entry(160, 400));
        assert_eq!(c.len(), 2, "every entry past its window went");
        assert!(c.get("t0").is_some() && c.get("new").is_some());
    }
}
