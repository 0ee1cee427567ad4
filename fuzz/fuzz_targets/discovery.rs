//! An OpenID discovery document (`keys::parse::discovery`) and a `Cache-Control` header
//! (`keys::parse::freshness`): the first line is the header, the rest the document.
//! Invariants: nothing panics; a document that parses names exactly the configured issuer
//! and yields a `jwks_uri` fit for the `:authority` and `:path` pseudo-headers; freshness is
//! always within 60 s .. 1 day.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenguard::keys::parse::{discovery, freshness};
use tokenguard_fuzz::ISS;

fuzz_target!(|data: &[u8]| {
    let (line, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => data.split_at(i),
        None => (&data[..0], data),
    };
    let header = std::str::from_utf8(line).ok();
    let fresh = freshness(header, 600);
    assert!((60..=86_400).contains(&fresh), "{fresh}");
    if let Ok(url) = discovery(body, ISS) {
        let doc: serde_json::Value = serde_json::from_slice(body).expect("parsed once already");
        assert_eq!(doc["issuer"], ISS);
        assert!(!url.authority.is_empty() && !url.authority.contains('@'));
        assert!(url.path.starts_with('/'));
        assert!(url.authority.bytes().chain(url.path.bytes()).all(|b| b.is_ascii_graphic()));
    }
});
