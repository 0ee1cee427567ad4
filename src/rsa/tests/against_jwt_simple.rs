use super::Rng;
use crate::jwks::{Alg, JwkSet, KeySet, SignatureError, Verifier};
use crate::testkit::{join_signature as join, random_claims, split_signature as split};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::json;

const OTHER_2048: &str = include_str!("../testdata/rsa2048-other.pem");
const RSA_3072: &str = include_str!("../testdata/rsa3072.pem");
const RSA_4096: &str = include_str!("../testdata/rsa4096.pem");

/// One signing key for all three algorithms, with jwt-simple's verifier and ours.
struct Signer {
    pem: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl Signer {
    fn new(pem: &str) -> Signer {
        let c = RS256KeyPair::from_pem(pem).unwrap().public_key().to_components();
        Signer { pem: pem.to_string(), n: c.n, e: c.e }
    }

    fn sign(&self, alg: Alg, claims: JWTClaims<serde_json::Value>) -> String {
        match alg {
            Alg::RS256 => RS256KeyPair::from_pem(&self.pem).unwrap().sign(claims),
            Alg::RS384 => RS384KeyPair::from_pem(&self.pem).unwrap().sign(claims),
            _ => RS512KeyPair::from_pem(&self.pem).unwrap().sign(claims),
        }
        .unwrap()
    }

    fn ours(&self, alg: Alg) -> Verifier {
        let jwk = json!({"keys": [{"kty": "RSA", "n": B64.encode(&self.n), "e": B64.encode(&self.e)}]});
        let set: JwkSet = serde_json::from_value(jwk).unwrap();
        KeySet::build(&set, &[alg], "jwks").unwrap().entries.remove(0).verifier
    }

    /// jwt-simple's verdict, as the reference to cross-check against.
    fn theirs(&self, alg: Alg, token: &str) -> bool {
        let opts = Some(VerificationOptions {
            accept_future: true,
            time_tolerance: Some(Duration::from_secs(0)),
            artificial_time: Some(UnixTimeStamp::from_secs(0)),
            max_token_length: Some(crate::token::MAX_TOKEN_BYTES),
            ..Default::default()
        });
        let (n, e) = (&self.n, &self.e);
        match alg {
            Alg::RS256 => RS256PublicKey::from_components(n, e)
                .unwrap()
                .verify_token::<NoCustomClaims>(token, opts)
                .is_ok(),
            Alg::RS384 => RS384PublicKey::from_components(n, e)
                .unwrap()
                .verify_token::<NoCustomClaims>(token, opts)
                .is_ok(),
            _ => RS512PublicKey::from_components(n, e)
                .unwrap()
                .verify_token::<NoCustomClaims>(token, opts)
                .is_ok(),
        }
    }
}

/// Our verdict and jwt-simple's, which must agree.
fn verdict(signer: &Signer, ours: &Verifier, alg: Alg, token: &str) -> bool {
    let mine = ours.verify(token).is_ok();
    assert_eq!(mine, signer.theirs(alg, token), "{alg:?} disagrees with jwt-simple on {token}");
    mine
}

#[test]
fn accepts_what_jwt_simple_signs_and_refuses_every_mutation_as_it_does() {
    let mut rng = Rng(0x5eed_0000_0000_0003);
    let demo = crate::testkit::keys().rsa_pem.clone();
    let signers = [Signer::new(&demo), Signer::new(RSA_3072), Signer::new(RSA_4096)];
    let stranger = Signer::new(OTHER_2048);
    let mut tokens = 0;
    for signer in &signers {
        for alg in [Alg::RS256, Alg::RS384, Alg::RS512] {
            let ours = signer.ours(alg);
            for _ in 0..4 {
                let token = signer.sign(alg, random_claims(&mut rng));
                assert!(verdict(signer, &ours, alg, &token));
                tokens += 1;
                let (input, sig) = split(&token);
                // Single bit flips of the signature: the first and last bit, and some.
                let bits = 8 * sig.len();
                for bit in [0, 7, bits - 1].into_iter().chain((0..8).map(|_| rng.below(bits))) {
                    let mut bad = sig.clone();
                    bad[bit / 8] ^= 0x80 >> (bit % 8);
                    assert!(!verdict(signer, &ours, alg, &join(&input, &bad)), "bit {bit}");
                }
                // The signing input altered: a byte of the claims changed.
                let (header, claims) = input.split_once('.').unwrap();
                let mut claim_bytes = B64.decode(claims).unwrap();
                let at = rng.below(claim_bytes.len());
                claim_bytes[at] ^= 0x01;
                let altered = format!("{header}.{}", B64.encode(&claim_bytes));
                assert!(!verdict(signer, &ours, alg, &join(&altered, &sig)));
                // Truncated, extended (a zero byte in front keeps the value), shifted.
                for bad in [
                    sig[..sig.len() - 1].to_vec(),
                    [&sig[..], &[0]].concat(),
                    [&[0], &sig[..]].concat(),
                    [&[0], &sig[..sig.len() - 1]].concat(),
                    Vec::new(),
                ] {
                    let t = join(&input, &bad);
                    assert!(!verdict(signer, &ours, alg, &t));
                    assert_eq!(ours.verify(&t), Err(SignatureError::Mismatch));
                }
                // Another key's verifier.
                assert!(!verdict(&stranger, &stranger.ours(alg), alg, &token));
            }
            // The same token under another RS* algorithm's verifier for the same key.
            let token = signer.sign(alg, random_claims(&mut rng));
            for other in [Alg::RS256, Alg::RS384, Alg::RS512] {
                assert_eq!(signer.ours(other).verify(&token).is_ok(), other == alg);
            }
        }
    }
    assert_eq!(tokens, 36);
}

/// Every bit of one signature, and every byte of its signing input.
#[test]
fn every_single_bit_flip_is_refused() {
    let signer = Signer::new(&crate::testkit::keys().rsa_pem);
    let ours = signer.ours(Alg::RS256);
    let mut rng = Rng(99);
    let token = signer.sign(Alg::RS256, random_claims(&mut rng));
    let (input, sig) = split(&token);
    for bit in 0..8 * sig.len() {
        let mut bad = sig.clone();
        bad[bit / 8] ^= 0x80 >> (bit % 8);
        assert_eq!(ours.verify(&join(&input, &bad)), Err(SignatureError::Mismatch), "bit {bit}");
    }
    let key = super::PublicKey::from_be_bytes(&signer.n, &signer.e).unwrap();
    // The signing input: a bit in every byte (the hash does the rest).
    let mut bytes = input.into_bytes();
    for byte in 0..bytes.len() {
        let bit = 1 << (byte % 8);
        bytes[byte] ^= bit;
        assert!(key.verify(super::Hash::Sha256, &bytes, &sig).is_err(), "byte {byte}");
        bytes[byte] ^= bit;
    }
    assert_eq!(key.verify(super::Hash::Sha256, &bytes, &sig), Ok(()));
}

/// Found while replacing jwt-simple: it refused a signature of the wrong length as a bad
/// signature (`invalid_signature`), and the hostile e2e test "RS256 header with an HMAC
/// signature" expects exactly that; and its re-parse bounded the token and header.
#[test]
fn token_shape_outcomes_match_the_jwt_simple_path() {
    let signer = Signer::new(&crate::testkit::keys().rsa_pem);
    let ours = signer.ours(Alg::RS256);
    let mut rng = Rng(7);
    let token = signer.sign(Alg::RS256, random_claims(&mut rng));
    let (input, sig) = split(&token);
    let hmac = hmac_sha256::HMAC::mac(input.as_bytes(), b"k");
    assert_eq!(ours.verify(&join(&input, &hmac)), Err(SignatureError::Mismatch));
    for bad in [
        format!("{input}.{}*", B64.encode(&sig)), // not base64url
        format!("{input}.{}=", B64.encode(&sig)), // padded
        format!("{input}.{}", B64.encode(&sig).replace('-', "+").replace('_', "/")),
        format!("{input}.x.{}", B64.encode(&sig)), // four segments
        format!("x{}", B64.encode(&sig)),          // one segment
        format!("{}.{}", "e".repeat(crate::token::MAX_HEADER_SEGMENT_BYTES + 1), B64.encode(&sig)),
    ] {
        if bad != join(&input, &sig) {
            assert_eq!(ours.verify(&bad), Err(SignatureError::Rejected), "{bad}");
        }
    }
    let long = format!("{input}{}.{}", "A".repeat(crate::token::MAX_TOKEN_BYTES), B64.encode(&sig));
    assert_eq!(ours.verify(&long), Err(SignatureError::Rejected));
}

/// The RS* key policy at configuration time is jwt-simple's, which still applies to PS*:
/// the same JWKs load, or fail, as before.
#[test]
fn key_policy_matches_jwt_simple() {
    let demo = Signer::new(&crate::testkit::keys().rsa_pem);
    let big = Signer::new(RSA_4096);
    let (n, e) = (demo.n.clone(), demo.e.clone());
    let mut short = n[1..].to_vec();
    short[0] |= 0x80;
    let mut even = n.clone();
    *even.last_mut().unwrap() &= 0xfe;
    let mut over = vec![0xff; 4096 / 8 + 1];
    over[0] = 1;
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("2048 bits", n.clone(), e.clone()),
        ("4096 bits", big.n.clone(), big.e.clone()),
        ("leading zero in n", [&[0][..], &n].concat(), e.clone()),
        ("leading zeros in e", n.clone(), vec![0, 0, 1, 0, 1]),
        ("2040 bits", short, e.clone()),
        ("4097 bits", over, e.clone()),
        ("8192 bits", vec![0xff; 1024], e.clone()),
        ("even n", even, e.clone()),
        ("e = 3", n.clone(), vec![3]),
        ("e = 65539", n.clone(), vec![1, 0, 3]),
        ("e = 1", n.clone(), vec![1]),
        ("e empty", n.clone(), vec![]),
        ("n empty", vec![], e.clone()),
    ];
    let mut accepted = Vec::new();
    for (what, n, e) in &cases {
        let jwk = json!({"keys": [{"kty": "RSA", "n": B64.encode(n), "e": B64.encode(e)}]});
        let set: JwkSet = serde_json::from_value(jwk).unwrap();
        let rs = KeySet::build(&set, &[Alg::RS256], "jwks");
        let ps = KeySet::build(&set, &[Alg::PS256], "jwks");
        let jwt_simple = RS256PublicKey::from_components(n, e).is_ok();
        assert_eq!(rs.is_ok(), jwt_simple, "{what}: {:?}", rs.as_ref().err());
        assert_eq!(ps.is_ok(), jwt_simple, "{what}");
        if let Err(m) = rs {
            assert!(m.starts_with("jwks.keys[0]: invalid RSA key for RS256: "), "{what}: {m}");
        } else {
            accepted.push(*what);
        }
    }
    assert_eq!(accepted, ["2048 bits", "4096 bits", "leading zero in n", "leading zeros in e"]);
    // And a key with a leading zero in n verifies the issuer's tokens.
    let padded = Signer { pem: demo.pem.clone(), n: [&[0][..], &n].concat(), e };
    let token = crate::testkit::mint("RS256", json!({}));
    assert_eq!(padded.ours(Alg::RS256).verify(&token), Ok(()));
}
