//! The process-wide token registry and revocation set, in proxy-wasm shared data.
//!
//! Shared data can never delete a key, so the key count is fixed up front: token records
//! live in `buckets` keys (`tokenguard/t/<n>`, a token's bucket chosen by its fingerprint),
//! each holding at most `slots` records; revocations live in `REVOCATION_BUCKETS` keys.
//! Every change is a read-modify-write with CAS and a bounded number of retries.
//!
//! Bounds: at most `buckets * slots <= capacity` records and `max_revocations` entries,
//! in `2 * buckets + REVOCATION_BUCKETS + HANDOFF_BUCKETS` keys plus a few singletons, however many distinct tokens pass.

pub mod codec;
#[cfg(test)]
pub mod fake;
pub mod handoff;
pub mod record;
mod refreshing;
pub mod revocation;
mod revoking;
pub mod session;
pub mod store_state;

use crate::host::{SharedData, WriteError};
use record::{Bucket, State, TokenRecord};
use revocation::RevocationSet;

/// Records per bucket key: small, because a request copies its bucket out of shared memory.
pub const SLOTS_PER_BUCKET: usize = 8;
pub const REVOCATION_BUCKETS: u32 = 16;
/// A read-modify-write gives up after this many CAS conflicts (other workers writing the
/// same key at the same moment); the caller then carries on without the update.
pub const MAX_CAS_ATTEMPTS: u32 = 8;
/// `last_seen` is refreshed at most this often, so a hot token does not cost a shared
/// write on every request.
pub const LAST_SEEN_GRANULARITY_S: u64 = 60;
/// Token buckets swept per tick by the lease holder.
pub const SWEEP_BUCKETS_PER_TICK: u32 = 64;

pub(crate) const KEY_EPOCH: &str = "tokenguard/r/epoch";
pub(crate) const KEY_REFRESH_FAILURES: &str = "tokenguard/refresh/failures";
/// The follow state of one revocation store, by its id (`Layout::store_id`).
pub(crate) fn store_key(store_id: u64) -> String {
    format!("tokenguard/store/state/{store_id:016x}")
}
/// This Envoy process's identity towards the fleet (its etcd refresh claims).
pub(crate) const KEY_PROCESS: &str = "tokenguard/process/id";
const KEY_SWEEP_LEASE: &str = "tokenguard/lease/sweep";

/// Another writer kept winning the CAS race.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeError {
    Full,
    Conflict,
    /// The stored revocation set does not decode; writing would destroy it.
    Corrupt,
}

/// Sizes derived from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub buckets: u32,
    pub slots: usize,
    pub revocation_slots: usize,
    /// How long past `exp` a record is kept (the clock-skew leeway: until then the token
    /// can still be accepted).
    pub retain_s: u64,
    /// The revocation store followed (`EtcdConfig::id`; 0 without one): its follow state is
    /// kept apart from another store's.
    pub store_id: u64,
}

impl Layout {
    pub fn new(capacity: usize, max_revocations: usize, retain_s: u64) -> Layout {
        let buckets = (capacity / SLOTS_PER_BUCKET).clamp(1, u32::MAX as usize) as u32;
        let slots = if capacity < SLOTS_PER_BUCKET { capacity.max(1) } else { SLOTS_PER_BUCKET };
        let revocation_slots = (max_revocations / REVOCATION_BUCKETS as usize).max(1);
        Layout { buckets, slots, revocation_slots, retain_s, store_id: 0 }
    }

    /// The layout a configuration asks for.
    pub fn of(cfg: &crate::config::Config) -> Layout {
        let layout = Layout::new(cfg.registry.capacity, cfg.registry.max_revocations, cfg.clock_skew_seconds);
        Layout { store_id: cfg.revocation_store.as_ref().map_or(0, |s| s.id), ..layout }
    }

    /// The most records the registry can hold (at most the configured capacity).
    pub fn capacity(&self) -> usize {
        self.buckets as usize * self.slots
    }

    pub fn max_revocations(&self) -> usize {
        self.revocation_slots * REVOCATION_BUCKETS as usize
    }
}

pub(crate) fn index(hash: &[u8; 32], n: u32) -> u32 {
    let head = [hash[0], hash[1], hash[2], hash[3]];
    u32::from_le_bytes(head) % n.max(1)
}

pub fn token_key(i: u32) -> String {
    format!("tokenguard/t/{i}")
}

pub fn handoff_key(i: u32) -> String {
    format!("tokenguard/h/{i}")
}

pub fn revocation_key(i: u32) -> String {
    format!("tokenguard/r/{i}")
}

/// Read-modify-write with CAS. `f` sees the current value and returns the new one plus a
/// result, or `None` to leave the key alone.
pub(crate) fn update<T>(
    store: &impl SharedData,
    key: &str,
    mut f: impl FnMut(&[u8]) -> Option<(Vec<u8>, T)>,
) -> Result<Option<T>, Conflict> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (value, cas) = store.get(key);
        let Some((new, out)) = f(value.as_deref().unwrap_or_default()) else {
            return Ok(None);
        };
        match store.set(key, &new, cas) {
            Ok(()) => return Ok(Some(out)),
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Failed) => return Err(Conflict),
        }
    }
    Err(Conflict)
}

/// What `remember` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Remembered {
    /// Live records pushed out to make room.
    pub evicted: Vec<TokenRecord>,
    /// This call moved the record to `Warned` (so the caller emits the warning).
    pub warned_now: bool,
}

pub struct Registry<'s, S: SharedData> {
    store: &'s S,
    pub layout: Layout,
}

impl<'s, S: SharedData> Registry<'s, S> {
    pub fn new(store: &'s S, layout: Layout) -> Self {
        Registry { store, layout }
    }

    /// Creates every key that does not exist yet, with an empty value. Run at configuration
    /// time, before traffic: shared data has no create-if-absent, so two workers creating
    /// the same key while serving could lose each other's first write.
    pub fn init_keys(&self) {
        let keys = (0..self.layout.buckets)
            .map(token_key)
            .chain((0..REVOCATION_BUCKETS).map(revocation_key))
            .chain((0..handoff::HANDOFF_BUCKETS).map(handoff_key))
            .chain((0..self.layout.buckets).map(session::session_key));
        for key in keys {
            if self.store.get(&key).0.is_none() {
                let _ = self.store.set(&key, &[], None);
            }
        }
    }

    pub(crate) fn bucket_key(&self, fp: &[u8; 32]) -> String {
        token_key(index(fp, self.layout.buckets))
    }

    /// The per-session start table, over as many keys as the token records.
    pub fn sessions(&self) -> session::Sessions<'s, S> {
        session::Sessions { store: self.store, buckets: self.layout.buckets }
    }

    pub fn lookup(&self, fp: &[u8; 32]) -> Option<TokenRecord> {
        let (value, _) = self.store.get(&self.bucket_key(fp));
        Bucket::decode(value.as_deref().unwrap_or_default()).find(fp).cloned()
    }

    /// Records a verified token (or refreshes what changed), and with `warn` moves it to
    /// `Warned` unless it already is. Writes only when something changed.
    pub fn remember(&self, rec: TokenRecord, warn: bool, now: u64) -> Result<Remembered, Conflict> {
        let (slots, retain) = (self.layout.slots, self.layout.retain_s);
        let out = update(self.store, &self.bucket_key(&rec.fp), |bytes| {
            let mut bucket = Bucket::decode(bytes);
            let mut result = Remembered::default();
            match bucket.find_mut(&rec.fp) {
                Some(existing) => {
                    let mut changed = false;
                    if existing.config_gen != rec.config_gen {
                        existing.config_gen = rec.config_gen;
                        existing.sig = rec.sig;
                        changed = true;
                    }
                    if rec.session_start != 0
                        && (existing.session_start == 0 || rec.session_start < existing.session_start)
                    {
                        existing.session_start = rec.session_start;
                        changed = true;
                    }
                    if now.saturating_sub(existing.last_seen) >= LAST_SEEN_GRANULARITY_S {
                        existing.last_seen = now;
                        changed = true;
                    }
                    if warn && existing.state == State::Active {
                        existing.state = State::Warned;
                        result.warned_now = true;
                        changed = true;
                    }
                    if !changed {
                        return None;
                    }
                }
                None => {
                    let mut new = rec.clone();
                    if warn {
                        new.state = State::Warned;
                        result.warned_now = true;
                    }
                    result.evicted = bucket.insert(new, slots, now, retain);
                }
            }
            Some((bucket.encode(), result))
        })?;
        Ok(out.unwrap_or_default())
    }

    /// Sets a record's state (revoked, superseded); false when the token is not tracked.
    pub fn set_state(&self, fp: &[u8; 32], state: State) -> Result<bool, Conflict> {
        let out = update(self.store, &self.bucket_key(fp), |bytes| {
            let mut bucket = Bucket::decode(bytes);
            let rec = bucket.find_mut(fp)?;
            if rec.state == state {
                return None;
            }
            rec.state = state;
            Some((bucket.encode(), ()))
        })?;
        Ok(out.is_some())
    }

    /// One sweep step, done by whichever worker takes the lease for this period: expired
    /// records in the next `SWEEP_BUCKETS_PER_TICK` token buckets, and expired revocations.
    /// Returns `None` when another worker holds the lease.
    pub fn sweep_step(&self, now: u64, holder: u64, period_s: u64) -> Option<SweepReport> {
        let mut cursor = 0u32;
        let won = update(self.store, KEY_SWEEP_LEASE, |bytes| {
            let mut r = codec::Reader::new(bytes);
            let (_, until, cur) = (r.u64().unwrap_or(0), r.u64().unwrap_or(0), r.u32().unwrap_or(0));
            if until > now {
                return None; // held for this period, by us or another worker
            }
            cursor = cur % self.layout.buckets.max(1);
            let mut w = codec::Writer::new();
            w.u64(holder);
            w.u64(now.saturating_add(period_s.max(1)));
            w.u32(cursor.wrapping_add(SWEEP_BUCKETS_PER_TICK) % self.layout.buckets.max(1));
            Some((w.0, ()))
        })
        .ok()
        .flatten();
        won?;
        let mut report = SweepReport::default();
        for step in 0..SWEEP_BUCKETS_PER_TICK.min(self.layout.buckets) {
            let i = (cursor + step) % self.layout.buckets;
            let removed = update(self.store, &token_key(i), |bytes| {
                let mut bucket = Bucket::decode(bytes);
                let n = bucket.sweep(now, self.layout.retain_s);
                (n > 0).then(|| (bucket.encode(), n))
            });
            match removed {
                Ok(n) => report.records_removed += n.unwrap_or(0),
                Err(Conflict) => report.conflicts += 1,
            }
            report.buckets += 1;
        }
        for i in 0..REVOCATION_BUCKETS {
            let removed = update(self.store, &revocation_key(i), |bytes| {
                let mut set = RevocationSet::decode(bytes)?;
                let n = set.sweep(now);
                (n > 0).then(|| (set.encode(), n))
            });
            match removed {
                Ok(n) => report.revocations_removed += n.unwrap_or(0),
                Err(Conflict) => report.conflicts += 1,
            }
        }
        Some(report)
    }

    /// Counts for the stats endpoint: reads every key, so it is for admin requests only.
    pub fn census(&self, now: u64) -> Census {
        let mut c = Census::default();
        for i in 0..self.layout.buckets {
            let value = self.store.get(&token_key(i)).0.unwrap_or_default();
            c.bytes += value.len();
            let bucket = Bucket::decode(&value);
            c.tracked_tokens += bucket.records.len();
            c.active_tokens += bucket.records.iter().filter(|r| r.exp > now).count();
        }
        for i in 0..REVOCATION_BUCKETS {
            let value = self.store.get(&revocation_key(i)).0.unwrap_or_default();
            c.bytes += value.len();
            c.revocations += RevocationSet::decode(&value)
                .map_or(0, |s| s.entries.iter().filter(|e| e.until > now).count());
        }
        c.keys = self.layout.buckets as usize
            + REVOCATION_BUCKETS as usize
            + handoff::HANDOFF_BUCKETS as usize
            + 3;
        c
    }
}

pub(crate) fn decode_u64(bytes: &[u8]) -> u64 {
    codec::Reader::new(bytes).u64().unwrap_or(0)
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub buckets: u32,
    pub records_removed: usize,
    pub revocations_removed: usize,
    pub conflicts: u32,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Census {
    /// Records whose token has not expired.
    pub active_tokens: usize,
    /// All records, including expired ones not yet swept.
    pub tracked_tokens: usize,
    pub revocations: usize,
    pub keys: usize,
    pub bytes: usize,
}

pub use refreshing::Lease;
pub use revoking::{RevocationCache, Unreadable};

#[cfg(test)]
mod tests;
