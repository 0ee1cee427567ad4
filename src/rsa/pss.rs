//! RSASSA-PSS verification (RFC 8017 §8.1.2, EMSA-PSS-VERIFY in §9.1.2) with the
//! parameters RFC 7518 §3.5 fixes for PS256, PS384 and PS512: SHA-256/384/512, MGF1 with
//! the same hash, and a salt exactly as long as the hash. A signature made with any other
//! salt length or MGF hash is refused, as jwt-simple (the `rsa` crate with the hash-length
//! salt) refused it.
//!
//! Why our own: jwt-simple's PS* `verify_token` re-parses the JOSE header and refuses
//! members it cannot read (a `jwk` *object*, as RFC 7515 §4.1.3 defines it); and its RSA is
//! slow in 32-bit Wasm, where the public-key operation here is `montgomery`'s.
//!
//! Unlike PKCS#1 v1.5 (see the parent module), PSS cannot be checked by re-encoding: the
//! encoding is randomised by the salt, so the decrypted block has to be parsed. Every step
//! of §9.1.2 is taken on checked slices; a block of the wrong shape is a mismatch, never a
//! panic. Everything here is public (key, signature, message), so none of it is constant
//! time.

use super::{Hash, PublicKey, VerifyError};

impl PublicKey {
    /// RSASSA-PSS-VERIFY (RFC 8017 §8.1.2) of `signature` over `message`, with MGF1(`hash`)
    /// and a salt of `hash`'s length.
    pub fn verify_pss(&self, hash: Hash, message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
        // 1, 2a, 2b: length, range, m = s^e mod n as k bytes.
        let m = self.open(signature)?;
        // 2c. EM = I2OSP(m, emLen) with emBits = modBits - 1 and emLen = ceil(emBits / 8):
        // k - 1 bytes when modBits is 1 mod 8, whose m must then start with a zero byte.
        let em_bits = self.bits().checked_sub(1).ok_or(VerifyError::Mismatch)?;
        let em_len = em_bits.div_ceil(8);
        let excess = m.len().checked_sub(em_len).ok_or(VerifyError::Mismatch)?;
        let (high, em) = m.split_at_checked(excess).ok_or(VerifyError::Mismatch)?;
        if high.iter().any(|&b| b != 0) {
            return Err(VerifyError::Mismatch);
        }
        // 3. EMSA-PSS-VERIFY.
        if emsa_pss_verify(hash, &hash.digest(message), em, em_bits) {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2) of the encoded message `em` (emLen bytes) against the
/// message hash `m_hash`, with sLen = hLen. Step 1 (the message's length limit) is the
/// hash's and cannot fail for a token; step 2 (hashing the message) is the caller's.
pub(super) fn emsa_pss_verify(hash: Hash, m_hash: &[u8], em: &[u8], em_bits: usize) -> bool {
    let h_len = hash.output_len();
    let s_len = h_len;
    let em_len = em.len();
    // The caller's I2OSP made em exactly ceil(emBits / 8) bytes; anything else is a bug, and
    // refused rather than trusted.
    if m_hash.len() != h_len || em_len != em_bits.div_ceil(8) {
        return false;
    }
    // 3. emLen < hLen + sLen + 2: inconsistent.
    let Some(db_len) = em_len.checked_sub(h_len + 1) else { return false };
    let Some(ps_len) = db_len.checked_sub(s_len + 1) else { return false };
    // 4. The rightmost octet must be 0xbc; 5. maskedDB || H || 0xbc.
    let Some((masked_db, rest)) = em.split_at_checked(db_len) else { return false };
    let Some((h, trailer)) = rest.split_at_checked(h_len) else { return false };
    if trailer != [0xbc] {
        return false;
    }
    // 6. The leftmost 8·emLen − emBits bits of maskedDB (0 to 7 of them) must be zero.
    let unused_bits = 8 * em_len - em_bits;
    let top_mask = 0xffu8.checked_shr(unused_bits as u32).unwrap_or(0);
    if masked_db.first().is_some_and(|&b| b & !top_mask != 0) {
        return false;
    }
    // 7. dbMask = MGF(H, emLen − hLen − 1); 8. DB = maskedDB ⊕ dbMask.
    let mut db: Vec<u8> = masked_db.iter().zip(mgf1(hash, h, db_len)).map(|(a, b)| a ^ b).collect();
    if db.len() != db_len {
        return false;
    }
    // 9. Clear the same leftmost bits of DB.
    if let Some(first) = db.first_mut() {
        *first &= top_mask;
    }
    // 10. DB = PS (emLen − hLen − sLen − 2 zero octets) || 0x01 || salt.
    let Some((ps, rest)) = db.split_at_checked(ps_len) else { return false };
    if ps.iter().any(|&b| b != 0) {
        return false;
    }
    let Some((&one, salt)) = rest.split_first() else { return false };
    if one != 0x01 || salt.len() != s_len {
        return false;
    }
    // 11–13. M' = (0x)00 00 00 00 00 00 00 00 || mHash || salt; H' = Hash(M').
    let mut m_prime = Vec::with_capacity(8 + h_len + s_len);
    m_prime.extend_from_slice(&[0u8; 8]);
    m_prime.extend_from_slice(m_hash);
    m_prime.extend_from_slice(salt);
    // 14. H = H'. (Public data: an ordinary comparison.)
    hash.digest(&m_prime) == h
}

/// MGF1 (RFC 8017 §B.2.1): Hash(seed || C) for the 32-bit big-endian counters C = 0, 1, …,
/// concatenated and cut to `len` bytes. Its "mask too long" error needs len > 2^32·hLen,
/// out of reach for the at most 8192-bit moduli `PublicKey` takes.
pub(super) fn mgf1(hash: Hash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut mask = Vec::with_capacity(len + hash.output_len());
    let mut block = Vec::with_capacity(seed.len() + 4);
    let mut counter: u32 = 0;
    while mask.len() < len {
        block.clear();
        block.extend_from_slice(seed);
        block.extend_from_slice(&counter.to_be_bytes());
        mask.extend_from_slice(&hash.digest(&block));
        counter = counter.wrapping_add(1);
    }
    mask.truncate(len);
    mask
}

#[cfg(test)]
mod tests;
