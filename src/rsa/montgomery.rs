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

/// -n0^-1 mod 2^32 for odd n0, by Newton's iteration (each step doubles the correct bits:
/// 1 -> 2 -> 4 -> 8 -> 16 -> 32 starting from inv = n0, which is right to 3 bits).
fn neg_inverse(n0: u32) -> u32 {
    let mut inv = n0; // n0 * n0 = 1 mod 8 for odd n0
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
        let mut x = vec![0u32; s];
        if let Some(top) = x.get_mut((bits - 1) / 32) {
            *top = 1 << ((bits - 1) % 32);
        }
        for _ in (bits - 1)..(32 * s) {
            self.double_mod(&mut x);
        }
        // x = R mod n, the Montgomery form of 1. Raise 2 to the power 32s in that form.
        let e = 32 * s;
        let mut acc = x.clone();
        let mut t = vec![0u32; 2 * s + 1];
        for i in (0..usize::BITS - e.leading_zeros()).rev() {
            let sq = self.sqr(&acc, &mut t);
            acc = sq;
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

    /// Reduces t (2s+1 limbs, holding a value < n * R) to t * R^-1 mod n, fully reduced.
    /// Separated operand scanning: one row of m * n per limb, the carry out of each row
    /// kept apart (`top`) so no row has to ripple it further.
    fn reduce(&self, t: &mut [u32]) -> Vec<u32> {
        let s = self.n.len();
        let mut top = 0u64;
        for i in 0..s {
            let Some(row) = t.get_mut(i..=i + s) else { break };
            let Some((last, row)) = row.split_last_mut() else { break };
            let m = u64::from(row.first().map_or(0, |&l| l.wrapping_mul(self.n0)));
            let mut c = 0u64;
            for (tj, &nj) in row.iter_mut().zip(&self.n) {
                let y = u64::from(*tj) + m * u64::from(nj) + c;
                *tj = y as u32;
                c = y >> 32;
            }
            let x = u64::from(*last) + c + top;
            *last = x as u32;
            top = x >> 32;
        }
        let mut out: Vec<u32> = t.iter().skip(s).take(s).copied().collect();
        // out + top * R < 2n: one subtraction at most.
        if top != 0 || !less_than(&out, &self.n) {
            sub_in_place(&mut out, &self.n);
        }
        out
    }

    /// a * b * R^-1 mod n for a, b < n (s limbs each), fully reduced. `t` is scratch of
    /// 2s+1 limbs.
    pub fn mul(&self, a: &[u32], b: &[u32], t: &mut [u32]) -> Vec<u32> {
        t.fill(0);
        for (i, &bi) in b.iter().enumerate() {
            let Some(row) = t.get_mut(i..) else { break };
            let mut row = row.iter_mut();
            let bi = u64::from(bi);
            let mut c = 0u64;
            // `a` first: zip stops on it without drawing the extra element from `row`.
            for (&aj, tj) in a.iter().zip(row.by_ref()) {
                let x = u64::from(*tj) + u64::from(aj) * bi + c;
                *tj = x as u32;
                c = x >> 32;
            }
            // t[i + s] is still zero: earlier rows reached t[i - 1 + s] at most.
            if let Some(next) = row.next() {
                *next = c as u32;
            }
        }
        self.reduce(t)
    }

    /// a^2 * R^-1 mod n for a < n, fully reduced: the cross products a_i a_j (i < j) once,
    /// doubled, plus the squares a_i^2; about 3/4 of `mul`'s work. `t`: 2s+1 limbs.
    pub fn sqr(&self, a: &[u32], t: &mut [u32]) -> Vec<u32> {
        let s = a.len();
        t.fill(0);
        for (i, &ai) in a.iter().enumerate() {
            let (Some(row), Some(rest)) = (t.get_mut(2 * i + 1..=i + s), a.get(i + 1..)) else {
                continue;
            };
            let Some((last, row)) = row.split_last_mut() else { continue };
            let ai = u64::from(ai);
            let mut c = 0u64;
            for (tj, &aj) in row.iter_mut().zip(rest) {
                let x = u64::from(*tj) + ai * u64::from(aj) + c;
                *tj = x as u32;
                c = x >> 32;
            }
            // t[i + s] is still zero: earlier rows reached t[i - 1 + s] at most.
            *last = c as u32;
        }
        // Double the cross products and add the diagonal, two limbs per step.
        let mut shift_in = 0u32;
        let mut c = 0u64;
        for (pair, &ai) in t.chunks_exact_mut(2).zip(a) {
            if let [lo, hi] = pair {
                let sq = u64::from(ai) * u64::from(ai);
                let lo2 = (*lo << 1) | shift_in;
                let hi2 = (*hi << 1) | (*lo >> 31);
                shift_in = *hi >> 31;
                let x = u64::from(lo2) + (sq & 0xffff_ffff) + c;
                *lo = x as u32;
                let y = u64::from(hi2) + (sq >> 32) + (x >> 32);
                *hi = y as u32;
                c = y >> 32;
            }
        }
        // a^2 < R^2, so nothing is carried out of the top limb.
        self.reduce(t)
    }

    /// x^e mod n for x < n (s limbs) and odd e >= 3: left-to-right square-and-multiply in
    /// Montgomery form. The last multiplication takes x in ordinary form, which also
    /// converts the result out of Montgomery form: for e = 65537 that is one multiplication
    /// into Montgomery form, 16 squarings and one multiplication.
    pub fn pow_odd(&self, x: &[u32], e: u64) -> Vec<u32> {
        let s = self.n.len();
        let mut t = vec![0u32; 2 * s + 1];
        let x_mont = self.mul(x, &self.rr, &mut t);
        let mut acc = x_mont.clone();
        let top = 63 - e.leading_zeros();
        for i in (1..top).rev() {
            acc = self.sqr(&acc, &mut t);
            if (e >> i) & 1 == 1 {
                acc = self.mul(&acc, &x_mont, &mut t);
            }
        }
        // Bit 0 is set (e is odd).
        acc = self.sqr(&acc, &mut t);
        self.mul(&acc, x, &mut t)
    }
}
