//! JSON Web Keys (RFC 7517/7518) turned into ready-to-use verifiers.
//!
//! Keys are parsed and paired with algorithms once, at configuration time, so a request
//! never parses key material. A key is paired only with the algorithms its type permits
//! (and its `alg`, when the JWK names one), which is what rules out key confusion such as an
//! RSA public key used as an HMAC secret: an RSA JWK simply never yields an HS* verifier.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
// jwt-simple only parses and validates EC key points here (see `make_verifier`); it never
// sees a token.
use jwt_simple::prelude::{ES256PublicKey, ES384PublicKey};
use serde::Deserialize;

use crate::{ecdsa, eddsa, es384, mac, rsa};

mod signature;

/// Signature algorithms tokenguard accepts. `none` is deliberately absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 12] = [
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }
}

/// One JWK as it appears in a key set. Unknown members (`x5c`, `key_ops`, ...) are ignored,
/// as RFC 7517 §4 asks.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
    #[serde(default)]
    pub k: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// A public key (or HMAC secret) bound to exactly one algorithm.
pub enum Verifier {
    /// HS*: tokenguard's own HMAC check (`crate::mac`), constant time in the MAC.
    HS256(mac::Key),
    HS384(mac::Key),
    HS512(mac::Key),
    /// RS*: tokenguard's own RSASSA-PKCS1-v1_5 (`crate::rsa`), many times faster in Wasm
    /// than jwt-simple's.
    RS256(rsa::PublicKey),
    RS384(rsa::PublicKey),
    RS512(rsa::PublicKey),
    /// PS*: tokenguard's own RSASSA-PSS (`crate::rsa`'s `pss`) on the same public-key
    /// operation as RS*.
    PS256(rsa::PublicKey),
    PS384(rsa::PublicKey),
    PS512(rsa::PublicKey),
    /// ES256: tokenguard's own verifier on per-key tables (`crate::ecdsa`), many times
    /// faster in Wasm than jwt-simple's.
    ES256(ecdsa::PublicKey),
    /// ES384: the p384 crate's verifier on our SHA-384 digest (`crate::es384`).
    ES384(es384::PublicKey),
    /// EdDSA (Ed25519): `crate::eddsa` (ed25519-dalek), faster in Wasm than jwt-simple's.
    EdDSA(eddsa::PublicKey),
}

/// Why a verifier refused a token whose structure we had already checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The signature does not verify under this key.
    Mismatch,
    /// The token is not a compact JWS this verifier can look at (`signed_parts`: too long,
    /// not three segments, a signature that is not base64url), or, for EdDSA only, a
    /// signature of the wrong length: what jwt-simple refused before its signature check.
    Rejected,
}

/// A verifier plus the `kid` it answers to.
pub struct KeyEntry {
    pub kid: Option<String>,
    pub alg: Alg,
    pub verifier: Verifier,
}

/// Every (key, algorithm) pair a provider may verify with.
#[derive(Default)]
pub struct KeySet {
    pub entries: Vec<KeyEntry>,
}

/// How a token's header selects keys.
pub enum KeyLookup<'a> {
    /// Candidates to try, in key-set order.
    Found(Vec<&'a KeyEntry>),
    /// The `kid` names a key, but not one usable with the token's algorithm.
    AlgorithmNotAllowedForKey,
    /// The `kid` names no key in the set.
    UnknownKid,
    /// No `kid`, and no key supports the algorithm.
    NoKeyForAlgorithm,
}

impl KeySet {
    /// Builds verifiers for every JWK and every allowed algorithm it supports. `field` is the
    /// configuration path used in error messages.
    pub fn build(set: &JwkSet, allowed: &[Alg], field: &str) -> Result<KeySet, String> {
        let mut entries = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            let here = format!("{field}.keys[{i}]");
            if let Some(u) = &jwk.use_ {
                if u != "sig" {
                    continue; // encryption keys are not ours to use (RFC 7517 §4.2)
                }
            }
            let pinned = match &jwk.alg {
                Some(name) => Some(
                    Alg::parse(name).ok_or_else(|| format!("{here}.alg: unsupported algorithm {name:?}"))?,
                ),
                None => None,
            };
            // Keys of other types are skipped, not refused: a published key set commonly
            // holds keys for algorithms this provider does not allow.
            for &alg in allowed {
                if pinned.is_some_and(|p| p != alg) || !supports(jwk, alg) {
                    continue;
                }
                let verifier = make_verifier(jwk, alg).map_err(|m| format!("{here}: {m}"))?;
                entries.push(KeyEntry { kid: jwk.kid.clone(), alg, verifier });
            }
        }
        Ok(KeySet { entries })
    }

    /// `build` for a set fetched at run time: a key that cannot be used (bad parameters, an
    /// unsupported `alg`) is skipped rather than failing the whole set; returns how many.
    pub fn build_lenient(set: &JwkSet, allowed: &[Alg]) -> (KeySet, usize) {
        let mut out = KeySet::default();
        let mut skipped = 0;
        for jwk in &set.keys {
            let one = JwkSet { keys: vec![jwk.clone()] };
            match KeySet::build(&one, allowed, "") {
                Ok(mut k) => out.entries.append(&mut k.entries),
                Err(_) => skipped += 1,
            }
        }
        (out, skipped)
    }

    /// The distinct `kid`s of the set, in order.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = Vec::new();
        for kid in self.entries.iter().filter_map(|e| e.kid.as_ref()) {
            if !kids.contains(kid) {
                kids.push(kid.clone());
            }
        }
        kids
    }

    pub fn lookup(&self, alg: Alg, kid: Option<&str>) -> KeyLookup<'_> {
        match kid {
            Some(kid) => {
                let named: Vec<&KeyEntry> =
                    self.entries.iter().filter(|e| e.kid.as_deref() == Some(kid)).collect();
                if named.is_empty() {
                    return KeyLookup::UnknownKid;
                }
                let usable: Vec<&KeyEntry> = named.into_iter().filter(|e| e.alg == alg).collect();
                if usable.is_empty() {
                    KeyLookup::AlgorithmNotAllowedForKey
                } else {
                    KeyLookup::Found(usable)
                }
            }
            None => {
                let usable: Vec<&KeyEntry> = self.entries.iter().filter(|e| e.alg == alg).collect();
                if usable.is_empty() {
                    KeyLookup::NoKeyForAlgorithm
                } else {
                    KeyLookup::Found(usable)
                }
            }
        }
    }
}

fn supports(jwk: &Jwk, alg: Alg) -> bool {
    use Alg::*;
    match (jwk.kty.as_str(), alg) {
        ("oct", HS256 | HS384 | HS512) => true,
        ("RSA", RS256 | RS384 | RS512 | PS256 | PS384 | PS512) => true,
        ("EC", ES256) => jwk.crv.as_deref() == Some("P-256"),
        ("EC", ES384) => jwk.crv.as_deref() == Some("P-384"),
        ("OKP", EdDSA) => jwk.crv.as_deref() == Some("Ed25519"),
        _ => false,
    }
}

fn b64(member: &str, value: &Option<String>) -> Result<Vec<u8>, String> {
    let v = value.as_deref().ok_or_else(|| format!("missing member {member:?}"))?;
    URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).map_err(|_| format!("member {member:?} is not base64url"))
}

fn make_verifier(jwk: &Jwk, alg: Alg) -> Result<Verifier, String> {
    let bad = |e: jwt_simple::Error| format!("invalid {} key for {}: {e}", jwk.kty, alg.as_str());
    Ok(match alg {
        Alg::HS256 | Alg::HS384 | Alg::HS512 => {
            let k = b64("k", &jwk.k)?;
            // RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
            let min = match alg {
                Alg::HS256 => 32,
                Alg::HS384 => 48,
                _ => 64,
            };
            if k.len() < min {
                return Err(format!("{} needs a key of at least {min} bytes", alg.as_str()));
            }
            match alg {
                Alg::HS256 => Verifier::HS256(mac::Key::new(mac::Hash::Sha256, &k)),
                Alg::HS384 => Verifier::HS384(mac::Key::new(mac::Hash::Sha384, &k)),
                _ => Verifier::HS512(mac::Key::new(mac::Hash::Sha512, &k)),
            }
        }
        Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
            let n = b64("n", &jwk.n)?;
            let e = b64("e", &jwk.e)?;
            let rs_key =
                || rsa_key(&n, &e).map_err(|m| format!("invalid {} key for {}: {m}", jwk.kty, alg.as_str()));
            match alg {
                Alg::RS256 => Verifier::RS256(rs_key()?),
                Alg::RS384 => Verifier::RS384(rs_key()?),
                Alg::RS512 => Verifier::RS512(rs_key()?),
                Alg::PS256 => Verifier::PS256(rs_key()?),
                Alg::PS384 => Verifier::PS384(rs_key()?),
                _ => Verifier::PS512(rs_key()?),
            }
        }
        Alg::ES256 | Alg::ES384 => {
            let mut point = vec![0x04];
            point.extend(b64("x", &jwk.x)?);
            point.extend(b64("y", &jwk.y)?);
            if alg == Alg::ES256 {
                // jwt-simple still validates the point, so the same JWKs load (or fail, with
                // the same message) as before; p256 then parses it again for our tables.
                ES256PublicKey::from_bytes(&point).map_err(bad)?;
                let invalid = |e: String| format!("invalid {} key for {}: {e}", jwk.kty, alg.as_str());
                let point = p256::PublicKey::from_sec1_bytes(&point).map_err(|e| invalid(e.to_string()))?;
                let key = ecdsa::PublicKey::new(&point).ok_or_else(|| invalid("no table".into()))?;
                Verifier::ES256(key)
            } else {
                // As for ES256: jwt-simple's check first, so the same JWKs load, or fail with
                // the same message, as when jwt-simple verified ES384.
                ES384PublicKey::from_bytes(&point).map_err(bad)?;
                let invalid = |e: String| format!("invalid {} key for {}: {e}", jwk.kty, alg.as_str());
                Verifier::ES384(es384::PublicKey::from_sec1_bytes(&point).map_err(invalid)?)
            }
        }
        Alg::EdDSA => Verifier::EdDSA(
            eddsa::PublicKey::from_bytes(&b64("x", &jwk.x)?)
                .map_err(|m| format!("invalid {} key for {}: member \"x\": {m}", jwk.kty, alg.as_str()))?,
        ),
    })
}

/// The RSA key policy for RS* and PS* keys (the one jwt-simple 0.15 applies in
/// `check_rsa_key_policy`, so an RSA JWK is usable for RS* exactly when it is for PS*): a
/// modulus of 2048 to 4096 bits, odd, and e = 65537. `crate::rsa` itself takes more (up to 8192 bits,
/// any odd e >= 3); widening this is a policy decision, not a code change.
const RSA_MAX_MODULUS_BITS: usize = 4096;
const RSA_EXPONENT: u64 = 65537;

fn rsa_key(n: &[u8], e: &[u8]) -> Result<rsa::PublicKey, String> {
    let too_long = |bits| format!("modulus of {bits} bits is too long (at most {RSA_MAX_MODULUS_BITS})");
    let key = rsa::PublicKey::from_be_bytes(n, e).map_err(|e| match e {
        rsa::KeyError::ModulusTooLong { bits } => too_long(bits),
        rsa::KeyError::UnsupportedExponent => {
            format!("public exponent is not supported (only {RSA_EXPONENT})")
        }
        other => other.to_string(),
    })?;
    if key.bits() > RSA_MAX_MODULUS_BITS {
        return Err(too_long(key.bits()));
    }
    if key.exponent() != RSA_EXPONENT {
        return Err(format!("public exponent {} is not supported (only {RSA_EXPONENT})", key.exponent()));
    }
    Ok(key)
}
