//! Modular arithmetic for the RSA public-key operation: Montgomery multiplication over
//! 32-bit limbs.
//!
//! Limbs are `u32`, little-endian (limb 0 is least significant), with `u64` intermediate
//! products: 32-bit Wasm has a native 64-bit multiply but no 64x64->128 one, so 32-bit
//! limbs are what the target multiplies fastest (`num-bigint-dig`'s 64-bit digits are
//! emulated through `u128` there, which is what made jwt-simple's RSA slow).
//!
//! Every bound that keeps a `u64` from overflowing is the same one: for a, b, c, d < 2^32,
//! a*b + c + d <= (2^32-1)^2 + 2(2^32-1) = 2^64 - 1.
//!
//! **Not constant time, on purpose.** Only the public-key operation (signature
//! verification) lives here: the modulus, the exponent, the signature and the message are
//! all public, so there is nothing for timing to leak. Do not reuse this code with secrets.

/// An odd modulus n with what Montgomery arithmetic modulo n needs, computed once per key.
/// R = 2^(32 * limbs).
#[derive(Clone, PartialEq, Eq)]
pub struct Modulus {
    /// n, little-endian limbs; the most significant limb is non-zero.
    n: Vec<u32>,
    /// -n^-1 mod 2^32.
    n0: u32,
    /// R^2 mod n.
    rr: Vec<u32>,
}

impl std::fmt::Debug for Modulus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Modulus({} bits)", bit_length(&self.n))
    }
}

/// Little-endian limbs from big-endian bytes, `limbs` of them (the caller guarantees the
/// value fits; excess high limbs are zero, excess bytes are dropped).
pub fn limbs_from_be(bytes: &[u8], limbs: usize) -> Vec<u32> {
    let mut out: Vec<u32> = bytes
        .rchunks(4)
        .take(limbs)
        .map(|chunk| chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
        .collect();
    out.resize(limbs, 0);
    out
}

/// The `len` least significant bytes of a little-endian limb vector, big-endian. `None` if
/// the value does not fit in `len` bytes.
pub fn be_from_limbs(limbs: &[u32], len: usize) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = limbs.iter().rev().flat_map(|l| l.to_be_bytes()).collect();
    let excess = out.len().checked_sub(len)?;
    if out.iter().take(excess).any(|&b| b != 0) {
        return None;
    }
    out.drain(..excess);
    Some(out)
}

/// Number of significant bits of a little-endian limb vector.
pub fn bit_length(x: &[u32]) -> usize {
    let top = x.iter().rposition(|&l| l != 0);
    match top.and_then(|i| x.get(i).map(|&l| (i, l))) {
        None => 0,
        Some((i, l)) => i * 32 + (32 - l.leading_zeros() as usize),
    }
}

/// a < b, both of the same length.
pub fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

const LOW: u64 = 0xffff_ffff;

/// a -= b over a.len() limbs; returns the borrow out.
fn sub_in_place(a: &mut [u32], b: &[u32]) -> bool {
    let mut borrow = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (d1, b1) = x.overflowing_sub(y);
        let (d2, b2) = d1.overflowing_sub(u32::from(borrow));
        *x = d2;
        borrow = b1 || b2;
    }
    borrow
}

/// -n0^-1 mod 2^32 for odd n0, by Newton's iteration: inv = n0 is right to 3 bits
/// (n0 * n0 = 1 mod 8) and each step doubles that, 3 -> 6 -> 12 -> 24 -> 48.
fn neg_inverse(n0: u32) -> u32 {
    let mut inv = n0;
    for _ in 0..4 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
    }
    inv.wrapping_neg()
}

impl Modulus {
    /// `n` as little-endian limbs without high zero limbs. Refuses an even or zero modulus.
    pub fn new(mut n: Vec<u32>) -> Option<Modulus> {
        while n.last() == Some(&0) {
            n.pop();
        }
        let n_low = *n.first()?;
        if n_low & 1 == 0 {
            return None;
        }
        let n0 = neg_inverse(n_low);
        let mut m = Modulus { n, n0, rr: Vec::new() };
        m.rr = m.r_squared();
        Some(m)
    }

    pub fn limbs(&self) -> usize {
        self.n.len()
    }

    pub fn n(&self) -> &[u32] {
        &self.n
    }

    /// R^2 mod n: R mod n by doubling from 2^(bits-1), then the Montgomery form of 2^(32s)
    /// (which is R * 2^(32s) = R^2) by square-and-double on the exponent 32s.
    fn r_squared(&self) -> Vec<u32> {
        let s = self.n.len();
        let bits = bit_length(&self.n);
        // 2^(bits-1) < n because n is odd and has `bits` bits.
        let mut acc = vec![0u32; s];
        if let Some(top) = acc.get_mut((bits - 1) / 32) {
            *top = 1 << ((bits - 1) % 32);
        }
        for _ in (bits - 1)..(32 * s) {
            self.double_mod(&mut acc);
        }
        // acc = R mod n, the Montgomery form of 1. Raise 2 to the power 32s in that form.
        let e = 32 * s;
        let mut t = vec![0u32; s];
        for i in (0..usize::BITS - e.leading_zeros()).rev() {
            self.mul(&acc, &acc, &mut t);
            std::mem::swap(&mut acc, &mut t);
            if (e >> i) & 1 == 1 {
                self.double_mod(&mut acc);
            }
        }
        acc
    }

    /// x = 2x mod n, for x < n.
    fn double_mod(&self, x: &mut [u32]) {
        let mut carry = 0u32;
        for l in x.iter_mut() {
            let top = *l >> 31;
            *l = (*l << 1) | carry;
            carry = top;
        }
        if carry == 1 || !less_than(x, &self.n) {
            sub_in_place(x, &self.n);
        }
    }

    /// out = a * b * R^-1 mod n, fully reduced, for a, b < n of s limbs each (`out`: s limbs,
    /// a buffer of its own).
    ///
    /// Coarsely integrated operand scanning (CIOS, Koç, Acar & Kaliski 1996) with the
    /// multiplication and reduction loops fused: per limb b_i of b, one pass adds a * b_i and
    /// m * n, m chosen to zero the lowest limb, and shifts down one limb. The two carry
    /// chains are independent, which the CPU overlaps. Squaring goes through here too: a
    /// dedicated squaring (a separate half-size product then reduction, or product scanning)
    /// does fewer multiplications but measured no faster in V8, whose cost is in the memory
    /// traffic and carries as much as in the multiplications.
    pub fn mul(&self, a: &[u32], b: &[u32], out: &mut [u32]) {
        out.fill(0);
        // The value is out + hi * R; it stays below 2n, so hi is 0 or 1.
        let mut hi = 0u64;
        let (Some((&a0, a_rest)), Some((&n0, n_rest))) = (a.split_first(), self.n.split_first()) else {
            return;
        };
        for &bi in b {
            let bi = u64::from(bi);
            let Some((t0, t_rest)) = out.split_first_mut() else { return };
            let x = u64::from(*t0) + u64::from(a0) * bi;
            let m = u64::from((x as u32).wrapping_mul(self.n0));
            let y = (x & LOW) + m * u64::from(n0); // low limb is zero by the choice of m
            let mut c1 = x >> 32;
            let mut c2 = y >> 32;
            let mut prev = t0;
            for ((tj, &aj), &nj) in t_rest.iter_mut().zip(a_rest).zip(n_rest) {
                let x = u64::from(*tj) + u64::from(aj) * bi + c1;
                c1 = x >> 32;
                let y = (x & LOW) + m * u64::from(nj) + c2;
                c2 = y >> 32;
                *prev = y as u32; // shifted down one limb
                prev = tj;
            }
            let x = hi + c1 + c2;
            *prev = x as u32;
            hi = x >> 32;
        }
        if hi != 0 || !less_than(out, &self.n) {
            sub_in_place(out, &self.n);
        }
    }

    /// x^e mod n for x < n (s limbs) and odd e >= 3: left-to-right square-and-multiply in
    /// Montgomery form. The last multiplication takes x in ordinary form, which also
    /// converts the result out of Montgomery form: for e = 65537 that is one multiplication
    /// into Montgomery form, 16 squarings and one multiplication.
    pub fn pow_odd(&self, x: &[u32], e: u64) -> Vec<u32> {
        let s = self.n.len();
        let mut x_mont = vec![0u32; s];
        self.mul(x, &self.rr, &mut x_mont);
        let mut acc = x_mont.clone();
        let mut t = vec![0u32; s];
        let top = 63 - e.leading_zeros();
        for i in (1..top).rev() {
            self.mul(&acc, &acc, &mut t);
            std::mem::swap(&mut acc, &mut t);
            if (e >> i) & 1 == 1 {
                self.mul(&acc, &x_mont, &mut t);
                std::mem::swap(&mut acc, &mut t);
            }
        }
        // Bit 0 is set (e is odd).
        self.mul(&acc, &acc, &mut t);
        self.mul(&t, x, &mut acc);
        acc
    }

    /// x^e mod n for any e (big-endian bytes), plain square-and-multiply in Montgomery form.
    /// Test-only: the private-key operation of the test signers (`super::testsign`); `e` is
    /// then a secret, which this code (variable time) must never see outside tests.
    #[cfg(test)]
    pub fn pow_be(&self, x: &[u32], e: &[u8]) -> Vec<u32> {
        let s = self.n.len();
        let mut one = vec![0u32; s];
        one[0] = 1;
        let mut x_mont = vec![0u32; s];
        self.mul(x, &self.rr, &mut x_mont);
        let mut acc = vec![0u32; s];
        self.mul(&one, &self.rr, &mut acc); // R mod n: the Montgomery form of 1
        let mut t = vec![0u32; s];
        for byte in e {
            for i in (0..8).rev() {
                self.mul(&acc, &acc, &mut t);
                std::mem::swap(&mut acc, &mut t);
                if (byte >> i) & 1 == 1 {
                    self.mul(&acc, &x_mont, &mut t);
                    std::mem::swap(&mut acc, &mut t);
                }
            }
        }
        self.mul(&acc, &one, &mut t); // out of Montgomery form
        t
    }
}
