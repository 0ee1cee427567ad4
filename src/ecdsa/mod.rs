//! ES256 (ECDSA over P-256 with SHA-256, RFC 7518 §3.4) verification with per-key
//! precomputed tables.
//!
//! Why: the `p256` crate's verifier (through jwt-simple) computes u1·G + u2·Q from scratch
//! with ~256 doublings, ~720 µs in V8 on its 32-bit field arithmetic. Both G and the
//! issuer's Q are fixed for the life of a configuration, so both products are fixed-base
//! multiplications: with a table of every `j · 2^(W·i) · P` (j = 1..=2^(W-1), as affine
//! points) a verification is ~2·256/W mixed additions and no doubling at all. The field
//! arithmetic is the `p256` crate's, and so are the table's points (built with its complete
//! formulas); ours are the digit recoding and the accumulator's Jacobian formulas (see
//! `Jacobian`), checked against p256 in the tests.
//!
//! Everything here is public (key, signature, message), so variable time is fine.
//!
//! Verdicts match `p256::ecdsa::VerifyingKey::verify` (what jwt-simple calls): r and s must
//! be in [1, n-1], a high s is accepted (P-256's `NORMALIZE_S` is false: no low-S rule for
//! JWS), e is the SHA-256 digest reduced mod n (FIPS 186-4: the digest is exactly 256 bits,
//! so no truncation), and the signature holds iff x(u1·G + u2·Q) mod n == r.

use std::sync::OnceLock;

use p256::elliptic_curve::group::{Curve as _, Group as _};
use p256::elliptic_curve::hazmat::FieldArithmetic;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates as _;
use p256::elliptic_curve::{Field as _, PrimeField as _};
use p256::{AffinePoint, FieldBytes, NistP256, ProjectivePoint, Scalar};

/// p256's field element (mod p): its arithmetic, our point formulas.
type Fe = <NistP256 as FieldArithmetic>::FieldElement;

#[cfg(test)]
mod tests;

/// Window width in bits. Measured in V8 (bench/verify): W = 6 ~130 µs per check, 7 ~110,
/// 8 no clearer gain than the machine's noise for 1.8x the memory; see `Table` for the size.
const W: usize = 7;
/// Windows needed for a 256-bit scalar in signed digits: one more than 256/W so the carry
/// out of the top full window has somewhere to go. The top window then holds fewer than W
/// bits plus a carry, at most 2^(W-1), so it never carries itself.
const WINDOWS: usize = 256 / W + 1;
/// Entries per window: the digit magnitudes 1..=2^(W-1) (negative digits negate y).
const HALF: usize = 1 << (W - 1);

/// `points[i * HALF + j - 1] = j · 2^(W·i) · P`: WINDOWS × HALF affine points
/// (37 × 64 = 2368 points of 64 bytes for W = 7: 148 KiB).
struct Table {
    points: Vec<Affine>,
}

/// A finite point in affine coordinates.
#[derive(Clone, Copy)]
struct Affine {
    x: Fe,
    y: Fe,
}

impl Table {
    /// Builds the table for `p` with p256's own (complete) formulas, one batched inversion
    /// for the lot, then keeps the coordinates for `Jacobian::add`. None if an entry is the
    /// identity, which cannot happen for a point of prime order n (j · 2^(W·i) is never a
    /// multiple of n), but a table with a hole would be wrong everywhere after it.
    fn new(p: ProjectivePoint) -> Option<Table> {
        let mut projective = Vec::with_capacity(WINDOWS * HALF);
        let mut base = p;
        for _ in 0..WINDOWS {
            let mut multiple = base;
            projective.push(multiple);
            for _ in 1..HALF {
                multiple += base;
                projective.push(multiple);
            }
            // multiple = 2^(W-1) · base, so this is 2^W · base: the next window's base.
            base = multiple.double();
        }
        let mut affine = vec![AffinePoint::IDENTITY; projective.len()];
        ProjectivePoint::batch_normalize(&projective, &mut affine);
        let points = affine.iter().map(Affine::from_p256).collect::<Option<Vec<_>>>()?;
        Some(Table { points })
    }

    /// acc += k · P.
    fn mul_add(&self, k: &Scalar, acc: &mut Jacobian) {
        for (i, digit) in signed_digits(k).into_iter().enumerate() {
            let magnitude = digit.unsigned_abs() as usize;
            if magnitude == 0 {
                continue;
            }
            // Every index is in range by construction; `get` only satisfies the lint.
            if let Some(point) = self.points.get(i * HALF + magnitude - 1) {
                acc.add(point, digit < 0);
            }
        }
    }

    /// Heap bytes held by the table.
    fn bytes(&self) -> usize {
        self.points.len() * std::mem::size_of::<Affine>()
    }
}

impl Affine {
    fn from_p256(p: &AffinePoint) -> Option<Affine> {
        if bool::from(p.is_identity()) {
            return None;
        }
        let x = Option::<Fe>::from(Fe::from_repr(p.x()))?;
        let y = Option::<Fe>::from(Fe::from_repr(p.y()))?;
        Some(Affine { x, y })
    }
}

/// The accumulator, in Jacobian coordinates (x = X/Z², y = Y/Z³; Z = 0 is the identity).
/// Why not p256's `ProjectivePoint += AffinePoint`: its complete formulas cost about 13
/// multiplications and 23 additions per point; a Jacobian mixed addition costs 8
/// multiplications and 3 squarings, and the cases it does not cover (the identity, P + P,
/// P + (-P)) are cheap to detect here, where nothing is secret.
#[derive(Clone, Copy, Debug)]
struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
}

impl Jacobian {
    const IDENTITY: Jacobian = Jacobian { x: Fe::ONE, y: Fe::ONE, z: Fe::ZERO };

    fn is_identity(&self) -> bool {
        bool::from(self.z.is_zero())
    }

    /// self += p, or self -= p when `negate`: the textbook mixed addition, 8M + 3S.
    fn add(&mut self, p: &Affine, negate: bool) {
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
        if bool::from(h.is_zero()) {
            // Same x: p is self (double) or -self (the sum is the identity).
            if bool::from(r.is_zero()) {
                self.double();
            } else {
                *self = Jacobian::IDENTITY;
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
    fn double(&mut self) {
        if self.is_identity() || bool::from(self.y.is_zero()) {
            *self = Jacobian::IDENTITY;
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

    /// Whether the point is finite and its x, reduced mod n, is `r`, without inverting Z:
    /// x = X/Z² is some x' in [0, p); x' mod n = r means x' = r or x' = r + n (only
    /// possible when r + n < p, i.e. r < p - n).
    fn x_mod_n_is(&self, r: &Scalar) -> bool {
        if self.is_identity() {
            return false;
        }
        let Some(r_fe) = Option::<Fe>::from(Fe::from_repr(r.to_repr())) else {
            return false;
        };
        let zz = self.z.square();
        if r_fe * zz == self.x {
            return true;
        }
        // p - n, big-endian; both are 32 bytes, so bytewise order is numeric order.
        const P_MINUS_N: [u8; 32] = [
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x43, 0x19, 0x05, 0x53, 0x58, 0xe8, 0x61, 0x7b,
            0x0c, 0x46, 0x35, 0x3d, 0x03, 0x9c, 0xda, 0xae,
        ];
        let Some(n) = Option::<Fe>::from(Fe::from_repr(FieldBytes::from(N_BYTES))) else {
            return false;
        };
        r.to_repr().as_slice() < P_MINUS_N.as_slice() && (r_fe + n) * zz == self.x
    }

    #[cfg(test)]
    fn to_p256(self) -> ProjectivePoint {
        if self.is_identity() {
            return ProjectivePoint::IDENTITY;
        }
        let Some(zinv) = Option::<Fe>::from(self.z.invert()) else {
            return ProjectivePoint::IDENTITY;
        };
        let zinv2 = zinv.square();
        let (x, y) = (self.x * zinv2, self.y * zinv2 * zinv);
        let mut sec1 = vec![4u8];
        sec1.extend_from_slice(&x.to_repr());
        sec1.extend_from_slice(&y.to_repr());
        match p256::PublicKey::from_sec1_bytes(&sec1) {
            Ok(k) => ProjectivePoint::from(*k.as_affine()),
            Err(e) => panic!("not on the curve: {e}"),
        }
    }
}

/// n, the group order, big-endian.
const N_BYTES: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc,
    0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// `k` in base 2^W with digits in [-(2^(W-1) - 1), 2^(W-1)], least significant first:
/// k = Σ digit[i] · 2^(W·i).
fn signed_digits(k: &Scalar) -> [i16; WINDOWS] {
    let bytes = k.to_repr();
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().zip(bytes.rchunks_exact(8)) {
        let mut be = [0u8; 8];
        be.copy_from_slice(chunk);
        *limb = u64::from_be_bytes(be);
    }
    let window = |pos: usize| -> u64 {
        let (l, off) = (pos / 64, pos % 64);
        let lo = limbs.get(l).map_or(0, |v| v >> off);
        let hi = match (off + W > 64, limbs.get(l + 1)) {
            (true, Some(v)) => v << (64 - off),
            _ => 0,
        };
        (lo | hi) & ((1 << W) - 1)
    };
    let mut digits = [0i16; WINDOWS];
    let mut carry = 0;
    for (i, digit) in digits.iter_mut().enumerate() {
        let v = window(i * W) as i16 + carry;
        if v > HALF as i16 {
            *digit = v - (1 << W);
            carry = 1;
        } else {
            *digit = v;
            carry = 0;
        }
    }
    digits
}

/// The generator's table, built once per process (Wasm VM) by the first key.
fn generator_table() -> Option<&'static Table> {
    static G: OnceLock<Option<Table>> = OnceLock::new();
    G.get_or_init(|| Table::new(ProjectivePoint::GENERATOR)).as_ref()
}

/// The signature does not verify (including r or s out of range and a wrong length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSignature;

/// A P-256 public key with its multiplication table.
pub struct PublicKey {
    g: &'static Table,
    table: Table,
}

impl PublicKey {
    /// From a point already validated as on the curve and not the identity (what
    /// `p256::PublicKey` guarantees). Also builds the generator's table if no key has yet,
    /// so that cost falls on configuration, not on the first request. None only if a table
    /// could not be built, which a valid key never causes (see `Table::new`).
    pub fn new(point: &p256::PublicKey) -> Option<PublicKey> {
        let g = generator_table()?;
        Some(PublicKey { g, table: Table::new(ProjectivePoint::from(*point.as_affine()))? })
    }

    /// Heap bytes of this key's table (the generator's, shared, is as large again).
    pub fn table_bytes(&self) -> usize {
        self.table.bytes()
    }

    /// Verifies an IEEE P1363 (raw r || s, 64 bytes) ECDSA signature over SHA-256(msg).
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> Result<(), BadSignature> {
        let (r, s) = signature.split_at_checked(32).ok_or(BadSignature)?;
        if s.len() != 32 {
            return Err(BadSignature);
        }
        let r = scalar_in_range(r).ok_or(BadSignature)?;
        let s = scalar_in_range(s).ok_or(BadSignature)?;
        let e = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(hmac_sha256::Hash::hash(msg)));
        let w = Option::<Scalar>::from(s.invert_vartime()).ok_or(BadSignature)?;
        let mut point = Jacobian::IDENTITY;
        self.g.mul_add(&(e * w), &mut point);
        self.table.mul_add(&(r * w), &mut point);
        if point.x_mod_n_is(&r) {
            Ok(())
        } else {
            Err(BadSignature)
        }
    }
}

/// A 32-byte big-endian integer in [1, n-1], or None.
fn scalar_in_range(bytes: &[u8]) -> Option<Scalar> {
    let repr = FieldBytes::try_from(bytes).ok()?;
    let k = Option::<Scalar>::from(Scalar::from_repr(repr))?;
    (!bool::from(k.is_zero())).then_some(k)
}
