//! ES384 (ECDSA over P-384 with SHA-384, RFC 7518 §3.4) verification with the `p384` crate.
//!
//! Why not jwt-simple's `ES384PublicKey::verify_token`, which calls the same crate: it
//! re-parses the JOSE header and refuses members it cannot read (a `jwk` *object*, as RFC
//! 7515 §4.1.3 defines it), so a correctly signed token could be refused for its header.
//! Here only the signing input and the signature are looked at, and the verdicts are
//! jwt-simple's: the same p384 verification on the same SHA-384 digest.
//!
//! The signature is JWS's fixed-width form (RFC 7518 §3.4, IEEE P1363): r || s, 48 bytes
//! each, big-endian; DER or any other length is refused. r and s must be in [1, n-1]
//! (`Signature::from_slice`). A high s (s > n/2) is accepted, exactly as ES256 decides it
//! (`crate::ecdsa`): JWS asks for no low-S rule, P-384's `NORMALIZE_S` is false, and
//! jwt-simple (the p384 crate) accepted it, so refusing it would refuse tokens that verified
//! before, from issuers that do not normalise s. The consequence, as for ES256: a valid
//! (r, s) has a valid twin (r, n-s), a different token string for the same claims.
//!
//! No per-key tables as for ES256: ES384 is rare in practice, and this costs what jwt-simple's
//! ES384 did (it is the same p384 code). Everything here is public, so variable time is fine.

use p384::ecdsa::signature::hazmat::PrehashVerifier;
use p384::ecdsa::{Signature, VerifyingKey};

#[cfg(test)]
mod tests;

/// A signature's length: r and s, 48 bytes each.
pub const SIGNATURE_BYTES: usize = 96;

/// The signature does not verify (wrong length, r or s out of range, or the equation fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSignature;

/// A P-384 public key.
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    /// From a SEC1 point (uncompressed 0x04 || x || y, as a JWK's x and y make): refused
    /// unless it is a point on the curve other than the identity.
    pub fn from_sec1_bytes(point: &[u8]) -> Result<PublicKey, String> {
        VerifyingKey::from_sec1_bytes(point)
            .map(|key| PublicKey { key })
            .map_err(|_| "not a valid P-384 point".to_string())
    }

    /// ECDSA verification of `signature` (r || s) over SHA-384(`msg`).
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> Result<(), BadSignature> {
        if signature.len() != SIGNATURE_BYTES {
            return Err(BadSignature);
        }
        let signature = Signature::from_slice(signature).map_err(|_| BadSignature)?;
        // SHA-384 from hmac-sha512, the hash RS384 and HS384 use too; the digest is exactly
        // the order's 384 bits, so p384 reduces it without truncation.
        let digest = hmac_sha512::sha384::Hash::hash(msg);
        self.key.verify_prehash(&digest, &signature).map_err(|_| BadSignature)
    }
}
