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
    for c in RejectCode::ALL {
        if c != TokenRevoked {
            assert!(reached.contains(&c), "{c} not reached");
        }
    }
}

/// Found by the hostile-token e2e tests: validly signed tokens that jwt-simple refused for a
/// reason `token::decode` had let through came out as an opaque "refused by the signature
/// verifier". Each now gets decode's precise reason, before any signature work.
#[test]
fn decode_refuses_everything_jwt_simple_would_so_reasons_stay_precise() {
    let c = claims(json!({})).to_string();
    let cases = [
        (
            raw(r#"{"alg":"HS256","kid":"hs-1","jwk":{"kty":"oct","k":"AA"}}"#, &c),
            "header jwk is not a string",
        ),
        (raw(r#"{"alg":"HS256","kid":"hs-1","typ":"JOSE"}"#, &c), "token type JOSE is not accepted"),
        (raw(r#"{"alg":"HS256","kid":"hs-1","salt":"AAAA"}"#, &c), "header salt is not supported"),
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
    // The same headers with acceptable values verify.
    let ok =
        raw(r#"{"alg":"HS256","kid":"hs-1","typ":"at+jwt","jku":"https://evil.test/jwks","x5c":["AA"]}"#, &c);
    assert!(validate(&cfg, &ok, NOW).is_ok());
}
