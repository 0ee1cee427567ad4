//! The earliest start seen for each session (`sid`), process-wide.
//!
//! A token refreshed by the client itself carries a new `iat` and, from many authorization
//! servers, no `auth_time`: judged by its own claims its session would start again. A
//! token carrying `sid` is held to the earliest start any token of that session showed
//! here, so the absolute lifetime cannot be stretched by refreshing.
//!
//! Stored like the token registry: a fixed set of keys (`tokenguard/s/<n>`), a session's
//! key chosen by the hash of its issuer and `sid`, each holding a few entries. An entry is
//! kept for one more lifetime after its session ended (an authorization server may go on
//! refreshing a session the filter has ended), then dropped. A full key drops the session
//! that started last: the oldest sessions, nearest their limit, are the ones worth keeping,
//! and a flood of new logins only pushes out other new ones.

use super::codec::{read_list, write_list};
use super::{index, update, Conflict};
use crate::host::SharedData;

pub const SESSION_SLOTS: usize = 8;
const VERSION: u8 = 1;

pub fn session_key(i: u32) -> String {
    format!("tokenguard/s/{i}")
}

/// A session's name in shared data: its issuer and `sid`, hashed (a `sid` is only unique
/// per issuer).
pub fn session_id(issuer: &str, sid: &str) -> [u8; 32] {
    let mut h = hmac_sha256::Hash::new();
    h.update(issuer.as_bytes());
    h.update([0u8]);
    h.update(sid.as_bytes());
    h.finalize()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    id: [u8; 32],
    start: u64,
    /// Forgotten after this.
    until: u64,
}

fn decode(bytes: &[u8]) -> Vec<Entry> {
    let parsed = read_list(bytes, VERSION, SESSION_SLOTS, |r| {
        Some(Entry { id: r.bytes32()?, start: r.u64()?, until: r.u64()? })
    });
    // An undecodable value reads as empty: sessions then start at their own claims again.
    parsed.unwrap_or_default()
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    write_list(VERSION, entries, |w, e| {
        w.bytes32(&e.id);
        w.u64(e.start);
        w.u64(e.until);
    })
}

/// The sessions table over `buckets` keys.
pub struct Sessions<'s, S: SharedData> {
    pub store: &'s S,
    pub buckets: u32,
}

impl<S: SharedData> Sessions<'_, S> {
    fn key(&self, id: &[u8; 32]) -> String {
        session_key(index(id, self.buckets))
    }

    /// The earliest start recorded for the session, while its lifetime lasts.
    pub fn start(&self, id: &[u8; 32], now: u64) -> Option<u64> {
        let (value, _) = self.store.get(&self.key(id));
        decode(value.as_deref().unwrap_or_default())
            .into_iter()
            .find(|e| &e.id == id && e.until > now)
            .map(|e| e.start)
    }

    /// Records `start` for the session unless an earlier one is known. Writes only when
    /// something changes.
    pub fn note(&self, id: &[u8; 32], start: u64, until: u64, now: u64) -> Result<(), Conflict> {
        update(self.store, &self.key(id), |bytes| {
            let mut entries = decode(bytes);
            if entries.iter().any(|e| &e.id == id && e.start <= start && e.until > now) {
                return None;
            }
            entries.retain(|e| &e.id != id && e.until > now);
            while entries.len() >= SESSION_SLOTS {
                let newest = entries.iter().enumerate().max_by_key(|(_, e)| e.start).map(|(i, _)| i);
                let Some(i) = newest else { break };
                entries.swap_remove(i);
            }
            entries.push(Entry { id: *id, start, until });
            Some((encode(&entries), ()))
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::fake::FakeShared;

    #[test]
    fn keeps_the_earliest_start_until_the_session_ends() {
        let store = FakeShared::default();
        let s = Sessions { store: &store, buckets: 4 };
        let id = session_id("https://idp", "sid-1");
        assert_eq!(s.start(&id, 100), None);
        s.note(&id, 100, 200, 100).unwrap();
        s.note(&id, 150, 250, 150).unwrap(); // a later token of the same session
        assert_eq!(s.start(&id, 150), Some(100));
        s.note(&id, 90, 190, 150).unwrap(); // an earlier start wins
        assert_eq!(s.start(&id, 150), Some(90));
        assert_eq!(s.start(&id, 190), None, "gone once the lifetime is over");
        assert_ne!(id, session_id("https://other", "sid-1"));
    }

    #[test]
    fn a_full_key_drops_the_newest_session() {
        let store = FakeShared::default();
        let s = Sessions { store: &store, buckets: 1 };
        for n in 0..=SESSION_SLOTS as u64 {
            s.note(&session_id("i", &n.to_string()), 10 + n, 1000 + n, 10).unwrap();
        }
        // The ninth session pushed out the newest before it; the oldest stays.
        assert_eq!(s.start(&session_id("i", "0"), 10), Some(10));
        let last = SESSION_SLOTS as u64 - 1;
        assert_eq!(s.start(&session_id("i", &last.to_string()), 10), None);
        let ninth = SESSION_SLOTS as u64;
        assert_eq!(s.start(&session_id("i", &ninth.to_string()), 10), Some(10 + ninth));
        assert!(decode(&[9, 9]).is_empty());
    }
}
