//! The table, the recoding and the Jacobian formulas against p384's own arithmetic, at the
//! window width ES384 uses; the verifier as a whole is checked in `super::super::tests`.

use super::*;
use crate::es384::field::Fe;
use crate::es384::{PublicKey, BITS, N_BYTES, TABLE_POINTS, W};
use crate::testkit::Rng;
use p384::ecdsa::signature::hazmat::PrehashVerifier as _;
use p384::elliptic_curve::ops::Reduce;
use p384::elliptic_curve::sec1::ToSec1Point as _;
use p384::elliptic_curve::PrimeField as _;
use p384::{FieldBytes, ProjectivePoint, Scalar};

fn bytes48(rng: &mut Rng) -> [u8; 48] {
    let mut b = [0u8; 48];
    for chunk in b.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_be_bytes());
    }
    b
}

fn scalar(rng: &mut Rng) -> Scalar {
    <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(bytes48(rng)))
}

/// Scalars whose digits hit the recoding's edges: 0, 1, n-1, 2^(W-1) in every window (no
/// carry), 2^(W-1)+1 in every window (a carry everywhere), all ones in every window.
fn edge_scalars() -> Vec<Scalar> {
    let every_window = |v: u64| {
        let (mut k, mut shift) = (Scalar::ZERO, Scalar::ONE);
        for _ in 0..BITS / W {
            k += shift * Scalar::from(v);
            shift *= Scalar::from(1u64 << W);
        }
        k
    };
    let half = 1u64 << (W - 1);
    vec![
        Scalar::ZERO,
        Scalar::ONE,
        Scalar::from(2u64),
        -Scalar::ONE,
        -Scalar::from(2u64),
        every_window(half),
        every_window(half + 1),
        every_window((1 << W) - 1),
        <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from([0xff; 48])),
    ]
}

#[test]
fn signed_digits_recompose_the_scalar() {
    let mut rng = Rng(0x384_0001);
    let windows = BITS / W + 1;
    let half = 1i16 << (W - 1);
    for k in edge_scalars().into_iter().chain((0..500).map(|_| scalar(&mut rng))) {
        let digits = signed_digits::<W>(&k.to_repr(), windows);
        assert_eq!(digits.len(), windows);
        let mut sum = Scalar::ZERO;
        for &d in digits.iter().rev() {
            assert!(-half < d && d <= half, "{d}");
            let magnitude = Scalar::from(u64::from(d.unsigned_abs()));
            sum = sum * Scalar::from(1u64 << W) + if d < 0 { -magnitude } else { magnitude };
        }
        assert_eq!(sum, k);
    }
}

#[test]
fn table_multiplication_matches_p384() {
    let mut rng = Rng(0x384_0002);
    let key = ProjectivePoint::GENERATOR * scalar(&mut rng);
    for (which, p) in [("G", ProjectivePoint::GENERATOR), ("key", key)] {
        let table = Table::<W>::new(p, BITS).unwrap();
        assert_eq!(table.len(), TABLE_POINTS);
        // 2080 points of two 48-byte coordinates: the 195 KiB docs/configuration.md gives.
        assert_eq!((TABLE_POINTS, table.bytes()), (2080, 2080 * 96));
        for k in edge_scalars().into_iter().chain((0..40).map(|_| scalar(&mut rng))) {
            let mut got = Jacobian::IDENTITY;
            table.mul_add(&k.to_repr(), &mut got);
            assert_eq!(got.to_p384(), p * k, "point {which}, k = {k:?}");
        }
    }
}

fn affine(p: ProjectivePoint) -> Affine {
    Affine::from_p384(&p.to_affine()).unwrap()
}

/// The mixed addition and doubling against p384's, including the cases the addition hands
/// elsewhere (identity, P + P, P + (-P)) and accumulators with Z != 1.
#[test]
fn jacobian_arithmetic_matches_p384() {
    let mut rng = Rng(0x384_0003);
    for _ in 0..20 {
        let a = ProjectivePoint::GENERATOR * scalar(&mut rng);
        let b = ProjectivePoint::GENERATOR * scalar(&mut rng);
        let (aa, ba) = (affine(a), affine(b));
        let lambda = Fe::from_be_bytes(&[&[0u8; 40][..], &(rng.next() | 1).to_be_bytes()].concat()).unwrap();
        let mut acc = Jacobian::IDENTITY;
        acc.add(&aa, false);
        assert_eq!(acc.to_p384(), a);
        let start = Jacobian::from_affine(&aa).rescaled(lambda);
        for (what, other, negate, want) in [
            ("a + b", &ba, false, a + b),
            ("a - b", &ba, true, a - b),
            ("a + a", &aa, false, a.double()),
            ("a - a", &aa, true, ProjectivePoint::IDENTITY),
        ] {
            let mut sum = start;
            sum.add(other, negate);
            assert_eq!(sum.to_p384(), want, "{what}");
        }
        let mut twice = start;
        twice.double();
        assert_eq!(twice.to_p384(), a.double());
        let mut none = Jacobian::IDENTITY;
        none.double();
        assert!(none.is_identity());
    }
}

/// r + n is a candidate x exactly when it is below p; a verifier that skipped it would refuse
/// a valid signature whose R has such an x. Built here (the key made to fit R) and checked
/// against p384's verifier.
#[test]
fn an_x_above_n_verifies_as_p384_decides() {
    let n = Fe::from_be_bytes(&N_BYTES).unwrap();
    let small_fe = |v: u64| Fe::from_be_bytes(&[&[0u8; 40][..], &v.to_be_bytes()].concat()).unwrap();
    assert_eq!(super::super::x_candidates(&-Scalar::ONE).len(), 1);
    let mut found = 0;
    for small in 1u64..40 {
        let r = Scalar::from(small);
        let cands = super::super::x_candidates(&r);
        assert_eq!(cands, vec![small_fe(small), small_fe(small) + n]);
        // A point R with x = r + n, if that x is on the curve.
        let mut sec1 = vec![2u8];
        sec1.extend_from_slice(&(small_fe(small) + n).to_be_bytes());
        let Ok(big_r) = p384::PublicKey::from_sec1_bytes(&sec1) else { continue };
        // s = 1, so u1 = e and u2 = r: Q = (R - e·G) / r makes e·G + r·Q = R.
        let msg = format!("x above n, {small}");
        let digest = hmac_sha512::sha384::Hash::hash(msg.as_bytes());
        let e = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(digest));
        let q = (big_r.to_projective() - ProjectivePoint::GENERATOR * e) * r.invert().unwrap();
        let q_sec1 = q.to_affine().to_sec1_point(false);
        let ours = PublicKey::from_sec1_bytes(q_sec1.as_bytes()).unwrap();
        let sig = [r.to_repr().as_slice(), Scalar::ONE.to_repr().as_slice()].concat();
        let reference = p384::ecdsa::VerifyingKey::from_sec1_bytes(q_sec1.as_bytes()).unwrap();
        let sig_ref = p384::ecdsa::Signature::from_slice(&sig).unwrap();
        assert!(reference.verify_prehash(&digest, &sig_ref).is_ok());
        assert_eq!(ours.verify(msg.as_bytes(), &sig), Ok(()));
        found += 1;
    }
    assert!(found > 5, "{found}");
}
