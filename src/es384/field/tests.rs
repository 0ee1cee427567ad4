//! `Fe` against p384's field element, through their byte encodings.

use super::*;
use crate::testkit::Rng;
use p384::elliptic_curve::hazmat::FieldArithmetic;
use p384::elliptic_curve::PrimeField as _;

type Theirs = <p384::NistP384 as FieldArithmetic>::FieldElement;

fn theirs(a: Fe) -> Theirs {
    Theirs::from_repr(a.to_be_bytes().into()).unwrap()
}

/// p − k, big-endian.
fn p_minus(k: u8) -> [u8; 48] {
    let mut b = [0xffu8; 48];
    b[31] = 0xfe; // p = ff..ff fe ff ff ff ff 00..00 ff ff ff ff (48 bytes)
    b[36..44].fill(0);
    b[47] -= k;
    b
}

fn edge_values() -> Vec<Fe> {
    let mut one = [0u8; 48];
    one[47] = 1;
    let mut top = [0u8; 48];
    top[0] = 0x80;
    [[0u8; 48], one, p_minus(1), p_minus(2), top, [0x7f; 48]]
        .iter()
        .map(|b| Fe::from_be_bytes(b).unwrap())
        .collect()
}

#[test]
fn encoding_refuses_p_and_above_and_round_trips() {
    let p = "ffffffffffffffffffffffffffffffffffffffffffffffff".to_string()
        + "fffffffffffffffeffffffff0000000000000000ffffffff";
    assert_eq!(p_minus(0).as_slice(), hex(&p));
    assert_eq!(Fe::from_be_bytes(&p_minus(0)), None);
    assert_eq!(Fe::from_be_bytes(&[0xff; 48]), None);
    assert_eq!(Fe::from_be_bytes(&[0; 47]), None);
    assert_eq!(Fe::from_be_bytes(&[0; 49]), None);
    assert_eq!(Fe::from_be_bytes(&[0; 48]), Some(Fe::ZERO));
    let mut one = [0u8; 48];
    one[47] = 1;
    assert_eq!(Fe::from_be_bytes(&one), Some(Fe::ONE));
    let mut rng = Rng(0xfe_384);
    for _ in 0..200 {
        let mut b = [0u8; 48];
        b.iter_mut().for_each(|x| *x = rng.next() as u8);
        b[0] &= 0x7f; // below p
        assert_eq!(Fe::from_be_bytes(&b).unwrap().to_be_bytes(), b);
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn arithmetic_matches_p384() {
    let mut rng = Rng(0xfe_0384);
    // Random values below 2^383 (< p), and random values just below p.
    let random = |rng: &mut Rng| {
        let mut b = [0u8; 48];
        b.iter_mut().for_each(|x| *x = rng.next() as u8);
        b[0] &= 0x7f;
        Fe::from_be_bytes(&b).unwrap()
    };
    let mut values = edge_values();
    values.extend((0..50).map(|_| random(&mut rng)));
    values.extend((0..10).map(|_| Fe::from_be_bytes(&p_minus(1 + rng.below(200) as u8)).unwrap()));
    for &a in &values {
        assert_eq!(theirs(-a), -theirs(a));
        assert_eq!(theirs(a.square()), theirs(a).square());
        assert_eq!(theirs(a.double()), theirs(a).double());
        assert_eq!(a.is_zero(), bool::from(theirs(a).is_zero()));
        for &b in &values {
            assert_eq!(theirs(a + b), theirs(a) + theirs(b));
            assert_eq!(theirs(a - b), theirs(a) - theirs(b));
            assert_eq!(theirs(a * b), theirs(a) * theirs(b));
            let mut c = a;
            c *= b;
            assert_eq!(c, a * b);
        }
    }
}

#[test]
fn reduction_extremes_match_p384() {
    // Limbs all 0 or all 1 bits drive the reduction's columns to their extremes, positive
    // and negative, and the carries out of the top limb both ways.
    let mut rng = Rng(0x0501_14a5);
    let patterned = |rng: &mut Rng| {
        let mut b = [0u8; 48];
        for limb in b.chunks_mut(4) {
            limb.fill(if rng.next() & 1 == 1 { 0xff } else { 0 });
        }
        Fe::from_be_bytes(&b)
    };
    let mut checked = 0;
    while checked < 5000 {
        let (Some(a), Some(b)) = (patterned(&mut rng), patterned(&mut rng)) else { continue };
        assert_eq!(theirs(a * b), theirs(a) * theirs(b));
        assert_eq!(theirs(a.square()), theirs(a).square());
        checked += 1;
    }
}
