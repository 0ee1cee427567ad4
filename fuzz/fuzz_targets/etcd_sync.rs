//! The list-then-watch machine and the admin write-through fed whatever etcd (or a forged
//! answer) could send: a sequence of frames, each a selector byte, a length byte and that
//! many bytes. Invariants: nothing panics; the applied revision never goes back while the
//! machine watches; a broken answer never counts as a listed store.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenguard::etcd::proto::{decode, RangeResponse, WatchResponse};
use tokenguard::etcd::sync::{Sync, Watched};
use tokenguard::etcd::write;
use tokenguard_fuzz::NOW;

fuzz_target!(|data: &[u8]| {
    let mut sync = Sync::new(b"/tokenguard/");
    let mut rest = data;
    while let [sel, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (frame, next) = tail.split_at(n);
        rest = next;
        let before = sync.applied_revision();
        match sel % 5 {
            0 => {
                if let Some(page) = decode::<RangeResponse>(frame) {
                    let listed = sync.listed;
                    if sync.on_page(&page, 3600, NOW).is_err() {
                        assert_eq!(sync.listed, listed, "a broken page listed the store");
                    }
                }
            }
            1 => {
                if let Some(w) = decode::<WatchResponse>(frame) {
                    let watching = sync.watching();
                    if let Watched::Apply(_) = sync.on_watch(&w, 3600, NOW) {
                        if watching {
                            assert!(sync.applied_revision() >= before, "the revision went back");
                        }
                    }
                }
            }
            2 => {
                let wait = sync.on_failure(u64::from(*len) * 4);
                assert!(wait <= 30_000, "waited {wait} ms");
            }
            3 => {
                let _ = write::granted(frame);
            }
            _ => {
                let _ = write::committed(frame);
                let _ = sync.call();
            }
        }
    }
});
