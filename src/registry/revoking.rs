//! Writing and reading the shared revocation set: adding one revocation or a page of them
//! (each followed by an epoch bump), and each worker's copy, reloaded when the epoch moves.

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
            update(self.store, KEY_EPOCH, |bytes| {
                let next = decode_u64(bytes).wrapping_add(1);
                Some((next.to_le_bytes().to_vec(), ()))
            })
            .map_err(|_| RevokeError::Conflict)?;
        }
        Ok(())
    }

    /// Adds many revocations (a page of etcd revocations): one write per revocation key touched and one
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
            .find(|r| r.until > now && r.covers(facts, now))
            .copied())
    }
}
