//! One tracked token, and a bucket of them as stored under one shared-data key.

use super::codec::{read_list, write_list, Reader, Writer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active = 0,
    /// The near-expiry warning was emitted.
    Warned = 1,
    /// Replaced by a refreshed token.
    Superseded = 2,
    Revoked = 3,
}

impl State {
    fn from_u8(v: u8) -> Option<State> {
        Some(match v {
            0 => State::Active,
            1 => State::Warned,
            2 => State::Superseded,
            3 => State::Revoked,
            _ => return None,
        })
    }
}

/// Layout (little-endian): fp[32] sig[16] exp:u64 iat:u64 first_seen:u64 last_seen:u64
/// state:u8 config_gen:u32 refresh_lease_until:u64 refresh_retry_at:u64 refresh_failures:u8
/// superseded_at:u64 session_start:u64 sub jti sid (each u8 length + bytes): 121 bytes plus
/// the three strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token's identity (`Fingerprint`: SHA-256 of its signing input). Every signature
    /// encoding of one token finds the same record, so none escapes its state.
    pub fp: [u8; 32],
    /// `token::signature_digest` of the encoding that verified: only that exact signature
    /// counts as verified; another encoding is checked again.
    pub sig: [u8; 16],
    pub exp: u64,
    pub iat: u64,
    pub first_seen: u64,
    pub last_seen: u64,
    pub state: State,
    /// The configuration under which the signature verified; a record from another
    /// configuration (keys rotated, issuer removed) does not count as verified.
    pub config_gen: u32,
    /// A refresh of this token is under way until then (single flight across workers).
    pub refresh_lease_until: u64,
    /// After a failed refresh, no new attempt before this time.
    pub refresh_retry_at: u64,
    /// Consecutive failed refreshes of this token (for the backoff).
    pub refresh_failures: u8,
    /// When a refresh replaced this token (state `Superseded`), 0 otherwise.
    pub superseded_at: u64,
    /// The earliest session start known for this token (inherited from the token it was
    /// refreshed from), 0 when none beyond its own claims.
    pub session_start: u64,
    pub sub: String,
    pub jti: String,
    pub sid: String,
}

pub const RECORD_FIXED_BYTES: usize = 32 + 16 + 8 * 4 + 1 + 4 + 8 + 8 + 1 + 8 + 8 + 3;

impl TokenRecord {
    pub fn encoded_len(&self) -> usize {
        RECORD_FIXED_BYTES + self.sub.len().min(255) + self.jti.len().min(255) + self.sid.len().min(255)
    }

    /// More than a verification cache: a superseded or revoked token, or a refresh lease or
    /// backoff in force. Losing it changes what the filter does, not only what it costs.
    pub fn carries_state(&self, now: u64) -> bool {
        matches!(self.state, State::Superseded | State::Revoked)
            || self.refresh_lease_until > now
            || self.refresh_retry_at > now
    }

    fn write(&self, w: &mut Writer) {
        w.bytes32(&self.fp);
        w.bytes16(&self.sig);
        w.u64(self.exp);
        w.u64(self.iat);
        w.u64(self.first_seen);
        w.u64(self.last_seen);
        w.u8(self.state as u8);
        w.u32(self.config_gen);
        w.u64(self.refresh_lease_until);
        w.u64(self.refresh_retry_at);
        w.u8(self.refresh_failures);
        w.u64(self.superseded_at);
        w.u64(self.session_start);
        w.short_str(&self.sub);
        w.short_str(&self.jti);
        w.short_str(&self.sid);
    }

    fn read(r: &mut Reader) -> Option<TokenRecord> {
        Some(TokenRecord {
            fp: r.bytes32()?,
            sig: r.bytes16()?,
            exp: r.u64()?,
            iat: r.u64()?,
            first_seen: r.u64()?,
            last_seen: r.u64()?,
            state: State::from_u8(r.u8()?)?,
            config_gen: r.u32()?,
            refresh_lease_until: r.u64()?,
            refresh_retry_at: r.u64()?,
            refresh_failures: r.u8()?,
            superseded_at: r.u64()?,
            session_start: r.u64()?,
            sub: r.short_str()?,
            jti: r.short_str()?,
            sid: r.short_str()?,
        })
    }
}

const BUCKET_VERSION: u8 = 3;

/// The records under one key. A value that does not decode (another version, corruption)
/// is treated as empty: the registry is a cache plus warn-once state, so losing a bucket
/// costs a re-verification, never a wrong answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    pub records: Vec<TokenRecord>,
}

impl Bucket {
    pub fn decode(bytes: &[u8]) -> Bucket {
        Bucket { records: read_list(bytes, BUCKET_VERSION, 1024, TokenRecord::read).unwrap_or_default() }
    }

    pub fn encode(&self) -> Vec<u8> {
        write_list(BUCKET_VERSION, &self.records, |w, rec| rec.write(w))
    }

    pub fn find(&self, fp: &[u8; 32]) -> Option<&TokenRecord> {
        self.records.iter().find(|r| &r.fp == fp)
    }

    pub fn find_mut(&mut self, fp: &[u8; 32]) -> Option<&mut TokenRecord> {
        self.records.iter_mut().find(|r| &r.fp == fp)
    }

    /// Drops records whose token can no longer be valid (`exp + retain <= now`); returns how
    /// many went.
    pub fn sweep(&mut self, now: u64, retain: u64) -> usize {
        let before = self.records.len();
        self.records.retain(|r| r.exp.saturating_add(retain) > now);
        before - self.records.len()
    }

    /// Inserts `rec`, making room when the bucket holds `slots` records: first by sweeping,
    /// then by evicting plain cache entries before records that carry state, and among
    /// those the one that expires first. Returns the evicted (still live) ones.
    ///
    /// Why the preference: tokens due for a refresh are by definition the ones that expire
    /// first, and evicting their records under churn lost a superseded token's retirement
    /// (it was then accepted after its grace) and the refresh backoff (the soak saw five
    /// times more calls to a failing token endpoint). A cache entry costs only a re-check.
    pub fn insert(&mut self, rec: TokenRecord, slots: usize, now: u64, retain: u64) -> Vec<TokenRecord> {
        if let Some(existing) = self.find_mut(&rec.fp) {
            *existing = rec;
            return Vec::new();
        }
        let mut evicted = Vec::new();
        if self.records.len() >= slots {
            self.sweep(now, retain);
        }
        while self.records.len() >= slots.max(1) {
            let victim = self.records.iter().enumerate().min_by_key(|(_, r)| (r.carries_state(now), r.exp));
            let Some(idx) = victim.map(|(i, _)| i) else {
                break;
            };
            evicted.push(self.records.swap_remove(idx));
        }
        self.records.push(rec);
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn rec(n: u8, exp: u64) -> TokenRecord {
        TokenRecord {
            fp: [n; 32],
            exp,
            iat: exp.saturating_sub(300),
            first_seen: 1,
            last_seen: 2,
            state: State::Active,
            config_gen: 9,
            refresh_lease_until: 0,
            refresh_retry_at: 0,
            refresh_failures: 0,
            superseded_at: 0,
            session_start: 0,
            sig: [0; 16],
            sub: format!("user-{n}"),
            jti: format!("jti-{n}"),
            sid: String::new(),
        }
    }

    #[test]
    fn bucket_round_trip_and_size() {
        let b = Bucket { records: vec![rec(1, 100), rec(2, 200)] };
        let bytes = b.encode();
        assert_eq!(Bucket::decode(&bytes), b);
        assert_eq!(bytes.len(), 5 + b.records.iter().map(TokenRecord::encoded_len).sum::<usize>());
    }

    #[test]
    fn garbage_decodes_as_empty() {
        assert!(Bucket::decode(&[]).records.is_empty());
        assert!(Bucket::decode(&[9, 1, 0, 0, 0]).records.is_empty());
        let mut bytes = Bucket { records: vec![rec(1, 100)] }.encode();
        bytes.truncate(bytes.len() - 1);
        assert!(Bucket::decode(&bytes).records.is_empty());
        assert!(Bucket::decode(&[1, 255, 255, 255, 255]).records.is_empty());
    }

    #[test]
    fn insert_sweeps_then_evicts_soonest_expiring() {
        let mut b = Bucket::default();
        assert!(b.insert(rec(1, 100), 2, 0, 0).is_empty());
        assert!(b.insert(rec(2, 300), 2, 0, 0).is_empty());
        // Full; nothing expired at t=50: the record expiring first (1) is evicted.
        let ev = b.insert(rec(3, 200), 2, 50, 0);
        assert_eq!(ev.iter().map(|r| r.fp[0]).collect::<Vec<_>>(), vec![1]);
        // At t=250 record 3 has expired: swept, not evicted.
        let ev = b.insert(rec(4, 400), 2, 250, 0);
        assert!(ev.is_empty());
        let mut left: Vec<u8> = b.records.iter().map(|r| r.fp[0]).collect();
        left.sort();
        assert_eq!(left, vec![2, 4]);
        // Re-inserting an existing token updates it in place.
        assert!(b.insert(rec(2, 300), 2, 250, 0).is_empty());
        assert_eq!(b.records.len(), 2);
    }

    #[test]
    fn eviction_spares_records_that_carry_state() {
        let mut b = Bucket::default();
        let superseded = TokenRecord { state: State::Superseded, superseded_at: 40, ..rec(1, 100) };
        let backing_off = TokenRecord { refresh_retry_at: 60, ..rec(2, 110) };
        b.insert(superseded, 3, 50, 0);
        b.insert(backing_off, 3, 50, 0);
        b.insert(rec(3, 500), 3, 50, 0);
        // Full: the plain entry goes, although both others expire sooner.
        let ev = b.insert(rec(4, 600), 3, 50, 0);
        assert_eq!(ev.iter().map(|r| r.fp[0]).collect::<Vec<_>>(), vec![3]);
        // Once the backoff is over, that record is a plain entry again.
        let ev = b.insert(rec(5, 700), 3, 61, 0);
        assert_eq!(ev.iter().map(|r| r.fp[0]).collect::<Vec<_>>(), vec![2]);
        // When everything carries state, memory still wins: the soonest-expiring goes.
        let mut full = Bucket::default();
        for n in 1..=2 {
            full.insert(TokenRecord { state: State::Revoked, ..rec(n, 100 * u64::from(n)) }, 2, 50, 0);
        }
        let ev = full.insert(TokenRecord { state: State::Revoked, ..rec(3, 300) }, 2, 50, 0);
        assert_eq!(ev.iter().map(|r| r.fp[0]).collect::<Vec<_>>(), vec![1]);
    }
}
