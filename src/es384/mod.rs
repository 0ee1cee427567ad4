//! ES384 (ECDSA over P-384 with SHA-384, RFC 7518 §3.4) verification with per-key tables
//! and our own field arithmetic, on the `p384` crate's points and scalars.
//!
//! Why not jwt-simple's `ES384PublicKey::verify_token`, which calls the same crate: it
//! re-parses the JOSE header and refuses members it cannot read (a `jwk` *object*, as RFC
//! 7515 §4.1.3 defines it), so a correctly signed token could be refused for its header.
//! Here only the signing input and the signature are looked at, and the verdicts are
//! jwt-simple's: p384's verification equation on the same SHA-384 digest.
//!
//! The signature is JWS's fixed-width form (RFC 7518 §3.4, IEEE P1363): r || s, 48 bytes
//! each, big-endian; DER or any other length is refused. r and s must be in [1, n-1]
//! (as p384's `Signature::from_slice` requires). A high s (s > n/2) is accepted, exactly as ES256 decides it
//! (`crate::ecdsa`): JWS asks for no low-S rule, P-384's `NORMALIZE_S` is false, and
//! jwt-simple (the p384 crate) accepted it, so refusing it would refuse tokens that verified
//! before, from issuers that do not normalise s. The consequence, as for ES256: a valid
//! (r, s) has a valid twin (r, n-s), a different token string for the same claims.
//!
//! Per-key tables, as for ES256 (see `fixed_base`): p384's own verifier (what jwt-simple
//! called) computes u1·G + u2·Q with ~384 doublings and costs ~2.8 ms in V8; with a table
//! for G (one per process) and one per key, a check is ~2·384/W mixed additions. Those run
//! on `field` (p384's own field multiplication is twice as slow in V8); the tables' points,
//! the key's validation and the scalar arithmetic mod n are p384's. The verdicts are p384's
//! verifier's, checked against it in the tests. Everything here is public, so variable time
//! is fine.

use std::sync::OnceLock;

use p384::elliptic_curve::ops::Reduce;
use p384::elliptic_curve::PrimeField as _;
use p384::{FieldBytes, ProjectivePoint, Scalar};

mod field;
mod fixed_base;
#[cfg(test)]
mod tests;

use field::Fe;
use fixed_base::{Jacobian, Table};

/// Window width in bits. W = 6: 65 windows, ~130 additions per check, 2080 points (195 KiB)
/// per key. W = 7 saves ~15% per check (1.23 M against 1.43 M native instructions, measured
/// with p384's field) for 3520 points (330 KiB) and 1.7x the build time per key; ES384 is
/// rare and every worker holds every key's table, so that does not pay. Nor did a wider
/// table for the generator alone (W = 8, 588 KiB once per worker): 16 additions fewer per
/// check, ~20% less in bench/verify, where one token is verified again and again and its
/// table entries stay in cache; but in Envoy, where every token is new and a larger table
/// misses the cache more, within the noise between runs (`make bench`, quiet: 179.1 µs added
/// with it, 178.8 and 192.1 without).
const W: usize = 6;
/// Scalar bits.
const BITS: usize = 384;
/// Points per table: (384 / W + 1) windows of 2^(W-1); 96 bytes each.
pub const TABLE_POINTS: usize = (BITS / W + 1) << (W - 1);

type P384Table = Table<W>;

/// A signature's length: r and s, 48 bytes each.
pub const SIGNATURE_BYTES: usize = 96;

/// The signature does not verify (wrong length, r or s out of range, or the equation fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSignature;

/// A P-384 public key with its multiplication table.
pub struct PublicKey {
    g: &'static P384Table,
    table: P384Table,
}

/// The generator's table, built once per process (Wasm VM) by the first key.
fn generator_table() -> Option<&'static P384Table> {
    static G: OnceLock<Option<P384Table>> = OnceLock::new();
    G.get_or_init(|| Table::new(ProjectivePoint::GENERATOR, BITS)).as_ref()
}

impl PublicKey {
    /// From a SEC1 point (uncompressed 0x04 || x || y, as a JWK's x and y make): refused
    /// unless it is a point on the curve other than the identity. Builds this key's table,
    /// and the generator's if no key has yet, so that cost falls on configuration, not on the
    /// first request.
    pub fn from_sec1_bytes(point: &[u8]) -> Result<PublicKey, String> {
        let key =
            p384::PublicKey::from_sec1_bytes(point).map_err(|_| "not a valid P-384 point".to_string())?;
        let g = generator_table().ok_or("P-384 generator table")?;
        let table = Table::new(key.to_projective(), BITS).ok_or("P-384 key table")?;
        Ok(PublicKey { g, table })
    }

    /// Heap bytes of this key's table (the generator's, shared, is as large again).
    pub fn table_bytes(&self) -> usize {
        self.table.bytes()
    }

    /// ECDSA verification of `signature` (r || s) over SHA-384(`msg`), as p384's
    /// `VerifyingKey::verify_prehash`: r, s in [1, n-1]; e = SHA-384(msg) mod n (the digest
    /// is exactly the order's 384 bits: no truncation); w = s^-1, and the signature holds iff
    /// x(e·w·G + r·w·Q) mod n = r.
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> Result<(), BadSignature> {
        if signature.len() != SIGNATURE_BYTES {
            return Err(BadSignature);
        }
        let (r, s) = signature.split_at_checked(48).ok_or(BadSignature)?;
        let r = scalar_in_range(r).ok_or(BadSignature)?;
        let s = scalar_in_range(s).ok_or(BadSignature)?;
        // SHA-384 from hmac-sha512, the hash RS384 and HS384 use too.
        let digest = hmac_sha512::sha384::Hash::hash(msg);
        let e = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(digest));
        let w = Option::<Scalar>::from(s.invert_vartime()).ok_or(BadSignature)?;
        let mut point = Jacobian::IDENTITY;
        self.g.mul_add(&(e * w).to_repr(), &mut point);
        self.table.mul_add(&(r * w).to_repr(), &mut point);
        if point.x_is_one_of(&x_candidates(&r)) {
            Ok(())
        } else {
            Err(BadSignature)
        }
    }
}

/// The field elements whose reduction mod n is r: r itself, and r + n when that is below p
/// (r < p - n). r < n < p, so r is always a field element.
fn x_candidates(r: &Scalar) -> Vec<Fe> {
    /// p - n, big-endian; both are 48 bytes, so bytewise order is numeric order.
    const P_MINUS_N: [u8; 48] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x38, 0x9c, 0xb2, 0x7e, 0x0b,
        0xc8, 0xd2, 0x1f, 0xa7, 0xe5, 0xf2, 0x4c, 0xb7, 0x4f, 0x58, 0x85, 0x13, 0x13, 0xe6, 0x96, 0x33, 0x3a,
        0xd6, 0x8c,
    ];
    let repr = r.to_repr();
    let Some(r_fe) = Fe::from_be_bytes(&repr) else { return Vec::new() };
    let mut out = vec![r_fe];
    if repr.as_slice() < P_MINUS_N.as_slice() {
        if let Some(n) = Fe::from_be_bytes(&N_BYTES) {
            out.push(r_fe + n);
        }
    }
    out
}

/// n, the group order, big-endian.
const N_BYTES: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf, 0x58, 0x1a,
    0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// A 48-byte big-endian integer in [1, n-1], or None.
fn scalar_in_range(bytes: &[u8]) -> Option<Scalar> {
    let repr = FieldBytes::try_from(bytes).ok()?;
    let k = Option::<Scalar>::from(Scalar::from_repr(repr))?;
    (!bool::from(k.is_zero())).then_some(k)
}
