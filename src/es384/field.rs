//! Arithmetic modulo P-384's p = 2^384 − 2^128 − 2^96 + 2^32 − 1 for the verifier's hot loop:
//! Montgomery form over twelve 32-bit limbs, with `u64` intermediate products.
//!
//! Why not p384's field element: its generic Montgomery code (crypto-bigint) costs ~300 ns
//! per multiplication in V8; this, a CIOS loop (coarsely integrated operand scanning) fixed
//! at 12 limbs, ~140 ns (bench/verify's V8 figures). The table points
//! are still computed by p384 and only converted here (`from_be_bytes`).
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
/// R mod p with R = 2^384: the Montgomery form of 1.
const R: [u32; LIMBS] = [1, 0xffff_ffff, 0xffff_ffff, 0, 1, 0, 0, 0, 0, 0, 0, 0];
/// R² mod p: multiplying by it converts into Montgomery form.
const RR: [u32; LIMBS] = [1, 0xffff_fffe, 0, 2, 0, 0xffff_fffe, 0, 2, 1, 0, 0, 0];

/// An element of GF(p) in Montgomery form (a·R mod p), fully reduced.
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
    pub const ONE: Fe = Fe(R);

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
        if geq(&limbs, &P) {
            return None;
        }
        Some(Fe(limbs) * Fe(RR))
    }

    /// The canonical value, 48 big-endian bytes (out of Montgomery form).
    #[cfg(test)]
    pub fn to_be_bytes(self) -> [u8; 48] {
        let mut one = [0u32; LIMBS];
        one[0] = 1;
        let plain = self * Fe(one);
        let mut out = [0u8; 48];
        for (chunk, limb) in out.rchunks_exact_mut(4).zip(plain.0) {
            chunk.copy_from_slice(&limb.to_be_bytes());
        }
        out
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; LIMBS]
    }

    pub fn square(self) -> Fe {
        self * self
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
    /// a · b · R⁻¹ mod p by CIOS (Koç, Acar & Kaliski 1996): per limb b_i of b, one pass adds
    /// a · b_i and m · p, m chosen to zero the lowest limb, and shifts down a limb. p ≡ −1
    /// mod 2^32, so −p⁻¹ mod 2^32 is 1 and each round's m is the low limb itself. For a, b,
    /// c, d < 2^32, a·b + c + d < 2^64: no `u64` below overflows.
    fn mul(self, rhs: Fe) -> Fe {
        let [a0, a_rest @ ..] = self.0;
        let [p0, p_rest @ ..] = P;
        let mut t = [0u32; LIMBS];
        // The value is t + hi·R, below 2p, so hi is 0 or 1.
        let mut hi = 0u64;
        for bi in rhs.0 {
            let bi = u64::from(bi);
            let [t0, t_rest @ ..] = &mut t;
            let x = u64::from(*t0) + u64::from(a0) * bi;
            let m = x & LOW;
            let y = m + m * u64::from(p0); // low limb zero by the choice of m
            let mut c1 = x >> 32;
            let mut c2 = y >> 32;
            let mut prev = t0;
            for ((tj, aj), pj) in t_rest.iter_mut().zip(a_rest).zip(p_rest) {
                let x = u64::from(*tj) + u64::from(aj) * bi + c1;
                c1 = x >> 32;
                let y = (x & LOW) + m * u64::from(pj) + c2;
                c2 = y >> 32;
                *prev = y as u32; // shifted down one limb
                prev = tj;
            }
            let x = hi + c1 + c2;
            *prev = x as u32;
            hi = x >> 32;
        }
        if hi != 0 || geq(&t, &P) {
            sub_limbs(&mut t, &P);
        }
        Fe(t)
    }
}

impl MulAssign for Fe {
    fn mul_assign(&mut self, rhs: Fe) {
        *self = *self * rhs;
    }
}

#[cfg(test)]
mod tests;
