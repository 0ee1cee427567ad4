//! Where a fresh replica's time goes when it lists 100,000 revocations from etcd (issue 17),
//! natively: each list page of 1000 keys decoded (prost), parsed (`store::from_kvs`) and
//! applied (`Registry::revoke_many`) against an in-memory shared data that counts the bytes
//! crossing it, as Envoy's copies them in and out of the Wasm VM. Run by `make bench-fleet`
//! (ignored otherwise); writes `bench/results/fleet-load-profile.md`. Nothing here asserts
//! speed: only that every revocation was applied.

use prost::Message;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tokenguard::etcd::proto::{decode, KeyValue, RangeResponse, ResponseHeader};
use tokenguard::etcd::store::from_kvs;
use tokenguard::host::{SharedData, WriteError};
use tokenguard::registry::revocation::RevocationSet;
use tokenguard::registry::{revocation_key, Layout, Registry, REVOCATION_BUCKETS};

const PAGES: usize = 100;
const PAGE: usize = 1000;
const PREFIX: &[u8] = b"/tokenguard/";

/// Shared data with Envoy's CAS rules, counting the bytes each `get` and `set` copies.
#[derive(Default)]
struct Counting {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    read: Cell<usize>,
    written: Cell<usize>,
}

impl SharedData for Counting {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.map.borrow().get(key) {
            Some((v, cas)) => {
                self.read.set(self.read.get() + v.len());
                (Some(v.clone()), Some(*cas))
            }
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        let mut map = self.map.borrow_mut();
        let now = map.get(key).map(|(_, c)| *c);
        if cas.is_some_and(|c| Some(c) != now) {
            return Err(WriteError::CasMismatch);
        }
        self.written.set(self.written.get() + value.len());
        map.insert(key.to_string(), (value.to_vec(), now.unwrap_or(0) + 1));
        Ok(())
    }
}

fn page_bytes(page: usize) -> Vec<u8> {
    let kvs = (page * PAGE..(page + 1) * PAGE)
        .map(|i| KeyValue {
            key: format!("/tokenguard/revoked/jti/bulk-{i}").into_bytes(),
            value: br#"{"reason":"bench"}"#.to_vec(),
            create_revision: i as i64 + 2,
            mod_revision: i as i64 + 2,
            version: 1,
            lease: 0,
        })
        .collect();
    let header = Some(ResponseHeader { cluster_id: 1, member_id: 1, revision: 100_002, raft_term: 2 });
    RangeResponse { header, kvs, more: page + 1 < PAGES, count: (PAGES * PAGE) as i64 }.encode_to_vec()
}

#[derive(Default, Clone, Copy)]
struct Step {
    decode: Duration,
    parse: Duration,
    apply: Duration,
    read: usize,
    written: usize,
}

#[test]
#[ignore = "a profile, run by make bench-fleet"]
fn where_a_100k_list_spends_its_time() {
    let store = Counting::default();
    let registry = Registry::new(&store, Layout::new(10_000, 2 * PAGES * PAGE, 0));
    let now = 1_800_000_000;
    let mut steps = Vec::new();
    for p in 0..PAGES {
        let bytes = page_bytes(p);
        let t = Instant::now();
        let page: RangeResponse = decode(&bytes).expect("page decodes");
        let decoded = t.elapsed();
        let t = Instant::now();
        let batch = from_kvs(PREFIX, &page.kvs, 90_000, now);
        let parsed = t.elapsed();
        assert_eq!(batch.revocations.len(), PAGE);
        let (r0, w0) = (store.read.get(), store.written.get());
        let t = Instant::now();
        assert_eq!(registry.revoke_many(&batch.revocations, now), Ok(0));
        let apply = t.elapsed();
        steps.push(Step {
            decode: decoded,
            parse: parsed,
            apply,
            read: store.read.get() - r0,
            written: store.written.get() - w0,
        });
    }
    assert_eq!(registry.load_revocations(now).map(|v| v.len()), Some(PAGES * PAGE));
    let split = (0..5).map(|_| split_last_page(&store, now)).min_by_key(|s| s.iter().sum::<Duration>());
    write_report(&steps, &split.unwrap_or_default());
}

/// What `revoke_many` does to each of the 16 buckets for one more page, step by step (the
/// page's keys spread over the buckets, a 16th each): copy the set out of shared data,
/// decode it, add (each `RevocationSet::add` first scans the set for the same target),
/// encode, copy it back (to a scratch key, so the store is unchanged).
fn split_last_page(store: &Counting, now: u64) -> [Duration; 5] {
    let page: RangeResponse = decode(&page_bytes(PAGES)).expect("page decodes");
    let revs = from_kvs(PREFIX, &page.kvs, 90_000, now).revocations;
    let per = revs.len().div_ceil(REVOCATION_BUCKETS as usize);
    let slots = 2 * PAGES * PAGE;
    let mut t = [Duration::ZERO; 5];
    for (i, mine) in (0..REVOCATION_BUCKETS).zip(revs.chunks(per)) {
        let s = Instant::now();
        let bytes = store.get(&revocation_key(i)).0.unwrap_or_default();
        t[0] += s.elapsed();
        let s = Instant::now();
        let mut set = RevocationSet::decode(&bytes).expect("set");
        t[1] += s.elapsed();
        let s = Instant::now();
        for r in mine {
            assert!(set.add(*r, slots, now).is_ok());
        }
        t[2] += s.elapsed();
        let s = Instant::now();
        let out = set.encode();
        t[3] += s.elapsed();
        let s = Instant::now();
        assert!(store.set("scratch", &out, None).is_ok());
        t[4] += s.elapsed();
    }
    t
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn write_report(steps: &[Step], split: &[Duration; 5]) {
    let mut md = String::from("# Where a 100,000-revocation list goes (native profile)\n\n");
    md.push_str(
        "`cargo test --release --test fleet_load_profile -- --ignored` (run by `make bench-fleet`): \
         100 list pages of 1000 `jti` keys, each decoded from protobuf, parsed \
         (`etcd::store::from_kvs`) and applied (`Registry::revoke_many`) natively on an \
         in-memory shared data that counts the bytes each get/set copies (Envoy copies the \
         same bytes into and out of the Wasm VM). Native x86-64, so the filter in V8 is slower \
         by a constant factor; the shape is what matters.\n\n",
    );
    md.push_str("| page | decode µs | parse µs | revoke_many µs | bytes read | bytes written |\n");
    md.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for (i, s) in steps.iter().enumerate() {
        if i == 0 || (i + 1) % 20 == 0 {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                i + 1,
                us(s.decode),
                us(s.parse),
                us(s.apply),
                s.read,
                s.written
            );
        }
    }
    let sum = |f: fn(&Step) -> Duration| steps.iter().map(f).sum::<Duration>();
    let bytes: usize = steps.iter().map(|s| s.read + s.written).sum();
    let _ = writeln!(
        md,
        "\nTotals over the 100 pages: decode {} ms, parse {} ms, revoke_many {} ms; {:.0} MiB \
         copied through shared data (read + written).\n\nOne more page on the full set \
         (100,000 entries, ~6,250 per bucket), `revoke_many`'s steps over the 16 buckets \
         (best of 5): copy out {} µs, `RevocationSet::decode` {} µs, 1000 × \
         `RevocationSet::add` (each a linear scan for the same target) {} µs, \
         `RevocationSet::encode` {} µs, copy back {} µs.",
        sum(|s| s.decode).as_millis(),
        sum(|s| s.parse).as_millis(),
        sum(|s| s.apply).as_millis(),
        bytes as f64 / 1048576.0,
        us(split[0]),
        us(split[1]),
        us(split[2]),
        us(split[3]),
        us(split[4]),
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(dir.join("fleet-load-profile.md"), &md).expect("write the profile");
    print!("{md}");
}
