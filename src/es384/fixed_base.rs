//! Fixed-base multiplication with a per-point table, for ECDSA verification on a curve with
//! a = -3 (P-384 here), over the curve crate's field arithmetic.
//!
//! Why: u1·G + u2·Q from scratch costs a doubling per scalar bit. G and the issuer's Q are
//! fixed for the life of a configuration, so both products are fixed-base: with a table of
//! every `j · 2^(W·i) · P` (j = 1..=2^(W-1), affine) a product is one mixed addition per
//! W-bit window and no doubling at all. `crate::ecdsa` does the same for P-256 (specialised
//! to p256's types); this is the same method, generic over the field, with the window width
//! a parameter.
//!
//! Everything here is public (key, signature, message), so variable time is fine.

use p384::elliptic_curve::ff::{Field, PrimeField};
use p384::elliptic_curve::group::Curve;
use p384::elliptic_curve::point::AffineCoordinates;

/// A finite point in affine coordinates.
#[derive(Clone, Copy)]
pub struct Affine<F> {
    x: F,
    y: F,
}

/// `points[i * HALF + j - 1] = j · 2^(W·i) · P` for i < `windows`, with HALF = 2^(W-1).
pub struct Table<F, const W: usize> {
    points: Vec<Affine<F>>,
    windows: usize,
}

impl<F: PrimeField, const W: usize> Table<F, W> {
    const HALF: usize = 1 << (W - 1);

    /// The table of `p` for scalars of `scalar_bits` bits, built with the curve crate's own
    /// (complete) formulas and one batched inversion. None if an entry is the identity,
    /// which a point of prime order never gives (j · 2^(W·i) is never a multiple of n), but
    /// a table with a hole would be wrong everywhere after it.
    pub fn new<P>(p: P, scalar_bits: usize) -> Option<Self>
    where
        P: Curve,
        P::Affine: AffineCoordinates<FieldRepr = F::Repr>,
    {
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
        let mut affine = vec![P::identity().to_affine(); projective.len()];
        P::batch_normalize(&projective, &mut affine);
        let points = affine
            .iter()
            .map(|a| {
                let x = Option::<F>::from(F::from_repr(a.x()))?;
                let y = Option::<F>::from(F::from_repr(a.y()))?;
                Some(Affine { x, y })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Table { points, windows })
    }

    /// acc += k · P, for the scalar k as big-endian bytes (at most `scalar_bits` bits).
    pub fn mul_add(&self, k_be: &[u8], acc: &mut Jacobian<F>) {
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
        self.points.len() * std::mem::size_of::<Affine<F>>()
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
/// Why not the crate's projective `+=`: its complete formulas cost about 13 multiplications
/// per addition; a Jacobian mixed addition costs 8 multiplications and 3 squarings, and the
/// cases it does not cover (the identity, P + P, P + (-P)) are cheap to detect here, where
/// nothing is secret.
#[derive(Clone, Copy, Debug)]
pub struct Jacobian<F> {
    x: F,
    y: F,
    z: F,
}

impl<F: Field> Jacobian<F> {
    pub const IDENTITY: Jacobian<F> = Jacobian { x: F::ONE, y: F::ONE, z: F::ZERO };

    pub fn is_identity(&self) -> bool {
        bool::from(self.z.is_zero())
    }

    /// self += p, or self -= p when `negate`: the textbook mixed addition, 8M + 3S.
    pub fn add(&mut self, p: &Affine<F>, negate: bool) {
        let py = if negate { -p.y } else { p.y };
        if self.is_identity() {
            *self = Jacobian { x: p.x, y: py, z: F::ONE };
            return;
        }
        let z1z1 = self.z.square();
        let u2 = p.x * z1z1;
        let s2 = py * self.z * z1z1;
        let h = u2 - self.x;
        let r = s2 - self.y;
        if bool::from(h.is_zero()) {
            // Same x: p is self (double) or -self (the sum is the identity).
            if bool::from(r.is_zero()) {
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
        if self.is_identity() || bool::from(self.y.is_zero()) {
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
    pub fn x_is_one_of(&self, xs: &[F]) -> bool {
        if self.is_identity() {
            return false;
        }
        let zz = self.z.square();
        xs.iter().any(|&x| x * zz == self.x)
    }

    /// The affine coordinates, None for the identity (tests compare against the crate).
    #[cfg(test)]
    pub fn to_affine_xy(self) -> Option<(F, F)> {
        let zinv = Option::<F>::from(self.z.invert())?;
        let zinv2 = zinv.square();
        Some((self.x * zinv2, self.y * zinv2 * zinv))
    }

    #[cfg(test)]
    pub fn from_affine(p: &Affine<F>) -> Self {
        Jacobian { x: p.x, y: p.y, z: F::ONE }
    }

    /// The same point with Z scaled by `lambda` (tests: the formulas must not depend on Z).
    #[cfg(test)]
    pub fn rescaled(self, lambda: F) -> Self {
        let l2 = lambda.square();
        Jacobian { x: self.x * l2, y: self.y * l2 * lambda, z: self.z * lambda }
    }
}

impl<F: PrimeField> Affine<F> {
    /// From a curve crate's finite affine point (tests).
    #[cfg(test)]
    pub fn from_point<A: AffineCoordinates<FieldRepr = F::Repr>>(a: &A) -> Option<Self> {
        let x = Option::<F>::from(F::from_repr(a.x()))?;
        let y = Option::<F>::from(F::from_repr(a.y()))?;
        Some(Affine { x, y })
    }
}

#[cfg(test)]
mod tests;
