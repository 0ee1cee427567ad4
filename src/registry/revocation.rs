//! Revocation entries: by token id, by token fingerprint, by subject (every token issued at
//! or before the revocation) and by session or token family (`sid`).

use std::collections::HashMap;

use super::codec::{read_list, write_list};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Jti = 1,
    Token = 2,
    Sub = 3,
    Sid = 4,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Jti,
            2 => Kind::Token,
            3 => Kind::Sub,
            4 => Kind::Sid,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Jti => "jti",
            Kind::Token => "token",
            Kind::Sub => "sub",
            Kind::Sid => "sid",
        }
    }
}

/// What a revocation names, hashed: the value itself (a subject, say) is not kept in shared
/// memory, and every entry has the same size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub kind: Kind,
    pub hash: [u8; 32],
}

impl Target {
    pub fn new(kind: Kind, value: &str) -> Target {
        Target::hashed(kind, hmac_sha256::Hash::hash(value.as_bytes()))
    }

    /// For `Kind::Token` the value already is the token's SHA-256.
    pub fn hashed(kind: Kind, hash: [u8; 32]) -> Target {
        Target { kind, hash }
    }
}

/// Layout: kind:u8 hash[32] revoked_at:u64 until:u64 = 49 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    pub target: Target,
    pub revoked_at: u64,
    /// Dropped after this time: no token it covers can still be valid then.
    pub until: u64,
}

pub const REVOCATION_BYTES: usize = 1 + 32 + 8 + 8;

/// The facts of a token that revocations are matched against.
#[derive(Debug, Clone, Copy)]
pub struct TokenFacts<'a> {
    pub fp: &'a [u8; 32],
    pub jti: Option<&'a str>,
    pub sub: Option<&'a str>,
    pub sid: Option<&'a str>,
    pub iat: Option<u64>,
}

impl<'a> TokenFacts<'a> {
    /// The facts of a verified token, under its fingerprint.
    pub fn of(fp: &'a [u8; 32], claims: &'a crate::token::Claims) -> TokenFacts<'a> {
        TokenFacts {
            fp,
            jti: claims.jti.as_deref(),
            sub: claims.sub.as_deref(),
            sid: claims.sid.as_deref(),
            iat: claims.iat,
        }
    }
}

impl Revocation {
    /// The targets that could revoke this token, for lookups.
    pub fn targets_of(t: &TokenFacts) -> Vec<Target> {
        let mut v = vec![Target::hashed(Kind::Token, *t.fp)];
        if let Some(j) = t.jti {
            v.push(Target::new(Kind::Jti, j));
        }
        if let Some(s) = t.sub {
            v.push(Target::new(Kind::Sub, s));
        }
        if let Some(s) = t.sid {
            v.push(Target::new(Kind::Sid, s));
        }
        v
    }

    /// Whether this entry covers the token at `now`. A subject or session revocation spares
    /// tokens issued after it (the user signed in again; the store's documented
    /// `revoked_at`); a token without `iat` cannot prove that, so it is covered. A `jti` or
    /// `token` revocation is in force from its `revoked_at`: a replica that refreshed a token
    /// retires the old one fleet-wide as of the end of its grace period.
    pub fn covers(&self, t: &TokenFacts, now: u64) -> bool {
        match self.target.kind {
            Kind::Sub | Kind::Sid => t.iat.is_none_or(|iat| iat <= self.revoked_at),
            Kind::Jti | Kind::Token => self.revoked_at <= now,
        }
    }
}

const SET_VERSION: u8 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    pub entries: Vec<Revocation>,
}

impl RevocationSet {
    /// Unlike token buckets, an undecodable revocation value is reported, not emptied:
    /// silently forgetting revocations would let revoked tokens back in.
    pub fn decode(bytes: &[u8]) -> Option<RevocationSet> {
        let entries = read_list(bytes, SET_VERSION, 4096, |r| {
            let kind = Kind::from_u8(r.u8()?)?;
            let hash = r.bytes32()?;
            Some(Revocation { target: Target { kind, hash }, revoked_at: r.u64()?, until: r.u64()? })
        })?;
        Some(RevocationSet { entries })
    }

    pub fn encode(&self) -> Vec<u8> {
        write_list(SET_VERSION, &self.entries, |w, e| {
            w.u8(e.target.kind as u8);
            w.bytes32(&e.target.hash);
            w.u64(e.revoked_at);
            w.u64(e.until);
        })
    }

    pub fn sweep(&mut self, now: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| e.until > now);
        before - self.entries.len()
    }

    /// Adds or extends an entry: a repeated revocation of one target covers whatever either
    /// covers (see `merge`).
    pub fn add(&mut self, rev: Revocation, slots: usize, now: u64) -> Result<(), Full> {
        if let Some(e) = self.entries.iter_mut().find(|e| e.target == rev.target) {
            e.merge(&rev);
            return Ok(());
        }
        if self.entries.len() >= slots {
            self.sweep(now);
        }
        if self.entries.len() >= slots {
            return Err(Full);
        }
        self.entries.push(rev);
        Ok(())
    }

    /// Adds many (a page from etcd) with one index over the set, so a large set takes a
    /// large page in time linear in both. Returns how many were refused for lack of room.
    pub fn add_many<'a>(
        &mut self,
        revs: impl IntoIterator<Item = &'a Revocation>,
        slots: usize,
        now: u64,
    ) -> usize {
        let index_of = |entries: &[Revocation]| -> HashMap<Target, usize> {
            entries.iter().enumerate().map(|(i, e)| (e.target, i)).collect()
        };
        let mut index = index_of(&self.entries);
        let mut swept = false;
        let mut refused = 0;
        for rev in revs {
            if let Some(e) = index.get(&rev.target).and_then(|i| self.entries.get_mut(*i)) {
                e.merge(rev);
                continue;
            }
            if self.entries.len() >= slots && !swept {
                self.sweep(now);
                index = index_of(&self.entries);
                swept = true;
            }
            if self.entries.len() >= slots {
                refused += 1;
                continue;
            }
            index.insert(rev.target, self.entries.len());
            self.entries.push(*rev);
        }
        refused
    }
}

impl Revocation {
    /// One target revoked twice covers what either revocation covers: for a subject or a
    /// session the later `revoked_at` (more tokens issued before it), for a `jti` or a token
    /// the earlier (in force sooner: a refresh's retirement at the end of its grace must
    /// not postpone an admin revocation made now). Kept until the later `until`.
    pub fn merge(&mut self, other: &Revocation) {
        self.revoked_at = match self.target.kind {
            Kind::Sub | Kind::Sid => self.revoked_at.max(other.revoked_at),
            Kind::Jti | Kind::Token => self.revoked_at.min(other.revoked_at),
        };
        self.until = self.until.max(other.until);
    }
}

/// The revocation store has no room: refusing is safer than dropping a live revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(fp: &'a [u8; 32], sub: &'a str, iat: Option<u64>) -> TokenFacts<'a> {
        TokenFacts { fp, jti: Some("j"), sub: Some(sub), sid: Some("s"), iat }
    }

    #[test]
    fn subject_revocation_spares_later_tokens() {
        let r = Revocation { target: Target::new(Kind::Sub, "alice"), revoked_at: 100, until: 1000 };
        let fp = [0; 32];
        assert!(r.covers(&facts(&fp, "alice", Some(100)), 100));
        assert!(r.covers(&facts(&fp, "alice", Some(50)), 100));
        assert!(!r.covers(&facts(&fp, "alice", Some(101)), 200));
        assert!(r.covers(&facts(&fp, "alice", None), 100));
        let retired = Revocation { target: Target::hashed(Kind::Token, fp), revoked_at: 130, until: 1000 };
        assert!(!retired.covers(&facts(&fp, "alice", Some(50)), 129), "in force from revoked_at");
        assert!(retired.covers(&facts(&fp, "alice", Some(50)), 130));
        assert_eq!(Revocation::targets_of(&facts(&fp, "alice", None)).len(), 4);
    }

    #[test]
    fn a_target_revoked_twice_covers_what_either_covers() {
        let fp = [7; 32];
        let mut set = RevocationSet::default();
        let token =
            |revoked_at| Revocation { target: Target::hashed(Kind::Token, fp), revoked_at, until: 900 };
        set.add(token(100), 8, 0).unwrap();
        // A refresh's retirement at the end of its grace must not postpone a revocation now.
        assert_eq!(set.add_many([&token(130)], 8, 0), 0);
        assert_eq!(set.entries[0].revoked_at, 100);
        let sub = |revoked_at| Revocation {
            target: Target::new(Kind::Sub, "a"),
            revoked_at,
            until: revoked_at + 10,
        };
        set.add(sub(100), 8, 0).unwrap();
        set.add(sub(130), 8, 0).unwrap();
        assert_eq!((set.entries[1].revoked_at, set.entries[1].until), (130, 140), "the later covers more");
    }

    #[test]
    fn add_many_refuses_past_the_slots_after_one_sweep() {
        let mut set = RevocationSet::default();
        let jti = |n: u32, until| Revocation {
            target: Target::new(Kind::Jti, &n.to_string()),
            revoked_at: 1,
            until,
        };
        assert_eq!(set.add_many(&[jti(1, 5), jti(2, 50)], 3, 0), 0);
        let page: Vec<Revocation> = (3..7).map(|n| jti(n, 50)).collect();
        // At 10 the first has expired: swept once, room for two more, two refused.
        assert_eq!(set.add_many(&page, 3, 10), 2);
        assert_eq!(set.entries.len(), 3);
        assert_eq!(set.add_many(&[jti(2, 99)], 3, 10), 0, "a known target is merged, never refused");
    }

    #[test]
    fn set_round_trip_full_and_sweep() {
        let mut s = RevocationSet::default();
        let e = |v: &str, until| Revocation { target: Target::new(Kind::Jti, v), revoked_at: 1, until };
        s.add(e("a", 10), 2, 0).unwrap();
        s.add(e("b", 20), 2, 0).unwrap();
        assert_eq!(s.add(e("c", 30), 2, 5), Err(Full));
        s.add(e("a", 40), 2, 5).unwrap(); // same target: extended, not added
        assert_eq!(s.entries[0].until, 40);
        assert_eq!(RevocationSet::decode(&s.encode()), Some(s.clone()));
        assert_eq!(s.encode().len(), 5 + 2 * REVOCATION_BYTES);
        s.add(e("c", 30), 2, 25).unwrap(); // "b" expired at 20: swept to make room
        assert_eq!(s.entries.len(), 2);
        assert_eq!(RevocationSet::decode(&[1, 1, 0, 0, 0, 9]), None);
    }
}
