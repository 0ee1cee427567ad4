//! Fixed-base multiplication with a per-point table, for ECDSA verification on P-384, over
//! `super::field`'s arithmetic.
//!
//! Why: u1·G + u2·Q from scratch costs a doubling per scalar bit. G and the issuer's Q are
//! fixed for the life of a configuration, so both products are fixed-base: with a table of
//! every `j · 2^(W·i) · P` (j = 1..=2^(W-1), affine) a product is one mixed addition per
//! W-bit window and no doubling at all. `crate::ecdsa` does the same for P-256 over p256's
//! field; this is the same method with the window width a parameter. The table's points
//! are computed by p384 (complete formulas, one batched inversion) and converted.
//!
//! Everything here is public (key, signature, message), so variable time is fine.

use p384::elliptic_curve::group::{Curve, Group};
use p384::elliptic_curve::point::AffineCoordinates;
use p384::ProjectivePoint;

use super::field::Fe;

/// A finite point in affine coordinates.
#[derive(Clone, Copy)]
pub struct Affine {
    x: Fe,
    y: Fe,
}

/// `points[i * HALF + j - 1] = j · 2^(W·i) · P` for i < `windows`, with HALF = 2^(W-1).
pub struct Table<const W: usize> {
    points: Vec<Affine>,
    windows: usize,
}

impl<const W: usize> Table<W> {
    const HALF: usize = 1 << (W - 1);

    /// The table of `p` for scalars of `scalar_bits` bits, built with p384's own (complete)
    /// formulas and one batched inversion. None if an entry is the identity, which a point of
    /// prime order never gives (j · 2^(W·i) is never a multiple of n), but a table with a
    /// hole would be wrong everywhere after it.
    pub fn new(p: ProjectivePoint, scalar_bits: usize) -> Option<Self> {
        // One window more than the full ones, for the carry out of the top full window.
        let windows = scalar_bits / W + 1;
        let mut projective = Vec::with_capacity(windows * Self::HALF);
        let mut base = p;
        for _ in 0..windows {
            let mut multiple = base;
            projective.push(multiple);
            for _ in 1..Self::HALF {
                multiple += base;
                projective.push(multiple);
            }
            // multiple = 2^(W-1) · base: this is 2^W · base, the next window's base.
            base = multiple.double();
        }
        if projective.iter().any(|q| bool::from(q.is_identity())) {
            return None;
        }
        let mut affine = vec![ProjectivePoint::identity().to_affine(); projective.len()];
        ProjectivePoint::batch_normalize(&projective, &mut affine);
        let points = affine.iter().map(Affine::from_p384).collect::<Option<Vec<_>>>()?;
        Some(Table { points, windows })
    }

    /// acc += k · P, for the scalar k as big-endian bytes (at most `scalar_bits` bits).
    pub fn mul_add(&self, k_be: &[u8], acc: &mut Jacobian) {
        for (i, digit) in signed_digits::<W>(k_be, self.windows).into_iter().enumerate() {
            let magnitude = digit.unsigned_abs() as usize;
            if magnitude == 0 {
                continue;
            }
            // Every index is in range by construction; `get` only satisfies the lint.
            if let Some(point) = self.points.get(i * Self::HALF + magnitude - 1) {
                acc.add(point, digit < 0);
            }
        }
    }

    /// Heap bytes held by the table.
    pub fn bytes(&self) -> usize {
        self.points.len() * std::mem::size_of::<Affine>()
    }

    /// Number of points (windows × 2^(W-1)).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.points.len()
    }
}

/// `k` (big-endian bytes) in base 2^W with digits in [-(2^(W-1) - 1), 2^(W-1)], least
/// significant first: k = Σ digit[i] · 2^(W·i). `windows` must exceed bits(k) / W (one
/// window for the final carry); bits beyond the last window are dropped.
pub fn signed_digits<const W: usize>(k_be: &[u8], windows: usize) -> Vec<i16> {
    let limbs: Vec<u64> =
        k_be.rchunks(8).map(|chunk| chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))).collect();
    let window = |pos: usize| -> u64 {
        let (l, off) = (pos / 64, pos % 64);
        let lo = limbs.get(l).map_or(0, |v| v >> off);
        let hi = match (off + W > 64, limbs.get(l + 1)) {
            (true, Some(v)) => v << (64 - off),
            _ => 0,
        };
        (lo | hi) & ((1 << W) - 1)
    };
    let half = 1i16 << (W - 1);
    let mut carry = 0;
    (0..windows)
        .map(|i| {
            let v = window(i * W) as i16 + carry;
            if v > half {
                carry = 1;
                v - (1 << W)
            } else {
                carry = 0;
                v
            }
        })
        .collect()
}

/// The accumulator, in Jacobian coordinates (x = X/Z², y = Y/Z³; Z = 0 is the identity).
/// Why not p384's projective `+=`: its complete formulas cost about 13 multiplications per
/// addition; a Jacobian mixed addition costs 8 multiplications and 3 squarings, and the
/// cases it does not cover (the identity, P + P, P + (-P)) are cheap to detect here, where
/// nothing is secret.
#[derive(Clone, Copy, Debug)]
pub struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
}

impl Jacobian {
    pub const IDENTITY: Jacobian = Jacobian { x: Fe::ONE, y: Fe::ONE, z: Fe::ZERO };

    pub fn is_identity(&self) -> bool {
        self.z.is_zero()
    }

    /// self += p, or self -= p when `negate`: the textbook mixed addition, 8M + 3S.
    pub fn add(&mut self, p: &Affine, negate: bool) {
        let py = if negate { -p.y } else { p.y };
        if self.is_identity() {
            *self = Jacobian { x: p.x, y: py, z: Fe::ONE };
            return;
        }
        let z1z1 = self.z.square();
        let u2 = p.x * z1z1;
        let s2 = py * self.z * z1z1;
        let h = u2 - self.x;
        let r = s2 - self.y;
        if h.is_zero() {
            // Same x: p is self (double) or -self (the sum is the identity).
            if r.is_zero() {
                self.double();
            } else {
                *self = Self::IDENTITY;
            }
            return;
        }
        let hh = h.square();
        let hhh = h * hh;
        let v = self.x * hh;
        let x3 = r.square() - hhh - v.double();
        self.y = r * (v - x3) - self.y * hhh;
        self.x = x3;
        self.z *= h;
    }

    /// self = 2 · self (dbl-2001-b, a = -3). Only reached when the accumulator meets its
    /// own next table entry, which random signatures practically never do.
    pub fn double(&mut self) {
        if self.is_identity() || self.y.is_zero() {
            *self = Self::IDENTITY;
            return;
        }
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x * gamma;
        let alpha = (self.x - delta) * (self.x + delta);
        let alpha = alpha.double() + alpha;
        let beta4 = beta.double().double();
        let x3 = alpha.square() - beta4.double();
        let z3 = (self.y + self.z).square() - gamma - delta;
        let gamma2 = gamma.square();
        let y3 = alpha * (beta4 - x3) - gamma2.double().double().double();
        *self = Jacobian { x: x3, y: y3, z: z3 };
    }

    /// Whether the point is finite with affine x equal to one of `xs`, without inverting Z
    /// (x = X/Z² is x' iff x'·Z² = X).
    pub fn x_is_one_of(&self, xs: &[Fe]) -> bool {
        if self.is_identity() {
            return false;
        }
        let zz = self.z.square();
        xs.iter().any(|&x| x * zz == self.x)
    }

    /// The same point in p384's type (tests compare against p384's arithmetic).
    #[cfg(test)]
    pub fn to_p384(self) -> ProjectivePoint {
        use p384::elliptic_curve::hazmat::FieldArithmetic;
        use p384::elliptic_curve::PrimeField as _;
        type P384Fe = <p384::NistP384 as FieldArithmetic>::FieldElement;
        if self.is_identity() {
            return ProjectivePoint::IDENTITY;
        }
        let theirs = |fe: Fe| P384Fe::from_repr(fe.to_be_bytes().into()).unwrap();
        let zinv = theirs(self.z).invert().unwrap();
        let (x, y) = (theirs(self.x) * zinv.square(), theirs(self.y) * zinv.square() * zinv);
        let sec1 = [&[4u8][..], &x.to_repr(), &y.to_repr()].concat();
        p384::PublicKey::from_sec1_bytes(&sec1).unwrap().to_projective()
    }

    #[cfg(test)]
    pub fn from_affine(p: &Affine) -> Self {
        Jacobian { x: p.x, y: p.y, z: Fe::ONE }
    }

    /// The same point with Z scaled by `lambda` (tests: the formulas must not depend on Z).
    #[cfg(test)]
    pub fn rescaled(self, lambda: Fe) -> Self {
        let l2 = lambda.square();
        Jacobian { x: self.x * l2, y: self.y * l2 * lambda, z: self.z * lambda }
    }
}

impl Affine {
    /// From p384's affine point; None for the identity (whose coordinates are no point's).
    pub fn from_p384(a: &p384::AffinePoint) -> Option<Affine> {
        if bool::from(a.is_identity()) {
            return None;
        }
        Some(Affine { x: Fe::from_be_bytes(&a.x())?, y: Fe::from_be_bytes(&a.y())? })
    }
}

#[cfg(test)]
mod tests;
