use serde_json::json;

use super::*;
use crate::reject::RejectCode::{self, *};
use crate::testkit::*;

fn code_at(cfg: &Config, token: &str, now: u64) -> Result<Lifetime, RejectCode> {
    validate(cfg, token, now).map(|v| v.lifetime).map_err(|r| r.code)
}

fn code(token: &str) -> Result<Lifetime, RejectCode> {
    code_at(&config(json!({})), token, NOW)
}

#[test]
fn every_algorithm_verifies_with_the_issuer_keys() {
    let cfg = config(json!({}));
    for alg in all_algorithms() {
        let with_kid = mint(alg, json!({}));
        assert!(code_at(&cfg, &with_kid, NOW).is_ok(), "{alg} with kid");
        let no_kid = mint_kid(alg, json!({}), "");
        assert!(code_at(&cfg, &no_kid, NOW).is_ok(), "{alg} without kid");
    }
}

#[test]
fn a_token_from_another_key_fails_the_signature() {
    let other = tokenguard_harness::IssuerKeys::generate();
    for alg in all_algorithms() {
        let t = other.sign(alg, &claims(json!({})), None).unwrap();
        assert_eq!(code(&t), Err(InvalidSignature), "{alg}");
    }
}

#[test]
fn a_tampered_payload_fails_the_signature() {
    let t = mint("RS256", json!({}));
    let mut parts: Vec<&str> = t.split('.').collect();
    let forged = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        claims(json!({"sub": "mallory"})).to_string(),
    );
    parts[1] = &forged;
    assert_eq!(code(&parts.join(".")), Err(InvalidSignature));
}

#[test]
fn kid_selects_the_key() {
    assert!(code(&mint_kid("RS256", json!({}), "rsa-1")).is_ok());
    assert_eq!(code(&mint_kid("RS256", json!({}), "nope")), Err(InvalidSignature));
    // An ES256 token that names the RSA key: the key does not do ES256.
    assert_eq!(code(&mint_kid("ES256", json!({}), "rsa-1")), Err(UnsupportedAlgorithm));
}

#[test]
fn algorithm_allowlist_and_key_confusion() {
    let only_rs = config(json!({"providers": [{
        "issuer": ISS, "algorithms": ["RS256"], "jwks": keys().public_jwks()}]}));
    assert_eq!(code_at(&only_rs, &mint("HS256", json!({})), NOW), Err(UnsupportedAlgorithm));
    assert_eq!(
        code_at(&only_rs, &mint("RS256", json!({})), NOW),
        Ok(Lifetime { exp: NOW + 300, remaining_s: 300, session_start: None, session_ends: None })
    );
    assert_eq!(code(&raw(r#"{"alg":"none"}"#, &claims(json!({})).to_string())), Err(UnsupportedAlgorithm));

    // HS256 "signed" with the RSA public key's modulus as the secret: the RSA key never acts
    // as an HMAC secret, so with its kid the algorithm is refused, and without one the
    // configured HMAC key does not match.
    let rsa_pub = keys().rsa().public_key().to_components().n;
    let c = claims(json!({})).to_string();
    let confused = tokenguard_harness::keys::raw_token(r#"{"alg":"HS256","kid":"rsa-1"}"#, &c, &rsa_pub);
    assert_eq!(code(&confused), Err(UnsupportedAlgorithm));
    let confused = tokenguard_harness::keys::raw_token(r#"{"alg":"HS256"}"#, &c, &rsa_pub);
    assert_eq!(code(&confused), Err(InvalidSignature));
}

#[test]
fn issuer_audience_and_required_claims() {
    assert_eq!(code(&mint("ES256", json!({"iss": "https://evil.test"}))), Err(InvalidIssuer));
    assert_eq!(code(&mint("ES256", json!({"iss": null}))), Err(MissingClaim));
    assert_eq!(code(&mint("ES256", json!({"aud": "other"}))), Err(InvalidAudience));
    assert_eq!(code(&mint("ES256", json!({"aud": null}))), Err(InvalidAudience));
    assert!(code(&mint("ES256", json!({"aud": ["other", "api"]}))).is_ok());
    assert_eq!(code(&mint("ES256", json!({"sub": null}))), Err(MissingClaim));
    assert_eq!(code(&mint("ES256", json!({"exp": null}))), Err(MissingClaim));
    let r = validate(&config(json!({})), &mint("ES256", json!({"iat": null})), NOW).err().unwrap();
    assert_eq!((r.code, r.description.as_str()), (MissingClaim, "missing required claim: iat"));
}

#[test]
fn exp_edges_without_leeway() {
    let cfg = config(json!({"clock_skew_seconds": 0}));
    let t = mint("HS256", json!({"exp": NOW + 5}));
    assert_eq!(code_at(&cfg, &t, NOW).map(|l| l.remaining_s), Ok(5));
    assert_eq!(code_at(&cfg, &t, NOW + 4).map(|l| l.remaining_s), Ok(1));
    assert_eq!(code_at(&cfg, &t, NOW + 5), Err(TokenExpired)); // exactly at exp
    assert_eq!(code_at(&cfg, &t, NOW + 6), Err(TokenExpired));
}

#[test]
fn exp_edges_with_leeway() {
    let cfg = config(json!({"clock_skew_seconds": 30}));
    let t = mint("HS256", json!({"exp": NOW + 5}));
    assert_eq!(code_at(&cfg, &t, NOW + 5).map(|l| l.remaining_s), Ok(0)); // at exp: inside leeway
    assert!(code_at(&cfg, &t, NOW + 34).is_ok()); // exp + leeway - 1
    assert_eq!(code_at(&cfg, &t, NOW + 35), Err(TokenExpired)); // exp + leeway
}

#[test]
fn nbf_and_iat_edges() {
    let cfg = config(json!({"clock_skew_seconds": 10}));
    let nbf = mint("HS256", json!({"nbf": NOW + 10}));
    assert!(code_at(&cfg, &nbf, NOW).is_ok());
    assert_eq!(code_at(&cfg, &nbf, NOW - 1), Err(TokenNotYetValid));
    let iat = mint("HS256", json!({"iat": NOW + 11}));
    assert_eq!(code_at(&cfg, &iat, NOW), Err(TokenNotYetValid));
    assert!(code_at(&cfg, &iat, NOW + 1).is_ok());
}

#[test]
fn session_lifetime_is_absolute() {
    let cfg = config(json!({"session": {"max_lifetime_seconds": 3600, "start_claim": "auth_time"}}));
    let t = mint("EdDSA", json!({"auth_time": NOW - 3600}));
    assert_eq!(code_at(&cfg, &t, NOW), Err(SessionExpired)); // exp is still 300 s away
    let t = mint("EdDSA", json!({"auth_time": NOW - 3599}));
    assert_eq!(code_at(&cfg, &t, NOW).map(|l| l.session_ends), Ok(Some(NOW + 1)));
    // Falls back to iat when the start claim is absent.
    let t = mint("EdDSA", json!({"iat": NOW - 3600}));
    assert_eq!(code_at(&cfg, &t, NOW), Err(SessionExpired));
    // The session ends before exp even though leeway would still accept exp.
    let lenient = config(json!({"clock_skew_seconds": 60, "required_claims": ["exp"],
        "session": {"max_lifetime_seconds": 3600}}));
    let t = mint("EdDSA", json!({"iat": null, "auth_time": NOW - 3600}));
    assert_eq!(code_at(&lenient, &t, NOW), Err(SessionExpired));
    let t = mint("EdDSA", json!({"iat": null}));
    assert_eq!(code_at(&lenient, &t, NOW), Err(MissingClaim));
    let t = mint("EdDSA", json!({"auth_time": "yesterday"}));
    assert_eq!(code_at(&cfg, &t, NOW), Err(MalformedToken));
}

#[test]
fn malformed_tokens() {
    assert_eq!(code("not-a-jwt"), Err(MalformedToken));
    assert_eq!(code(&raw(r#"{"alg":"HS256"}"#, r#"{"exp":"soon"}"#)), Err(MalformedToken));
    assert_eq!(code(&raw(r#"{"alg":"HS256","crit":["b64"]}"#, "{}")), Err(MalformedToken));
}

#[test]
fn every_rejection_code_except_revocation_is_reachable() {
    let cfg = config(json!({"session": {"max_lifetime_seconds": 100}}));
    let reached: std::collections::HashSet<RejectCode> = [
        "x".to_string(),
        mint("HS256", json!({"sub": "mallory"})).replace('.', ".x"),
        mint_kid("RS256", json!({}), "unknown"),
        raw(r#"{"alg":"none"}"#, &claims(json!({})).to_string()),
        mint("HS256", json!({"iss": "https://other"})),
        mint("HS256", json!({"aud": "else"})),
        mint("HS256", json!({"sub": null})),
        mint("HS256", json!({"exp": NOW - 1})),
        mint("HS256", json!({"nbf": NOW + 100})),
        mint("HS256", json!({"iat": NOW - 100})),
    ]
    .iter()
    .filter_map(|t| code_at(&cfg, t, NOW).err())
    .collect();
    // Revocation and route requirements are the gate's, not the verifier's.
    for c in RejectCode::ALL {
        if c != TokenRevoked && c != RejectCode::InsufficientScope {
            assert!(reached.contains(&c), "{c} not reached");
        }
    }
}

/// Found by the hostile-token e2e tests: validly signed tokens that jwt-simple refused for a
/// reason `token::decode` had let through came out as an opaque "refused by the signature
/// verifier". Each now gets decode's precise reason, before any signature work. (jwt-simple no
/// longer verifies; the refusals kept are the RFC-typed ones.)
#[test]
fn decode_refuses_mistyped_headers_and_claims_with_a_precise_reason() {
    let c = claims(json!({})).to_string();
    let cases = [
        (raw(r#"{"alg":"HS256","kid":"hs-1","jwk":"a-string"}"#, &c), "header jwk is not a JSON object"),
        (raw(r#"{"alg":"HS256","kid":"hs-1","typ":"JOSE"}"#, &c), "token type JOSE is not accepted"),
        (raw(r#"{"alg":"HS256","kid":"hs-1","x5c":[{}]}"#, &c), "header x5c is not a list of strings"),
        (
            raw(r#"{"alg":"HS256","kid":"hs-1"}"#, &c.replacen("\"exp\":", "\"exp\":null,\"was\":", 1)),
            "claim exp is not a number",
        ),
        (
            raw(r#"{"alg":"HS256","kid":"hs-1"}"#, &c.replacen("\"aud\":", "\"aud\":null,\"was\":", 1)),
            "claim aud is not a string or an array of strings",
        ),
    ];
    let cfg = config(json!({}));
    for (token, why) in cases {
        let r = validate(&cfg, &token, NOW).err().expect("refused");
        assert_eq!((r.code, r.description.as_str()), (MalformedToken, why));
    }
    // The same headers with acceptable values verify, and so do members only jwt-simple
    // could not read (a jwk object, its salt extension).
    let ok = raw(
        r#"{"alg":"HS256","kid":"hs-1","typ":"at+jwt","jku":"https://evil.test/jwks","x5c":["AA"],"salt":"AAAA"}"#,
        &c,
    );
    assert!(validate(&cfg, &ok, NOW).is_ok());
}

/// RFC 7515 §4.1.3 makes `jwk` a JSON object; jwt-simple, when it verified, refused such a
/// header. Tokens carrying one (naming a key of the attacker's, here) verify end to end with
/// the configured key, and only with it: the header's key is never used.
#[test]
fn a_jwk_object_in_the_header_is_ignored_and_the_token_verifies() {
    use crate::rsa::testsign::PrivateKey;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;

    let stranger = tokenguard_harness::IssuerKeys::generate();
    let their_jwks = stranger.public_jwks();
    let their_key =
        |kty: &str| their_jwks["keys"].as_array().unwrap().iter().find(|k| k["kty"] == kty).unwrap().clone();
    // Signs the signing input with one issuer's key for `alg`, by hand: jwt-simple would
    // neither write nor sign such a header.
    let sign = |k: &tokenguard_harness::IssuerKeys, alg: &str, input: &[u8]| -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        use p256::ecdsa::signature::Signer as _;
        match alg {
            "HS256" => hmac_sha256::HMAC::mac(input, &k.hmac).to_vec(),
            "RS256" => PrivateKey::from_pem(&k.rsa_pem).sign_pkcs1(crate::rsa::Hash::Sha256, input),
            "PS256" => PrivateKey::from_pem(&k.rsa_pem).sign_ps(crate::rsa::Hash::Sha256, input, 42),
            "ES256" => {
                let key = p256::ecdsa::SigningKey::from_slice(&k.ec256.to_bytes()).unwrap();
                let sig: p256::ecdsa::Signature = key.sign(input);
                sig.to_bytes().to_vec()
            }
            "ES384" => {
                let key = p384::ecdsa::SigningKey::from_slice(&k.ec384.to_bytes()).unwrap();
                let sig: p384::ecdsa::Signature = key.sign(input);
                sig.to_bytes().to_vec()
            }
            _ => {
                let seed: [u8; 32] = k.ed.to_bytes()[..32].try_into().unwrap();
                ed25519_dalek::SigningKey::from_bytes(&seed).sign(input).to_bytes().to_vec()
            }
        }
    };
    let cfg = config(json!({}));
    let c = B64.encode(claims(json!({})).to_string());
    for (alg, kty) in [
        ("HS256", "EC"),
        ("PS256", "RSA"),
        ("ES384", "EC"),
        ("RS256", "RSA"),
        ("ES256", "EC"),
        ("EdDSA", "OKP"),
    ] {
        for kid in [Some(tokenguard_harness::IssuerKeys::kid_for(alg)), None] {
            let mut header = json!({"alg": alg, "typ": "JWT", "jwk": their_key(kty)});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            let input = format!("{}.{c}", B64.encode(header.to_string()));
            let token = crate::testkit::join_signature(&input, &sign(keys(), alg, input.as_bytes()));
            let auth =
                authenticate(&cfg, &token).unwrap_or_else(|r| panic!("{alg} {kid:?}: {}", r.description));
            assert_eq!(auth.decoded.header.alg, alg);
            assert!(validate(&cfg, &token, NOW).is_ok(), "{alg}");
            // The same signing input signed by the key the header names: refused, that key is
            // not configured.
            let forged = crate::testkit::join_signature(&input, &sign(&stranger, alg, input.as_bytes()));
            let r = authenticate(&cfg, &forged).err().unwrap();
            assert_eq!(r.code, InvalidSignature, "{alg}");
        }
    }
}
