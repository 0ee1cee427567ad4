use std::cell::Cell;

use super::fake::FakeShared;
use super::record::{State, TokenRecord};
use super::revocation::{Kind, Revocation, Target, TokenFacts};
use super::*;
use crate::host::{SharedData, WriteError};

fn rec(n: u32, exp: u64) -> TokenRecord {
    let mut fp = hmac_sha256::Hash::hash(&n.to_le_bytes());
    fp[31] = 0;
    TokenRecord {
        fp,
        exp,
        iat: exp.saturating_sub(60),
        first_seen: 10,
        last_seen: 10,
        state: State::Active,
        config_gen: 1,
        refresh_lease_until: 0,
        refresh_retry_at: 0,
        refresh_failures: 0,
        superseded_at: 0,
        session_start: 0,
        sig: [0; 16],
        sub: format!("user-{n}"),
        jti: format!("jti-{n}"),
        sid: "sid".into(),
    }
}

#[test]
fn remember_then_lookup_and_warn_once() {
    let store = FakeShared::default();
    let reg = Registry::new(&store, Layout::new(64, 64, 0));
    reg.init_keys();
    let r = rec(1, 1000);
    assert!(reg.lookup(&r.fp).is_none());
    assert_eq!(reg.remember(r.clone(), false, 10), Ok(Remembered::default()));
    assert_eq!(reg.lookup(&r.fp).map(|x| x.state), Some(State::Active));
    assert!(reg.remember(r.clone(), true, 11).unwrap().warned_now);
    assert!(!reg.remember(r.clone(), true, 12).unwrap().warned_now);
    assert_eq!(reg.lookup(&r.fp).map(|x| x.state), Some(State::Warned));
}

#[test]
fn an_unchanged_token_costs_no_write() {
    let store = FakeShared::default();
    let reg = Registry::new(&store, Layout::new(64, 64, 0));
    reg.init_keys();
    let r = rec(1, 1000);
    reg.remember(r.clone(), false, 10).unwrap();
    let (_, cas) = store.get(&reg.bucket_key(&r.fp));
    reg.remember(r.clone(), false, 10 + LAST_SEEN_GRANULARITY_S - 1).unwrap();
    assert_eq!(store.get(&reg.bucket_key(&r.fp)).1, cas, "no write within the last_seen granularity");
    reg.remember(r.clone(), false, 10 + LAST_SEEN_GRANULARITY_S).unwrap();
    assert_ne!(store.get(&reg.bucket_key(&r.fp)).1, cas);
}

/// A store that lets another worker write between our read and our write, `times` times.
struct Interleaved<'a> {
    inner: &'a FakeShared,
    other: Cell<u32>,
    times: Cell<u32>,
}

impl SharedData for Interleaved<'_> {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        let got = self.inner.get(key);
        if self.times.get() > 0 && key.starts_with("tokenguard/t/") {
            self.times.set(self.times.get() - 1);
            // The other worker records its own token in the same bucket.
            let other = Registry::new(self.inner, Layout::new(8, 16, 0));
            let n = self.other.get();
            self.other.set(n + 1);
            let mut r = rec(1000 + n, 5000);
            r.fp = [0; 32]; // bucket 0 of a one-bucket layout
            r.fp[4] = n as u8;
            other.remember(r, false, 10).unwrap();
        }
        got
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        self.inner.set(key, value, cas)
    }
}

#[test]
fn interleaved_writers_never_lose_an_update() {
    let inner = FakeShared::default();
    Registry::new(&inner, Layout::new(8, 16, 0)).init_keys();
    let store = Interleaved { inner: &inner, other: Cell::new(0), times: Cell::new(3) };
    let reg = Registry::new(&store, Layout::new(8, 16, 0));
    let mut mine = rec(1, 5000);
    mine.fp = [0; 32];
    mine.fp[4] = 200;
    reg.remember(mine.clone(), false, 10).unwrap();
    let bucket = record::Bucket::decode(&inner.get(&token_key(0)).0.unwrap());
    // Three writes from the other worker landed between our reads, and ours too.
    assert_eq!(bucket.records.len(), 4, "{bucket:?}");
    assert!(bucket.find(&mine.fp).is_some());
}

#[test]
fn conflicts_are_bounded_and_reported() {
    let store = FakeShared::default();
    let reg = Registry::new(&store, Layout::new(64, 64, 0));
    reg.init_keys();
    store.forced_conflicts.set(MAX_CAS_ATTEMPTS);
    assert_eq!(reg.remember(rec(1, 100), false, 10), Err(Conflict));
    store.forced_conflicts.set(MAX_CAS_ATTEMPTS - 1);
    assert!(reg.remember(rec(1, 100), false, 10).is_ok(), "the last attempt may win");
}

#[test]
fn a_flood_stays_within_capacity_keys_and_bytes() {
    let store = FakeShared::default();
    let layout = Layout::new(1000, 100, 0);
    let reg = Registry::new(&store, layout);
    reg.init_keys();
    let keys_before = store.keys();
    let mut evicted = 0;
    for n in 0..20_000u32 {
        evicted += reg.remember(rec(n, 100_000 + n as u64), false, 10).unwrap().evicted.len();
    }
    let census = reg.census(10);
    assert!(census.tracked_tokens <= 1000, "{census:?}");
    assert_eq!(census.tracked_tokens + evicted, 20_000);
    assert_eq!(store.keys(), keys_before, "no key per token");
    assert_eq!(store.keys(), (2 * layout.buckets + REVOCATION_BUCKETS + handoff::HANDOFF_BUCKETS) as usize);
    let per_record = rec(19_999, 1).encoded_len(); // the longest strings in this flood
    assert!(store.bytes() < 1000 * per_record + store.keys() * 40, "{} bytes", store.bytes());
}

#[test]
fn eviction_takes_the_soonest_expiring_in_the_bucket() {
    let store = FakeShared::default();
    let reg = Registry::new(&store, Layout::new(2, 16, 0)); // one bucket, two slots
    let (a, b, c) = (rec(1, 300), rec(2, 100), rec(3, 200));
    reg.remember(a.clone(), false, 10).unwrap();
    reg.remember(b.clone(), false, 10).unwrap();
    let out = reg.remember(c.clone(), false, 10).unwrap();
    assert_eq!(out.evicted.iter().map(|r| r.fp).collect::<Vec<_>>(), vec![b.fp]);
    assert!(reg.lookup(&a.fp).is_some() && reg.lookup(&c.fp).is_some());
}

#[test]
fn sweep_runs_once_per_period_and_removes_expired() {
    let store = FakeShared::default();
    let reg = Registry::new(&store, Layout::new(16, 16, 5));
    reg.init_keys();
    reg.remember(rec(1, 100), false, 10).unwrap();
    reg.remember(rec(2, 1000), false, 10).unwrap();
    let first = reg.sweep_step(105, 1, 10).expect("lease taken");
    assert_eq!(first.records_removed, 1, "expired at 100, kept until 100 + 5 leeway");
    assert!(reg.sweep_step(106, 2, 10).is_none(), "another worker in the same period");
    assert!(reg.sweep_step(106, 1, 10).is_none(), "the holder too: once per period");
    assert!(reg.sweep_step(115, 2, 10).is_some(), "next period");
    assert_eq!(reg.census(115).tracked_tokens, 1);
}

#[test]
fn revocations_reach_every_worker_cache() {
    let store = FakeShared::default();
    let reg = Registry::new(&store, Layout::new(16, 160, 0));
    reg.init_keys();
    let fp = [7u8; 32];
    let facts = TokenFacts { fp: &fp, jti: Some("j1"), sub: Some("alice"), sid: Some("s1"), iat: Some(50) };
    let (mut w1, mut w2) = (RevocationCache::default(), RevocationCache::default());
    assert_eq!(
        w1.check(&reg, reg.store.change_count(), &Revocation::targets_of(&facts), &facts, 60),
        Ok(None)
    );
    assert_eq!(
        w2.check(&reg, reg.store.change_count(), &Revocation::targets_of(&facts), &facts, 60),
        Ok(None)
    );
    let rev = Revocation { target: Target::new(Kind::Sid, "s1"), revoked_at: 60, until: 500 };
    reg.revoke(rev, 60).unwrap();
    assert_eq!(
        w1.check(&reg, reg.store.change_count(), &Revocation::targets_of(&facts), &facts, 61),
        Ok(Some(rev))
    );
    assert_eq!(
        w2.check(&reg, reg.store.change_count(), &Revocation::targets_of(&facts), &facts, 61),
        Ok(Some(rev))
    );
    assert_eq!(
        w1.check(&reg, reg.store.change_count(), &Revocation::targets_of(&facts), &facts, 500),
        Ok(None),
        "entry retired at its end"
    );
    // Revoke-all for a subject spares tokens issued after it.
    reg.revoke(Revocation { target: Target::new(Kind::Sub, "bob"), revoked_at: 100, until: 900 }, 100)
        .unwrap();
    let old = TokenFacts { fp: &fp, jti: None, sub: Some("bob"), sid: None, iat: Some(99) };
    let new = TokenFacts { fp: &fp, jti: None, sub: Some("bob"), sid: None, iat: Some(101) };
    assert!(w1
        .check(&reg, reg.store.change_count(), &Revocation::targets_of(&old), &old, 120)
        .unwrap()
        .is_some());
    assert!(w1
        .check(&reg, reg.store.change_count(), &Revocation::targets_of(&new), &new, 120)
        .unwrap()
        .is_none());
    assert_eq!(reg.census(120).revocations, 2);
}

/// Workers skip reading the versions while the host's change count stands still; a
/// revocation moves it after the versions are written, so the next check reads them.
#[test]
fn the_change_count_spares_the_versions_read_but_never_a_revocation() {
    let store = FakeShared::default();
    let reg = Registry::new(&store, Layout::new(16, 160, 0));
    reg.init_keys();
    let fp = [7u8; 32];
    let facts = TokenFacts { fp: &fp, jti: Some("j1"), sub: None, sid: None, iat: Some(50) };
    let targets = Revocation::targets_of(&facts);
    let mut w = RevocationCache::default();
    assert_eq!(w.check(&reg, reg.store.change_count(), &targets, &facts, 60), Ok(None));
    let rev = |j: &str| Revocation { target: Target::new(Kind::Jti, j), revoked_at: 60, until: 500 };
    reg.revoke(rev("j1"), 60).unwrap();
    assert_eq!(
        w.check(&reg, reg.store.change_count(), &targets, &facts, 61),
        Ok(Some(rev("j1"))),
        "announced: read at once"
    );

    // Proof that reads are skipped: a change nobody announces stays unseen...
    let other = TokenFacts { jti: Some("j2"), ..facts };
    store.silent_changes.set(true);
    reg.revoke(rev("j2"), 61).unwrap();
    assert_eq!(
        w.check(&reg, reg.store.change_count(), &Revocation::targets_of(&other), &other, 62),
        Ok(None)
    );
    // ...until the tick's read_again, the bound on a count that fails to move.
    w.read_again();
    assert_eq!(
        w.check(&reg, reg.store.change_count(), &Revocation::targets_of(&other), &other, 62),
        Ok(Some(rev("j2")))
    );

    // A host without the count reads the versions on every check.
    let third = TokenFacts { jti: Some("j3"), ..facts };
    store.no_change_count.set(true);
    assert_eq!(
        w.check(&reg, reg.store.change_count(), &Revocation::targets_of(&third), &third, 62),
        Ok(None)
    );
    reg.revoke(rev("j3"), 62).unwrap();
    assert_eq!(
        w.check(&reg, reg.store.change_count(), &Revocation::targets_of(&third), &third, 63),
        Ok(Some(rev("j3")))
    );
}

#[test]
fn a_full_revocation_store_refuses_rather_than_forgets() {
    let store = FakeShared::default();
    let reg = Registry::new(&store, Layout::new(16, 16, 0)); // one slot per revocation bucket
    let mut refused = 0;
    for n in 0..64 {
        let rev = Revocation { target: Target::new(Kind::Jti, &format!("j{n}")), revoked_at: 1, until: 100 };
        if reg.revoke(rev, 1) == Err(RevokeError::Full) {
            refused += 1;
        }
    }
    assert_eq!(reg.census(2).revocations + refused, 64);
    assert!(reg.census(2).revocations <= 16);
}

#[test]
fn a_corrupt_revocation_set_fails_closed() {
    let store = FakeShared::default();
    let reg = Registry::new(&store, Layout::new(16, 16, 0));
    store.set(&revocation_key(3), &[9, 9, 9], None).unwrap();
    assert!(reg.load_revocations(1).is_none());
    let fp = [1u8; 32];
    let facts = TokenFacts { fp: &fp, jti: None, sub: None, sid: None, iat: None };
    assert!(RevocationCache::default()
        .check(&reg, reg.store.change_count(), &Revocation::targets_of(&facts), &facts, 1)
        .is_err());
}

#[test]
fn revoke_many_applies_a_page_with_one_epoch_bump() {
    let store = FakeShared::default();
    let reg = Registry::new(&store, Layout::new(16, 1600, 0));
    let epoch = reg.revocation_epoch();
    let revs: Vec<Revocation> = (0..50)
        .map(|n| Revocation { target: Target::new(Kind::Jti, &format!("j{n}")), revoked_at: 1, until: 100 })
        .collect();
    assert_eq!(reg.revoke_many(&revs, 1), Ok(0));
    assert!(reg.revocation_epoch() > epoch, "the versions of the buckets written moved");
    assert_eq!(reg.census(2).revocations, 50);
    // Applying the same page again changes nothing but the epoch.
    assert_eq!(reg.revoke_many(&revs, 1), Ok(0));
    assert_eq!(reg.census(2).revocations, 50);
}

/// A worker's copy reloads only the buckets whose version moved: shown with a bucket the
/// cache must not read again (it no longer decodes, which a reload would report).
#[test]
fn a_new_revocation_reloads_only_its_bucket() {
    let store = FakeShared::default();
    let reg = Registry::new(&store, Layout::new(16, 1600, 0));
    let jti =
        |n: u32| Revocation { target: Target::new(Kind::Jti, &format!("j{n}")), revoked_at: 1, until: 100 };
    let bucket = |r: &Revocation| index(&r.target.hash, REVOCATION_BUCKETS);
    let first = jti(0);
    let other = (1..).map(jti).find(|r| bucket(r) != bucket(&first)).expect("another bucket");
    let same = (1..)
        .map(jti)
        .find(|r| bucket(r) == bucket(&first) && r.target != first.target)
        .expect("same bucket");
    reg.revoke(first, 1).unwrap();
    reg.revoke(other, 1).unwrap();
    let mut cache = RevocationCache::default();
    let facts = |fp| TokenFacts { fp, jti: Some("j0"), sub: None, sid: None, iat: None };
    let fp = [0u8; 32];
    assert!(cache.check(&reg, reg.store.change_count(), &[first.target], &facts(&fp), 2).unwrap().is_some());
    store.set(&revocation_key(bucket(&other)), &[9, 9, 9], None).unwrap();
    reg.revoke(same, 1).unwrap();
    let found = cache.check(&reg, reg.store.change_count(), &[same.target], &facts(&fp), 2);
    assert!(found.is_ok_and(|r| r.is_some()), "only the bucket written was read again");
}
