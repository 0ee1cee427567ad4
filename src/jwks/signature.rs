//! `Verifier::verify`: each algorithm's check of a compact JWS, over its signing input
//! (`header.payload`, as sent) and decoded signature only. Kept apart from key loading
//! (`jwks`) because this is the per-request half.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::{SignatureError, Verifier};
use crate::{ecdsa, eddsa, es384, mac, rsa};

impl Verifier {
    /// Checks the signature only, over the token's signing input (`header.payload`, as sent)
    /// and its decoded signature. No verifier parses the header or the claims: `token::decode`
    /// did that, with tokenguard's own rules, and claims are validated by `crate::verify` (no
    /// jwt-simple involved, so no header member it cannot read refuses a valid token).
    ///
    /// The caller binds the algorithm: it picks this verifier by the token header's `alg`
    /// (`KeySet::lookup`), and each verifier is bound to exactly one algorithm.
    pub fn verify(&self, token: &str) -> Result<(), SignatureError> {
        match self {
            Verifier::HS256(k) | Verifier::HS384(k) | Verifier::HS512(k) => verify_hmac(k, token),
            Verifier::RS256(k) => verify_rsa(k, rsa::Hash::Sha256, token),
            Verifier::RS384(k) => verify_rsa(k, rsa::Hash::Sha384, token),
            Verifier::RS512(k) => verify_rsa(k, rsa::Hash::Sha512, token),
            Verifier::PS256(k) => verify_pss(k, rsa::Hash::Sha256, token),
            Verifier::PS384(k) => verify_pss(k, rsa::Hash::Sha384, token),
            Verifier::PS512(k) => verify_pss(k, rsa::Hash::Sha512, token),
            Verifier::ES256(k) => verify_es256(k, token),
            Verifier::ES384(k) => verify_es384(k, token),
            Verifier::EdDSA(k) => verify_eddsa(k, token),
        }
    }
}

/// A compact JWS's signing input and decoded signature, for the verifiers. Keeps the checks
/// jwt-simple made before its signature check (when it verified) and `token::decode` may not
/// have made for a direct caller: the token and header length bounds and the three-segment
/// shape; an undecodable signature is refused.
fn signed_parts(token: &str) -> Result<(&str, Vec<u8>), SignatureError> {
    if token.len() > crate::token::MAX_TOKEN_BYTES {
        return Err(SignatureError::Rejected);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(SignatureError::Rejected)?;
    let (header, claims) = signing_input.split_once('.').ok_or(SignatureError::Rejected)?;
    if claims.contains('.') || header.len() > crate::token::MAX_HEADER_SEGMENT_BYTES {
        return Err(SignatureError::Rejected);
    }
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| SignatureError::Rejected)?;
    Ok((signing_input, signature))
}

/// RS256/384/512 of a compact JWS (`signed_parts` first). A signature of the wrong length
/// is a mismatch, as it was with jwt-simple (a 32-byte HMAC under an `RS256` header is a bad
/// signature, not a malformed token).
fn verify_rsa(key: &rsa::PublicKey, hash: rsa::Hash, token: &str) -> Result<(), SignatureError> {
    let (signing_input, signature) = signed_parts(token)?;
    key.verify(hash, signing_input.as_bytes(), &signature).map_err(|_| SignatureError::Mismatch)
}

/// HS256/384/512 of a compact JWS (`signed_parts` first): a MAC of the wrong length is a
/// mismatch, as it was with jwt-simple.
fn verify_hmac(key: &mac::Key, token: &str) -> Result<(), SignatureError> {
    let (signing_input, tag) = signed_parts(token)?;
    key.verify(signing_input.as_bytes(), &tag).map_err(|_| SignatureError::Mismatch)
}

/// PS256/384/512 of a compact JWS (`signed_parts` first). Every refusal, a wrong length
/// included, is a mismatch, as it was with jwt-simple.
fn verify_pss(key: &rsa::PublicKey, hash: rsa::Hash, token: &str) -> Result<(), SignatureError> {
    let (signing_input, signature) = signed_parts(token)?;
    key.verify_pss(hash, signing_input.as_bytes(), &signature).map_err(|_| SignatureError::Mismatch)
}

/// ES256 of a compact JWS (`signed_parts` first): a signature that is not 64 bytes is a
/// mismatch, as it was with jwt-simple.
fn verify_es256(key: &ecdsa::PublicKey, token: &str) -> Result<(), SignatureError> {
    let (signing_input, signature) = signed_parts(token)?;
    key.verify(signing_input.as_bytes(), &signature).map_err(|_| SignatureError::Mismatch)
}

/// ES384 of a compact JWS (`signed_parts` first): a signature that is not 96 bytes is a
/// mismatch, as it was with jwt-simple.
fn verify_es384(key: &es384::PublicKey, token: &str) -> Result<(), SignatureError> {
    let (signing_input, signature) = signed_parts(token)?;
    key.verify(signing_input.as_bytes(), &signature).map_err(|_| SignatureError::Mismatch)
}

/// EdDSA of a compact JWS (`signed_parts` first). Unlike RS*, a signature of the wrong
/// length stays `Rejected`: jwt-simple refused it before its signature check
/// (ed25519-compact's length error is not one of jwt-simple's signature errors), so the
/// token was "malformed", and still is.
fn verify_eddsa(key: &eddsa::PublicKey, token: &str) -> Result<(), SignatureError> {
    let (signing_input, signature) = signed_parts(token)?;
    key.verify(signing_input.as_bytes(), &signature).map_err(|e| match e {
        eddsa::VerifyError::Length => SignatureError::Rejected,
        eddsa::VerifyError::Mismatch => SignatureError::Mismatch,
    })
}
