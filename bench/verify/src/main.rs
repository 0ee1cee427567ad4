//! Times one signature verification per algorithm, on tokens minted here before timing.
//!
//! Prints one tab-separated line per case: name, microseconds per signature check
//! (`jwks::Verifier::verify`, or the named crate), microseconds per whole first-sight
//! validation (`verify::validate`: decode, key lookup, signature, claims; `-` where it does
//! not apply), the first call's microseconds (cold: in V8 that includes compiling), and the
//! best round's microseconds per signature check.
//! Per-operation figures are the median of several timed rounds after a warm-up.
//!
//! `bench/verify/run.mjs` runs it in V8 (node's WASI) and natively and writes the table.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{json, Value};
use std::time::Instant;
use tokenguard::config::Config;
use tokenguard::jwks::{Alg, JwkSet, KeyLookup, KeySet};

const KEYS: &str = include_str!("../../../envoy/demo/issuer-keys.json");
const ISS: &str = "https://issuer.bench";
const NOW: u64 = 1_800_000_000;

struct Keys {
    hmac: Vec<u8>,
    rsa_pem: String,
    ec256: ES256KeyPair,
    ec384: ES384KeyPair,
    ed: Ed25519KeyPair,
}

fn b64(v: &Value, name: &str) -> Vec<u8> {
    B64.decode(v[name].as_str().expect(name)).expect(name)
}

fn keys() -> Keys {
    let v: Value = serde_json::from_str(KEYS).expect("demo keys");
    Keys {
        hmac: b64(&v, "hmac"),
        rsa_pem: v["rsa_pem"].as_str().expect("rsa_pem").to_string(),
        ec256: ES256KeyPair::from_bytes(&b64(&v, "ec256")).expect("ec256"),
        ec384: ES384KeyPair::from_bytes(&b64(&v, "ec384")).expect("ec384"),
        ed: Ed25519KeyPair::from_bytes(&b64(&v, "ed25519")).expect("ed25519"),
    }
}

fn jwks(k: &Keys) -> Value {
    let rsa = RS256KeyPair::from_pem(&k.rsa_pem).expect("rsa").public_key().to_components();
    let p256 = k.ec256.public_key().public_key().to_bytes_uncompressed();
    let p384 = k.ec384.public_key().public_key().to_bytes_uncompressed();
    let (x256, y256) = p256[1..].split_at(32);
    let (x384, y384) = p384[1..].split_at(48);
    json!({"keys": [
        {"kty": "RSA", "n": B64.encode(&rsa.n), "e": B64.encode(&rsa.e)},
        {"kty": "EC", "crv": "P-256", "x": B64.encode(x256), "y": B64.encode(y256)},
        {"kty": "EC", "crv": "P-384", "x": B64.encode(x384), "y": B64.encode(y384)},
        {"kty": "OKP", "crv": "Ed25519", "x": B64.encode(k.ed.public_key().to_bytes())},
        {"kty": "oct", "k": B64.encode(&k.hmac)},
    ]})
}

fn claims() -> JWTClaims<NoCustomClaims> {
    let mut c =
        Claims::create(Duration::from_secs(300)).with_issuer(ISS).with_subject("alice").with_audience("api");
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW - 10));
    c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 300));
    c.invalid_before = None;
    c.jwt_id = Some("bench-1".into());
    c
}

fn mint(k: &Keys, alg: Alg) -> String {
    let c = claims();
    match alg {
        Alg::HS256 => HS256Key::from_bytes(&k.hmac).authenticate(c),
        Alg::RS256 => RS256KeyPair::from_pem(&k.rsa_pem).expect("rsa").sign(c),
        Alg::RS384 => RS384KeyPair::from_pem(&k.rsa_pem).expect("rsa").sign(c),
        Alg::RS512 => RS512KeyPair::from_pem(&k.rsa_pem).expect("rsa").sign(c),
        Alg::PS256 => PS256KeyPair::from_pem(&k.rsa_pem).expect("rsa").sign(c),
        Alg::PS384 => PS384KeyPair::from_pem(&k.rsa_pem).expect("rsa").sign(c),
        Alg::PS512 => PS512KeyPair::from_pem(&k.rsa_pem).expect("rsa").sign(c),
        Alg::ES256 => k.ec256.sign(c),
        Alg::ES384 => k.ec384.sign(c),
        Alg::EdDSA => k.ed.sign(c),
        other => panic!("no minting for {other:?}"),
    }
    .expect("sign")
}

/// Microseconds: the first call, then the median and the best of rounds after a warm-up.
/// With `BENCH_VERIFY_ITERATIONS=N` (native only), runs `f` exactly N times untimed instead,
/// for an instruction count under valgrind that the machine's load cannot move.
fn time(f: &dyn Fn() -> bool, budget_ms: u64) -> (f64, f64, f64) {
    if let Some(n) = iterations() {
        for _ in 0..n {
            assert!(f(), "the benchmarked verification failed");
        }
        return (0.0, 0.0, 0.0);
    }
    let t = Instant::now();
    assert!(f(), "the benchmarked verification failed");
    let first = t.elapsed().as_secs_f64() * 1e6;
    let budget = std::time::Duration::from_millis(budget_ms);
    let warm = Instant::now();
    while warm.elapsed() < budget / 4 {
        f();
    }
    const ROUNDS: u32 = 7;
    let mut per_op: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            let mut n = 0u32;
            while n < 3 || t.elapsed() < budget / ROUNDS {
                f();
                n += 1;
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    (first, per_op[per_op.len() / 2], per_op[0])
}

fn iterations() -> Option<u32> {
    std::env::var("BENCH_VERIFY_ITERATIONS").ok().and_then(|v| v.parse().ok())
}

fn jwt_simple_options() -> Option<VerificationOptions> {
    Some(VerificationOptions {
        accept_future: true,
        time_tolerance: Some(Duration::from_secs(0)),
        artificial_time: Some(UnixTimeStamp::from_secs(0)),
        ..Default::default()
    })
}

fn split(token: &str) -> (&str, Vec<u8>) {
    let (input, sig) = token.rsplit_once('.').expect("token");
    (input, B64.decode(sig).expect("signature"))
}

fn main() {
    let budget_ms: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(800);
    // Optional: only the cases whose name contains this.
    let only = std::env::args().nth(2).unwrap_or_default();
    let wanted = |name: &str| name.contains(only.as_str());
    let k = keys();
    let jwks = jwks(&k);
    let set: JwkSet = serde_json::from_value(jwks.clone()).expect("jwks");
    let cfg = Config::from_json(json!({
        "providers": [{"issuer": ISS, "audiences": ["api"], "jwks": jwks,
            "algorithms": ["HS256", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                "EdDSA"]}],
        "clock_skew_seconds": 0,
        "required_claims": ["exp", "iat", "sub"],
    }))
    .unwrap_or_else(|e| panic!("config: {e}"));
    println!("# target: {}", if cfg!(target_arch = "wasm32") { "wasm32" } else { std::env::consts::ARCH });
    println!("# budget per case: {budget_ms} ms");

    let report = |name: &str, sig: (f64, f64, f64), validate: Option<(f64, f64, f64)>| {
        let v = validate.map_or("-".to_string(), |v| format!("{:.1}", v.1));
        println!("{name}\t{:.1}\t{v}\t{:.0}\t{:.1}", sig.1, sig.0, sig.2);
    };

    for alg in [
        Alg::HS256,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ] {
        let name = match alg {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                format!("{} (tokenguard::rsa)", alg.as_str())
            }
            Alg::ES384 => format!("{} (tokenguard::es384)", alg.as_str()),
            Alg::EdDSA => format!("{} (tokenguard::eddsa)", alg.as_str()),
            Alg::ES256 => format!("{} (tokenguard::ecdsa)", alg.as_str()),
            _ => format!("{} (jwt-simple)", alg.as_str()),
        };
        if !wanted(&name) {
            continue;
        }
        let keyset = KeySet::build(&set, &[alg], "jwks").expect("keys");
        let KeyLookup::Found(found) = keyset.lookup(alg, None) else { panic!("no key for {alg:?}") };
        let verifier = &found[0].verifier;
        let token = mint(&k, alg);
        let sig = time(&|| verifier.verify(&token).is_ok(), budget_ms);
        // Counting instructions: the signature check alone.
        let full = iterations()
            .is_none()
            .then(|| time(&|| tokenguard::verify::validate(&cfg, &token, NOW).is_ok(), budget_ms));
        report(&name, sig, full);
    }

    // PS256 as it was: jwt-simple (the `rsa` crate) through its token API.
    let name = "PS256 (jwt-simple, before)";
    if wanted(name) {
        let token = mint(&k, Alg::PS256);
        let pk = PS256KeyPair::from_pem(&k.rsa_pem).expect("rsa").public_key();
        let f = || pk.verify_token::<NoCustomClaims>(&token, jwt_simple_options()).is_ok();
        report(name, time(&f, budget_ms), None);
    }
    // ES384 as it was: p384's own verifier (what jwt-simple called, and tokenguard::es384
    // called directly before its tables).
    let name = "ES384 (p384 crate directly, before)";
    if wanted(name) {
        use p384::ecdsa::signature::hazmat::PrehashVerifier as _;
        let token = mint(&k, Alg::ES384);
        let vk = *k.ec384.public_key().public_key().as_ref();
        let f = || {
            let (input, sig) = split(&token);
            let Ok(sig) = p384::ecdsa::Signature::from_slice(&sig) else { return false };
            let digest = hmac_sha512::sha384::Hash::hash(input.as_bytes());
            vk.verify_prehash(&digest, &sig).is_ok()
        };
        report(name, time(&f, budget_ms), None);
    }

    // RS256 as it was: jwt-simple's pure-Rust RSA through its token API.
    let name = "RS256 (jwt-simple, before)";
    if wanted(name) {
        let token = mint(&k, Alg::RS256);
        let pk = RS256KeyPair::from_pem(&k.rsa_pem).expect("rsa").public_key();
        let f = || pk.verify_token::<NoCustomClaims>(&token, jwt_simple_options()).is_ok();
        report(name, time(&f, budget_ms), None);
    }

    // EdDSA as it was: jwt-simple (ed25519-compact) through its token API.
    let name = "EdDSA (jwt-simple, before)";
    if wanted(name) {
        let token = mint(&k, Alg::EdDSA);
        let pk = k.ed.public_key();
        let f = || pk.verify_token::<NoCustomClaims>(&token, jwt_simple_options()).is_ok();
        report(name, time(&f, budget_ms), None);
    }
    // ES256 as it was: jwt-simple (p256's verifier) through its token API.
    let name = "ES256 (jwt-simple, before)";
    if wanted(name) {
        let token = mint(&k, Alg::ES256);
        let pk = k.ec256.public_key();
        let f = || pk.verify_token::<NoCustomClaims>(&token, jwt_simple_options()).is_ok();
        report(name, time(&f, budget_ms), None);
    }
    // What tokenguard::ecdsa pays per key at configuration time: its table (the generator's
    // is built once per process, by the first key, and is not in this figure).
    let name = "ES256 key table build (tokenguard::ecdsa, per key)";
    if wanted(name) {
        let point = *k.ec256.public_key().public_key().as_ref().as_affine();
        let point = p256::PublicKey::from_affine(point).expect("point");
        let f = || tokenguard::ecdsa::PublicKey::new(&point).is_some_and(|k| k.table_bytes() > 0);
        report(name, time(&f, budget_ms), None);
    }

    // The same for a P-384 key (tokenguard::es384); the generator's table is built by the
    // first key, outside this figure.
    let name = "ES384 key table build (tokenguard::es384, per key)";
    if wanted(name) {
        let sec1 = k.ec384.public_key().public_key().to_bytes_uncompressed();
        let f = || tokenguard::es384::PublicKey::from_sec1_bytes(&sec1).is_ok_and(|k| k.table_bytes() > 0);
        report(name, time(&f, budget_ms), None);
    }

    // The curves' crates directly, without jwt-simple re-parsing the token and claims.
    let name = "ES256 (p256 crate directly)";
    if wanted(name) {
        let token = mint(&k, Alg::ES256);
        let vk = *k.ec256.public_key().public_key().as_ref();
        let f = || {
            use p256::ecdsa::signature::Verifier as _;
            let (input, sig) = split(&token);
            let Ok(sig) = p256::ecdsa::Signature::from_slice(&sig) else { return false };
            vk.verify(input.as_bytes(), &sig).is_ok()
        };
        report(name, time(&f, budget_ms), None);
    }
    let name = "EdDSA (ed25519-compact directly)";
    if wanted(name) {
        let token = mint(&k, Alg::EdDSA);
        let ed = *k.ed.public_key().public_key().as_ref();
        let f = || {
            let (input, sig) = split(&token);
            let Ok(sig) = ed25519_compact::Signature::from_slice(&sig) else { return false };
            ed.verify(input.as_bytes(), &sig).is_ok()
        };
        report(name, time(&f, budget_ms), None);
    }
    let name = "EdDSA (ed25519-dalek directly)";
    if wanted(name) {
        let token = mint(&k, Alg::EdDSA);
        let pk: [u8; 32] = k.ed.public_key().to_bytes().try_into().expect("32 bytes");
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).expect("dalek key");
        let f = || {
            let (input, sig) = split(&token);
            let Ok(sig) = ed25519_dalek::Signature::from_slice(&sig) else { return false };
            vk.verify_strict(input.as_bytes(), &sig).is_ok()
        };
        report(name, time(&f, budget_ms), None);
    }
}
