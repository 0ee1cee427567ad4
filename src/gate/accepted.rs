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

use crate::mac::constant_time_eq;
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

/// Keys a token by its length and last 16 bytes, which lie in the signature: a signature
/// is unpredictable for anyone without the key, and only tokens that verified get in, so
/// nobody can aim at an entry on purpose. Two tokens with one key share a slot (the later
/// replaces the earlier); a lookup still compares every byte.
/// Hashing all of a 500-byte token with SipHash cost more than the rest of a cache hit.
fn tail_key(token: &[u8]) -> u64 {
    let tail = token.get(token.len().saturating_sub(16)..).unwrap_or_default();
    let mut h = (token.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for chunk in tail.chunks(8) {
        let mut word = [0u8; 8];
        for (w, b) in word.iter_mut().zip(chunk) {
            *w = *b;
        }
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517C_C1B7_2722_0A95);
    }
    h
}

/// The map's keys are already mixed: hashing them again would only cost.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Slot {
    token: Box<[u8]>,
    entry: Entry,
}

#[derive(Default)]
pub struct AcceptedCache {
    entries: HashMap<u64, Slot, BuildHasherDefault<KeyHasher>>,
}

impl AcceptedCache {
    pub fn get(&self, token: &str) -> Option<&Entry> {
        let slot = self.entries.get(&tail_key(token.as_bytes()))?;
        constant_time_eq(&slot.token, token.as_bytes()).then_some(&slot.entry)
    }

    pub fn forget(&mut self, token: &str) {
        let key = tail_key(token.as_bytes());
        if self.entries.get(&key).is_some_and(|s| constant_time_eq(&s.token, token.as_bytes())) {
            self.entries.remove(&key);
        }
    }

    pub fn remember(&mut self, token: &str, entry: Entry) {
        if token.len() > MAX_TOKEN_BYTES || entry.fresh_until <= entry.accepted_at {
            return;
        }
        let key = tail_key(token.as_bytes());
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&key) {
            // Make room for a quarter of the cache at once, so a stream of first-seen tokens
            // pays for this scan once per MAX_ENTRIES / 4 inserts, not on every one.
            let now = entry.accepted_at;
            self.entries.retain(|_, s| s.entry.fresh_until > now);
            let excess = self.entries.len().saturating_sub(MAX_ENTRIES / 4 * 3);
            let victims: Vec<u64> = self.entries.keys().take(excess).copied().collect();
            for k in victims {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(key, Slot { token: token.as_bytes().into(), entry });
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
    fn the_tail_key_tells_tokens_apart_by_their_signature_end() {
        assert_ne!(tail_key(b"aaaa.bbbb.sig1"), tail_key(b"aaaa.bbbb.sig2"));
        assert_ne!(tail_key(b"x"), tail_key(b"xx"));
        assert_eq!(tail_key(b""), tail_key(b""));
    }

    #[test]
    fn tokens_sharing_a_key_share_a_slot_and_never_match_each_other() {
        // Same length, same last 16 bytes: one key.
        let (one, two) = ("A.b.0123456789abcdef", "B.b.0123456789abcdef");
        assert_eq!(tail_key(one.as_bytes()), tail_key(two.as_bytes()));
        let mut c = AcceptedCache::default();
        c.remember(one, entry(100, 200));
        assert!(c.get(two).is_none(), "a key match is not a token match");
        c.forget(two);
        assert!(c.get(one).is_some(), "forgetting another token leaves this one");
        c.remember(two, entry(100, 200));
        assert!(c.get(two).is_some() && c.get(one).is_none(), "the later token took the slot");
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
