//! Test-only RSA signing: PKCS#1 v1.5 and PSS signatures over arbitrary bytes, for tests that
//! need tokens jwt-simple cannot mint (a header it would not write, a PSS salt it would not
//! choose). jwt-simple signs only JWTs it builds, and its RSA key types are not reachable
//! without naming its private dependencies.
//!
//! The private key comes from a PEM (PKCS#8 or PKCS#1) through a minimal DER reader; the
//! private-key operation is `montgomery`'s, in variable time: fine for test keys only.

use super::montgomery::{be_from_limbs, limbs_from_be, Modulus};
use super::{emsa_pkcs1_v15, pss::mgf1, Hash};
use base64::Engine;

/// An RSA private key, as much of it as signing with m^d needs.
pub struct PrivateKey {
    modulus: Modulus,
    d: Vec<u8>,
    /// k: the modulus' length in bytes.
    k: usize,
    /// Big-endian n and e, for the JWK.
    pub n: Vec<u8>,
    pub e: Vec<u8>,
}

/// One DER TLV at the front of `der`: (tag, contents, rest). Definite lengths only.
fn tlv(der: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = der[0];
    let (len, header) = match der[1] {
        l if l < 0x80 => (usize::from(l), 2),
        l => {
            let n = usize::from(l & 0x7f);
            (der[2..2 + n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)), 2 + n)
        }
    };
    (tag, &der[header..header + len], &der[header + len..])
}

/// The INTEGERs of a SEQUENCE, big-endian without the sign byte.
fn integers(seq: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = seq;
    while !rest.is_empty() {
        let (tag, value, next) = tlv(rest);
        if tag == 0x02 {
            let first = value.iter().position(|&b| b != 0).unwrap_or(value.len());
            out.push(value[first..].to_vec());
        }
        rest = next;
    }
    out
}

impl PrivateKey {
    pub fn from_pem(pem: &str) -> PrivateKey {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(b64.trim()).expect("PEM base64");
        let (tag, outer, _) = tlv(&der);
        assert_eq!(tag, 0x30, "not a DER SEQUENCE");
        // PKCS#8: INTEGER 0, SEQUENCE (algorithm), OCTET STRING (the PKCS#1 key).
        let (_, _, rest) = tlv(outer);
        let (second, _, rest) = tlv(rest);
        let pkcs1 = if second == 0x30 {
            let (tag, inner, _) = tlv(rest);
            assert_eq!(tag, 0x04, "PKCS#8 without its OCTET STRING");
            tlv(inner).1
        } else {
            outer
        };
        // RSAPrivateKey: version, n, e, d, p, q, dp, dq, qinv (the version 0 strips to empty).
        let ints = integers(pkcs1);
        let (n, e, d) = (ints[1].clone(), ints[2].clone(), ints[3].clone());
        let k = n.len();
        let modulus = Modulus::new(limbs_from_be(&n, k.div_ceil(4))).expect("odd modulus");
        PrivateKey { modulus, d, k, n, e }
    }

    /// m^d mod n for an encoded message `em` (at most k bytes, below n), as k bytes.
    pub fn raw(&self, em: &[u8]) -> Vec<u8> {
        let m = limbs_from_be(em, self.modulus.limbs());
        be_from_limbs(&self.modulus.pow_be(&m, &self.d), self.k).expect("fits")
    }

    /// RSASSA-PKCS1-v1_5 (RS256/384/512).
    pub fn sign_pkcs1(&self, hash: Hash, msg: &[u8]) -> Vec<u8> {
        self.raw(&emsa_pkcs1_v15(hash, &hash.digest(msg), self.k).expect("encoding"))
    }

    /// RSASSA-PSS with `hash` for the message and `mgf_hash` for MGF1, and the given salt
    /// (RFC 8017 §9.1.1 EMSA-PSS-ENCODE, then RSASP1).
    pub fn sign_pss(&self, hash: Hash, mgf_hash: Hash, msg: &[u8], salt: &[u8]) -> Vec<u8> {
        let bits = super::montgomery::bit_length(self.modulus.n());
        let em_bits = bits - 1;
        let em_len = em_bits.div_ceil(8);
        let h_len = hash.output_len();
        let m_prime = [&[0u8; 8][..], &hash.digest(msg), salt].concat();
        let h = hash.digest(&m_prime);
        let ps_len = em_len - salt.len() - h_len - 2;
        let db = [vec![0u8; ps_len], vec![1], salt.to_vec()].concat();
        let mut masked: Vec<u8> = db.iter().zip(mgf1(mgf_hash, &h, db.len())).map(|(a, b)| a ^ b).collect();
        masked[0] &= 0xff >> (8 * em_len - em_bits);
        self.raw(&[masked, h, vec![0xbc]].concat())
    }

    /// PS256/384/512 as RFC 7518 §3.5 has it: MGF1 with the same hash, salt of its length.
    pub fn sign_ps(&self, hash: Hash, msg: &[u8], salt_seed: u64) -> Vec<u8> {
        let salt: Vec<u8> =
            (0..hash.output_len()).map(|i| (salt_seed.rotate_left(i as u32 * 7) >> 3) as u8).collect();
        self.sign_pss(hash, hash, msg, &salt)
    }
}
