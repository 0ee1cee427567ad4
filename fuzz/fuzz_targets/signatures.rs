//! tokenguard's own signature verifiers (RS256, and PS256/PS512 through the EMSA-PSS
//! decoder, in `src/rsa`; ES256 in `src/ecdsa`; ES384 in `src/es384`; EdDSA in `src/eddsa`)
//! on a real token of the demo issuer whose signature the fuzzer edits.
//!
//! Input: a selector byte (bits 0-2: the algorithm; bit 7: replace the signature instead of
//! XOR-ing it), then the edit bytes. Invariants beyond "never panics": the untouched
//! signature verifies; any other signature is refused, except, for ES256 and ES384, the one
//! other valid signature ECDSA always has, (r, n - s).
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use std::sync::OnceLock;
use tokenguard::jwks::{Alg, JwkSet, KeyLookup, KeySet};
use tokenguard_fuzz::{keys, ISS, NOW};

// The first three keep the selector values of the committed seeds.
const ALGS: [Alg; 6] = [Alg::RS256, Alg::ES256, Alg::EdDSA, Alg::PS256, Alg::ES384, Alg::PS512];

/// The P-256 group order n, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc,
    0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// The P-384 group order n, big-endian.
const P384_N: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf, 0x58, 0x1a,
    0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

struct Case {
    keys: KeySet,
    input: String,
    sig: Vec<u8>,
}

fn case(i: usize) -> &'static Case {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    let cases = CASES.get_or_init(|| {
        let set: JwkSet = serde_json::from_value(keys().filter_jwks()).expect("jwks");
        ALGS.iter()
            .map(|alg| {
                let claims = json!({"iss": ISS, "sub": "alice", "iat": NOW, "exp": NOW + 300});
                let token = keys().sign(alg.as_str(), &claims, None).expect("sign");
                let (input, sig) = token.rsplit_once('.').expect("jws");
                Case {
                    keys: KeySet::build(&set, &[*alg], "jwks").expect("keys"),
                    input: input.to_string(),
                    sig: B64.decode(sig).expect("sig"),
                }
            })
            .collect()
    });
    &cases[i % cases.len()]
}

fn verifies(c: &Case, alg: Alg, sig: &[u8]) -> bool {
    let token = format!("{}.{}", c.input, B64.encode(sig));
    let KeyLookup::Found(found) = c.keys.lookup(alg, None) else { panic!("no key") };
    found.iter().any(|k| k.verifier.verify(&token).is_ok())
}

/// (r, n - s) for an ECDSA signature r || s whose halves are as long as `n`.
fn ecdsa_twin(n: &[u8], sig: &[u8]) -> Vec<u8> {
    let w = n.len();
    let mut out = sig[..w].to_vec();
    let s = &sig[w..];
    let mut borrow = 0i16;
    let mut neg = vec![0u8; w];
    for i in (0..w).rev() {
        let d = n[i] as i16 - s[i] as i16 - borrow;
        borrow = i16::from(d < 0);
        neg[i] = (d + if d < 0 { 256 } else { 0 }) as u8;
    }
    out.extend_from_slice(&neg);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, edit)) = data.split_first() else { return };
    let i = usize::from(sel & 7) % ALGS.len();
    let (alg, c) = (ALGS[i], case(i));
    assert!(verifies(c, alg, &c.sig), "the untouched {alg:?} signature must verify");
    let sig: Vec<u8> = if sel & 0x80 != 0 {
        edit.to_vec()
    } else {
        c.sig.iter().enumerate().map(|(j, b)| b ^ edit.get(j).copied().unwrap_or(0)).collect()
    };
    if sig == c.sig {
        return;
    }
    if verifies(c, alg, &sig) {
        let twin = match alg {
            Alg::ES256 => Some(ecdsa_twin(&P256_N, &c.sig)),
            Alg::ES384 => Some(ecdsa_twin(&P384_N, &c.sig)),
            _ => None,
        };
        assert!(twin.is_some_and(|t| sig == t), "{alg:?} accepted an edited signature");
    }
});
