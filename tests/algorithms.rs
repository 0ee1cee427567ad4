//! Every signature algorithm through the built filter in a real Envoy (two workers): a token
//! the issuer signs is accepted on first sight and forwarded; the same token with one bit of
//! its signature flipped is refused as `invalid_signature` and never reaches the upstream.
//! The verifiers' own tests (`src/mac`, `src/rsa`, `src/ecdsa`, `src/es384`, `src/eddsa`)
//! hold the cryptography to Wycheproof and to reference crates; this holds the shipped
//! .wasm to them, PS* and ES384 included.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};

use tokenguard_harness::issuer::MintRequest;
use tokenguard_harness::keys::ALGORITHMS;
use tokenguard_harness::stack::Stack;

/// The token with bit `bit` of its decoded signature flipped (counted from the first byte's
/// most significant bit).
fn flip_signature_bit(token: &str, bit: usize) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig = B64.decode(sig).unwrap();
    sig[bit / 8] ^= 0x80 >> (bit % 8);
    format!("{input}.{}", B64.encode(sig))
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn every_algorithm_verifies_on_first_sight_and_a_flipped_signature_bit_is_refused() {
    let s = Stack::start(json!({}));
    for alg in ALGORITHMS {
        let token = s.mint(MintRequest::new(alg, 300));
        let sig_bits = 8 * B64.decode(token.rsplit_once('.').unwrap().1).unwrap().len();
        // A bit in the first byte, one in the middle, one in the last byte.
        for bit in [6, sig_bits / 2 + 3, sig_bits - 2] {
            let r = s.get("/", Some(&flip_signature_bit(&token, bit)));
            assert_eq!(
                (r.status, error_code(&r.body)),
                (401, "invalid_signature".into()),
                "{alg}, bit {bit}"
            );
        }
        // Refusing the altered copies stored nothing: the token itself is still first seen.
        let r = s.get("/", Some(&token));
        assert_eq!(r.status, 200, "{alg}: {}", r.body);
    }
    assert_eq!(s.upstream.received().len(), ALGORITHMS.len());
}
