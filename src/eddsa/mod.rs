//! Ed25519 signature verification (RFC 8032 §5.1.7): the EdDSA of RFC 8037.
//!
//! A thin layer over `ed25519-dalek`, chosen for speed in Wasm: curve25519-dalek's field
//! arithmetic runs on 32-bit limbs on 32-bit targets (its build script picks
//! `curve25519_dalek_bits = "32"` from the pointer width, so wasm32 needs no setting), where
//! jwt-simple's ed25519-compact multiplies through u128, which 32-bit Wasm emulates
//! (bench/results/verify.md).
//!
//! Verification is `verify_strict`, the cofactorless equation compared on encodings, and
//! refuses:
//! - S not below the group order L (malleability, RFC 8032 §5.1.7 step 1),
//! - R not a point, of small order, or not canonically encoded (R is compared as bytes with
//!   the canonical encoding of [S]B - [k]A),
//! - a public key of small order.
//!
//! Keys are checked once, when built, as jwt-simple checked them at configuration time: 32
//! bytes, the canonical encoding of a point, not of small order. jwt-simple's verifier
//! (ed25519-compact) uses the cofactored equation, so it also accepts signatures that
//! differ from a valid one by a small-order component (possible only with a key that has
//! such a component, which an honest key never has); this module refuses them (see the
//! tests), which never refuses a signature an honest signer made.
//!
//! Everything here is public data, so none of it needs to be constant time.
//!
//! Natively, curve25519-dalek runs its 64-bit (or AVX2) backend, not the one Wasm gets. The
//! tests pass on the Wasm one too, run natively with
//! `RUSTFLAGS='--cfg curve25519_dalek_bits="32"' CARGO_TARGET_DIR=target/u32 cargo test --lib eddsa`
//! (its own target directory, as the flags rebuild everything).

#[cfg(test)]
mod tests;

use ed25519_dalek::{Signature, VerifyingKey};
use std::fmt;

/// The length of a public key and of the two halves of a signature.
pub const PUBLIC_KEY_BYTES: usize = 32;
/// The length of a signature, R then S.
pub const SIGNATURE_BYTES: usize = 64;

/// Why a key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Not 32 bytes.
    Length { len: usize },
    /// The bytes do not decode to a point of the curve.
    NotAPoint,
    /// A point, but not its canonical encoding (y not below p).
    NonCanonical,
    /// A point of small order: it would verify forged signatures.
    SmallOrder,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Length { len } => {
                write!(f, "public key is {len} bytes long (must be {PUBLIC_KEY_BYTES})")
            }
            KeyError::NotAPoint => write!(f, "public key is not a point of the curve"),
            KeyError::NonCanonical => write!(f, "public key is not canonically encoded"),
            KeyError::SmallOrder => write!(f, "public key is of small order"),
        }
    }
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// The signature is not 64 bytes long.
    Length,
    /// The signature does not verify (including a malformed R or S).
    Mismatch,
}

/// An Ed25519 public key, decoded and checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// From the 32-byte encoding (a JWK's `x`, RFC 8037 §2).
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let array: &[u8; PUBLIC_KEY_BYTES] =
            bytes.try_into().map_err(|_| KeyError::Length { len: bytes.len() })?;
        let key = VerifyingKey::from_bytes(array).map_err(|_| KeyError::NotAPoint)?;
        // decompress() reduces y modulo p and takes a sign bit on x = 0; re-encoding the
        // point gives back the input only when the input was canonical.
        if key.to_edwards().compress().as_bytes() != array {
            return Err(KeyError::NonCanonical);
        }
        if key.is_weak() {
            return Err(KeyError::SmallOrder);
        }
        Ok(PublicKey(key))
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_BYTES] {
        self.0.to_bytes()
    }

    /// Verifies `signature` (R || S) over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
        let signature = Signature::from_slice(signature).map_err(|_| VerifyError::Length)?;
        self.0.verify_strict(message, &signature).map_err(|_| VerifyError::Mismatch)
    }
}
