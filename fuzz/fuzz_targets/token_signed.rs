//! Differential: any header and claims bytes (split at the first newline), HMAC-signed with
//! the provider's real secret, so the signature always holds. Then whatever refuses the token
//! must be `token::decode`, with a precise reason, never jwt-simple after the signature
//! check (whose refusal reads "token refused by the signature verifier"): the two must agree
//! about what a token says.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use tokenguard::{token, verify};
use tokenguard_fuzz::{header_config, keys, NOW};

fuzz_target!(|data: &[u8]| {
    let (header, claims) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
    let secret = &keys().hmac;
    let (alg, sig) = if contains(header, b"\"HS384\"") {
        ("HS384", hmac_sha512::sha384::HMAC::mac(input.as_bytes(), secret).to_vec())
    } else if contains(header, b"\"HS512\"") {
        ("HS512", hmac_sha512::HMAC::mac(input.as_bytes(), secret).to_vec())
    } else {
        ("HS256", hmac_sha256::HMAC::mac(input.as_bytes(), secret).to_vec())
    };
    let tok = format!("{input}.{}", B64.encode(sig));
    let signed_as_claimed = token::decode(&tok).is_ok_and(|d| d.header.alg == alg);
    match verify::validate(header_config(), &tok, NOW) {
        Ok(v) => assert_eq!(v.auth.decoded.header.alg, alg),
        Err(r) if signed_as_claimed => assert_ne!(
            r.description, "token refused by the signature verifier",
            "decode accepted what jwt-simple refused: {tok}"
        ),
        Err(_) => {}
    }
});

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
