//! The registry's part in refreshing a token: the single-flight lease, the outcome (the old
//! record superseded and its handoff stored, or a backoff), and the process-wide streak of
//! failures that escalates.

use super::record::{Bucket, State, TokenRecord};
use super::{decode_u64, handoff, handoff_key, index, update, Conflict, Registry, KEY_REFRESH_FAILURES};
use crate::host::SharedData;

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

impl<S: SharedData> Registry<'_, S> {
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

    /// Another replica refreshes `old` (it holds the fleet's claim): release the lease and
    /// do not try again before `until`, when that claim lapses.
    pub fn refresh_deferred(&self, old: &[u8; 32], until: u64) -> Result<(), Conflict> {
        update(self.store, &self.bucket_key(old), |bytes| {
            let mut bucket = Bucket::decode(bytes);
            let rec = bucket.find_mut(old)?;
            rec.refresh_lease_until = 0;
            rec.refresh_retry_at = until;
            Some((bucket.encode(), ()))
        })?;
        Ok(())
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
}
