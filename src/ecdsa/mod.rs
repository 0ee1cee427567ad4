//! ES256 (ECDSA over P-256 with SHA-256, RFC 7518 §3.4) verification with per-key
//! precomputed tables.
//!
//! Why: the `p256` crate's verifier (through jwt-simple) computes u1·G + u2·Q from scratch
//! with ~256 doublings, ~720 µs in V8 on its 32-bit field arithmetic. Both G and the
//! issuer's Q are fixed for the life of a configuration, so both products are fixed-base
//! multiplications: with a table of every `j · 2^(W·i) · P` (j = 1..=2^(W-1), as affine
//! points) a verification is ~2·256/W mixed additions and no doubling at all. Field and
//! group arithmetic stay the `p256` crate's; only the scalar-multiplication strategy is ours.
//!
//! Everything here is public (key, signature, message), so variable time is fine.
//!
//! Verdicts match `p256::ecdsa::VerifyingKey::verify` (what jwt-simple calls): r and s must
//! be in [1, n-1], a high s is accepted (P-256's `NORMALIZE_S` is false: no low-S rule for
//! JWS), e is the SHA-256 digest reduced mod n (FIPS 186-4: the digest is exactly 256 bits,
//! so no truncation), and the signature holds iff x(u1·G + u2·Q) mod n == r.

use std::sync::OnceLock;

use p256::elliptic_curve::group::{Curve as _, Group as _};
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates as _;
use p256::elliptic_curve::{Field as _, PrimeField as _};
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};

#[cfg(test)]
mod tests;

/// Window width in bits. 7 measured best for the memory: see `Table`.
const W: usize = 7;
/// Windows needed for a 256-bit scalar in signed digits: one more than 256/W so the carry
/// out of the top full window has somewhere to go. The top window then holds fewer than W
/// bits plus a carry, at most 2^(W-1), so it never carries itself.
const WINDOWS: usize = 256 / W + 1;
/// Entries per window: the digit magnitudes 1..=2^(W-1) (negative digits negate y).
const HALF: usize = 1 << (W - 1);

/// `points[i * HALF + j - 1] = j · 2^(W·i) · P`: WINDOWS × HALF affine points
/// (37 × 64 = 2368 points for W = 7, about 160 KB in wasm32).
pub struct Table {
    points: Vec<AffinePoint>,
}

impl Table {
    /// Builds the table for `p` (by additions, then one batched inversion for the lot).
    fn new(p: ProjectivePoint) -> Table {
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
        let mut points = vec![AffinePoint::IDENTITY; projective.len()];
        ProjectivePoint::batch_normalize(&projective, &mut points);
        Table { points }
    }

    /// acc += k · P.
    fn mul_add(&self, k: &Scalar, acc: &mut ProjectivePoint) {
        for (i, digit) in signed_digits(k).into_iter().enumerate() {
            let magnitude = digit.unsigned_abs() as usize;
            if magnitude == 0 {
                continue;
            }
            // Every index is in range by construction; `get` only satisfies the lint.
            if let Some(point) = self.points.get(i * HALF + magnitude - 1) {
                if digit < 0 {
                    *acc += -*point;
                } else {
                    *acc += point;
                }
            }
        }
    }

    /// Heap bytes held by the table.
    pub fn bytes(&self) -> usize {
        self.points.len() * std::mem::size_of::<AffinePoint>()
    }
}

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
fn generator_table() -> &'static Table {
    static G: OnceLock<Table> = OnceLock::new();
    G.get_or_init(|| Table::new(ProjectivePoint::GENERATOR))
}

/// The signature does not verify (including r or s out of range and a wrong length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSignature;

/// A P-256 public key with its multiplication table.
pub struct PublicKey {
    table: Table,
}

impl PublicKey {
    /// From a point already validated as on the curve and not the identity (what
    /// `p256::PublicKey` guarantees). Also builds the generator's table if no key has yet,
    /// so that cost falls on configuration, not on the first request.
    pub fn new(point: &p256::PublicKey) -> PublicKey {
        generator_table();
        PublicKey { table: Table::new(ProjectivePoint::from(*point.as_affine())) }
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
        let mut point = ProjectivePoint::IDENTITY;
        generator_table().mul_add(&(e * w), &mut point);
        self.table.mul_add(&(r * w), &mut point);
        let point = point.to_affine();
        if bool::from(point.is_identity()) {
            return Err(BadSignature);
        }
        if <Scalar as Reduce<FieldBytes>>::reduce(&point.x()) == r {
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
