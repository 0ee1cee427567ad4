//! Writing and reading the shared revocation set: adding one revocation or a page of them
//! (each followed by a version bump of the buckets written), and each worker's copy, which
//! reloads only the buckets whose version moved: with 100,000 revocations in force, one more
//! costs every worker a sixteenth of the set to read, not all of it.

use std::collections::HashMap;

use super::revocation::{Full, Revocation, RevocationSet, Target, TokenFacts};
use super::{
    decode_u64, index, revocation_key, update, Registry, RevokeError, KEY_EPOCH, REVOCATION_BUCKETS,
};
use crate::host::SharedData;

impl<S: SharedData> Registry<'_, S> {
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
            self.bump_versions(&[index(&rev.target.hash, REVOCATION_BUCKETS)])?;
        }
        Ok(())
    }

    /// Bumps the versions of the buckets written, after writing them: a worker that sees a
    /// new version is guaranteed to read the new entries.
    fn bump_versions(&self, buckets: &[u32]) -> Result<(), RevokeError> {
        update(self.store, KEY_EPOCH, |bytes| {
            let mut v = decode_versions(bytes);
            for b in buckets {
                if let Some(slot) = v.get_mut(*b as usize) {
                    *slot = slot.wrapping_add(1);
                }
            }
            Some((v.iter().flat_map(|n| n.to_le_bytes()).collect(), ()))
        })
        .map_err(|_| RevokeError::Conflict)?;
        // After the versions: a worker that sees the count move reads the new versions.
        self.store.note_change();
        Ok(())
    }

    /// Adds many revocations (etcd's list or watch events): one write per revocation bucket
    /// touched and one version bump. Returns how many were refused for lack of room.
    pub fn revoke_many(&self, revs: &[Revocation], now: u64) -> Result<usize, RevokeError> {
        let slots = self.layout.revocation_slots;
        let mut refused = 0;
        let mut touched = Vec::new();
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
                full = set.add_many(mine.iter().copied(), slots, now);
                Some((set.encode(), ()))
            })
            .map_err(|_| RevokeError::Conflict)?;
            if corrupt {
                return Err(RevokeError::Corrupt);
            }
            refused += full;
            touched.push(i);
        }
        self.bump_versions(&touched)?;
        Ok(refused)
    }

    /// Each revocation bucket's version (all 0 before the first revocation).
    pub fn revocation_versions(&self) -> [u64; REVOCATION_BUCKETS as usize] {
        decode_versions(self.store.get(KEY_EPOCH).0.as_deref().unwrap_or_default())
    }

    /// A number that moves whenever any revocation is added (the versions' sum).
    pub fn revocation_epoch(&self) -> u64 {
        self.revocation_versions().iter().fold(0u64, |a, v| a.wrapping_add(*v))
    }

    /// The revocations in force in one bucket. `None` when it does not decode.
    fn load_bucket(&self, i: u32, now: u64) -> Option<Vec<Revocation>> {
        let set = RevocationSet::decode(self.store.get(&revocation_key(i)).0.as_deref().unwrap_or_default())?;
        Some(set.entries.into_iter().filter(|e| e.until > now).collect())
    }

    /// Every revocation in force. `None` when a stored set does not decode.
    pub fn load_revocations(&self, now: u64) -> Option<Vec<Revocation>> {
        let mut all = Vec::new();
        for i in 0..REVOCATION_BUCKETS {
            all.extend(self.load_bucket(i, now)?);
        }
        Some(all)
    }
}

/// The bucket versions as stored: up to 16 little-endian u64 (an older layout's single
/// counter reads as bucket 0's version; a worker's copy then reloads once).
fn decode_versions(bytes: &[u8]) -> [u64; REVOCATION_BUCKETS as usize] {
    let mut v = [0u64; REVOCATION_BUCKETS as usize];
    for (slot, chunk) in v.iter_mut().zip(bytes.chunks_exact(8)) {
        *slot = decode_u64(chunk);
    }
    v
}

/// The shared revocation set does not decode: requests must fail closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

/// A worker's copy of the revocation set, bucket by bucket, each reloaded only when its
/// shared version moves, so a request costs one small read instead of reading every
/// revocation key.
#[derive(Default)]
pub struct RevocationCache {
    versions: Option<[u64; REVOCATION_BUCKETS as usize]>,
    /// The host's change count when `versions` were read: while it has not moved, nothing
    /// was revoked since and the versions need no read (`SharedData::change_count`).
    seen_changes: Option<u64>,
    buckets: Vec<HashMap<Target, Revocation>>,
    entries: usize,
}

impl RevocationCache {
    /// The revocation epoch this worker's copy was loaded at.
    pub fn epoch(&self) -> Option<u64> {
        self.versions.map(|v| v.iter().fold(0u64, |a, n| a.wrapping_add(*n)))
    }

    /// The revocation covering this token, if any, given its facts and what a revocation of
    /// it would name (`Revocation::targets_of`, hashed once by the caller). `changes` is the
    /// host's change count as the caller read it for this request, before anything else it
    /// read: a change announced after that read moves the count. `Err` when the shared set
    /// could not be read: the caller must fail closed.
    pub fn check<S: SharedData>(
        &mut self,
        registry: &Registry<S>,
        changes: Option<u64>,
        targets: &[Target],
        facts: &TokenFacts,
        now: u64,
    ) -> Result<Option<Revocation>, Unreadable> {
        if changes.is_none() || changes != self.seen_changes || self.versions.is_none() {
            let versions = registry.revocation_versions();
            // Word by word: comparing the arrays whole links wasm32's byte-wise memcmp, which
            // cost about 0.1 µs per request in V8.
            let same =
                self.versions.is_some_and(|mine| mine.iter().zip(versions.iter()).all(|(a, b)| a == b));
            if !same {
                self.reload(registry, &versions, now)?;
            }
            self.seen_changes = changes;
        }
        if self.entries == 0 {
            return Ok(None);
        }
        Ok(targets
            .iter()
            .filter_map(|t| self.buckets.get(index(&t.hash, REVOCATION_BUCKETS) as usize)?.get(t))
            .find(|r| r.until > now && r.covers(facts, now))
            .copied())
    }

    /// Makes the next `check` read the versions whatever the change count says: the root
    /// context's tick calls it, so a count that failed to move (a host whose metric was not
    /// shared as expected) delays a revocation by one tick at most.
    pub fn read_again(&mut self) {
        self.seen_changes = None;
    }

    /// The entry for one target, in force or not yet (a retirement at a grace's end), as of
    /// the last `check`.
    pub fn get(&self, target: &Target) -> Option<&Revocation> {
        self.buckets.get(index(&target.hash, REVOCATION_BUCKETS) as usize)?.get(target)
    }

    fn reload<S: SharedData>(
        &mut self,
        registry: &Registry<S>,
        versions: &[u64; REVOCATION_BUCKETS as usize],
        now: u64,
    ) -> Result<(), Unreadable> {
        self.buckets.resize_with(REVOCATION_BUCKETS as usize, HashMap::new);
        for (i, bucket) in self.buckets.iter_mut().enumerate() {
            let same = self.versions.is_some_and(|old| old.get(i) == versions.get(i));
            if same {
                continue;
            }
            let loaded = registry.load_bucket(i as u32, now).ok_or(Unreadable)?;
            *bucket = loaded.into_iter().map(|r| (r.target, r)).collect();
        }
        self.entries = self.buckets.iter().map(HashMap::len).sum();
        self.versions = Some(*versions);
        Ok(())
    }
}
