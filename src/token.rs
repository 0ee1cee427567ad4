//! Compact JWS decoding: structure, header and claims, before any signature check.
//!
//! This is the first code to touch attacker-controlled bytes, so it is strict and total:
//! every malformation becomes a `malformed_token` rejection, nothing panics, and the claims
//! it hands on have the types the rest of the pipeline relies on. The signature verifiers
//! see only the signing input's bytes, never a token header, so only this module parses one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

use crate::reject::{RejectCode, Rejection};

/// Tokens longer than this are refused before decoding. Real access tokens are a few KiB;
/// the bound keeps a hostile header from costing more than a bounded decode.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Longest header segment (base64url characters) accepted: jwt-simple's bound, when it
/// verified, kept so that the tokens accepted stay the same (`jwks::Verifier` checks it too).
pub const MAX_HEADER_SEGMENT_BYTES: usize = 8192;

/// The latest NumericDate accepted (9999-12-31T23:59:59Z). Larger values are nonsense, and
/// bounding them keeps all time arithmetic far from overflow.
pub const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// The parts of the JOSE header tokenguard acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
    /// The JOSE `typ`, checked against the provider's `token_types` once the issuer is known.
    pub typ: Option<String>,
}

/// Registered claims with checked types, plus the whole claim set for `required_claims`.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub jti: Option<String>,
    pub sid: Option<String>,
    pub aud: Vec<String>,
    pub exp: Option<u64>,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
    pub all: Map<String, Value>,
}

impl Claims {
    /// A NumericDate claim by name (for `session.start_claim`), already type-checked when it
    /// is one of the registered ones.
    pub fn numeric_date(&self, name: &str) -> Result<Option<u64>, Rejection> {
        numeric_date(&self.all, name)
    }

    /// Present and not JSON null.
    pub fn has(&self, name: &str) -> bool {
        self.all.get(name).is_some_and(|v| !v.is_null())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub header: Header,
    pub claims: Claims,
}

fn malformed(why: &str) -> Rejection {
    Rejection::new(RejectCode::MalformedToken, why)
}

/// Splits and decodes a compact JWS. The signature segment is checked for shape only.
pub fn decode(token: &str) -> Result<Decoded, Rejection> {
    if token.is_empty() {
        return Err(malformed("empty token"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(malformed("token must have three dot-separated segments"));
    };
    if h.is_empty() || c.is_empty() || s.is_empty() {
        return Err(malformed("token has an empty segment"));
    }
    if h.len() > MAX_HEADER_SEGMENT_BYTES {
        return Err(malformed("header too long"));
    }
    let header_bytes = b64(h, "header")?;
    let claim_bytes = b64(c, "claims")?;
    b64(s, "signature")?;

    let header_obj = json_object(&header_bytes, "header")?;
    let header = parse_header(&header_obj)?;
    let claims_obj = json_object(&claim_bytes, "claims")?;
    let claims = parse_claims(claims_obj)?;
    Ok(Decoded { header, claims })
}

fn b64(segment: &str, what: &str) -> Result<Vec<u8>, Rejection> {
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| malformed(&format!("{what} segment is not base64url")))
}

fn json_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, Rejection> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let obj = StrictObject::deserialize(&mut de).and_then(|o| de.end().map(|_| o)).map_err(|e| {
        if e.to_string().starts_with(DUPLICATE) {
            malformed(&format!("{what} has a duplicate member"))
        } else {
            malformed(&format!("{what} is not a JSON object"))
        }
    })?;
    Ok(obj.0)
}

fn parse_header(obj: &Map<String, Value>) -> Result<Header, Rejection> {
    let alg = match obj.get("alg") {
        Some(Value::String(a)) => a.clone(),
        Some(_) => return Err(malformed("header alg is not a string")),
        None => return Err(malformed("header has no alg")),
    };
    // RFC 7515 §4.1.11: a recipient that does not understand a listed extension must reject.
    // We understand none.
    if obj.contains_key("crit") {
        return Err(malformed("header lists critical extensions we do not support"));
    }
    let kid = match obj.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(malformed("header kid is not a string")),
    };
    // `jku`, `x5u`, `jwk`, `x5c` and the thumbprints are ignored on purpose: keys come only
    // from configuration. They are still type-checked against RFC 7515 §4.1 (a header that
    // gets them wrong is not a JWS header), but nothing else: no verifier reads the header
    // (`jwks::Verifier::verify` looks at the signing input's bytes only).
    for name in ["typ", "cty", "jku", "x5u", "x5t", "x5t#S256"] {
        if !matches!(obj.get(name), None | Some(Value::Null) | Some(Value::String(_))) {
            return Err(malformed(&format!("header {name} is not a string")));
        }
    }
    // RFC 7515 §4.1.3: the key as a JWK, a JSON object.
    if !matches!(obj.get("jwk"), None | Some(Value::Null) | Some(Value::Object(_))) {
        return Err(malformed("header jwk is not a JSON object"));
    }
    // RFC 7515 §4.1.6: a certificate chain, a JSON array of (base64) strings.
    match obj.get("x5c") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
        Some(_) => return Err(malformed("header x5c is not a list of strings")),
    }
    // Unknown members (jwt-simple's `salt`, say) are ignored, as RFC 7515 §4 asks; `typ` is
    // judged against the issuer's `token_types` once the issuer is known.
    let typ = obj.get("typ").and_then(Value::as_str).map(str::to_owned);
    Ok(Header { alg, kid, typ })
}

fn parse_claims(all: Map<String, Value>) -> Result<Claims, Rejection> {
    let string = |name: &str| -> Result<Option<String>, Rejection> {
        match all.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(malformed(&format!("claim {name} is not a string"))),
        }
    };
    let aud = match all.get("aud") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("claim aud is not a string or an array of strings"))?,
        Some(_) => return Err(malformed("claim aud is not a string or an array of strings")),
    };
    // `nonce` must be a string (OpenID Connect Core §2), as it had to be when jwt-simple
    // deserialised the claims; kept so that the tokens accepted stay the same.
    string("nonce")?;
    Ok(Claims {
        iss: string("iss")?,
        sub: string("sub")?,
        jti: string("jti")?,
        sid: string("sid")?,
        aud,
        exp: registered_date(&all, "exp")?,
        nbf: registered_date(&all, "nbf")?,
        iat: registered_date(&all, "iat")?,
        all,
    })
}

/// `exp`, `nbf` and `iat`: absent or a NumericDate. An explicit null is refused: it is no
/// NumericDate (RFC 7519 §4.1.4), and jwt-simple refused it too when it verified.
fn registered_date(all: &Map<String, Value>, name: &str) -> Result<Option<u64>, Rejection> {
    if all.get(name).is_some_and(Value::is_null) {
        return Err(malformed(&format!("claim {name} is not a number")));
    }
    numeric_date(all, name)
}

/// RFC 7519 NumericDate, restricted to non-negative integers up to `MAX_NUMERIC_DATE`.
/// Fractions are refused rather than rounded: no mainstream issuer emits them, and jwt-simple
/// refused them too when it verified.
fn numeric_date(all: &Map<String, Value>, name: &str) -> Result<Option<u64>, Rejection> {
    match all.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v <= MAX_NUMERIC_DATE => Ok(Some(v)),
            _ => Err(malformed(&format!("claim {name} is not a valid NumericDate"))),
        },
        Some(_) => Err(malformed(&format!("claim {name} is not a number"))),
    }
}

const DUPLICATE: &str = "duplicate member";

/// A JSON object that refuses duplicate member names (RFC 7515 §4: a recipient must refuse
/// them or take the last). serde_json keeps the last duplicate while other parsers take the
/// first; refusing means no two readers of a token can disagree about what it says.
struct StrictObject(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<StrictObject, A::Error> {
                let mut out = Map::new();
                while let Some(k) = m.next_key::<String>()? {
                    if out.contains_key(&k) {
                        return Err(de::Error::custom(DUPLICATE));
                    }
                    let v: Value = m.next_value()?;
                    out.insert(k, v);
                }
                Ok(StrictObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A token's identity: the SHA-256 of its signing input (`header.payload`), so that every
/// encoding of one signature (an ECDSA `(r, s)` and its `(r, n-s)` twin) names the same
/// token. The registry key, the revocation-by-token target and, shortened, the audit name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

/// The part of a compact JWS the signature covers (all of `token` when it has no dot).
pub fn signing_input(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(input, _)| input)
}

/// SHA-256 of the signature segment as presented, truncated to 128 bits: what tells one
/// verified encoding from another of the same signing input. A verification cache must
/// match it too, or an unverified signature would ride on a verified one.
pub fn signature_digest(token: &str) -> [u8; 16] {
    let sig = token.rsplit_once('.').map_or("", |(_, s)| s);
    let h = hmac_sha256::Hash::hash(sig.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(h.get(..16).unwrap_or(&[0u8; 16]));
    out
}

impl Fingerprint {
    pub fn of(token: &str) -> Fingerprint {
        Fingerprint(hmac_sha256::Hash::hash(signing_input(token).as_bytes()))
    }

    /// All 64 hex characters: what `token_sha256` revocations name.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// First 16 hex characters: enough to correlate log lines, useless to replay.
    pub fn short(&self) -> String {
        self.0.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// Reads `hex()` back: 64 hex digits, either case.
    pub fn from_hex(s: &str) -> Option<Fingerprint> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Fingerprint(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    fn tok(h: &str, c: &str) -> String {
        format!("{}.{}.{}", enc(h), enc(c), enc("sig"))
    }

    fn code(t: &str) -> String {
        decode(t).unwrap_err().description
    }

    #[test]
    fn decodes_registered_claims() {
        let d = decode(&tok(
            r#"{"alg":"RS256","kid":"k1"}"#,
            r#"{"iss":"i","sub":"s","aud":["a","b"],"exp":10,"iat":5,"jti":"j","sid":"x"}"#,
        ))
        .unwrap();
        assert_eq!(d.header, Header { alg: "RS256".into(), kid: Some("k1".into()), typ: None });
        assert_eq!(d.claims.aud, vec!["a", "b"]);
        assert_eq!((d.claims.exp, d.claims.iat, d.claims.nbf), (Some(10), Some(5), None));
        assert_eq!(d.claims.sid.as_deref(), Some("x"));
    }

    #[test]
    fn refuses_structural_damage() {
        assert_eq!(code(""), "empty token");
        assert_eq!(code("a.b"), "token must have three dot-separated segments");
        assert_eq!(code("a.b.c.d"), "token must have three dot-separated segments");
        assert_eq!(code("a..c"), "token has an empty segment");
        assert_eq!(code("a*.b.c"), "header segment is not base64url");
        let padded = format!("{}=.{}.{}", enc("{\"alg\":\"HS256\"}"), enc("{}"), enc("s"));
        assert!(decode(&padded).is_err());
        assert_eq!(code(&tok("[1]", "{}")), "header is not a JSON object");
        assert_eq!(code(&tok(r#"{"alg":"HS256"}"#, "nope")), "claims is not a JSON object");
        assert_eq!(code(&"a".repeat(MAX_TOKEN_BYTES + 1)), "token too long");
    }

    #[test]
    fn refuses_bad_claim_types() {
        let h = r#"{"alg":"HS256"}"#;
        assert_eq!(code(&tok(h, r#"{"exp":"10"}"#)), "claim exp is not a number");
        assert_eq!(code(&tok(h, r#"{"exp":1.5}"#)), "claim exp is not a valid NumericDate");
        assert_eq!(code(&tok(h, r#"{"exp":-1}"#)), "claim exp is not a valid NumericDate");
        assert_eq!(code(&tok(h, r#"{"exp":1e300}"#)), "claim exp is not a valid NumericDate");
        assert_eq!(code(&tok(h, r#"{"iat":253402300800}"#)), "claim iat is not a valid NumericDate");
        assert_eq!(code(&tok(h, r#"{"sub":5}"#)), "claim sub is not a string");
        assert_eq!(code(&tok(h, r#"{"aud":[1]}"#)), "claim aud is not a string or an array of strings");
    }

    #[test]
    fn refuses_duplicates_and_crit() {
        assert_eq!(code(&tok(r#"{"alg":"HS256"}"#, r#"{"exp":1,"exp":2}"#)), "claims has a duplicate member");
        assert_eq!(code(&tok(r#"{"alg":"HS256","alg":"none"}"#, "{}")), "header has a duplicate member");
        assert_eq!(
            code(&tok(r#"{"alg":"HS256","crit":["exp"]}"#, "{}")),
            "header lists critical extensions we do not support"
        );
        assert_eq!(code(&tok(r#"{"kid":"x"}"#, "{}")), "header has no alg");
    }

    #[test]
    fn header_members_have_their_rfc_7515_types() {
        let c = r#"{"exp":1}"#;
        assert_eq!(code(&tok(r#"{"alg":"HS256","jwk":"a-string"}"#, c)), "header jwk is not a JSON object");
        assert_eq!(code(&tok(r#"{"alg":"HS256","jwk":["kty"]}"#, c)), "header jwk is not a JSON object");
        assert_eq!(code(&tok(r#"{"alg":"HS256","jku":7}"#, c)), "header jku is not a string");
        assert_eq!(code(&tok(r#"{"alg":"HS256","kid":7}"#, c)), "header kid is not a string");
        assert_eq!(code(&tok(r#"{"alg":"HS256","cty":{}}"#, c)), "header cty is not a string");
        assert_eq!(code(&tok(r#"{"alg":"HS256","x5t#S256":[]}"#, c)), "header x5t#S256 is not a string");
        assert_eq!(code(&tok(r#"{"alg":"HS256","x5c":[1]}"#, c)), "header x5c is not a list of strings");
        assert_eq!(code(&tok(r#"{"alg":"HS256","typ":7}"#, c)), "header typ is not a string");
        let long = format!(r#"{{"alg":"HS256","x":"{}"}}"#, "a".repeat(MAX_HEADER_SEGMENT_BYTES));
        assert_eq!(code(&tok(&long, c)), "header too long");
        // A jwk object (RFC 7515 §4.1.3) decodes, and is ignored: keys come from configuration.
        // So do members only jwt-simple had trouble with, and unknown ones of any type.
        for h in [
            r#"{"alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}}"#,
            r#"{"alg":"HS256","typ":"at+jwt","jku":"https://x","x5u":null,"x5c":["AA"],"jwk":null}"#,
            r#"{"alg":"HS256","typ":"jwt","cty":"JWT","salt":"AAAA","ext":{"a":[1,{}]},"n":5}"#,
        ] {
            let d = decode(&tok(h, c)).unwrap_or_else(|e| panic!("{h}: {}", e.description));
            assert_eq!(d.header.kid, None, "{h}");
        }
    }

    #[test]
    fn refuses_null_registered_claims() {
        let h = r#"{"alg":"HS256"}"#;
        assert_eq!(code(&tok(h, r#"{"exp":null}"#)), "claim exp is not a number");
        assert_eq!(code(&tok(h, r#"{"iat":null}"#)), "claim iat is not a number");
        assert_eq!(code(&tok(h, r#"{"aud":null}"#)), "claim aud is not a string or an array of strings");
        // Other nulls are absences.
        let d = decode(&tok(h, r#"{"sub":null,"jti":null,"auth_time":null}"#)).unwrap();
        assert_eq!((d.claims.numeric_date("auth_time").unwrap(), d.claims.sub), (None, None));
    }

    #[test]
    fn deeply_nested_json_is_refused_not_overflowed() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let t = format!("{}.{}.{}", enc(r#"{"alg":"HS256"}"#), enc(&deep), enc("s"));
        // Over the size bound; the same nesting under the bound hits serde_json's depth limit.
        assert!(decode(&t).is_err());
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(5000), "]".repeat(5000));
        let t = format!("{}.{}.{}", enc(r#"{"alg":"HS256"}"#), enc(&deep), enc("s"));
        assert_eq!(code(&t), "claims is not a JSON object");
    }

    #[test]
    fn fingerprint_is_sha256_of_the_signing_input() {
        // SHA-256("abc") = ba7816bf8f01cfea...
        assert_eq!(Fingerprint::of("abc.sig1").short(), "ba7816bf8f01cfea");
        assert_eq!(Fingerprint::of("abc.sig1"), Fingerprint::of("abc.other"));
        assert_eq!(Fingerprint::of("abc").hex().len(), 64);
        assert_ne!(signature_digest("abc.sig1"), signature_digest("abc.other"));
        assert_eq!(signing_input("h.p.s"), "h.p");
    }
}
