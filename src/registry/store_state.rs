//! The revocation store's process-wide state, in one shared-data key per store (a
//! configuration naming another cluster or prefix starts from nothing): which worker holds the
//! watch on etcd (a lease renewed by its ticks), whether the first full list is applied, and
//! when etcd last answered. Stored by the registry, driven by `crate::etcd::follow`.

use super::codec::{Reader, Writer};
use super::{store_key, update, Conflict, Registry, KEY_PROCESS};
use crate::host::SharedData;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreState {
    /// Unix time etcd last answered, 0 before the first answer.
    pub last_contact: u64,
    /// Every revocation in etcd at start-up has been applied; a process never goes back.
    pub synced: bool,
    /// The worker following etcd (its root context's holder id), until `lease_until`.
    pub holder: u64,
    pub lease_until: u64,
    /// Failed calls since the last answer: the outage is audited at 1, the recovery after.
    pub failures: u32,
    /// Every change up to this etcd revision is applied.
    pub revision: i64,
}

impl StoreState {
    pub fn decode(bytes: &[u8]) -> StoreState {
        let mut r = Reader::new(bytes);
        (|| {
            Some(StoreState {
                last_contact: r.u64()?,
                synced: r.u8()? == 1,
                holder: r.u64()?,
                lease_until: r.u64()?,
                failures: r.u32()?,
                revision: r.u64()? as i64,
            })
        })()
        .unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.last_contact);
        w.u8(u8::from(self.synced));
        w.u64(self.holder);
        w.u64(self.lease_until);
        w.u32(self.failures);
        w.u64(self.revision as u64);
        w.0
    }

    /// Seconds since etcd last answered (`None` before it ever did).
    pub fn age(&self, now: u64) -> Option<u64> {
        (self.last_contact > 0).then(|| now.saturating_sub(self.last_contact))
    }
}

impl<S: SharedData> Registry<'_, S> {
    pub fn store_state(&self) -> StoreState {
        StoreState::decode(self.store.get(&store_key(self.layout.store_id)).0.as_deref().unwrap_or_default())
    }

    /// Takes or renews the lease on following etcd for `holder` until `until`; whether
    /// `holder` has it now. A lease that is still long enough is not written again.
    pub fn store_lease(&self, holder: u64, now: u64, until: u64) -> Result<bool, Conflict> {
        let mut held = false;
        update(self.store, &store_key(self.layout.store_id), |bytes| {
            let mut st = StoreState::decode(bytes);
            let ours = st.holder == holder;
            held = ours || st.lease_until <= now;
            if !held || (ours && st.lease_until.saturating_add(1) >= until) {
                return None;
            }
            st.holder = holder;
            st.lease_until = until;
            Some((st.encode(), ()))
        })?;
        Ok(held)
    }

    /// etcd answered: records the contact (and the revision applied, and whether the first
    /// list is complete). Returns the state before, so the caller can tell a recovery.
    pub fn store_contact(&self, now: u64, listed: bool, revision: i64) -> Result<StoreState, Conflict> {
        let out = update(self.store, &store_key(self.layout.store_id), |bytes| {
            let before = StoreState::decode(bytes);
            let mut st = before.clone();
            st.last_contact = now;
            st.synced |= listed;
            st.failures = 0;
            st.revision = st.revision.max(revision);
            Some((st.encode(), before))
        })?;
        Ok(out.unwrap_or_default())
    }

    /// This process's identity towards the fleet: the first worker to ask sets it to its
    /// `candidate` (random enough: a start time in nanoseconds), every later ask reads it.
    pub fn process_id(&self, candidate: u64) -> u64 {
        let mut id = candidate;
        let _ = update(self.store, KEY_PROCESS, |bytes| match <[u8; 8]>::try_from(bytes) {
            Ok(b) => {
                id = u64::from_le_bytes(b);
                None
            }
            Err(_) => {
                id = candidate;
                Some((candidate.to_le_bytes().to_vec(), ()))
            }
        });
        id
    }

    /// A call to etcd failed; returns the failures since the last answer.
    pub fn store_failed(&self) -> Result<u32, Conflict> {
        let out = update(self.store, &store_key(self.layout.store_id), |bytes| {
            let mut st = StoreState::decode(bytes);
            st.failures = st.failures.saturating_add(1);
            Some((st.encode(), st.failures))
        })?;
        Ok(out.unwrap_or(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::fake::FakeShared;
    use crate::registry::Layout;

    #[test]
    fn state_round_trips_and_garbage_is_fresh() {
        let s = StoreState {
            last_contact: 7,
            synced: true,
            holder: 3,
            lease_until: 9,
            failures: 2,
            revision: 12,
        };
        assert_eq!(StoreState::decode(&s.encode()), s);
        assert_eq!(StoreState::decode(&[1, 2]), StoreState::default());
        assert_eq!(s.age(10), Some(3));
        assert_eq!(StoreState::default().age(10), None);
    }

    #[test]
    fn one_worker_holds_the_lease_until_it_lapses() {
        let store = FakeShared::default();
        let reg = Registry::new(&store, Layout::new(16, 160, 0));
        assert_eq!(reg.store_lease(1, 100, 105), Ok(true));
        assert_eq!(reg.store_lease(2, 101, 106), Ok(false), "held by worker 1");
        assert_eq!(reg.store_lease(1, 101, 105), Ok(true), "renewing needs no write");
        assert_eq!(reg.store_lease(2, 105, 110), Ok(true), "lapsed: worker 2 takes over");
        assert_eq!(reg.store_lease(1, 106, 111), Ok(false));
    }

    /// A configuration that names another store (cluster, authority or prefix) must list it
    /// and hold requests until then, not inherit the first store's "synced" and revision.
    #[test]
    fn each_store_has_its_own_state() {
        let store = FakeShared::default();
        let a = crate::testkit::etcd_store("/a/");
        let b = crate::testkit::etcd_store("/b/");
        assert_ne!(a.id, b.id);
        assert_eq!(a.id, crate::testkit::etcd_store("/a/").id, "the same store, the same id");
        let on = |id| Registry::new(&store, Layout { store_id: id, ..Layout::new(16, 160, 0) });
        on(a.id).store_contact(100, true, 42).unwrap();
        assert!(on(a.id).store_state().synced);
        assert_eq!(on(b.id).store_state(), StoreState::default(), "another store starts from nothing");
        assert_eq!(on(b.id).store_lease(9, 100, 105), Ok(true), "nor is its lease held");
    }

    #[test]
    fn the_process_id_is_set_once() {
        let store = FakeShared::default();
        let reg = Registry::new(&store, Layout::new(16, 160, 0));
        assert_eq!((reg.process_id(7), reg.process_id(8)), (7, 7));
    }

    #[test]
    fn contact_syncs_once_and_failures_count_until_the_next_answer() {
        let store = FakeShared::default();
        let reg = Registry::new(&store, Layout::new(16, 160, 0));
        reg.store_contact(100, false, 4).unwrap();
        assert!(!reg.store_state().synced, "a page with more to come");
        reg.store_contact(101, true, 9).unwrap();
        assert_eq!((reg.store_failed(), reg.store_failed()), (Ok(1), Ok(2)));
        let before = reg.store_contact(110, false, 3).unwrap();
        assert_eq!(before.failures, 2);
        let st = reg.store_state();
        assert!(st.synced, "never unsynced");
        assert_eq!((st.failures, st.last_contact, st.revision), (0, 110, 9));
    }
}
