use super::*;
use crate::etcd::proto::{Event, KeyValue, ResponseHeader, WatchCreateRequest, WatchRequestUnion, EVENT_PUT};

const P: &[u8] = b"/tokenguard/";
const NOW: u64 = 1_000_000;
const KEEP: u64 = 3600;

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

fn kv(key: &str, mod_revision: i64) -> KeyValue {
    KeyValue { key: key.into(), value: b"{}".to_vec(), mod_revision, ..Default::default() }
}

fn page(revision: i64, keys: &[&str], more: bool) -> RangeResponse {
    RangeResponse { header: header(revision), kvs: keys.iter().map(|k| kv(k, 1)).collect(), more, count: 0 }
}

fn range(call: Call) -> RangeRequest {
    match call {
        Call::Range(r) => r,
        other => panic!("expected a range, got {other:?}"),
    }
}

fn watch_from(call: Call) -> i64 {
    match call {
        Call::Watch(WatchRequest {
            request_union: Some(WatchRequestUnion::Create(WatchCreateRequest { start_revision, .. })),
        }) => start_revision,
        other => panic!("expected a watch, got {other:?}"),
    }
}

fn events(revision: i64, keys: &[(&str, i64)]) -> WatchResponse {
    let events = keys.iter().map(|(k, r)| Event { r#type: EVENT_PUT, kv: Some(kv(k, *r)) }).collect();
    WatchResponse { header: header(revision), events, ..Default::default() }
}

#[test]
fn lists_in_pages_pinned_to_the_first_revision_then_watches_after_it() {
    let mut s = Sync::new(P);
    let first = range(s.call());
    assert_eq!((first.key.as_slice(), first.revision, first.limit), (P, 0, PAGE_LIMIT));
    let b =
        s.on_page(&page(40, &["/tokenguard/revoked/jti/a", "/tokenguard/revoked/jti/b"], true), KEEP, NOW);
    assert_eq!(b.map(|b| b.revocations.len()), Ok(2));
    let second = range(s.call());
    assert_eq!((second.key.as_slice(), second.revision), (&b"/tokenguard/revoked/jti/b\0"[..], 40));
    assert!(!s.listed);
    // Later pages carry later header revisions (the store moved on): the pin stays.
    s.on_page(&page(45, &["/tokenguard/revoked/sub/c"], false), KEEP, NOW).unwrap();
    assert!(s.listed && s.watching());
    assert_eq!((watch_from(s.call()), s.applied_revision()), (41, 40));
}

#[test]
fn the_watch_moves_on_with_events_and_progress_but_not_creation() {
    let mut s = Sync::new(P);
    s.on_page(&page(10, &[], false), KEEP, NOW).unwrap();
    let created = WatchResponse { header: header(99), created: true, ..Default::default() };
    assert_eq!(s.on_watch(&created, KEEP, NOW), Watched::Apply(Batch::default()));
    assert_eq!(s.applied_revision(), 10, "a creation answer vouches for nothing: replay follows");
    let w = s.on_watch(
        &events(13, &[("/tokenguard/revoked/jti/x", 12), ("/tokenguard/revoked/jti/y", 13)]),
        KEEP,
        NOW,
    );
    assert!(matches!(w, Watched::Apply(b) if b.revocations.len() == 2));
    assert_eq!(s.applied_revision(), 13);
    s.on_watch(&WatchResponse { header: header(20), ..Default::default() }, KEEP, NOW);
    assert_eq!(s.applied_revision(), 20, "progress: nothing under the prefix changed up to 20");
    let behind = s.on_watch(&WatchResponse { header: header(15), ..Default::default() }, KEEP, NOW);
    assert_eq!(behind, Watched::Restart, "a store behind what was applied is listed again");
    assert_eq!(s.applied_revision(), 0, "never trusted backwards");
}

#[test]
fn a_broken_watch_resumes_after_the_last_revision_applied() {
    let mut s = Sync::new(P);
    s.on_page(&page(10, &[], false), KEEP, NOW).unwrap();
    s.on_watch(&events(12, &[("/tokenguard/revoked/jti/x", 12)]), KEEP, NOW);
    let waits: Vec<u64> = (0..7).map(|_| s.on_failure(0)).collect();
    assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 15000, 15000], "half the doubling wait at jitter 0");
    assert_eq!(s.on_failure(1000), 30000, "the whole wait at full jitter");
    assert_eq!(watch_from(s.call()), 13);
    s.on_watch(&WatchResponse { header: header(12), created: true, ..Default::default() }, KEEP, NOW);
    assert_eq!(s.on_failure(0), 500, "an answer resets the backoff");
    // Cancelled without compaction (etcd closing the watch): same watch again.
    let cancelled = WatchResponse { canceled: true, ..Default::default() };
    assert_eq!(s.on_watch(&cancelled, KEEP, NOW), Watched::Restart);
    assert_eq!(watch_from(s.call()), 13);
}

#[test]
fn compaction_under_the_watch_means_a_fresh_list() {
    let mut s = Sync::new(P);
    s.on_page(&page(10, &[], false), KEEP, NOW).unwrap();
    let compacted = WatchResponse { canceled: true, compact_revision: 30, ..Default::default() };
    assert_eq!(s.on_watch(&compacted, KEEP, NOW), Watched::Restart);
    assert_eq!(range(s.call()).revision, 0, "a new snapshot, not the compacted one");
    assert!(s.listed, "what was listed before is still applied: requests need not wait");
    assert_eq!(s.on_watch(&events(31, &[]), KEEP, NOW), Watched::Restart, "a late answer of the old stream");
}

#[test]
fn a_failed_or_broken_list_starts_again_from_the_first_page() {
    let mut s = Sync::new(P);
    s.on_page(&page(40, &["/tokenguard/revoked/jti/a"], true), KEEP, NOW).unwrap();
    s.on_failure(0);
    let again = range(s.call());
    assert_eq!((again.key.as_slice(), again.revision), (P, 0));
    assert_eq!(s.on_page(&page(41, &[], true), KEEP, NOW), Err(Broken("more keys announced, none sent")));
    assert_eq!(range(s.call()).revision, 0, "a broken answer pins nothing");
    let headless = RangeResponse { header: None, ..Default::default() };
    assert_eq!(s.on_page(&headless, KEEP, NOW), Err(Broken("answer without header")));
    assert!(!s.listed);
}

/// A store rebuilt or restored from an older snapshot answers with a lower revision or
/// another cluster id: the revisions applied mean nothing there, so the machine lists again.
#[test]
fn a_store_whose_revision_went_back_or_whose_cluster_changed_is_listed_again() {
    let mut sync = Sync::new(P);
    let _ = sync.on_page(&page(50, &["/tokenguard/revoked/jti/a"], false), KEEP, NOW);
    assert_eq!(watch_from(sync.call()), 51);
    let behind = WatchResponse { header: header(10), ..Default::default() };
    assert_eq!(sync.on_watch(&behind, KEEP, NOW), Watched::Restart);
    assert_eq!(range(sync.call()).revision, 0, "a fresh list, not a watch from 51");
    let _ = sync.on_page(&page(60, &[], false), KEEP, NOW);
    let mut other = WatchResponse { header: header(60), ..Default::default() };
    if let Some(h) = other.header.as_mut() {
        h.cluster_id = 99;
    }
    assert_eq!(sync.on_watch(&other, KEEP, NOW), Watched::Restart);
    assert_eq!(range(sync.call()).revision, 0);
    let mut from_other = page(5, &[], false);
    if let Some(h) = from_other.header.as_mut() {
        h.cluster_id = 7;
    }
    assert!(sync.on_page(&from_other, KEEP, NOW).is_err(), "a page from yet another cluster is not trusted");
}
