use super::Rng;
use crate::jwks::{Alg, JwkSet, KeySet, SignatureError, Verifier};
use crate::testkit::{join_signature as join, random_claims, split_signature as split};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jwt_simple::prelude::*;
use p256::ecdsa::signature::Verifier as _;
use p256::elliptic_curve::PrimeField as _;
use serde_json::json;

/// n, the group order, big-endian.
const N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc,
    0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

struct Signer {
    pair: ES256KeyPair,
    ours: Verifier,
    reference: p256::ecdsa::VerifyingKey,
}

impl Signer {
    fn new(pair: ES256KeyPair) -> Signer {
        let sec1 = pair.public_key().public_key().to_bytes_uncompressed();
        let (x, y) = sec1[1..].split_at(32);
        let jwk = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": B64.encode(x), "y": B64.encode(y)}]});
        let set: JwkSet = serde_json::from_value(jwk).unwrap();
        let ours = KeySet::build(&set, &[Alg::ES256], "jwks").unwrap().entries.remove(0).verifier;
        let reference = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
        Signer { pair, ours, reference }
    }

    /// Our verdict, which must be p256's on the raw signature and jwt-simple's on the
    /// token (the reference to cross-check against).
    fn verdict(&self, token: &str) -> bool {
        let mine = self.ours.verify(token).is_ok();
        let opts = Some(VerificationOptions {
            accept_future: true,
            time_tolerance: Some(Duration::from_secs(0)),
            artificial_time: Some(UnixTimeStamp::from_secs(0)),
            max_token_length: Some(crate::token::MAX_TOKEN_BYTES),
            ..Default::default()
        });
        let jwt_simple = self.pair.public_key().verify_token::<NoCustomClaims>(token, opts).is_ok();
        assert_eq!(mine, jwt_simple, "disagrees with jwt-simple on {token}");
        if let Some((input, sig)) = token.rsplit_once('.') {
            if let Ok(sig) = B64.decode(sig) {
                let p256 = p256::ecdsa::Signature::from_slice(&sig)
                    .is_ok_and(|sig| self.reference.verify(input.as_bytes(), &sig).is_ok());
                assert_eq!(mine, p256, "disagrees with p256 on {token}");
            }
        }
        mine
    }
}

/// The demo issuer's P-256 key pair (not `Clone`).
fn demo_pair() -> ES256KeyPair {
    ES256KeyPair::from_bytes(&crate::testkit::keys().ec256.to_bytes()).unwrap()
}

/// `a - b` on 32-byte big-endian integers (a >= b).
fn sub(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = d.rem_euclid(256) as u8;
    }
    out
}

/// Signatures built from a valid (r, s): the range edges, swaps and malleability.
fn edge_signatures(r: &[u8], s: &[u8]) -> Vec<(&'static str, Vec<u8>, bool)> {
    let zero = [0u8; 32];
    let one = {
        let mut b = [0u8; 32];
        b[31] = 1;
        b
    };
    let n_minus_1 = sub(&N, &one);
    let n_minus_s = sub(&N, s);
    vec![
        ("r || s", [r, s].concat(), true),
        // ECDSA malleability: (r, n - s) is valid too; p256 (no low-S rule for P-256) and
        // jwt-simple accept it, so we do.
        ("r || n-s", [r, &n_minus_s[..]].concat(), true),
        ("s || r", [s, r].concat(), false),
        ("0 || s", [&zero[..], s].concat(), false),
        ("r || 0", [r, &zero[..]].concat(), false),
        ("0 || 0", [zero, zero].concat(), false),
        ("n || s", [&N[..], s].concat(), false),
        ("r || n", [r, &N[..]].concat(), false),
        ("n-1 || s", [&n_minus_1[..], s].concat(), false),
        ("r || n-1", [r, &n_minus_1[..]].concat(), false),
        ("1 || 1", [one, one].concat(), false),
        ("ff.. || s", [&[0xff; 32][..], s].concat(), false),
        ("r || ff..", [r, &[0xff; 32][..]].concat(), false),
        ("r || r", [r, r].concat(), false),
    ]
}

#[test]
fn accepts_what_jwt_simple_signs_and_refuses_every_mutation_as_p256_does() {
    let mut rng = Rng(0x5eed_0000_0000_0256);
    let mut signers = vec![Signer::new(demo_pair())];
    signers.extend((0..3).map(|_| Signer::new(ES256KeyPair::generate())));
    let stranger = Signer::new(ES256KeyPair::generate());
    let mut tokens = 0;
    for signer in &signers {
        for _ in 0..8 {
            let token = signer.pair.sign(random_claims(&mut rng)).unwrap();
            assert!(signer.verdict(&token));
            tokens += 1;
            let (input, sig) = split(&token);
            assert_eq!(sig.len(), 64);
            // Single bit flips of the signature: the first and last bit, and some.
            for bit in [0, 7, 255, 256, 511].into_iter().chain((0..8).map(|_| rng.below(512))) {
                let mut bad = sig.clone();
                bad[bit / 8] ^= 0x80 >> (bit % 8);
                assert!(!signer.verdict(&join(&input, &bad)), "bit {bit}");
            }
            // The signing input altered: a byte of the claims changed.
            let (header, claims) = input.split_once('.').unwrap();
            let mut claim_bytes = B64.decode(claims).unwrap();
            let at = rng.below(claim_bytes.len());
            claim_bytes[at] ^= 0x01;
            let altered = format!("{header}.{}", B64.encode(&claim_bytes));
            assert!(!signer.verdict(&join(&altered, &sig)));
            // Range edges, swaps, malleability.
            let (r, s) = sig.split_at(32);
            for (what, bad, want) in edge_signatures(r, s) {
                assert_eq!(signer.verdict(&join(&input, &bad)), want, "{what}");
            }
            // Wrong lengths: a mismatch, as jwt-simple had it.
            for bad in [
                sig[..63].to_vec(),
                [&sig[..], &[0]].concat(),
                [&[0], &sig[..]].concat(),
                [&[0], &sig[..63]].concat(),
                sig[..32].to_vec(),
                Vec::new(),
            ] {
                let t = join(&input, &bad);
                assert!(!signer.verdict(&t));
                assert_eq!(signer.ours.verify(&t), Err(SignatureError::Mismatch));
            }
            // Another key.
            assert!(!stranger.verdict(&token));
        }
    }
    assert_eq!(tokens, 32);
}

/// Every bit of one signature, and every byte of its signing input.
#[test]
fn every_single_bit_flip_is_refused() {
    let signer = Signer::new(demo_pair());
    let mut rng = Rng(99);
    let token = signer.pair.sign(random_claims(&mut rng)).unwrap();
    let (input, sig) = split(&token);
    for bit in 0..8 * sig.len() {
        let mut bad = sig.clone();
        bad[bit / 8] ^= 0x80 >> (bit % 8);
        let t = join(&input, &bad);
        assert_eq!(signer.ours.verify(&t), Err(SignatureError::Mismatch), "bit {bit}");
        let theirs = p256::ecdsa::Signature::from_slice(&bad)
            .is_ok_and(|s| signer.reference.verify(input.as_bytes(), &s).is_ok());
        assert!(!theirs, "bit {bit}");
    }
    let sec1 = signer.pair.public_key().public_key().to_bytes_uncompressed();
    let key = super::PublicKey::new(&p256::PublicKey::from_sec1_bytes(&sec1).unwrap()).unwrap();
    let mut bytes = input.into_bytes();
    for byte in 0..bytes.len() {
        let bit = 1 << (byte % 8);
        bytes[byte] ^= bit;
        assert!(key.verify(&bytes, &sig).is_err(), "byte {byte}");
        bytes[byte] ^= bit;
    }
    assert_eq!(key.verify(&bytes, &sig), Ok(()));
}

/// Signatures with r = x(R) mod n where the hash is chosen freely: p256's verdict on
/// random digests and random signatures (mostly refusals, all must agree), and on
/// valid signatures over random messages signed with p256 itself.
#[test]
fn random_messages_and_signatures_agree_with_p256() {
    let mut rng = Rng(1234);
    let signing = p256::ecdsa::SigningKey::from_slice(&rng.bytes32()).unwrap();
    let reference = *signing.verifying_key();
    let point = p256::PublicKey::from_affine(*reference.as_affine()).unwrap();
    let ours = super::PublicKey::new(&point).unwrap();
    for i in 0..64 {
        let msg: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
        let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&signing, &msg);
        let raw = sig.to_bytes();
        assert_eq!(ours.verify(&msg, &raw), Ok(()), "message {i}");
        let (r, s) = sig.split_scalars();
        let high = p256::ecdsa::Signature::from_scalars(r.to_repr(), (-*s).to_repr()).unwrap();
        assert_eq!(ours.verify(&msg, &high.to_bytes()), Ok(()), "high s {i}");
        assert!(reference.verify(&msg, &high).is_ok());
        let random = [rng.bytes32(), rng.bytes32()].concat();
        let theirs =
            p256::ecdsa::Signature::from_slice(&random).is_ok_and(|s| reference.verify(&msg, &s).is_ok());
        assert_eq!(ours.verify(&msg, &random).is_ok(), theirs);
    }
}

/// The pre-checks jwt-simple's re-parse made, kept as for RS*.
#[test]
fn token_shape_outcomes_match_the_jwt_simple_path() {
    let signer = Signer::new(demo_pair());
    let mut rng = Rng(7);
    let token = signer.pair.sign(random_claims(&mut rng)).unwrap();
    let (input, sig) = split(&token);
    let hmac = hmac_sha256::HMAC::mac(input.as_bytes(), b"k");
    assert_eq!(signer.ours.verify(&join(&input, &hmac)), Err(SignatureError::Mismatch));
    assert!(!signer.verdict(&join(&input, &hmac)));
    for bad in [
        format!("{input}.{}*", B64.encode(&sig)), // not base64url
        format!("{input}.{}=", B64.encode(&sig)), // padded
        format!("{input}.{}", B64.encode(&sig).replace('-', "+").replace('_', "/")),
        format!("{input}.x.{}", B64.encode(&sig)), // four segments
        format!("x{}", B64.encode(&sig)),          // one segment
        format!("{}.{}", "e".repeat(crate::token::MAX_HEADER_SEGMENT_BYTES + 1), B64.encode(&sig)),
    ] {
        if bad != join(&input, &sig) {
            assert_eq!(signer.ours.verify(&bad), Err(SignatureError::Rejected), "{bad}");
            assert!(!signer.verdict(&bad));
        }
    }
    let long = format!("{input}{}.{}", "A".repeat(crate::token::MAX_TOKEN_BYTES), B64.encode(&sig));
    assert_eq!(signer.ours.verify(&long), Err(SignatureError::Rejected));
}

/// The same EC JWKs load, or fail with the same message, as with jwt-simple alone.
#[test]
fn key_loading_matches_jwt_simple() {
    let sec1 = crate::testkit::keys().ec256.public_key().public_key().to_bytes_uncompressed();
    let (x, y) = (sec1[1..33].to_vec(), sec1[33..].to_vec());
    let mut off_curve = y.clone();
    off_curve[31] ^= 1;
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("the demo key", x.clone(), y.clone()),
        ("off the curve", x.clone(), off_curve),
        ("x too short", x[1..].to_vec(), y.clone()),
        ("y too long", x.clone(), [&y[..], &[0]].concat()),
        ("zero point", vec![0; 32], vec![0; 32]),
        ("x = p", vec![0xff; 32], y.clone()),
    ];
    let mut loaded = Vec::new();
    for (what, x, y) in &cases {
        let jwk = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": B64.encode(x), "y": B64.encode(y)}]});
        let set: JwkSet = serde_json::from_value(jwk).unwrap();
        let ours = KeySet::build(&set, &[Alg::ES256], "jwks");
        let jwt_simple = ES256PublicKey::from_bytes(&[&[4][..], x, y].concat()).is_ok();
        assert_eq!(ours.is_ok(), jwt_simple, "{what}");
        if let Err(m) = ours {
            assert!(m.starts_with("jwks.keys[0]: invalid EC key for ES256: "), "{what}: {m}");
        } else {
            loaded.push(*what);
        }
    }
    assert_eq!(loaded, ["the demo key"]);
}
