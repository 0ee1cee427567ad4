//! The test issuer's signing keys: one per algorithm family, loadable from a JSON file so
//! the demo and the committed Envoy config share one key set.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{json, Value};
use std::path::Path;

pub const KID_HMAC: &str = "hs-1";
pub const KID_RSA: &str = "rsa-1";
pub const KID_EC256: &str = "ec256-1";
pub const KID_EC384: &str = "ec384-1";
pub const KID_ED: &str = "ed-1";

/// All algorithms the filter supports, as JOSE names.
pub const ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
    "EdDSA",
];

pub struct IssuerKeys {
    pub hmac: Vec<u8>,
    pub rsa_pem: String,
    pub ec256: ES256KeyPair,
    pub ec384: ES384KeyPair,
    pub ed: Ed25519KeyPair,
}

impl IssuerKeys {
    pub fn generate() -> IssuerKeys {
        let rsa = RS256KeyPair::generate(2048).expect("RSA key generation");
        IssuerKeys {
            hmac: [HS256Key::generate().to_bytes(), HS256Key::generate().to_bytes()].concat(), // 64 bytes: enough for HS512
            rsa_pem: rsa.to_pem().expect("RSA PEM"),
            ec256: ES256KeyPair::generate(),
            ec384: ES384KeyPair::generate(),
            ed: Ed25519KeyPair::generate(),
        }
    }

    pub fn load(path: &Path) -> Result<IssuerKeys, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        Self::load_json(&v)
    }

    pub fn load_json(v: &Value) -> Result<IssuerKeys, String> {
        let b = |name: &str| -> Result<Vec<u8>, String> {
            B64.decode(v[name].as_str().ok_or(format!("{name} missing"))?).map_err(|e| e.to_string())
        };
        Ok(IssuerKeys {
            hmac: b("hmac")?,
            rsa_pem: v["rsa_pem"].as_str().ok_or("rsa_pem missing")?.to_string(),
            ec256: ES256KeyPair::from_bytes(&b("ec256")?).map_err(|e| e.to_string())?,
            ec384: ES384KeyPair::from_bytes(&b("ec384")?).map_err(|e| e.to_string())?,
            ed: Ed25519KeyPair::from_bytes(&b("ed25519")?).map_err(|e| e.to_string())?,
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "_comment": "TEST-ONLY private keys of the tokenguard demo issuer. Never use them anywhere real.",
            "hmac": B64.encode(&self.hmac),
            "rsa_pem": self.rsa_pem,
            "ec256": B64.encode(self.ec256.to_bytes()),
            "ec384": B64.encode(self.ec384.to_bytes()),
            "ed25519": B64.encode(self.ed.to_bytes()),
        })
    }

    pub fn rsa(&self) -> RS256KeyPair {
        RS256KeyPair::from_pem(&self.rsa_pem).expect("RSA PEM")
    }

    /// The public key set a resource server may see (what `/.well-known/jwks.json` serves).
    pub fn public_jwks(&self) -> Value {
        let rsa = self.rsa().public_key().to_components();
        let p256 = self.ec256.public_key().public_key().to_bytes_uncompressed();
        let p384 = self.ec384.public_key().public_key().to_bytes_uncompressed();
        let (x256, y256) = p256[1..].split_at(32);
        let (x384, y384) = p384[1..].split_at(48);
        json!({"keys": [
            {"kty": "RSA", "kid": KID_RSA, "use": "sig", "n": B64.encode(&rsa.n), "e": B64.encode(&rsa.e)},
            {"kty": "EC", "kid": KID_EC256, "use": "sig", "crv": "P-256", "alg": "ES256",
             "x": B64.encode(x256), "y": B64.encode(y256)},
            {"kty": "EC", "kid": KID_EC384, "use": "sig", "crv": "P-384", "alg": "ES384",
             "x": B64.encode(x384), "y": B64.encode(y384)},
            {"kty": "OKP", "kid": KID_ED, "use": "sig", "crv": "Ed25519", "alg": "EdDSA",
             "x": B64.encode(self.ed.public_key().to_bytes())},
        ]})
    }

    /// The public set plus the shared HMAC secret: what the filter is configured with.
    pub fn filter_jwks(&self) -> Value {
        let mut set = self.public_jwks();
        if let Some(keys) = set["keys"].as_array_mut() {
            keys.push(json!({"kty": "oct", "kid": KID_HMAC, "use": "sig", "k": B64.encode(&self.hmac)}));
        }
        set
    }

    /// The kid this issuer uses for an algorithm.
    pub fn kid_for(alg: &str) -> &'static str {
        match alg {
            "HS256" | "HS384" | "HS512" => KID_HMAC,
            "ES256" => KID_EC256,
            "ES384" => KID_EC384,
            "EdDSA" => KID_ED,
            _ => KID_RSA,
        }
    }

    /// Signs a claim set with the issuer's key for `alg`. `kid: None` uses the issuer's kid
    /// for that algorithm; `Some("")` leaves the kid out.
    pub fn sign(&self, alg: &str, claims: &Value, kid: Option<&str>) -> Result<String, String> {
        let kid = kid.unwrap_or(Self::kid_for(alg));
        let c = to_jwt_claims(claims)?;
        let e = |e: jwt_simple::Error| e.to_string();
        macro_rules! signed {
            ($key:expr) => {
                signed!($key, sign)
            };
            ($key:expr, $method:ident) => {{
                let key = $key;
                let key = if kid.is_empty() { key } else { key.with_key_id(kid) };
                key.$method(c).map_err(e)
            }};
        }
        match alg {
            "HS256" => signed!(HS256Key::from_bytes(&self.hmac), authenticate),
            "HS384" => signed!(HS384Key::from_bytes(&self.hmac), authenticate),
            "HS512" => signed!(HS512Key::from_bytes(&self.hmac), authenticate),
            "RS256" => signed!(self.rsa()),
            "RS384" => signed!(RS384KeyPair::from_pem(&self.rsa_pem).map_err(e)?),
            "RS512" => signed!(RS512KeyPair::from_pem(&self.rsa_pem).map_err(e)?),
            "PS256" => signed!(PS256KeyPair::from_pem(&self.rsa_pem).map_err(e)?),
            "PS384" => signed!(PS384KeyPair::from_pem(&self.rsa_pem).map_err(e)?),
            "PS512" => signed!(PS512KeyPair::from_pem(&self.rsa_pem).map_err(e)?),
            "ES256" => signed!(ES256KeyPair::from_bytes(&self.ec256.to_bytes()).map_err(e)?),
            "ES384" => signed!(ES384KeyPair::from_bytes(&self.ec384.to_bytes()).map_err(e)?),
            "EdDSA" => signed!(Ed25519KeyPair::from_bytes(&self.ed.to_bytes()).map_err(e)?),
            other => Err(format!("unsupported algorithm {other}")),
        }
    }
}

/// Signs a claim set with a P-256 key (its kid is the key's own): rotated keys.
pub fn sign_es256(key: &ES256KeyPair, claims: &Value) -> Result<String, String> {
    key.sign(to_jwt_claims(claims)?).map_err(|e| e.to_string())
}

/// Moves registered claims into jwt-simple's fields and keeps the rest as custom claims, so
/// the token carries each claim exactly once.
fn to_jwt_claims(claims: &Value) -> Result<JWTClaims<serde_json::Map<String, Value>>, String> {
    let mut custom = claims.as_object().cloned().ok_or("claims must be a JSON object")?;
    let time = |v: Option<Value>| -> Result<Option<UnixTimeStamp>, String> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|s| Some(UnixTimeStamp::from_secs(s)))
                .ok_or("time claims must be integers".into()),
        }
    };
    let string = |v: Option<Value>| v.and_then(|v| v.as_str().map(str::to_owned));
    let audiences = match custom.remove("aud") {
        Some(Value::String(s)) => Some(Audiences::AsString(s)),
        Some(Value::Array(a)) => {
            Some(Audiences::AsSet(a.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()))
        }
        _ => None,
    };
    Ok(JWTClaims {
        issued_at: time(custom.remove("iat"))?,
        expires_at: time(custom.remove("exp"))?,
        invalid_before: time(custom.remove("nbf"))?,
        issuer: string(custom.remove("iss")),
        subject: string(custom.remove("sub")),
        audiences,
        jwt_id: string(custom.remove("jti")),
        nonce: string(custom.remove("nonce")),
        custom,
    })
}

/// Builds a token from raw header and claims text, HMAC-signed with `secret` (SHA-256, 384
/// or 512 after `alg`), or with an empty signature for anything else. For hostile-input tests:
/// the bytes are exactly what the caller wrote.
pub fn raw_token(header: &str, claims: &str, secret: &[u8]) -> String {
    let signing_input = format!("{}.{}", B64.encode(header), B64.encode(claims));
    let sig = if header.contains("\"HS384\"") {
        hmac_sha512::sha384::HMAC::mac(signing_input.as_bytes(), secret).to_vec()
    } else if header.contains("\"HS512\"") {
        hmac_sha512::HMAC::mac(signing_input.as_bytes(), secret).to_vec()
    } else {
        hmac_sha256::HMAC::mac(signing_input.as_bytes(), secret).to_vec()
    };
    format!("{signing_input}.{}", B64.encode(sig))
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// What identifies a token: its signing input (`header.payload`, everything before the last
/// '.'), so two signatures over the same input (ES256's (r, s) and (r, n - s)) are one token.
/// A string without a '.' is its own signing input.
pub fn signing_input(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(input, _)| input)
}

/// The token's identity: the SHA-256 of its signing input, as 64 hex digits (what the admin
/// API's `?token_sha256=` names, and the store's `<prefix>revoked/token/<hex>` key).
pub fn token_sha256(token: &str) -> String {
    hmac_sha256::Hash::hash(signing_input(token).as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// How tokenguard names a token in audit lines: the first 16 hex digits of `token_sha256`.
pub fn fingerprint(token: &str) -> String {
    token_sha256(token)[..16].to_string()
}

/// The same ES256 token with its P1363 signature (r || s) replaced by (r, n - s), n the order
/// of P-256: ECDSA's other valid signature over the same input, so the twin verifies too.
pub fn es256_twin(token: &str) -> String {
    use p256::elliptic_curve::PrimeField as _;
    let (input, sig) = token.rsplit_once('.').expect("a compact JWS");
    let sig = B64.decode(sig).expect("base64url signature");
    assert_eq!(sig.len(), 64, "an ES256 signature is r || s, 32 bytes each");
    let repr = p256::FieldBytes::try_from(&sig[32..]).expect("32 bytes");
    let s = Option::<p256::Scalar>::from(p256::Scalar::from_repr(repr)).expect("s below n");
    let twin = [&sig[..32], (-s).to_repr().as_slice()].concat();
    assert_ne!(twin, sig);
    format!("{input}.{}", B64.encode(twin))
}

/// A token from a header and claims given as JSON values (so the header can carry any
/// `typ`, or none), signed with the issuer's key for the header's `alg`: `ES256` with the
/// P-256 key, `HS256` with the HMAC secret.
pub fn sign_with_header(keys: &IssuerKeys, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let sig = match header["alg"].as_str() {
        Some("ES256") => {
            use p256::ecdsa::signature::Signer as _;
            let key = p256::ecdsa::SigningKey::from_slice(&keys.ec256.to_bytes()).expect("P-256 key");
            let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
            sig.to_bytes().to_vec()
        }
        Some("HS256") => hmac_sha256::HMAC::mac(input.as_bytes(), &keys.hmac).to_vec(),
        other => panic!("sign_with_header: unsupported alg {other:?}"),
    };
    format!("{input}.{}", B64.encode(sig))
}
