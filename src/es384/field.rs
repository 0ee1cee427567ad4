//! Arithmetic modulo P-384's p = 2^384 − 2^128 − 2^96 + 2^32 − 1 for the verifier's hot loop:
//! twelve 32-bit limbs, `u64` intermediate products, values kept fully reduced in [0, p).
//!
//! A product is computed in full (144 limb products; a square, 78) and reduced by p's
//! special form (FIPS 186-4 D.2.4, "Solinas" reduction): 2^384 ≡ 2^128 + 2^96 − 2^32 + 1,
//! so the high half folds into the low one with a few additions and subtractions of
//! rearranged limbs, no multiplications. Montgomery multiplication (CIOS) needs 288 limb
//! products for the same result, yet a whole ES384 check only went from ~171 to ~158 µs in
//! V8 (bench/verify): each row's carry chain serialises the products, and that chain, not
//! the product count, is what a multiplication's time is. Summing products' halves apart
//! (no chain) measured slower in V8, the arrays living in linear memory.
//!
//! Why not p384's field element: its generic Montgomery code (crypto-bigint) costs ~300 ns
//! per multiplication in V8 (bench/verify's figures). The table points are still computed by
//! p384 and only converted here (`from_be_bytes`).
//!
//! Only what the verification's point formulas use: +, −, negation, ×, squaring, doubling,
//! the zero test and equality (values are always fully reduced, so equal elements have equal
//! limbs). **Not constant time**: everything the verifier handles is public.

use std::ops::{Add, Mul, MulAssign, Neg, Sub};

const LIMBS: usize = 12;
const LOW: u64 = 0xffff_ffff;

/// p, little-endian limbs.
const P: [u32; LIMBS] = [
    0xffff_ffff,
    0,
    0,
    0xffff_ffff,
    0xffff_fffe,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
];
/// An element of GF(p), fully reduced.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Fe([u32; LIMBS]);

/// a ≥ b.
fn geq(a: &[u32; LIMBS], b: &[u32; LIMBS]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x > y;
        }
    }
    true
}

/// a − b mod 2^384; returns the borrow out.
fn sub_limbs(a: &mut [u32; LIMBS], b: &[u32; LIMBS]) -> bool {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = u64::from(*x).wrapping_sub(u64::from(y)).wrapping_sub(borrow);
        *x = d as u32;
        borrow = (d >> 32) & 1;
    }
    borrow == 1
}

/// a + b mod 2^384; returns the carry out.
fn add_limbs(a: &mut [u32; LIMBS], b: &[u32; LIMBS]) -> bool {
    let mut carry = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let s = u64::from(*x) + u64::from(y) + carry;
        *x = s as u32;
        carry = s >> 32;
    }
    carry == 1
}

impl Fe {
    pub const ZERO: Fe = Fe([0; LIMBS]);
    pub const ONE: Fe = Fe([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

    /// From 48 big-endian bytes (a SEC1 coordinate, or p384's field element bytes); None
    /// unless exactly 48 bytes holding a value below p.
    pub fn from_be_bytes(bytes: &[u8]) -> Option<Fe> {
        if bytes.len() != 4 * LIMBS {
            return None;
        }
        let mut limbs = [0u32; LIMBS];
        for (limb, chunk) in limbs.iter_mut().zip(bytes.rchunks_exact(4)) {
            *limb = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        }
        (!geq(&limbs, &P)).then_some(Fe(limbs))
    }

    /// The value, 48 big-endian bytes.
    #[cfg(test)]
    pub fn to_be_bytes(self) -> [u8; 48] {
        let mut out = [0u8; 48];
        for (chunk, limb) in out.rchunks_exact_mut(4).zip(self.0) {
            chunk.copy_from_slice(&limb.to_be_bytes());
        }
        out
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; LIMBS]
    }

    /// Each cross product once, doubled, plus the diagonal: 78 limb products.
    pub fn square(self) -> Fe {
        let a = self.0;
        let mut w = [0u32; 2 * LIMBS];
        for (i, &ai) in a.iter().enumerate() {
            add_row(&mut w, 2 * i + 1, ai, a.get(i + 1..).unwrap_or_default());
        }
        // Double the cross products and add the squares a_i² at limbs 2i, 2i + 1.
        let mut carry = 0u64;
        for (pair, &ai) in w.chunks_exact_mut(2).zip(a.iter()) {
            if let [w0, w1] = pair {
                let sq = u64::from(ai) * u64::from(ai);
                let lo = (u64::from(*w0) << 1) + (sq & LOW) + carry;
                let hi = (u64::from(*w1) << 1) + (lo >> 32) + (sq >> 32);
                *w0 = lo as u32;
                *w1 = hi as u32;
                carry = hi >> 32;
            }
        }
        reduce(&w)
    }

    pub fn double(self) -> Fe {
        self + self
    }
}

impl Add for Fe {
    type Output = Fe;
    /// a + b < 2p: one conditional subtraction.
    fn add(self, rhs: Fe) -> Fe {
        let mut s = self.0;
        let carry = add_limbs(&mut s, &rhs.0);
        if carry || geq(&s, &P) {
            sub_limbs(&mut s, &P);
        }
        Fe(s)
    }
}

impl Sub for Fe {
    type Output = Fe;
    /// a − b > −p: one conditional addition.
    fn sub(self, rhs: Fe) -> Fe {
        let mut d = self.0;
        if sub_limbs(&mut d, &rhs.0) {
            add_limbs(&mut d, &P);
        }
        Fe(d)
    }
}

impl Neg for Fe {
    type Output = Fe;
    fn neg(self) -> Fe {
        Fe::ZERO - self
    }
}

impl Mul for Fe {
    type Output = Fe;
    /// The full 768-bit product by rows (operand scanning), then `reduce`.
    fn mul(self, rhs: Fe) -> Fe {
        let mut w = [0u32; 2 * LIMBS];
        for (i, &ai) in self.0.iter().enumerate() {
            add_row(&mut w, i, ai, &rhs.0);
        }
        reduce(&w)
    }
}

/// One row of a product: w += x · ys · 2^(32·at), the row's carry written to the limb just
/// past it, which no earlier row reached (rows go from the lowest up). For x, y, w, c < 2^32,
/// x·y + w + c < 2^64: no `u64` here overflows. Always inlined: with the caller's row length
/// known the loop unrolls; called, it made an ES384 check ~15% slower in V8.
#[inline(always)]
fn add_row(w: &mut [u32; 2 * LIMBS], at: usize, x: u32, ys: &[u32]) {
    let x = u64::from(x);
    let mut carry = 0u64;
    for (wk, &y) in w.iter_mut().skip(at).zip(ys) {
        let t = u64::from(*wk) + x * u64::from(y) + carry;
        *wk = t as u32;
        carry = t >> 32;
    }
    if let Some(wk) = w.get_mut(at + ys.len()) {
        *wk = carry as u32;
    }
}

/// c mod p for c < 2^768 (little-endian limbs c0..c23), by FIPS 186-4 D.2.4: with 2^384 ≡
/// 2^128 + 2^96 − 2^32 + 1, c ≡ T + 2·S1 + S2 + S3 + S4 + S5 + S6 − D1 − D2 − D3, each term
/// a 384-bit arrangement of c's limbs. Summed limb by limb in `i64` (each column is a few
/// terms below 2^32), carried, and whatever lands above 2^384 folded back the same way.
fn reduce(c: &[u32; 2 * LIMBS]) -> Fe {
    let l = |i: usize| i64::from(c.get(i).copied().unwrap_or(0));
    let (c12, c13, c14, c15, c16, c17) = (l(12), l(13), l(14), l(15), l(16), l(17));
    let (c18, c19, c20, c21, c22, c23) = (l(18), l(19), l(20), l(21), l(22), l(23));
    let columns = [
        l(0) + c12 + c21 + c20 - c23,
        l(1) + c13 + c22 + c23 - c12 - c20,
        l(2) + c14 + c23 - c13 - c21,
        l(3) + c15 + c12 + c20 + c21 - c14 - c22 - c23,
        l(4) + 2 * c21 + c16 + c13 + c12 + c20 + c22 - c15 - 2 * c23,
        l(5) + 2 * c22 + c17 + c14 + c13 + c21 + c23 - c16,
        l(6) + 2 * c23 + c18 + c15 + c14 + c22 - c17,
        l(7) + c19 + c16 + c15 + c23 - c18,
        l(8) + c20 + c17 + c16 - c19,
        l(9) + c21 + c18 + c17 - c20,
        l(10) + c22 + c19 + c18 - c21,
        l(11) + c23 + c20 + c19 - c22,
    ];
    let mut limbs = [0u32; LIMBS];
    let mut top = carry_into(&columns, &mut limbs);
    // The carry out is small (|top| < 2^4); folding it moves it at most twice more.
    while top != 0 {
        let mut columns = limbs.map(i64::from);
        let [c0, c1, _, c3, c4, ..] = &mut columns;
        *c0 += top;
        *c1 -= top;
        *c3 += top;
        *c4 += top;
        top = carry_into(&columns, &mut limbs);
    }
    if geq(&limbs, &P) {
        sub_limbs(&mut limbs, &P);
    }
    Fe(limbs)
}

/// Carries signed column sums into limbs; returns the signed carry out of the top limb.
fn carry_into(columns: &[i64; LIMBS], limbs: &mut [u32; LIMBS]) -> i64 {
    let mut carry = 0i64;
    for (limb, &col) in limbs.iter_mut().zip(columns) {
        let t = col + carry;
        *limb = t as u32;
        carry = t >> 32;
    }
    carry
}

impl MulAssign for Fe {
    fn mul_assign(&mut self, rhs: Fe) {
        *self = *self * rhs;
    }
}

#[cfg(test)]
mod tests;
