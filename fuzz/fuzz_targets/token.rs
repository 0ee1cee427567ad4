//! Any bytes as a token: decoding, validation, and the whole per-request gate (header and
//! cookie sources, registry, revocations). Invariants: nothing panics; a refusal is a 401;
//! no log line holds the token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenguard::gate::{self, Request, Worker};
use tokenguard::verdict::Verdict;
use tokenguard::{token, verify};
use tokenguard_fuzz::{cookie_config, header_config, FakeHost, NoMeta, NOW};

fuzz_target!(|data: &[u8]| {
    // The proxy-wasm layer reads header values as bytes and decodes them lossily.
    let text = String::from_utf8_lossy(data);
    let _ = token::decode(&text);
    let _ = verify::validate(header_config(), &text, NOW);
    for (cfg, header) in
        [(header_config(), format!("Bearer {text}")), (cookie_config(), format!("at={text}"))]
    {
        let host = FakeHost::at(NOW);
        let worker = Worker::default();
        let req = Request { credential_header: Some(&header), meta: &NoMeta, verified: None };
        // Twice: the second request meets the registry record the first one left.
        for _ in 0..2 {
            if let Verdict::Deny(d) = gate::check_request(cfg, &host, &worker, &req) {
                assert_eq!(d.status, 401, "{}", d.body);
            }
        }
        // Audit lines hold no '.', so a dotted token found in one was leaked.
        if text.len() >= 16 && text.contains('.') {
            for line in host.lines.borrow().iter() {
                assert!(!line.contains(&*text), "the token reached a log line: {line}");
            }
        }
    }
});
