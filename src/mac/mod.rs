//! HS256, HS384 and HS512 (RFC 7518 §3.2): HMAC with SHA-256/384/512 over a compact JWS's
//! signing input, compared with the token's MAC.
//!
//! Why our own instead of jwt-simple's `HS*Key::verify_token`: jwt-simple re-parses the
//! whole token, header included, and refuses headers it cannot read (a `jwk` *object*, as
//! RFC 7515 §4.1.3 defines it). The MAC itself is the same: the `hmac-sha256` and
//! `hmac-sha512` crates jwt-simple computes it with.
//!
//! The key is a secret, so the comparison is constant time in the MAC's bytes: a verifier
//! that stops at the first differing byte tells an attacker, through its timing, how many
//! leading bytes of a forged MAC are right, and lets them build a valid one byte by byte.
//! The MAC's *length* is public (it is fixed by the algorithm), so a MAC of the wrong length
//! is refused at once, as a mismatch.

#[cfg(test)]
mod tests;

/// The hash under the HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// The MAC's length in bytes, which is also the smallest key RFC 7518 §3.2 allows.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => hmac_sha256::HMAC::mac(message, key).to_vec(),
            Hash::Sha384 => hmac_sha512::sha384::HMAC::mac(message, key).to_vec(),
            Hash::Sha512 => hmac_sha512::HMAC::mac(message, key).to_vec(),
        }
    }
}

/// The MAC does not match (or has the wrong length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch;

/// An HMAC secret bound to one hash. The key-size policy (at least the hash's length) is the
/// caller's (`jwks`), which knows the JWK it came from; this takes any key, as HMAC does.
pub struct Key {
    hash: Hash,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mac::Key({:?}, {} bytes)", self.hash, self.secret.len())
    }
}

impl Key {
    pub fn new(hash: Hash, secret: &[u8]) -> Key {
        Key { hash, secret: secret.to_vec() }
    }

    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// Checks `tag` against HMAC(key, message).
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> Result<(), Mismatch> {
        let expected = self.hash.mac(&self.secret, message);
        if constant_time_eq(&expected, tag) {
            Ok(())
        } else {
            Err(Mismatch)
        }
    }
}

/// `a == b`, taking the same time whatever the bytes are (but not whatever the lengths are:
/// those are public here). Every pair of eight-byte words (then of the last bytes) is XORed
/// and the differences ORed together, with no branch on the data; `black_box` keeps the
/// optimiser from turning the loop back into an early-exit comparison. Words, not bytes:
/// the hot path compares whole tokens with it, and byte by byte an 800-byte token cost
/// about 0.45 µs in V8.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |c: &[u8]| <[u8; 8]>::try_from(c).map_or(0, u64::from_ne_bytes);
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = wa.remainder().iter().zip(wb.remainder());
    let diff = tail.fold(0u64, |acc, (x, y)| std::hint::black_box(acc | u64::from(x ^ y)));
    let diff = wa.zip(wb).fold(diff, |acc, (x, y)| std::hint::black_box(acc | (word(x) ^ word(y))));
    diff == 0
}
