//! Writes the committed seed corpora under `fuzz/seeds/<target>/`: small, valid or nearly
//! valid inputs from which libFuzzer's mutations reach deep code quickly.
//!
//!   cargo run --example make_seeds     (from fuzz/; rewrites fuzz/seeds)

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use prost::Message;
use prost_types::value::Kind as PKind;
use serde_json::{json, Value};
use std::path::Path;
use tokenguard::registry::handoff::{self, Handoff};
use tokenguard::registry::record::{Bucket, State, TokenRecord};
use tokenguard::registry::revocation::{Kind, Revocation, RevocationSet, Target};
use tokenguard_fuzz::{config_json, keys, ISS, NOW};
use tokenguard_harness::keys::{raw_token, ALGORITHMS};

fn write(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    std::fs::create_dir_all(&dir).expect("seed dir");
    std::fs::write(dir.join(name), bytes).expect("seed");
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "alice", "aud": "api", "iat": NOW - 10, "exp": NOW + 300,
           "jti": "j1", "sid": "s1", "auth_time": NOW - 60})
}

/// JSON to a protobuf `Struct` value, as Envoy hands over plain-YAML configuration.
fn to_proto(v: &Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => PKind::NullValue(0),
        Value::Bool(b) => PKind::BoolValue(*b),
        Value::Number(n) => PKind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => PKind::StringValue(s.clone()),
        Value::Array(a) => {
            PKind::ListValue(prost_types::ListValue { values: a.iter().map(to_proto).collect() })
        }
        Value::Object(o) => PKind::StructValue(to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn to_struct(o: &serde_json::Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct { fields: o.iter().map(|(k, v)| (k.clone(), to_proto(v))).collect() }
}

fn main() {
    let hmac = &keys().hmac;
    let c = claims().to_string();

    // token: real tokens of every algorithm, and hostile shapes.
    for alg in ALGORITHMS {
        write("token", &format!("valid-{alg}"), keys().sign(alg, &claims(), None).expect("sign"));
    }
    let hostile = [
        ("alg-none", format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), B64.encode(&c))),
        ("crit", raw_token(r#"{"alg":"HS256","crit":["exp"]}"#, &c, hmac)),
        ("dup", raw_token(r#"{"alg":"HS256"}"#, &format!("{},\"exp\":1}}", c.trim_end_matches('}')), hmac)),
        ("jwk-object", raw_token(r#"{"alg":"HS256","jwk":{"kty":"oct","k":"AA"}}"#, &c, hmac)),
        ("two-segments", "eyJhbGciOiJIUzI1NiJ9.e30".to_string()),
        ("exp-float", raw_token(r#"{"alg":"HS256"}"#, &c.replace(&format!("{}", NOW + 300), "1.5e9"), hmac)),
    ];
    for (name, t) in &hostile {
        write("token", name, t);
    }

    // token_signed: header, newline, claims.
    for (name, h) in [
        ("hs256", r#"{"alg":"HS256","kid":"hs-1"}"#),
        ("hs384", r#"{"alg":"HS384"}"#),
        ("hs512-typ", r#"{"alg":"HS512","typ":"at+jwt"}"#),
        ("members", r#"{"alg":"HS256","jku":"https://x","x5u":null,"x5c":["AA"],"cty":"JWT","x5t":"AA"}"#),
        ("jwk-object", r#"{"alg":"HS256","jwk":{"kty":"oct"}}"#),
    ] {
        write("token_signed", name, format!("{h}\n{c}"));
    }
    write("token_signed", "claims-types", format!("{{\"alg\":\"HS256\"}}\n{{\"iss\":\"{ISS}\",\"sub\":\"a\",\"aud\":[\"api\",\"x\"],\"iat\":{},\"exp\":{},\"nbf\":0,\"nonce\":\"n\"}}", NOW, NOW + 60));

    // config: JSON text and protobuf Struct of a few configurations.
    let minimal = json!({"providers": [{"issuer": ISS, "algorithms": ["HS256"],
        "jwks": {"keys": [{"kty": "oct", "k": B64.encode(hmac)}]}}]});
    let configs = [
        ("full", config_json(json!({}))),
        ("cookie", config_json(json!({"token_source": {"cookie": "at"}, "refresh": Value::Null}))),
        ("minimal", minimal),
    ];
    for (name, cfg) in configs {
        let mut cfg = cfg;
        if let Some(o) = cfg.as_object_mut() {
            o.retain(|_, v| !v.is_null());
        }
        write("config", &format!("{name}.json"), cfg.to_string());
        if let Value::Object(o) = &cfg {
            write("config", &format!("{name}.struct"), to_struct(o).encode_to_vec());
        }
    }

    // refresh_response: two bytes of status, then the body.
    let answer = |status: u16, body: &str| [status.to_be_bytes().as_slice(), body.as_bytes()].concat();
    let grant = json!({"access_token": keys().sign("ES256", &claims(), None).expect("sign"),
                       "token_type": "Bearer", "expires_in": 300, "refresh_token": "rt-1"});
    write("refresh_response", "ok", answer(200, &grant.to_string()));
    write(
        "refresh_response",
        "invalid-grant",
        answer(400, r#"{"error":"invalid_grant","error_description":"x"}"#),
    );
    write("refresh_response", "status-500", answer(500, "internal error"));
    write("refresh_response", "timeout", answer(504, ""));
    write("refresh_response", "no-answer", answer(0, ""));

    // registry_codecs: codec selector byte, then a stored value.
    let rec = |n: u8| TokenRecord {
        fp: [n; 32],
        exp: NOW + 300,
        iat: NOW - 10,
        first_seen: NOW,
        last_seen: NOW,
        state: State::Warned,
        config_gen: 7,
        refresh_lease_until: 0,
        refresh_retry_at: 0,
        refresh_failures: 1,
        superseded_at: 0,
        sub: "alice".into(),
        jti: "j1".into(),
        sid: "s1".into(),
    };
    let bucket = Bucket { records: vec![rec(1), rec(2)] }.encode();
    let revs = RevocationSet {
        entries: vec![
            Revocation { target: Target::new(Kind::Sub, "alice"), revoked_at: NOW, until: NOW + 100 },
            Revocation { target: Target::new(Kind::Jti, "j1"), revoked_at: NOW - 5, until: NOW - 1 },
        ],
    }
    .encode();
    let handoffs = handoff::encode(&[Handoff {
        old_fp: [3; 32],
        access_token: "a.b.c".into(),
        refresh_token: Some("rt".into()),
        until: NOW + 30,
    }]);
    for (sel, name, bytes) in [
        (0u8, "bucket", &bucket),
        (1, "revocations", &revs),
        (2, "handoffs", &handoffs),
        (3, "store-bucket", &bucket),
        (7, "store-revocations", &revs),
    ] {
        write("registry_codecs", name, [&[sel][..], bytes].concat());
    }

    // admin_request: revoke bodies.
    for (name, body) in [
        ("jti", r#"{"jti":"jti-1"}"#),
        ("sub", r#"{"sub":"alice"}"#),
        ("sid", r#"{"sid":"s1"}"#),
        ("token", r#"{"token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJlLXZhbHVl"}"#),
        ("two-keys", r#"{"sub":"a","jti":"b"}"#),
        ("empty", "{}"),
        ("unknown", r#"{"user":"x"}"#),
    ] {
        write("admin_request", name, body);
    }
    println!("seeds written to {}", Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").display());
}
