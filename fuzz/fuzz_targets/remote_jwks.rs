//! A key server's JWK Set (`keys::parse::jwks`), as fetched for a provider allowing every
//! public-key algorithm and HS256. Invariants: nothing panics; a set that parses has at
//! least one key, none of them an HMAC secret (a published set never yields HS*), and no
//! more verifiers than the bound on keys allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenguard::jwks::{Alg, Verifier};
use tokenguard::keys::parse::{jwks, MAX_KEYS};

fuzz_target!(|data: &[u8]| {
    if let Ok((set, _skipped)) = jwks(data, &Alg::ALL) {
        assert!(!set.entries.is_empty(), "a usable set has a key");
        assert!(set.entries.len() <= MAX_KEYS * Alg::ALL.len());
        for e in &set.entries {
            assert!(!matches!(e.verifier, Verifier::HS256(_) | Verifier::HS384(_) | Verifier::HS512(_)));
        }
        assert!(set.kids().len() <= set.entries.len());
    }
});
