//! Modular arithmetic for the RSA public-key operation: Montgomery multiplication by
//! product scanning over 28-bit limbs.
//!
//! Callers see little-endian `u32` limbs (limb 0 least significant; `limbs_from_be`,
//! `be_from_limbs`). Inside, a value is held in 28-bit limbs, one per `u32`, so that each
//! output column of a·b + m·n is two plain dot products (`super::columns`), which Wasm
//! SIMD runs four products at a time. Operand scanning over full 32-bit limbs must split
//! every product into a carry and a limb, which in Wasm costs more than the multiply; and
//! Wasm has no 64x64->128 multiply, so 64-bit limbs (`num-bigint-dig`'s, what made
//! jwt-simple's RSA slow there) are emulated. In V8 this takes a 2048-bit e = 65537
//! verification from about 109 µs (32-bit operand scanning) to about 71 µs.
//!
//! **Not constant time, on purpose.** Only the public-key operation (signature
//! verification) lives here: the modulus, the exponent, the signature and the message are
//! all public, so there is nothing for timing to leak. Do not reuse this code with secrets.

use super::columns::{dot, span, square_column, MASK, W};

/// An odd modulus n with what Montgomery arithmetic modulo n needs, computed once per key.
/// R = 2^(28 * s), s the number of 28-bit limbs of n.
#[derive(Clone, PartialEq, Eq)]
pub struct Modulus {
    /// n, little-endian 32-bit limbs; the most significant limb is non-zero.
    n: Vec<u32>,
    /// n in 28-bit limbs (s of them), least significant first.
    w: Vec<u32>,
    /// The same, most significant first: a column's m·n products are then a forward walk.
    w_rev: Vec<u32>,
    /// -n^-1 mod 2^28.
    n0: u64,
    /// R^2 mod n, 28-bit limbs.
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

/// -n0^-1 mod 2^32 for odd n0, by Newton's iteration: inv = n0 is right to 3 bits
/// (n0 * n0 = 1 mod 8) and each step doubles that, 3 -> 6 -> 12 -> 24 -> 48.
fn neg_inverse(n0: u32) -> u32 {
    let mut inv = n0;
    for _ in 0..4 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
    }
    inv.wrapping_neg()
}

/// `s` 28-bit limbs of a value given in 32-bit limbs (high bits beyond 28s are dropped).
fn to_w(x: &[u32], s: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(s);
    let (mut acc, mut bits) = (0u64, 0u32);
    let mut limbs = x.iter();
    for _ in 0..s {
        if bits < W {
            if let Some(&l) = limbs.next() {
                acc |= u64::from(l) << bits;
                bits += 32;
            }
        }
        out.push((acc & MASK) as u32);
        acc >>= W;
        bits = bits.saturating_sub(W);
    }
    out
}

/// `s32` 32-bit limbs of a value given in 28-bit limbs (high bits beyond 32 s32 are dropped).
fn from_w(x: &[u32], s32: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(s32);
    let (mut acc, mut bits) = (0u64, 0u32);
    let mut limbs = x.iter();
    for _ in 0..s32 {
        while bits < 32 {
            let Some(&l) = limbs.next() else { break };
            acc |= u64::from(l) << bits;
            bits += W;
        }
        out.push(acc as u32);
        acc >>= 32;
        bits = bits.saturating_sub(32);
    }
    out
}

impl Modulus {
    /// `n` as little-endian 32-bit limbs without high zero limbs. Refuses an even or zero
    /// modulus.
    pub fn new(mut n: Vec<u32>) -> Option<Modulus> {
        while n.last() == Some(&0) {
            n.pop();
        }
        let n_low = *n.first()?;
        if n_low & 1 == 0 {
            return None;
        }
        let s = bit_length(&n).div_ceil(W as usize);
        let w = to_w(&n, s);
        let w_rev = w.iter().rev().copied().collect();
        let n0 = u64::from(neg_inverse(n_low)) & MASK;
        let mut m = Modulus { n, w, w_rev, n0, rr: Vec::new() };
        m.rr = m.r_squared();
        Some(m)
    }

    /// The number of 32-bit limbs of n.
    pub fn limbs(&self) -> usize {
        self.n.len()
    }

    pub fn n(&self) -> &[u32] {
        &self.n
    }

    /// R^2 mod n: R mod n by doubling from 2^(bits-1), then the Montgomery form of 2^(28s)
    /// (which is R * 2^(28s) = R^2) by square-and-double on the exponent 28s.
    fn r_squared(&self) -> Vec<u32> {
        let s = self.w.len();
        let bits = bit_length(&self.n);
        // 2^(bits-1) < n because n is odd and has `bits` bits.
        let mut acc = vec![0u32; s];
        if let Some(top) = acc.get_mut((bits - 1) / W as usize) {
            *top = 1 << ((bits - 1) % W as usize);
        }
        for _ in (bits - 1)..(W as usize * s) {
            self.double_mod(&mut acc);
        }
        // acc = R mod n, the Montgomery form of 1. Raise 2 to the power 28s in that form.
        let e = W as usize * s;
        let mut t = vec![0u32; s];
        let mut scratch = vec![0u32; 2 * s];
        for i in (0..usize::BITS - e.leading_zeros()).rev() {
            self.square(&acc, &mut t, &mut scratch);
            std::mem::swap(&mut acc, &mut t);
            if (e >> i) & 1 == 1 {
                self.double_mod(&mut acc);
            }
        }
        acc
    }

    /// x = 2x mod n, for x < n (28-bit limbs).
    fn double_mod(&self, x: &mut [u32]) {
        let mut carry = 0u32;
        let top = x.len().saturating_sub(1);
        for (j, l) in x.iter_mut().enumerate() {
            let v = (*l << 1) | carry;
            // The top limb keeps its extra bit: 2x < 2n may need 28s + 1 bits.
            if j == top {
                *l = v;
            } else {
                *l = v & MASK as u32;
                carry = v >> W;
            }
        }
        self.reduce_once(x);
    }

    /// x -= n if x >= n, for x < 2n in 28-bit limbs whose top limb may hold one more bit.
    fn reduce_once(&self, x: &mut [u32]) {
        for (a, b) in x.iter().rev().zip(self.w.iter().rev()) {
            if a != b {
                if a < b {
                    return;
                }
                break;
            }
        }
        let mut borrow = 0u32;
        for (a, &b) in x.iter_mut().zip(&self.w) {
            let d = a.wrapping_sub(b).wrapping_sub(borrow);
            borrow = d >> 31; // limbs are below 2^29: a wrapped difference has its top bit set
            *a = d & MASK as u32;
        }
    }

    /// out = a * b * R^-1 mod n, fully reduced, for a, b < n of s 28-bit limbs each (`out`:
    /// s limbs; `scratch`: 2s limbs of room).
    pub fn mul(&self, a: &[u32], b: &[u32], out: &mut [u32], scratch: &mut [u32]) {
        self.multiply(a, b, false, out, scratch);
    }

    /// out = a * a * R^-1 mod n: `mul` with each cross product a_i a_j (i != j) computed
    /// once and doubled, a quarter fewer products.
    pub fn square(&self, a: &[u32], out: &mut [u32], scratch: &mut [u32]) {
        self.multiply(a, a, true, out, scratch);
    }

    /// Product scanning with interleaved reduction (the "FIPS" method of Koç, Acar & Kaliski
    /// 1996): output column k of a·b + m·n is Σ a_i b_(k-i) + Σ m_i n_(k-i) plus the carry in;
    /// in the low s columns m_k is chosen to make the column's low 28 bits zero, the high s
    /// columns are the result. With b and n kept most significant first, both sums are
    /// forward walks over contiguous limbs.
    #[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
    fn multiply(&self, a: &[u32], b: &[u32], square: bool, out: &mut [u32], scratch: &mut [u32]) {
        let s = self.w.len();
        let (b_rev, m) = scratch.split_at_mut(s.min(scratch.len()));
        for (r, &x) in b_rev.iter_mut().zip(b.iter().rev()) {
            *r = x;
        }
        let n_low = u64::from(self.w.first().copied().unwrap_or(1));
        // The carry into a column, below 2^39: a column's total is below 2^67 (2s < 512
        // products, each below 2^56, and the carry), held as a low and a high part.
        let mut carry = 0u64;
        for k in 0..2 * s - 1 {
            // Column k sums the pairs (i, k - i) with both indices in 0..s; limb i of a
            // reversed operand is at s - 1 - i, so the partner of i is at s - 1 + i - k.
            let from = k.saturating_sub(s - 1);
            let ab = if square {
                square_column(a, b_rev, k, from, s)
            } else {
                dot(span(a, from, k.min(s - 1) + 1), span(b_rev, s - 1 + from - k, s))
            };
            // m_k is not known yet in the low columns: its product with n_0 comes below.
            let m_to = k.min(s);
            let mn = dot(span(m, from, m_to), span(&self.w_rev, s - 1 + from - k, s - 1 + m_to - k));
            let low = (carry & MASK) + ab.0 + mn.0;
            let high = (carry >> W) + ab.1 + mn.1;
            let low = if k < s {
                let mk = ((low & MASK) * self.n0) & MASK;
                if let Some(slot) = m.get_mut(k) {
                    *slot = mk as u32;
                }
                low + mk * n_low // its low 28 bits are now zero
            } else {
                if let Some(slot) = out.get_mut(k - s) {
                    *slot = (low & MASK) as u32;
                }
                low
            };
            carry = high + (low >> W);
        }
        // The value is below 2n < 2^(28s + 1): the last carry is the top limb, one bit wider.
        if let Some(top) = out.get_mut(s - 1) {
            *top = carry as u32;
        }
        self.reduce_once(out);
    }

    /// x^e mod n for x < n (32-bit limbs) and odd e >= 3: left-to-right square-and-multiply
    /// in Montgomery form. The last multiplication takes x in ordinary form, which also
    /// converts the result out of Montgomery form: for e = 65537 that is one multiplication
    /// into Montgomery form, 16 squarings and one multiplication.
    pub fn pow_odd(&self, x: &[u32], e: u64) -> Vec<u32> {
        let s = self.w.len();
        let x = to_w(x, s);
        let mut scratch = vec![0u32; 2 * s];
        let mut x_mont = vec![0u32; s];
        self.mul(&x, &self.rr, &mut x_mont, &mut scratch);
        let mut acc = x_mont.clone();
        let mut t = vec![0u32; s];
        let top = 63 - e.leading_zeros();
        for i in (1..top).rev() {
            self.square(&acc, &mut t, &mut scratch);
            std::mem::swap(&mut acc, &mut t);
            if (e >> i) & 1 == 1 {
                self.mul(&acc, &x_mont, &mut t, &mut scratch);
                std::mem::swap(&mut acc, &mut t);
            }
        }
        // Bit 0 is set (e is odd).
        self.square(&acc, &mut t, &mut scratch);
        self.mul(&t, &x, &mut acc, &mut scratch);
        from_w(&acc, self.n.len())
    }

    /// a * b mod n (32-bit limbs, a, b < n), through `square` when `a` and `b` are the same
    /// slice. Test-only: checks `mul` and `square` against a reference.
    #[cfg(test)]
    pub fn mul_mod(&self, a: &[u32], b: &[u32]) -> Vec<u32> {
        let s = self.w.len();
        let (mut t, mut u, mut scratch) = (vec![0u32; s], vec![0u32; s], vec![0u32; 2 * s]);
        if std::ptr::eq(a, b) {
            self.square(&to_w(a, s), &mut t, &mut scratch); // a^2/R
        } else {
            self.mul(&to_w(a, s), &to_w(b, s), &mut t, &mut scratch); // ab/R
        }
        self.mul(&t, &self.rr, &mut u, &mut scratch); // ab/R * R^2/R
        from_w(&u, self.n.len())
    }

    /// x^e mod n for any e (big-endian bytes), plain square-and-multiply in Montgomery form.
    /// Test-only: the private-key operation of the test signers (`super::testsign`); `e` is
    /// then a secret, which this code (variable time) must never see outside tests.
    #[cfg(test)]
    pub fn pow_be(&self, x: &[u32], e: &[u8]) -> Vec<u32> {
        let s = self.w.len();
        let mut one = vec![0u32; s];
        one[0] = 1;
        let mut scratch = vec![0u32; 2 * s];
        let mut x_mont = vec![0u32; s];
        self.mul(&to_w(x, s), &self.rr, &mut x_mont, &mut scratch);
        let mut acc = vec![0u32; s];
        self.mul(&one, &self.rr, &mut acc, &mut scratch); // R mod n: the Montgomery form of 1
        let mut t = vec![0u32; s];
        for byte in e {
            for i in (0..8).rev() {
                self.square(&acc, &mut t, &mut scratch);
                std::mem::swap(&mut acc, &mut t);
                if (byte >> i) & 1 == 1 {
                    self.mul(&acc, &x_mont, &mut t, &mut scratch);
                    std::mem::swap(&mut acc, &mut t);
                }
            }
        }
        self.mul(&acc, &one, &mut t, &mut scratch); // out of Montgomery form
        from_w(&t, self.n.len())
    }
}
