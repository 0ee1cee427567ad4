use serde_json::json;

use super::*;
use crate::testkit::*;

fn err(extra: serde_json::Value) -> ConfigError {
    match Config::from_json(config_json(extra)) {
        Ok(_) => panic!("configuration was accepted"),
        Err(e) => e,
    }
}

#[test]
fn defaults() {
    let c = Config::from_json(
        json!({"providers": [{"issuer": ISS, "algorithms": ["RS256"], "jwks": keys().public_jwks()}]}),
    )
    .unwrap();
    assert_eq!(c.clock_skew_seconds, DEFAULT_CLOCK_SKEW_SECONDS);
    assert_eq!(c.required_claims, vec!["exp"]);
    assert_eq!(
        c.token_source,
        TokenSource::Header { name: "authorization".into(), prefix: "Bearer ".into() }
    );
    assert_eq!(c.expires_in_header.as_deref(), Some("x-token-expires-in"));
    assert_eq!(c.near_expiry_warning_seconds, DEFAULT_NEAR_EXPIRY_WARNING_SECONDS);
    assert!(c.session.is_none() && !c.log_accepted);
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    assert_eq!(err(json!({"clock_skew": 1})).field, "clock_skew");
    assert!(err(json!({"clock_skew": 1})).message.contains("unknown field `clock_skew`"));
    let e = err(json!({"session": {"max_lifetime_seconds": 1, "start": "x"}}));
    assert_eq!(e.field, "session.start");
    assert!(e.message.contains("unknown field `start`"), "{e}");
    let e = err(
        json!({"providers": [{"issuer": ISS, "algorithms": ["RS256"], "jwks": keys().public_jwks(), "audience": "x"}]}),
    );
    assert_eq!(e.field, "providers[0].audience");
}

#[test]
fn bad_values_name_the_field() {
    let cases = [
        (json!({"clock_skew_seconds": -1}), "clock_skew_seconds"),
        (json!({"clock_skew_seconds": "30"}), "clock_skew_seconds"),
        (json!({"clock_skew_seconds": 601}), "clock_skew_seconds"),
        (json!({"providers": []}), "providers"),
        (
            json!({"providers": [{"issuer": "", "algorithms": ["RS256"], "jwks": keys().public_jwks()}]}),
            "providers[0].issuer",
        ),
        (
            json!({"providers": [{"issuer": ISS, "algorithms": ["none"], "jwks": keys().public_jwks()}]}),
            "providers[0].algorithms[0]",
        ),
        (
            json!({"providers": [{"issuer": ISS, "algorithms": ["RS256", "HS256"], "jwks": keys().public_jwks()}]}),
            "providers[0].algorithms",
        ),
        (
            json!({"providers": [{"issuer": ISS, "algorithms": ["RS256"], "jwks": {"keys": [{"kty": "RSA", "n": "***", "e": "AQAB"}]}}]}),
            "providers[0].jwks.keys[0]",
        ),
        (
            json!({"providers": [{"issuer": ISS, "algorithms": ["HS256"], "jwks": {"keys": [{"kty": "oct", "k": "c2hvcnQ"}]}}]}),
            "providers[0].jwks.keys[0]",
        ),
        (
            json!({"providers": [{"issuer": ISS, "algorithms": ["ES256"], "jwks": {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}}]}),
            "providers[0].algorithms",
        ),
        (
            json!({"providers": [{"issuer": ISS, "algorithms": ["ES256"], "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "AQAB", "y": "AQAB"}]}}]}),
            "providers[0].jwks.keys[0]",
        ),
        (json!({"providers": [{"issuer": ISS, "algorithms": ["RS256"]}]}), "providers[0]"),
        (json!({"token_source": {"header": "authorization", "cookie": "session"}}), "token_source"),
        (json!({"token_source": {"cookie": ""}}), "token_source.cookie"),
        (json!({"session": {"max_lifetime_seconds": 0}}), "session.max_lifetime_seconds"),
        (json!({"required_claims": ["sub", ""]}), "required_claims[1]"),
        (json!({"expires_in_header": "bad header"}), "expires_in_header"),
        (json!({"realm": "a\"b"}), "realm"),
        (json!({"audit": {"log_accepted": "yes"}}), "audit.log_accepted"),
    ];
    for (extra, field) in cases {
        let e = err(extra.clone());
        assert_eq!(e.field, field, "{extra} gave {e}");
    }
}

#[test]
fn error_messages_read_well() {
    let e =
        err(json!({"providers": [{"issuer": ISS, "algorithms": ["none"], "jwks": keys().public_jwks()}]}));
    assert!(e.to_string().starts_with("providers[0].algorithms[0]: unsupported algorithm \"none\""), "{e}");
}

#[test]
fn exp_is_always_required_and_header_can_be_disabled() {
    let c = config(json!({"required_claims": ["sub"], "expires_in_header": ""}));
    assert_eq!(c.required_claims, vec!["exp", "sub"]);
    assert!(c.expires_in_header.is_none());
}

#[test]
fn a_jwk_alg_pins_the_key() {
    let mut jwks = keys().public_jwks();
    jwks["keys"][0]["alg"] = json!("PS256");
    let c = config(
        json!({"providers": [{"issuer": ISS, "algorithms": ["PS256", "ES256"], "jwks": jwks.clone()}]}),
    );
    let rsa: Vec<_> = c.providers[0]
        .keys
        .entries
        .iter()
        .filter(|e| e.kid.as_deref() == Some("rsa-1"))
        .map(|e| e.alg)
        .collect();
    assert_eq!(rsa, vec![crate::jwks::Alg::PS256]);
    let e = err(json!({"providers": [{"issuer": ISS, "algorithms": ["RS256", "PS256"], "jwks": jwks}]}));
    assert_eq!(e.to_string(), "providers[0].algorithms: RS256 has no matching key in jwks");
}

#[test]
fn refresh_window_ratio_accepts_envoy_yaml_decimals() {
    let base = json!({"cluster": "issuer", "authority": "a", "path": "/t"});
    let with = |ratio: serde_json::Value| {
        let mut r = base.clone();
        r["window_ratio"] = ratio;
        Config::from_json(config_json(json!({"refresh": r})))
    };
    assert_eq!(with(json!(0.5)).unwrap().refresh.unwrap().window_ratio, 0.5);
    assert_eq!(with(json!("0.25")).unwrap().refresh.unwrap().window_ratio, 0.25);
    assert_eq!(with(json!("lots")).err().unwrap().field, "refresh.window_ratio");
    assert_eq!(with(json!(1.5)).err().unwrap().field, "refresh.window_ratio");
    let defaults = with(json!(null)).unwrap().refresh.unwrap();
    assert_eq!((defaults.window_seconds, defaults.window_ratio, defaults.grace_seconds), (120, 0.2, 30));
    let mut r = base.clone();
    r["refresh_token_header"] = json!("x-rt");
    r["refresh_token_cookie"] = json!("rt");
    assert_eq!(err(json!({"refresh": r})).field, "refresh");
    let mut r = base.clone();
    r["client_secret"] = json!("s");
    assert_eq!(err(json!({"refresh": r})).field, "refresh.client_secret");
}
