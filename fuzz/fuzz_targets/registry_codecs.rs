//! The shared-data codecs: values written by other workers, or by an older or newer filter
//! after a plugin update, are read back. The first byte picks the codec. Invariants: nothing
//! panics; whatever decodes re-encodes to the same value; and the registry works on top of
//! any stored bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

use tokenguard::host::SharedData;
use tokenguard::registry::record::Bucket;
use tokenguard::registry::revocation::{Kind, Revocation, RevocationSet, Target};
use tokenguard::registry::{handoff, handoff_key, revocation_key, token_key, Registry};
use tokenguard_fuzz::{header_config, FakeHost, NOW};

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    match which % 4 {
        0 => {
            let b = Bucket::decode(bytes);
            assert_eq!(Bucket::decode(&b.encode()), b);
            let mut changed = b.clone();
            if let Some(mut r) = b.records.first().cloned() {
                r.fp[0] ^= 1;
                changed.insert(r, 2, NOW, 30);
            }
            changed.sweep(NOW, 30);
            assert_eq!(Bucket::decode(&changed.encode()), changed);
        }
        1 => {
            if let Some(set) = RevocationSet::decode(bytes) {
                assert_eq!(RevocationSet::decode(&set.encode()), Some(set.clone()));
                let mut changed = set;
                let rev = Revocation { target: Target::new(Kind::Sub, "x"), revoked_at: NOW, until: NOW + 1 };
                let _ = changed.add(rev, 4, NOW);
                assert_eq!(RevocationSet::decode(&changed.encode()), Some(changed));
            }
        }
        2 => {
            let h = handoff::decode(bytes);
            assert_eq!(handoff::decode(&handoff::encode(&h)), h);
        }
        _ => {
            // The same bytes under every key the registry reads, then every operation.
            let cfg = header_config();
            let host = FakeHost::at(NOW);
            let l = tokenguard::registry::Layout::of(cfg);
            for i in 0..l.buckets {
                let _ = host.set(&token_key(i), bytes, None);
            }
            for i in 0..16 {
                let _ = host.set(&revocation_key(i), bytes, None);
            }
            for i in 0..64 {
                let _ = host.set(&handoff_key(i), bytes, None);
            }
            for i in 0..l.buckets {
                let _ = host.set(&tokenguard::registry::session::session_key(i), bytes, None);
            }
            let reg = Registry::new(&host, l);
            let fp = [bytes.first().copied().unwrap_or(0); 32];
            let _ = reg.lookup(&fp);
            let _ = reg.handoff(&fp, NOW);
            let sessions = reg.sessions();
            let _ = sessions.start(&fp, NOW);
            if sessions.note(&fp, NOW - 5, NOW + 60, NOW).is_ok() {
                assert!(sessions.start(&fp, NOW).is_some_and(|s| s <= NOW - 5));
            }
            let _ = reg.load_revocations(NOW);
            let _ = reg.census(NOW);
            let _ = reg.sweep_step(NOW, 1, 1);
            let rev = Revocation { target: Target::new(Kind::Jti, "j"), revoked_at: NOW, until: NOW + 60 };
            let _ = reg.revoke(rev, NOW);
        }
    }
});
