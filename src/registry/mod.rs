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
pub mod feed_state;
pub mod handoff;
pub mod record;
pub mod revocation;
pub mod session;

use std::collections::HashMap;

use crate::host::{SharedData, WriteError};
use record::{Bucket, State, TokenRecord};
use revocation::{Full, Revocation, RevocationSet, Target, TokenFacts};

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

const KEY_EPOCH: &str = "tokenguard/r/epoch";
const KEY_REFRESH_FAILURES: &str = "tokenguard/refresh/failures";
const KEY_FEED: &str = "tokenguard/feed/state";
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
}

impl Layout {
    pub fn new(capacity: usize, max_revocations: usize, retain_s: u64) -> Layout {
        let buckets = (capacity / SLOTS_PER_BUCKET).clamp(1, u32::MAX as usize) as u32;
        let slots = if capacity < SLOTS_PER_BUCKET { capacity.max(1) } else { SLOTS_PER_BUCKET };
        let revocation_slots = (max_revocations / REVOCATION_BUCKETS as usize).max(1);
        Layout { buckets, slots, revocation_slots, retain_s }
    }

    /// The layout a configuration asks for.
    pub fn of(cfg: &crate::config::Config) -> Layout {
        Layout::new(cfg.registry.capacity, cfg.registry.max_revocations, cfg.clock_skew_seconds)
    }

    /// The most records the registry can hold (at most the configured capacity).
    pub fn capacity(&self) -> usize {
        self.buckets as usize * self.slots
    }

    pub fn max_revocations(&self) -> usize {
        self.revocation_slots * REVOCATION_BUCKETS as usize
    }
}

fn index(hash: &[u8; 32], n: u32) -> u32 {
    let head = [hash[0], hash[1], hash[2], hash[3]];
    u32::from_le_bytes(head) % n.max(1)
}

pub fn token_key(i: u32) -> String {
    format!("tokenguard/t/{i}")
}

pub fn handoff_key(i: u32) -> String {
    format!("tokenguard/h/{i}")
}

/// What `try_lease_refresh` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// This caller refreshes the token; everyone else waits for the outcome.
    Acquired,
    /// Another request (on any worker) is refreshing it right now.
    Busy,
    /// A recent attempt failed; no new one before the backoff ends.
    BackingOff,
    /// Already replaced by a refresh.
    Superseded,
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

    fn bucket_key(&self, fp: &[u8; 32]) -> String {
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

    /// Takes the single-flight lease for refreshing `rec`'s token until `lease_until`,
    /// inserting the record if it is not tracked yet.
    pub fn try_lease_refresh(&self, rec: TokenRecord, now: u64, lease_until: u64) -> Result<Lease, Conflict> {
        let (slots, retain) = (self.layout.slots, self.layout.retain_s);
        let mut outcome = Lease::Acquired;
        update(self.store, &self.bucket_key(&rec.fp), |bytes| {
            let mut bucket = Bucket::decode(bytes);
            outcome = Lease::Acquired;
            match bucket.find_mut(&rec.fp) {
                Some(existing) => {
                    outcome = if existing.state == State::Superseded {
                        Lease::Superseded
                    } else if existing.refresh_lease_until > now {
                        Lease::Busy
                    } else if existing.refresh_retry_at > now {
                        Lease::BackingOff
                    } else {
                        Lease::Acquired
                    };
                    if outcome != Lease::Acquired {
                        return None; // nothing to write
                    }
                    existing.refresh_lease_until = lease_until;
                }
                None => {
                    let mut new = rec.clone();
                    new.refresh_lease_until = lease_until;
                    bucket.insert(new, slots, now, retain);
                }
            }
            Some((bucket.encode(), ()))
        })?;
        Ok(outcome)
    }

    /// The refresh of `old` succeeded: it is superseded (and refused after the grace), the
    /// new token is tracked as verified, and its tokens are handed off for the grace period.
    pub fn refresh_succeeded(
        &self,
        old: &[u8; 32],
        new: TokenRecord,
        handoff: handoff::Handoff,
        now: u64,
    ) -> Result<Vec<TokenRecord>, Conflict> {
        update(self.store, &self.bucket_key(old), |bytes| {
            let mut bucket = Bucket::decode(bytes);
            let rec = bucket.find_mut(old)?;
            rec.state = State::Superseded;
            rec.superseded_at = now;
            rec.refresh_lease_until = 0;
            rec.refresh_failures = 0;
            Some((bucket.encode(), ()))
        })?;
        let key = handoff_key(index(old, handoff::HANDOFF_BUCKETS));
        update(self.store, &key, |bytes| {
            let mut entries = handoff::decode(bytes);
            entries.retain(|e| e.until > now && &e.old_fp != old);
            while entries.len() >= handoff::HANDOFF_SLOTS {
                let Some(i) = entries.iter().enumerate().min_by_key(|(_, e)| e.until).map(|(i, _)| i) else {
                    break;
                };
                entries.swap_remove(i);
            }
            entries.push(handoff.clone());
            Some((handoff::encode(&entries), ()))
        })?;
        Ok(self.remember(new, false, now)?.evicted)
    }

    /// The refresh of `old` failed: release the lease and back off. Returns the token's
    /// consecutive failures.
    pub fn refresh_failed(&self, old: &[u8; 32], now: u64) -> Result<u8, Conflict> {
        let out = update(self.store, &self.bucket_key(old), |bytes| {
            let mut bucket = Bucket::decode(bytes);
            let rec = bucket.find_mut(old)?;
            rec.refresh_lease_until = 0;
            rec.refresh_failures = rec.refresh_failures.saturating_add(1);
            rec.refresh_retry_at = now.saturating_add(crate::refresh::backoff_seconds(rec.refresh_failures));
            let n = rec.refresh_failures;
            Some((bucket.encode(), n))
        })?;
        Ok(out.unwrap_or(1))
    }

    /// The tokens a refresh of `old` produced, while its grace lasts.
    pub fn handoff(&self, old: &[u8; 32], now: u64) -> Option<handoff::Handoff> {
        let key = handoff_key(index(old, handoff::HANDOFF_BUCKETS));
        handoff::decode(self.store.get(&key).0.as_deref().unwrap_or_default())
            .into_iter()
            .find(|e| &e.old_fp == old && e.until > now)
    }

    /// Counts a failed refresh process-wide; returns the consecutive failures so far.
    pub fn bump_failure_streak(&self) -> Result<u64, Conflict> {
        let out = update(self.store, KEY_REFRESH_FAILURES, |bytes| {
            let n = decode_u64(bytes).saturating_add(1);
            Some((n.to_le_bytes().to_vec(), n))
        })?;
        Ok(out.unwrap_or(1))
    }

    pub fn reset_failure_streak(&self) -> Result<(), Conflict> {
        update(self.store, KEY_REFRESH_FAILURES, |bytes| {
            (decode_u64(bytes) != 0).then(|| (0u64.to_le_bytes().to_vec(), ()))
        })?;
        Ok(())
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

    /// Adds a revocation, then bumps the epoch so every worker reloads its copy. The order
    /// matters: a worker that sees the new epoch is guaranteed to read the new entry.
    pub fn revoke(&self, rev: Revocation, now: u64) -> Result<(), RevokeError> {
        let key = revocation_key(index(&rev.target.hash, REVOCATION_BUCKETS));
        let slots = self.layout.revocation_slots;
        let mut outcome = Ok(());
        let written = update(self.store, &key, |bytes| {
            let Some(mut set) = RevocationSet::decode(bytes) else {
                outcome = Err(RevokeError::Corrupt);
                return None;
            };
            if set.add(rev, slots, now) == Err(Full) {
                outcome = Err(RevokeError::Full);
                return None;
            }
            outcome = Ok(());
            Some((set.encode(), ()))
        })
        .map_err(|_| RevokeError::Conflict)?;
        outcome?;
        if written.is_some() {
            update(self.store, KEY_EPOCH, |bytes| {
                let next = decode_u64(bytes).wrapping_add(1);
                Some((next.to_le_bytes().to_vec(), ()))
            })
            .map_err(|_| RevokeError::Conflict)?;
        }
        Ok(())
    }

    /// Adds many revocations (a feed page): one write per revocation key touched and one
    /// epoch bump. Returns how many were refused for lack of room.
    pub fn revoke_many(&self, revs: &[Revocation], now: u64) -> Result<usize, RevokeError> {
        let slots = self.layout.revocation_slots;
        let mut refused = 0;
        for i in 0..REVOCATION_BUCKETS {
            let mine: Vec<&Revocation> =
                revs.iter().filter(|r| index(&r.target.hash, REVOCATION_BUCKETS) == i).collect();
            if mine.is_empty() {
                continue;
            }
            let mut corrupt = false;
            let mut full = 0;
            update(self.store, &revocation_key(i), |bytes| {
                let Some(mut set) = RevocationSet::decode(bytes) else {
                    corrupt = true;
                    return None;
                };
                full = mine.iter().filter(|r| set.add(***r, slots, now) == Err(Full)).count();
                Some((set.encode(), ()))
            })
            .map_err(|_| RevokeError::Conflict)?;
            if corrupt {
                return Err(RevokeError::Corrupt);
            }
            refused += full;
        }
        update(self.store, KEY_EPOCH, |bytes| {
            let next = decode_u64(bytes).wrapping_add(1);
            Some((next.to_le_bytes().to_vec(), ()))
        })
        .map_err(|_| RevokeError::Conflict)?;
        Ok(refused)
    }

    pub fn feed_state(&self) -> feed_state::FeedState {
        feed_state::FeedState::decode(self.store.get(KEY_FEED).0.as_deref().unwrap_or_default())
    }

    /// Takes the poll lease when a poll is due (always, until the first sync completes).
    /// Returns the cursor to poll from, or `None` when no poll is due or another worker polls.
    pub fn feed_try_lease(&self, now: u64, lease_until: u64) -> Result<Option<String>, Conflict> {
        let out = update(self.store, KEY_FEED, |bytes| {
            let mut st = feed_state::FeedState::decode(bytes);
            let due = !st.synced || now >= st.next_poll_at;
            if !due || st.lease_until > now {
                return None;
            }
            st.lease_until = lease_until;
            let cursor = st.cursor.clone();
            Some((st.encode(), cursor))
        })?;
        Ok(out)
    }

    /// Records a successful poll. Once a page says nothing more is waiting, the process is
    /// synced, and stays so.
    pub fn feed_succeeded(
        &self,
        cursor: &str,
        has_more: bool,
        now: u64,
        interval: u64,
    ) -> Result<feed_state::FeedState, Conflict> {
        let out = update(self.store, KEY_FEED, |bytes| {
            let mut st = feed_state::FeedState::decode(bytes);
            st.cursor = cursor.to_string();
            st.last_success = now;
            st.synced = st.synced || !has_more;
            st.lease_until = 0;
            st.failures = 0;
            st.next_poll_at = if has_more { now } else { now.saturating_add(interval) };
            Some((st.encode(), st))
        })?;
        Ok(out.unwrap_or_default())
    }

    /// Records a failed poll and backs off (the interval, doubling, at most a minute more).
    pub fn feed_failed(&self, now: u64, interval: u64) -> Result<u32, Conflict> {
        let out = update(self.store, KEY_FEED, |bytes| {
            let mut st = feed_state::FeedState::decode(bytes);
            st.failures = st.failures.saturating_add(1);
            st.lease_until = 0;
            let backoff = crate::backoff::doubling(interval, st.failures, interval.saturating_add(60));
            st.next_poll_at = now.saturating_add(backoff);
            Some((st.encode(), st.failures))
        })?;
        Ok(out.unwrap_or(1))
    }

    pub fn revocation_epoch(&self) -> u64 {
        decode_u64(self.store.get(KEY_EPOCH).0.as_deref().unwrap_or_default())
    }

    /// Every revocation in force. `None` when a stored set does not decode.
    pub fn load_revocations(&self, now: u64) -> Option<Vec<Revocation>> {
        let mut all = Vec::new();
        for i in 0..REVOCATION_BUCKETS {
            let set =
                RevocationSet::decode(self.store.get(&revocation_key(i)).0.as_deref().unwrap_or_default())?;
            all.extend(set.entries.into_iter().filter(|e| e.until > now));
        }
        Some(all)
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

fn decode_u64(bytes: &[u8]) -> u64 {
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

/// The shared revocation set does not decode: requests must fail closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

/// A worker's copy of the revocation set, reloaded only when the shared epoch moves, so a
/// request costs one small read instead of reading every revocation key.
#[derive(Default)]
pub struct RevocationCache {
    epoch: Option<u64>,
    entries: HashMap<Target, Revocation>,
}

impl RevocationCache {
    /// The revocation epoch this worker's copy was loaded at.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// The revocation covering this token, if any, given its facts and what a revocation of
    /// it would name (`Revocation::targets_of`, hashed once by the caller). `Err` when the
    /// shared set could not be read: the caller must fail closed.
    pub fn check<S: SharedData>(
        &mut self,
        registry: &Registry<S>,
        targets: &[Target],
        facts: &TokenFacts,
        now: u64,
    ) -> Result<Option<Revocation>, Unreadable> {
        let epoch = registry.revocation_epoch();
        if self.epoch != Some(epoch) {
            let all = registry.load_revocations(now).ok_or(Unreadable)?;
            self.entries = all.into_iter().map(|r| (r.target, r)).collect();
            self.epoch = Some(epoch);
        }
        if self.entries.is_empty() {
            return Ok(None);
        }
        Ok(targets
            .iter()
            .filter_map(|t| self.entries.get(t))
            .find(|r| r.until > now && r.covers(facts))
            .copied())
    }
}

#[cfg(test)]
mod tests;
