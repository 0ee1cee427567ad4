//! What tokenguard reads from etcd: a selector byte, then 0: a Range answer, 1: a Watch
//! answer (protobuf bytes, as etcd sends them), otherwise a key, a zero byte and its value.
//! Invariants: nothing panics; every revocation read is in force and kept no longer than
//! the retention after its `revoked_at`; a revocation written with `store::key` and
//! `store::value` (any name, any reason) reads back as exactly that revocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenguard::etcd::proto::{decode, RangeResponse, WatchResponse};
use tokenguard::etcd::store::{self, Batch, Entry};
use tokenguard::registry::revocation::{Kind, Revocation, Target};
use tokenguard_fuzz::NOW;

const PREFIX: &[u8] = b"/tokenguard/";
const RETENTION: u64 = 3600;

fuzz_target!(|data: &[u8]| {
    let Some((sel, rest)) = data.split_first() else { return };
    let batch = match sel {
        0 => decode::<RangeResponse>(rest).map(|r| store::from_kvs(PREFIX, &r.kvs, RETENTION, NOW)),
        1 => decode::<WatchResponse>(rest).map(|w| store::from_events(PREFIX, &w.events, RETENTION, NOW)),
        _ => Some(key_and_value(rest)),
    };
    for r in batch.iter().flat_map(|b| &b.revocations) {
        assert!(r.until > NOW, "a revocation already over was kept");
        assert_eq!(r.until, r.revoked_at.saturating_add(RETENTION));
    }
});

fn key_and_value(rest: &[u8]) -> Batch {
    let (key, value) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (rest.get(..i).unwrap_or_default(), rest.get(i + 1..).unwrap_or_default()),
        None => (rest, &[][..]),
    };
    let mut batch = Batch::default();
    match store::parse(PREFIX, key, value, RETENTION, NOW) {
        Entry::Revoked(r) => batch.revocations.push(r),
        Entry::Malformed(why) => {
            assert!(key.starts_with(b"/tokenguard/revoked/"), "{why} outside the prefix")
        }
        Entry::Expired | Entry::Other => {}
    }
    // The same bytes as a name and a reason, written the documented way, read back.
    let name = String::from_utf8_lossy(key);
    let reason: String = String::from_utf8_lossy(value).chars().take(200).collect();
    for kind in [Kind::Jti, Kind::Sub, Kind::Sid] {
        let got = store::parse(
            PREFIX,
            &store::key(PREFIX, kind, &name),
            &store::value(NOW, Some(&reason)),
            RETENTION,
            NOW,
        );
        if name.is_empty() {
            assert!(matches!(got, Entry::Malformed(_)));
        } else {
            let want =
                Revocation { target: Target::new(kind, &name), revoked_at: NOW, until: NOW + RETENTION };
            assert_eq!(got, Entry::Revoked(want), "{name:?}");
        }
    }
    batch
}
