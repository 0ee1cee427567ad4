//! RSASSA-PKCS1-v1_5 signature verification (RFC 8017 §8.2.2, EMSA-PKCS1-v1_5 in §9.2)
//! with SHA-256/384/512: the RS256, RS384 and RS512 of RFC 7518 §3.3. RSASSA-PSS (PS256,
//! PS384, PS512) shares the public-key operation and is in `pss`.
//!
//! jwt-simple's pure-Rust RSA costs milliseconds per signature in 32-bit Wasm; this does
//! the one public-key operation (see `montgomery`) and nothing else.
//!
//! Verification never parses the decrypted block, which is where PKCS#1 v1.5 forgeries
//! live (Bleichenbacher 2006 and its many descendants): it computes m = s^e mod n, builds
//! the one encoding a correct signature can have, and compares the two, every byte.
//!
//! Only the standard DigestInfo, with explicit NULL parameters, is accepted. RFC 8017 §9.2
//! note 2 lets verifiers also accept the form without NULL; Wycheproof rates that
//! "acceptable" (legacy), and jwt-simple (through the `rsa` crate) refuses it, so refusing
//! it keeps tokenguard's verdicts unchanged.
//!
//! Everything here is public data (key, signature, message), so none of it is constant
//! time, deliberately.

mod columns;
mod montgomery;
mod pss;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testsign;

use montgomery::{be_from_limbs, bit_length, less_than, limbs_from_be, Modulus};
use std::fmt;

/// Smallest modulus this module takes (RFC 7518 §3.3: 2048 bits or larger).
pub const MIN_MODULUS_BITS: usize = 2048;
/// Largest modulus this module takes; bounds the work per verification.
pub const MAX_MODULUS_BITS: usize = 8192;

/// The hash of an RSASSA-PKCS1-v1_5 signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// DER of DigestInfo ::= SEQUENCE { SEQUENCE { OID, NULL }, OCTET STRING } up to the
/// digest itself (RFC 8017 §9.2 note 1).
const SHA256_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
    0x04, 0x20,
];
const SHA384_PREFIX: [u8; 19] = [
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00,
    0x04, 0x30,
];
const SHA512_PREFIX: [u8; 19] = [
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00,
    0x04, 0x40,
];

impl Hash {
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &SHA256_PREFIX,
            Hash::Sha384 => &SHA384_PREFIX,
            Hash::Sha512 => &SHA512_PREFIX,
        }
    }

    /// The digest's length in bytes (hLen).
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    pub fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => hmac_sha256::Hash::hash(message).to_vec(),
            Hash::Sha384 => hmac_sha512::sha384::Hash::hash(message).to_vec(),
            Hash::Sha512 => hmac_sha512::Hash::hash(message).to_vec(),
        }
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    ModulusTooShort {
        bits: usize,
    },
    ModulusTooLong {
        bits: usize,
    },
    EvenModulus,
    /// e is even, below 3, or wider than 64 bits.
    UnsupportedExponent,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::ModulusTooShort { bits } => {
                write!(f, "modulus of {bits} bits is too short (at least {MIN_MODULUS_BITS})")
            }
            KeyError::ModulusTooLong { bits } => {
                write!(f, "modulus of {bits} bits is too long (at most {MAX_MODULUS_BITS})")
            }
            KeyError::EvenModulus => write!(f, "modulus is even"),
            KeyError::UnsupportedExponent => {
                write!(f, "public exponent must be odd, at least 3 and at most 64 bits")
            }
        }
    }
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// The signature is not exactly as long as the modulus (RFC 8017 §8.2.2 step 1).
    Length,
    /// The signature, as an integer, is not below the modulus (RSAVP1 step 1).
    OutOfRange,
    /// s^e mod n is not the encoding of this message's hash.
    Mismatch,
}

/// An RSA public key ready to verify: the Montgomery constants are computed once, here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    modulus: Modulus,
    e: u64,
    /// k: the modulus length in bytes.
    k: usize,
}

impl PublicKey {
    /// From big-endian n and e, as in a JWK (RFC 7518 §6.3.1). Leading zero bytes are
    /// ignored, in both (RFC 7518 forbids them in `n`, jwt-simple tolerates them, and so do
    /// we: k counts the modulus' significant bytes only).
    pub fn from_be_bytes(n: &[u8], e: &[u8]) -> Result<PublicKey, KeyError> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let k = n.len();
        let limbs = limbs_from_be(n, k.div_ceil(4));
        let bits = bit_length(&limbs);
        if bits < MIN_MODULUS_BITS {
            return Err(KeyError::ModulusTooShort { bits });
        }
        if bits > MAX_MODULUS_BITS {
            return Err(KeyError::ModulusTooLong { bits });
        }
        if e.len() > 8 {
            return Err(KeyError::UnsupportedExponent);
        }
        let e = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        if e < 3 || e & 1 == 0 {
            return Err(KeyError::UnsupportedExponent);
        }
        let modulus = Modulus::new(limbs).ok_or(KeyError::EvenModulus)?;
        Ok(PublicKey { modulus, e, k })
    }

    /// The modulus' length in bits.
    pub fn bits(&self) -> usize {
        bit_length(self.modulus.n())
    }

    /// k: the modulus' length in bytes, which is every valid signature's length.
    pub fn modulus_len(&self) -> usize {
        self.k
    }

    pub fn exponent(&self) -> u64 {
        self.e
    }

    /// RSASSA-PKCS1-V1_5-VERIFY (RFC 8017 §8.2.2) of `signature` over `message`.
    pub fn verify(&self, hash: Hash, message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
        self.verify_digest(hash, &hash.digest(message), signature)
    }

    /// The same for a message already hashed with `hash`.
    pub fn verify_digest(&self, hash: Hash, digest: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
        // Steps 1 and 2.
        let em = self.open(signature)?;
        // 3. EMSA-PKCS1-v1_5 encoding of the message, 4. comparison.
        let expected = emsa_pkcs1_v15(hash, digest, self.k).ok_or(VerifyError::Mismatch)?;
        if em == expected {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }
}

impl PublicKey {
    /// The steps RSASSA-PKCS1-V1_5-VERIFY (§8.2.2) and RSASSA-PSS-VERIFY (§8.1.2) share
    /// (step 1, the signature is exactly k bytes; steps 2a and 2b, OS2IP and RSAVP1: s < n,
    /// m = s^e mod n), giving m as k big-endian bytes; each scheme's I2OSP takes what it
    /// needs of them.
    fn open(&self, signature: &[u8]) -> Result<Vec<u8>, VerifyError> {
        if signature.len() != self.k {
            return Err(VerifyError::Length);
        }
        let s = limbs_from_be(signature, self.modulus.limbs());
        if !less_than(&s, self.modulus.n()) {
            return Err(VerifyError::OutOfRange);
        }
        let m = self.modulus.pow_odd(&s, self.e);
        // m < n fits in k bytes.
        be_from_limbs(&m, self.k).ok_or(VerifyError::Mismatch)
    }
}

fn strip_leading_zeros(x: &[u8]) -> &[u8] {
    let first = x.iter().position(|&b| b != 0).unwrap_or(x.len());
    x.get(first..).unwrap_or_default()
}

/// EMSA-PKCS1-v1_5-ENCODE (RFC 8017 §9.2): 0x00 0x01 PS 0x00 T, PS being at least eight
/// 0xff bytes and T the DigestInfo. `None` when k is too short for it (never for the
/// moduli `PublicKey` accepts) or the digest has the wrong length.
fn emsa_pkcs1_v15(hash: Hash, digest: &[u8], k: usize) -> Option<Vec<u8>> {
    let prefix = hash.digest_info_prefix();
    // The prefix's last byte is the OCTET STRING's length: the digest's.
    if prefix.last().map(|&l| usize::from(l)) != Some(digest.len()) {
        return None;
    }
    let t_len = prefix.len() + digest.len();
    let ps_len = k.checked_sub(t_len + 3).filter(|&l| l >= 8)?;
    let mut em = Vec::with_capacity(k);
    em.extend_from_slice(&[0x00, 0x01]);
    em.resize(2 + ps_len, 0xff);
    em.push(0x00);
    em.extend_from_slice(prefix);
    em.extend_from_slice(digest);
    Some(em)
}
