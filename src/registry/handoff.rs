//! Handoffs: the tokens a refresh produced, kept for the grace period so that requests still
//! carrying the old token (other workers, requests already in flight) are forwarded with the
//! new one and handed it in the response.
//!
//! The new refresh token goes only to a request that presents the refresh token spent for
//! it (`spent_refresh`, compared in constant time): an old access token alone, stolen from
//! a log or a browser, must not buy the long-lived refresh token.
//!
//! These values are secrets. They live only in shared memory, for `grace_seconds`, and are
//! never logged; the key is the old token's fingerprint.

use super::codec::{read_list, write_list};

/// Handoff keys (`tokenguard/h/<n>`) and entries per key: at most 256 refreshes can be inside
/// their grace period at once; beyond that the oldest handoff goes first, and requests
/// carrying its old token are forwarded unchanged until the grace ends.
pub const HANDOFF_BUCKETS: u32 = 64;
pub const HANDOFF_SLOTS: usize = 4;

#[derive(Clone, PartialEq, Eq)]
pub struct Handoff {
    pub old_fp: [u8; 32],
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// SHA-256 of the refresh token that was spent to obtain these.
    pub spent_refresh: [u8; 32],
    /// The configuration the new access token verified under: under another one (keys
    /// rotated, issuer dropped) it is verified again before it is handed on.
    pub config_gen: u32,
    /// Dropped after this time (the end of the grace period).
    pub until: u64,
}

impl std::fmt::Debug for Handoff {
    /// Never prints the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Handoff(until {})", self.until)
    }
}

impl Handoff {
    /// Whether `presented` is the refresh token this refresh spent.
    pub fn spent_by(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| {
            crate::mac::constant_time_eq(&hmac_sha256::Hash::hash(p.as_bytes()), &self.spent_refresh)
        })
    }
}

const VERSION: u8 = 3;

pub fn encode(entries: &[Handoff]) -> Vec<u8> {
    write_list(VERSION, entries, |w, e| {
        w.bytes32(&e.old_fp);
        w.long_str(&e.access_token);
        w.long_str(e.refresh_token.as_deref().unwrap_or_default());
        w.bytes32(&e.spent_refresh);
        w.u32(e.config_gen);
        w.u64(e.until);
    })
}

/// Undecodable values read as empty: a lost handoff only means the old token is forwarded
/// unchanged during its grace.
pub fn decode(bytes: &[u8]) -> Vec<Handoff> {
    read_list(bytes, VERSION, HANDOFF_SLOTS, |r| {
        Some(Handoff {
            old_fp: r.bytes32()?,
            access_token: r.long_str()?,
            refresh_token: Some(r.long_str()?).filter(|s| !s.is_empty()),
            spent_refresh: r.bytes32()?,
            config_gen: r.u32()?,
            until: r.u64()?,
        })
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = vec![
            Handoff {
                old_fp: [1; 32],
                access_token: "a.b.c".into(),
                refresh_token: Some("r".into()),
                spent_refresh: hmac_sha256::Hash::hash(b"spent"),
                config_gen: 7,
                until: 9,
            },
            Handoff {
                old_fp: [2; 32],
                access_token: "d.e.f".into(),
                refresh_token: None,
                spent_refresh: [0; 32],
                config_gen: 7,
                until: 10,
            },
        ];
        assert_eq!(decode(&encode(&e)), e);
        assert!(e[0].spent_by(Some("spent")));
        assert!(!e[0].spent_by(Some("spent ")) && !e[0].spent_by(None));
        let mut bytes = encode(&e);
        bytes.truncate(bytes.len() - 3);
        assert!(decode(&bytes).is_empty());
    }
}
