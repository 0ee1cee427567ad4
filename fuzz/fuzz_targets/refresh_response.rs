//! The token endpoint's answer: two bytes of status (0: none, a failed call) and the body.
//! Invariants: nothing panics; only a 200 is a grant, with a non-empty access token; a
//! failure's cause (it goes into audit lines) is short, plain text. Also the form encoding
//! of a refresh token the client sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenguard::refresh::{build_request, form_encode, parse_response};
use tokenguard_fuzz::header_config;

fuzz_target!(|data: &[u8]| {
    let Some((status, body)) = data.split_first_chunk::<2>() else { return };
    let code = u16::from_be_bytes(*status);
    let status = (code != 0).then_some(code);
    match parse_response(status, body) {
        Ok(grant) => {
            assert_eq!(status, Some(200));
            assert!(!grant.access_token.is_empty());
        }
        Err(failure) => {
            let cause = failure.cause();
            assert!(cause.len() <= 80, "{cause}");
            assert!(cause.chars().all(|c| c.is_ascii_alphanumeric() || "_: ".contains(c)), "{cause}");
        }
    }
    let text = String::from_utf8_lossy(body);
    let encoded = form_encode(&text);
    assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
    if let Some(refresh) = &header_config().refresh {
        let call = build_request(refresh, &text);
        assert!(call.body.ends_with(b"&client_id=gateway") || call.body.ends_with(encoded.as_bytes()));
    }
});
