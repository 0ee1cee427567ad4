//! End-to-end: hostile tokens against the built filter in a real Envoy with two workers.
//!
//! Every case must get a 401 with the documented error code (docs/configuration.md), never
//! a 5xx; the filter must never call out (keys come only from configuration, so `jku`,
//! `x5u` and `jwk` headers are never followed); and Envoy must report no Wasm VM failure.
//! (Each `Envoy` also panics on drop if its log shows a Wasm panic.)
//!
//! Tokens are built from raw header and claims text, HMAC-signed with the provider's real
//! secret unless the case is about the signature, so each case is refused for exactly the
//! flaw it carries and not for a bad signature.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

use tokenguard_harness::http::{raw_exchange, Client, Response};
use tokenguard_harness::issuer::MintRequest;
use tokenguard_harness::keys::{now, raw_token, KID_EC256, KID_RSA};
use tokenguard_harness::stack::{demo_keys, Stack};

const ISS: &str = "https://issuer.test";
/// tokenguard's own bound (src/token.rs MAX_TOKEN_BYTES).
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Envoy's default `max_request_headers_kb`.
const ENVOY_HEADER_LIMIT: usize = 60 * 1024;
const HS256: &str = r#"{"alg":"HS256","kid":"hs-1"}"#;

/// A claim set valid now, as raw JSON text. `over` replaces a claim's raw JSON value
/// (`Some`), removes it (`None`), or adds it; order is kept, so duplicates are possible
/// only through `dup`.
fn claims(over: &[(&str, Option<String>)]) -> String {
    let n = now();
    let mut members: Vec<(String, String)> = vec![
        ("iss".into(), format!("{ISS:?}")),
        ("sub".into(), "\"alice\"".into()),
        ("aud".into(), "\"api\"".into()),
        ("iat".into(), n.to_string()),
        ("exp".into(), (n + 300).to_string()),
    ];
    for (k, v) in over {
        let at = members.iter().position(|(name, _)| name == k);
        match (at, v) {
            (Some(i), Some(v)) => members[i].1 = v.clone(),
            (Some(i), None) => {
                members.remove(i);
            }
            (None, Some(v)) => members.push((k.to_string(), v.clone())),
            (None, None) => {}
        }
    }
    let body: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

fn set(k: &str, raw: impl Into<String>) -> (&str, Option<String>) {
    (k, Some(raw.into()))
}

/// HMAC-SHA256 over raw header and claims bytes (which need not be UTF-8 or JSON) with the
/// provider's real secret.
fn signed_bytes(header: &[u8], claims: &[u8]) -> String {
    let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
    let sig = hmac_sha256::HMAC::mac(input.as_bytes(), &demo_keys().hmac);
    format!("{input}.{}", B64.encode(sig))
}

fn signed(header: &str, claims: &str) -> String {
    raw_token(header, claims, &demo_keys().hmac)
}

/// An HS256 token of exactly `len` bytes, valid apart from its length: the claims carry
/// padding, and the header's spacing absorbs base64's length steps.
fn token_of_length(len: usize) -> String {
    let with_pad = |pad: usize| claims(&[set("pad", format!("\"{}\"", "p".repeat(pad)))]);
    for spaces in 0..4 {
        let header = format!(r#"{{"alg":"HS256",{}"kid":"hs-1"}}"#, " ".repeat(spaces));
        let fixed = B64.encode(&header).len() + 2 + 43; // two dots, a 32-byte signature
        let base = with_pad(0).len();
        let guess = (len.saturating_sub(fixed) * 3 / 4).saturating_sub(base);
        for pad in guess.saturating_sub(3)..guess + 3 {
            let c = with_pad(pad);
            if fixed + B64.encode(&c).len() == len {
                let t = signed(&header, &c);
                assert_eq!(t.len(), len);
                return t;
            }
        }
    }
    panic!("no token of {len} bytes");
}

fn error_code(r: &Response) -> String {
    serde_json::from_str::<Value>(&r.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Asserts a refusal: 401, the code in the body, an RFC 6750 challenge.
fn assert_refused(name: &str, r: &Response, code: &str) -> Result<(), String> {
    if r.status != 401 || error_code(r) != code {
        return Err(format!("{name}: expected 401 {code}, got {} {}", r.status, r.body));
    }
    let challenge = r.header("www-authenticate").unwrap_or_default();
    let expected = if code == "missing_token" {
        "Bearer realm=\"tokenguard\"".to_string()
    } else {
        "Bearer realm=\"tokenguard\", error=\"invalid_token\", error_description=\"".to_string()
    };
    if !challenge.starts_with(&expected) {
        return Err(format!("{name}: challenge {challenge:?}"));
    }
    Ok(())
}

/// A raw HTTP/1.1 GET with the given extra header lines (bytes, so not necessarily UTF-8).
fn raw_get(s: &Stack, header_lines: &[&[u8]]) -> Response {
    let mut req = b"GET /hostile HTTP/1.1\r\nhost: 127.0.0.1\r\n".to_vec();
    for h in header_lines {
        req.extend_from_slice(h);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"connection: close\r\n\r\n");
    raw_exchange(s.envoy.port, &req)
}

fn bearer_line(token: &[u8]) -> Vec<u8> {
    [b"authorization: Bearer ".as_slice(), token].concat()
}

/// Every case that goes through an ordinary client: (name, token, expected code).
fn token_cases(s: &Stack) -> Vec<(String, String, &'static str)> {
    let keys = demo_keys();
    let n = now();
    let ok = claims(&[]);
    let mut cases: Vec<(String, String, &'static str)> = Vec::new();
    let mut add = |name: &str, token: String, code: &'static str| cases.push((name.to_string(), token, code));

    // alg none, in its usual disguises.
    let none_unsigned = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), B64.encode(&ok));
    add("alg none, empty signature", none_unsigned, "malformed_token");
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        let h = format!(r#"{{"alg":"{alg}"}}"#);
        add(&format!("alg {alg:?} with a signature"), signed(&h, &ok), "unsupported_algorithm");
    }
    add(
        "alg none naming the HMAC kid",
        signed(r#"{"alg":"none","kid":"hs-1"}"#, &ok),
        "unsupported_algorithm",
    );
    add("no alg", signed(r#"{"typ":"JWT","kid":"hs-1"}"#, &ok), "malformed_token");
    add("alg null", signed(r#"{"alg":null}"#, &ok), "malformed_token");
    add("alg a number", signed(r#"{"alg":256}"#, &ok), "malformed_token");
    add("alg with a trailing space", signed(r#"{"alg":"HS256 "}"#, &ok), "unsupported_algorithm");

    // Key confusion: HS256 keyed with the issuer's public keys.
    let rsa = keys.rsa().public_key();
    let rsa_pem = rsa.to_pem().unwrap();
    let rsa_der = rsa.to_der().unwrap();
    let rsa_n = rsa.to_components().n;
    let ec_point = keys.ec256.public_key().public_key().to_bytes_uncompressed();
    for (what, secret) in
        [("PEM", rsa_pem.as_bytes().to_vec()), ("DER", rsa_der.clone()), ("modulus", rsa_n.clone())]
    {
        let h = format!(r#"{{"alg":"HS256","kid":"{KID_RSA}"}}"#);
        add(
            &format!("HS256 keyed with the RSA {what}, kid of the RSA key"),
            raw_token(&h, &ok, &secret),
            "unsupported_algorithm",
        );
        add(
            &format!("HS256 keyed with the RSA {what}, no kid"),
            raw_token(r#"{"alg":"HS256"}"#, &ok, &secret),
            "invalid_signature",
        );
        add(
            &format!("HS256 keyed with the RSA {what}, HMAC kid"),
            raw_token(HS256, &ok, &secret),
            "invalid_signature",
        );
    }
    let h = format!(r#"{{"alg":"HS256","kid":"{KID_EC256}"}}"#);
    add(
        "HS256 keyed with the P-256 point, kid of the EC key",
        raw_token(&h, &ok, &ec_point),
        "unsupported_algorithm",
    );
    add(
        "HS512 keyed with the RSA PEM, no kid",
        raw_token(r#"{"alg":"HS512"}"#, &ok, rsa_pem.as_bytes()),
        "invalid_signature",
    );
    // RS256 header over an HMAC: the right alg family for the kid, a signature that is not RSA.
    let h = format!(r#"{{"alg":"RS256","kid":"{KID_RSA}"}}"#);
    add("RS256 header with an HMAC signature", signed(&h, &ok), "invalid_signature");

    // kid the key set does not have.
    for kid in ["nope", "../../../../etc/passwd", "' OR 1=1 --", &"k".repeat(2000)] {
        let t = s.mint(MintRequest { kid: Some(kid.to_string()), ..MintRequest::new("RS256", 300) });
        let shown: String = kid.chars().take(24).collect();
        add(&format!("RS256 by the issuer, unknown kid {shown:?}"), t, "invalid_signature");
    }
    add("HS256, empty kid", signed(r#"{"alg":"HS256","kid":""}"#, &ok), "invalid_signature");
    add("kid a number", signed(r#"{"alg":"HS256","kid":7}"#, &ok), "malformed_token");

    // crit: we understand no extension, so any crit is refused (RFC 7515 §4.1.11).
    add("crit [exp]", signed(r#"{"alg":"HS256","kid":"hs-1","crit":["exp"]}"#, &ok), "malformed_token");
    add(
        "crit [b64] with b64 false",
        signed(r#"{"alg":"HS256","kid":"hs-1","crit":["b64"],"b64":false}"#, &ok),
        "malformed_token",
    );
    add("crit empty", signed(r#"{"alg":"HS256","kid":"hs-1","crit":[]}"#, &ok), "malformed_token");
    add("crit not a list", signed(r#"{"alg":"HS256","kid":"hs-1","crit":"exp"}"#, &ok), "malformed_token");

    // jku / x5u / jwk / x5c: an attacker's key, advertised in the header. Never fetched, never used.
    let jwks_url = format!("{}/.well-known/jwks.json", s.issuer.url());
    let attacker = RS256KeyPair::generate(2048).unwrap();
    let attacker_sign = |meta: KeyMetadata, kid: Option<&str>| {
        let mut k = RS256KeyPair::from_pem(&attacker.to_pem().unwrap()).unwrap();
        if let Some(kid) = kid {
            k = k.with_key_id(kid);
        }
        k.attach_metadata(meta).unwrap();
        let c = Claims::create(Duration::from_secs(300))
            .with_issuer(ISS)
            .with_subject("alice")
            .with_audience("api");
        k.sign(c).unwrap()
    };
    add(
        "RS256 by another key, jku to the issuer's JWKS, issuer's kid",
        attacker_sign(KeyMetadata::default().with_key_set_url(&jwks_url), Some(KID_RSA)),
        "invalid_signature",
    );
    add(
        "RS256 by another key, jku, no kid",
        attacker_sign(KeyMetadata::default().with_key_set_url(&jwks_url), None),
        "invalid_signature",
    );
    add(
        "RS256 by another key, jku, its own kid",
        attacker_sign(KeyMetadata::default().with_key_set_url(&jwks_url), Some("attacker")),
        "invalid_signature",
    );
    add(
        "RS256 by another key, x5u",
        attacker_sign(
            KeyMetadata::default().with_certificate_url(format!("{}/x5u.pem", s.issuer.url())),
            None,
        ),
        "invalid_signature",
    );
    let attacker_pub = attacker.public_key().to_components();
    let attacker_jwk =
        json!({"kty":"RSA","n":B64.encode(&attacker_pub.n),"e":B64.encode(&attacker_pub.e)}).to_string();
    // jwt-simple writes `jwk` as a string, which RFC 7515 §4.1.3 does not allow.
    add(
        "RS256 by another key, jwk of that key (as a string)",
        attacker_sign(KeyMetadata::default().with_public_key(&attacker_jwk), None),
        "malformed_token",
    );
    let secret = b"attacker-chosen-hmac-secret-0123456789";
    let oct = json!({"kty":"oct","k":B64.encode(secret)});
    let jku = format!("{}/attacker-jwks", s.issuer.url());
    // A `jwk` object (RFC 7515's form) is ignored like the rest: the attacker's signature
    // does not verify with the configured keys. A `jwk` string is not a JWK (RFC 7515
    // §4.1.3), so not a JWS header.
    for (what, extra, code) in [
        ("jwk object", format!(r#""jwk":{oct}"#), "invalid_signature"),
        ("jwk as a string", format!(r#""jwk":{:?}"#, oct.to_string()), "malformed_token"),
        ("jku", format!(r#""jku":{jku:?}"#), "invalid_signature"),
        ("x5u", format!(r#""x5u":{:?}"#, format!("{}/cert.pem", s.issuer.url())), "invalid_signature"),
        ("x5c", r#""x5c":["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]"#.to_string(), "invalid_signature"),
    ] {
        let h = format!(r#"{{"alg":"HS256",{extra}}}"#);
        add(&format!("HS256 by an attacker secret, {what}"), raw_token(&h, &ok, secret), code);
        let h = format!(r#"{{"alg":"HS256","kid":"attacker",{extra}}}"#);
        add(&format!("HS256 by an attacker secret, {what}, attacker kid"), raw_token(&h, &ok, secret), code);
    }
    // (The real secret with a jwk object, or a `salt` member: accepted, see the test below.)

    // Other header members with an RFC-defined type or value.
    add("typ JOSE", signed(r#"{"alg":"HS256","kid":"hs-1","typ":"JOSE"}"#, &ok), "malformed_token");
    add("typ a number", signed(r#"{"alg":"HS256","kid":"hs-1","typ":1}"#, &ok), "malformed_token");
    let long_header = format!(r#"{{"alg":"HS256","kid":"hs-1","x":"{}"}}"#, "x".repeat(7000));
    add("header over 8 KiB encoded", signed(&long_header, &ok), "malformed_token");

    // Size: the bound is 16 KiB exactly; beyond it, up to Envoy's own header limit.
    add("one byte over 16 KiB, validly signed", token_of_length(MAX_TOKEN_BYTES + 1), "malformed_token");
    add("32 KiB, validly signed", token_of_length(32 * 1024), "malformed_token");
    add(
        "just under Envoy's 60 KiB header limit",
        token_of_length(ENVOY_HEADER_LIMIT - 1024),
        "malformed_token",
    );
    add("60 KiB of dots", ".".repeat(ENVOY_HEADER_LIMIT - 1024), "malformed_token");

    // Structure.
    let (h64, c64) = (B64.encode(HS256), B64.encode(&ok));
    let good = signed(HS256, &ok);
    let sig = good.rsplit('.').next().unwrap().to_string();
    add("one segment", h64.clone(), "malformed_token");
    add("two segments", format!("{h64}.{c64}"), "malformed_token");
    add("two segments, trailing dot dropped", format!("{h64}.{c64}{sig}"), "malformed_token");
    add("four segments", format!("{good}.{sig}"), "malformed_token");
    add("five segments (JWE shape)", format!("{h64}.{c64}.{sig}.{sig}.{sig}"), "malformed_token");
    add("only dots", "..".into(), "malformed_token");
    add("empty claims segment", format!("{h64}..{sig}"), "malformed_token");
    add("empty header segment", format!(".{c64}.{sig}"), "malformed_token");

    // base64url.
    add("padded segments", format!("{h64}=.{c64}.{sig}"), "malformed_token");
    add("standard alphabet in the signature", format!("{h64}.{c64}.+{}", &sig[1..]), "malformed_token");
    add("forbidden character", format!("{h64}.{c64}*.{sig}"), "malformed_token");
    let mut c65 = c64.clone();
    while c65.len() % 4 != 1 {
        c65.push('A');
    }
    add("impossible length (4n+1)", format!("{h64}.{c65}.{sig}"), "malformed_token");
    add("non-canonical trailing bits", format!("{h64}.{c64}.{}B", &sig[..sig.len() - 1]), "malformed_token");
    add("percent-encoded", format!("{h64}.{c64}%3D.{sig}"), "malformed_token");
    add("space inside", format!("{h64}. {c64}.{sig}"), "malformed_token");

    // Not JSON, not an object, deeply nested.
    add("claims not JSON", signed(HS256, "not json"), "malformed_token");
    add("header not JSON", signed("alg=HS256", &ok), "malformed_token");
    add("claims a JSON array", signed(HS256, "[1,2,3]"), "malformed_token");
    add("claims a JSON string", signed(HS256, "\"eyJ\""), "malformed_token");
    add("claims null", signed(HS256, "null"), "malformed_token");
    add("claims empty", signed_bytes(HS256.as_bytes(), b""), "malformed_token");
    add("claims with trailing garbage", signed(HS256, &format!("{ok}x")), "malformed_token");
    add("claims followed by a second object", signed(HS256, &format!("{ok}{{}}")), "malformed_token");
    add("claims with a byte-order mark", signed(HS256, &format!("\u{feff}{ok}")), "malformed_token");
    add(
        "claims not UTF-8",
        signed_bytes(HS256.as_bytes(), &[b"{\"sub\":\"".as_slice(), &[0xff, 0xfe], b"\"}"].concat()),
        "malformed_token",
    );
    add(
        "claims with a lone surrogate escape",
        signed(HS256, &claims(&[set("sub", r#""\ud800""#)])),
        "malformed_token",
    );
    add(
        "claims 5000 arrays deep",
        signed(HS256, &claims(&[set("x", format!("{}1{}", "[".repeat(5000), "]".repeat(5000)))])),
        "malformed_token",
    );
    add(
        "claims 2000 objects deep",
        signed(HS256, &claims(&[set("x", format!("{}1{}", "{\"a\":".repeat(2000), "}".repeat(2000)))])),
        "malformed_token",
    );
    add(
        "header 3000 arrays deep",
        signed(&format!(r#"{{"alg":"HS256","x":{}0{}}}"#, "[".repeat(3000), "]".repeat(3000)), &ok),
        "malformed_token",
    );

    // Duplicate members: we and jwt-simple must never disagree about what a token says.
    let dup = |k: &str, v: &str| {
        let c = claims(&[]);
        format!("{},\"{k}\":{v}}}", c.trim_end_matches('}'))
    };
    add("duplicate exp", signed(HS256, &dup("exp", &(n + 9999).to_string())), "malformed_token");
    add(
        "duplicate iss (trusted, then not)",
        signed(HS256, &dup("iss", "\"https://evil.test\"")),
        "malformed_token",
    );
    add("duplicate sub, one escaped", signed(HS256, &dup("s\\u0075b", "\"admin\"")), "malformed_token");
    add(
        "duplicate alg in the header",
        signed(r#"{"alg":"none","alg":"HS256","kid":"hs-1"}"#, &ok),
        "malformed_token",
    );
    add(
        "duplicate kid in the header",
        signed(r#"{"alg":"HS256","kid":"hs-1","kid":"rsa-1"}"#, &ok),
        "malformed_token",
    );

    // NumericDates: only non-negative integers up to year 9999.
    let future = (n + 300).to_string();
    for claim in ["exp", "nbf", "iat"] {
        let value = if claim == "exp" { future.clone() } else { n.to_string() };
        for (what, raw) in [
            ("a string", format!("\"{value}\"")),
            ("a float", format!("{value}.5")),
            ("a float with .0", format!("{value}.0")),
            ("in exponent form", format!("{:e}", value.parse::<f64>().unwrap())),
            ("negative", "-1".into()),
            ("-0.0", "-0.0".into()),
            ("1e300", "1e300".into()),
            ("beyond year 9999", "253402300800".into()),
            ("u64::MAX", u64::MAX.to_string()),
            ("beyond u64", "18446744073709551616".into()),
            ("true", "true".into()),
            ("an object", "{}".into()),
            ("a list", format!("[{value}]")),
        ] {
            add(&format!("{claim} {what}"), signed(HS256, &claims(&[set(claim, raw)])), "malformed_token");
        }
    }
    add("exp absent", signed(HS256, &claims(&[("exp", None)])), "missing_claim");
    add("exp null", signed(HS256, &claims(&[set("exp", "null")])), "malformed_token");
    add("iat null", signed(HS256, &claims(&[set("iat", "null")])), "malformed_token");
    add("aud null", signed(HS256, &claims(&[set("aud", "null")])), "malformed_token");
    add("iat absent (required here)", signed(HS256, &claims(&[("iat", None)])), "missing_claim");
    add("exp 0", signed(HS256, &claims(&[set("exp", "0")])), "token_expired");
    add("nbf at year 9999", signed(HS256, &claims(&[set("nbf", "253402300799")])), "token_not_yet_valid");
    add(
        "exp at year 9999 (lifetime bound)",
        signed(HS256, &claims(&[set("exp", "253402300799")])),
        "malformed_token",
    );

    // Other claim types the pipeline relies on.
    add("sub a number", signed(HS256, &claims(&[set("sub", "1")])), "malformed_token");
    add(
        "aud a list holding a number",
        signed(HS256, &claims(&[set("aud", "[\"api\",1]")])),
        "malformed_token",
    );
    add("iss a list", signed(HS256, &claims(&[set("iss", format!("[{ISS:?}]"))])), "malformed_token");
    add("iss absent", signed(HS256, &claims(&[("iss", None)])), "missing_claim");
    cases
}

#[test]
fn hostile_tokens_get_the_right_401_and_never_a_5xx() {
    let s = Stack::start(json!({}));
    let created = s.envoy.wasm_vms_created();
    let control = signed(HS256, &claims(&[]));
    assert_eq!(s.get("/ok", Some(&control)).status, 200, "the raw-token baseline is accepted");
    // The 16 KiB bound is inclusive: a valid token of exactly that size is accepted.
    let at_limit = token_of_length(MAX_TOKEN_BYTES);
    let r = s.get("/ok", Some(&at_limit));
    assert_eq!(r.status, 200, "a token of exactly {MAX_TOKEN_BYTES} bytes: {}", r.body);
    // So is a token without nbf (an optional claim).
    assert_eq!(s.get("/ok", Some(&signed(HS256, &claims(&[("nbf", None)])))).status, 200);
    // And validly signed tokens whose header carries a `jwk` object (RFC 7515 §4.1.3; ignored,
    // keys come only from configuration) or jwt-simple's `salt` member (unknown to us).
    let oct = json!({"kty":"oct","k":B64.encode(b"attacker-chosen-hmac-secret-0123456789")});
    for h in [
        format!(r#"{{"alg":"HS256","kid":"hs-1","jwk":{oct}}}"#),
        r#"{"alg":"HS256","kid":"hs-1","salt":"c2FsdA"}"#.to_string(),
    ] {
        let r = s.get("/ok", Some(&signed(&h, &claims(&[]))));
        assert_eq!(r.status, 200, "{h}: {}", r.body);
    }
    let accepted = s.upstream.received().len();

    let cases = token_cases(&s);
    let mut failures = Vec::new();
    for (name, token, code) in &cases {
        eprintln!("{code:<22} {name}"); // `--nocapture` prints the whole table
        let r = s.get("/hostile", Some(token));
        if r.status >= 500 {
            failures.push(format!("{name}: 5xx {} {}", r.status, r.body));
        } else if let Err(e) = assert_refused(name, &r, code) {
            failures.push(e);
        } else if r.body.contains("refused by the signature verifier") {
            // decode must catch whatever jwt-simple would refuse, so the reason is precise.
            failures.push(format!("{name}: opaque reason {}", r.body));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} hostile tokens refused with the expected codes", cases.len());

    // The same tokens from fresh connections, spread over both workers.
    let handles: Vec<_> = cases
        .iter()
        .step_by(7)
        .map(|(name, token, code)| {
            let (url, auth, name, code) =
                (s.envoy.url("/hostile"), format!("Bearer {token}"), name.clone(), *code);
            std::thread::spawn(move || {
                let r = Client::new().get(&url, &[("authorization", &auth)]);
                assert_refused(&name, &r, code)
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }

    // Beyond Envoy's header limit the request never reaches the filter: Envoy itself
    // answers 431, still not a 5xx.
    let r = s.get("/hostile", Some(&"a".repeat(ENVOY_HEADER_LIMIT + 1024)));
    assert_eq!(r.status, 431, "{}", r.body);

    assert_eq!(s.upstream.received().len(), accepted, "a hostile request reached the upstream");
    assert_eq!(s.issuer.counter("requests"), 0, "the filter called the issuer (jku/x5u followed?)");
    // Still serving, on both workers.
    for _ in 0..6 {
        assert_eq!(
            Client::new().get(&s.envoy.url("/ok"), &[("authorization", &format!("Bearer {control}"))]).status,
            200
        );
    }
    s.envoy.assert_wasm_healthy(created);
    // One rejection audit line per refused request, none of them holding a token.
    let rejected = s.envoy.audit_records().into_iter().filter(|a| a["event"] == "token_rejected").count();
    assert_eq!(rejected, cases.len() + cases.iter().step_by(7).count());
}

#[test]
fn non_utf8_and_control_bytes_are_refused_not_crashed_on() {
    let s = Stack::start(json!({}));
    let created = s.envoy.wasm_vms_created();
    let good = signed(HS256, &claims(&[]));
    let cut = good.len() / 2;
    let spliced = [&good.as_bytes()[..cut], &[0xff, 0xfe, 0x80], &good.as_bytes()[cut..]].concat();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bytes 0xff 0xfe 0x80 spliced into a valid token", bearer_line(&spliced), "malformed_token"),
        (
            "a token of only high bytes",
            bearer_line(&[0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x90, 0x28, 0xbc]),
            "malformed_token",
        ),
        (
            "Latin-1 é in a token",
            bearer_line(&[b"abc".as_slice(), &[0xe9], b".def.ghi"].concat()),
            "malformed_token",
        ),
        (
            "a valid token followed by 0xff",
            bearer_line(&[good.as_bytes(), &[0xff]].concat()),
            "malformed_token",
        ),
        (
            "non-UTF-8 inside the scheme",
            [b"authorization: B".as_slice(), &[0xe9], b"arer ", good.as_bytes()].concat(),
            "missing_token",
        ),
        (
            "a non-UTF-8 scheme only",
            b"authorization: \xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
            "missing_token",
        ),
    ];
    let mut failures = Vec::new();
    for (name, line, code) in &cases {
        let r = raw_get(&s, &[line]);
        if let Err(e) = assert_refused(name, &r, code) {
            failures.push(e);
        }
    }
    // A refused token with a non-UTF-8 request id: the audit line stays valid JSON.
    let r = raw_get(&s, &[&bearer_line(b"x.y.z"), b"x-request-id: req-\xff\xfe-1"]);
    assert_refused("non-UTF-8 request id", &r, "malformed_token").unwrap();
    assert_eq!(s.target().audits_for("x.y.z").len(), 1, "the audit line is still one valid JSON record");
    // NUL is refused by Envoy's HTTP codec before any filter runs (a 400); a bare CR reaches
    // the filter as part of the value.
    let r = raw_get(&s, &[&bearer_line(b"abc\x00def")]);
    if r.status != 400 {
        failures.push(format!("NUL in the token: expected Envoy's 400, got {} {}", r.status, r.body));
    }
    let r = raw_get(&s, &[&bearer_line(b"abc\rdef")]);
    if let Err(e) = assert_refused("bare CR in the token", &r, "malformed_token") {
        failures.push(e);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A valid token with non-UTF-8 in an unrelated header is served.
    let ok = raw_get(&s, &[&bearer_line(good.as_bytes()), b"x-junk: \xff\xfe\xfd"]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(s.upstream.received().len(), 1);
    assert_eq!(s.issuer.counter("requests"), 0);
    s.envoy.assert_wasm_healthy(created);
}

#[test]
fn a_token_in_both_header_and_cookie_is_judged_by_the_configured_source_only() {
    let expired = |s: &Stack| s.mint(MintRequest::new("ES256", -5));
    let valid = |s: &Stack| s.mint(MintRequest::new("ES256", 300));

    // Header source (the default): a cookie is never a fallback, nor a second opinion.
    let s = Stack::start(json!({}));
    let created = s.envoy.wasm_vms_created();
    let (bad, good) = (expired(&s), valid(&s));
    let both = |auth: &str, cookie: &str| {
        s.client.get(&s.envoy.url("/both"), &[("authorization", auth), ("cookie", cookie)])
    };
    assert_refused(
        "expired header, valid cookie",
        &both(&format!("Bearer {bad}"), &format!("access_token={good}; token={good}")),
        "token_expired",
    )
    .unwrap();
    assert_refused(
        "garbage header, valid cookie",
        &both("Bearer x.y.z", &format!("access_token={good}")),
        "malformed_token",
    )
    .unwrap();
    let r = s.client.get(&s.envoy.url("/both"), &[("cookie", &format!("access_token={good}; token={good}"))]);
    assert_refused("cookie only", &r, "missing_token").unwrap();
    // Two Authorization headers (one valid): Envoy joins them with a comma, which is no token.
    let r = raw_get(&s, &[&bearer_line(good.as_bytes()), &bearer_line(b"forged.token.here")]);
    assert_refused("two authorization headers", &r, "malformed_token").unwrap();
    let r = raw_get(&s, &[&bearer_line(good.as_bytes()), &bearer_line(good.as_bytes())]);
    assert_refused("the same token twice", &r, "malformed_token").unwrap();
    assert!(s.upstream.received().is_empty());
    s.envoy.assert_wasm_healthy(created);

    // Cookie source: a bearer header alone is no token; next to the cookie, or with the
    // cookie twice, the request is ambiguous and refused as malformed, whichever is valid.
    let s = Stack::start(json!({"token_source": {"cookie": "at"}}));
    let created = s.envoy.wasm_vms_created();
    let (bad, good) = (expired(&s), valid(&s));
    let both = |auth: &str, cookie: &str| {
        s.client.get(&s.envoy.url("/both"), &[("authorization", auth), ("cookie", cookie)])
    };
    assert_refused(
        "valid header, expired cookie",
        &both(&format!("Bearer {good}"), &format!("at={bad}")),
        "malformed_token",
    )
    .unwrap();
    let r = s.client.get(&s.envoy.url("/both"), &[("authorization", &format!("Bearer {good}"))]);
    assert_refused("header only", &r, "missing_token").unwrap();
    assert_refused(
        "the cookie twice, bad first",
        &both("", &format!("at={bad}; at={good}")),
        "malformed_token",
    )
    .unwrap();
    assert_refused("empty cookie", &both("", "at="), "malformed_token").unwrap();
    let r = raw_get(&s, &[b"cookie: at=\xff\xfe.\x80.\x81"]);
    assert_refused("non-UTF-8 cookie", &r, "malformed_token").unwrap();
    assert!(s.upstream.received().is_empty());
    let ok = s.client.get(&s.envoy.url("/both"), &[("cookie", &format!("theme=dark; at={good}"))]);
    assert_eq!(ok.status, 200);
    s.envoy.assert_wasm_healthy(created);
}

#[test]
fn an_empty_bearer_token_is_a_missing_token() {
    // Envoy trims trailing whitespace from header values, so `Bearer ` arrives as `Bearer`:
    // there is no token, and RFC 6750 §3.1 says such a challenge has no error code.
    let s = Stack::start(json!({}));
    for value in ["Bearer", "Bearer ", "Bearer    ", "bearer\t"] {
        let r = s.client.get(&s.envoy.url("/"), &[("authorization", value)]);
        assert_refused(&format!("{value:?}"), &r, "missing_token").unwrap();
    }
    let r = raw_get(&s, &[b"authorization:"]);
    assert_refused("empty header", &r, "missing_token").unwrap();
}
