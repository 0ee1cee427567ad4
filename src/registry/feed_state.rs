//! The revocation feed's process-wide sync state, in one shared-data key (its lease, cursor
//! and health): stored by the registry, driven by `crate::feed`.

use super::codec::{Reader, Writer};
use super::{update, Conflict, Registry, KEY_FEED};
use crate::host::SharedData;

/// The process-wide feed state, in one shared-data key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedState {
    pub cursor: String,
    /// Unix time of the last successful poll, 0 before the first.
    pub last_success: u64,
    /// Every revocation in force at start-up has been loaded.
    pub synced: bool,
    /// A poll is under way until then (one worker at a time).
    pub lease_until: u64,
    pub next_poll_at: u64,
    pub failures: u32,
}

impl FeedState {
    pub fn decode(bytes: &[u8]) -> FeedState {
        let mut r = Reader::new(bytes);
        (|| {
            Some(FeedState {
                cursor: r.long_str()?,
                last_success: r.u64()?,
                synced: r.u8()? == 1,
                lease_until: r.u64()?,
                next_poll_at: r.u64()?,
                failures: r.u32()?,
            })
        })()
        .unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.long_str(&self.cursor);
        w.u64(self.last_success);
        w.u8(u8::from(self.synced));
        w.u64(self.lease_until);
        w.u64(self.next_poll_at);
        w.u32(self.failures);
        w.0
    }

    /// Seconds since the last successful poll (`None` before the first).
    pub fn age(&self, now: u64) -> Option<u64> {
        (self.last_success > 0).then(|| now.saturating_sub(self.last_success))
    }
}

impl<S: SharedData> Registry<'_, S> {
    pub fn feed_state(&self) -> FeedState {
        FeedState::decode(self.store.get(KEY_FEED).0.as_deref().unwrap_or_default())
    }

    /// Takes the poll lease when a poll is due (always, until the first sync completes).
    /// Returns the cursor to poll from, or `None` when no poll is due or another worker polls.
    pub fn feed_try_lease(&self, now: u64, lease_until: u64) -> Result<Option<String>, Conflict> {
        let out = update(self.store, KEY_FEED, |bytes| {
            let mut st = FeedState::decode(bytes);
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
    ) -> Result<FeedState, Conflict> {
        let out = update(self.store, KEY_FEED, |bytes| {
            let mut st = FeedState::decode(bytes);
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
            let mut st = FeedState::decode(bytes);
            st.failures = st.failures.saturating_add(1);
            st.lease_until = 0;
            let backoff = crate::backoff::doubling(interval, st.failures, interval.saturating_add(60));
            st.next_poll_at = now.saturating_add(backoff);
            Some((st.encode(), st.failures))
        })?;
        Ok(out.unwrap_or(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_garbage_is_fresh() {
        let s = FeedState {
            cursor: "c-42".into(),
            last_success: 7,
            synced: true,
            lease_until: 9,
            next_poll_at: 12,
            failures: 2,
        };
        assert_eq!(FeedState::decode(&s.encode()), s);
        assert_eq!(FeedState::decode(&[1, 2]), FeedState::default());
        assert_eq!(s.age(10), Some(3));
        assert_eq!(FeedState::default().age(10), None);
    }
}
