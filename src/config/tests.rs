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

fn egress_block() -> serde_json::Value {
    json!({"cluster": "issuer", "authority": "a", "path": "/t", "grant": "client_credentials", "client_id": "svc"})
}

#[test]
fn egress_mode_takes_only_mode_and_egress() {
    let c = Config::from_json(json!({"mode": "egress", "egress": egress_block()})).unwrap();
    assert_eq!(c.mode, Mode::Egress);
    assert!(c.providers.is_empty() && c.refresh.is_none() && c.admin.is_none());
    assert_eq!(c.clock_skew_seconds, DEFAULT_CLOCK_SKEW_SECONDS);
    let admin = json!({"path_prefix": "/tg/", "token": "0123456789abcdef"});
    let refresh = json!({"cluster": "issuer", "authority": "a", "path": "/t"});
    let store = json!({"etcd": {"cluster": "etcd"}});
    let ingress_only = [
        ("providers", json!([])),
        ("token_source", json!({"header": "authorization"})),
        ("clock_skew_seconds", json!(0)),
        ("required_claims", json!(["sub"])),
        ("session", json!({"max_lifetime_seconds": 60})),
        ("near_expiry_warning_seconds", json!(60)),
        ("expires_in_header", json!("")),
        ("audit", json!({"log_accepted": true})),
        ("realm", json!("x")),
        ("max_token_lifetime_seconds", json!(60)),
        ("registry", json!({"capacity": 8})),
        ("admin", admin),
        ("refresh", refresh),
        ("revocation_store", store),
    ];
    for (key, value) in ingress_only {
        let mut cfg = json!({"mode": "egress", "egress": egress_block()});
        cfg[key] = value;
        let e = Config::from_json(cfg).err().unwrap_or_else(|| panic!("{key} was accepted in egress mode"));
        assert_eq!(e.to_string(), format!("{key}: only in ingress mode"));
    }
}

#[test]
fn out_of_range_values_are_refused_not_clamped() {
    let egress = |k: &str, v: u64| {
        let mut e = egress_block();
        e[k] = json!(v);
        Config::from_json(json!({"mode": "egress", "egress": e}))
    };
    // retry_seconds is 1..=60: the edges are taken, a value outside is refused, not clamped.
    assert_eq!(egress("retry_seconds", 1).unwrap().egress.unwrap().retry_seconds, 1);
    assert_eq!(egress("retry_seconds", 60).unwrap().egress.unwrap().retry_seconds, 60);
    for v in [0, 61] {
        assert_eq!(
            egress("retry_seconds", v).err().unwrap().to_string(),
            "egress.retry_seconds: must be between 1 and 60"
        );
    }
    assert_eq!(egress("wait_ms", 60_001).err().unwrap().field, "egress.wait_ms");
    let refresh = json!({"cluster": "issuer", "authority": "a", "path": "/t", "grace_seconds": 301});
    assert_eq!(
        err(json!({"refresh": refresh})).to_string(),
        "refresh.grace_seconds: must be between 0 and 300"
    );
    let max = crate::token::MAX_NUMERIC_DATE;
    let cases = [
        (json!({"clock_skew_seconds": 601}), "clock_skew_seconds: must be between 0 and 600"),
        (
            json!({"near_expiry_warning_seconds": max + 1}),
            "near_expiry_warning_seconds: must be between 0 and 253402300799",
        ),
        (
            json!({"session": {"max_lifetime_seconds": max + 1}}),
            "session.max_lifetime_seconds: must be between 1 and 253402300799",
        ),
        (
            json!({"max_token_lifetime_seconds": 0}),
            "max_token_lifetime_seconds: must be between 1 and 253402300799",
        ),
        (json!({"registry": {"capacity": 0}}), "registry.capacity: must be between 1 and 1000000"),
        (
            json!({"registry": {"max_revocations": 1_000_001}}),
            "registry.max_revocations: must be between 1 and 1000000",
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(err(extra.clone()).to_string(), want, "{extra}");
    }
    let etcd = |k: &str, v: serde_json::Value| {
        let mut e = json!({"cluster": "etcd"});
        e[k] = v;
        err(json!({"revocation_store": {"etcd": e}})).to_string()
    };
    let cases = [
        (
            etcd("startup_wait_ms", json!(60_001)),
            "revocation_store.etcd.startup_wait_ms: must be between 0 and 60000",
        ),
        (etcd("timeout_ms", json!(9)), "revocation_store.etcd.timeout_ms: must be between 10 and 60000"),
        (
            etcd("max_staleness_seconds", json!(5)),
            "revocation_store.etcd.max_staleness_seconds: must be between 6 and 86400",
        ),
        (
            etcd("prefix", json!("/tg")),
            "revocation_store.etcd.prefix: must end with '/' and be at most 256 bytes",
        ),
        (etcd("cluster", json!("")), "revocation_store.etcd.cluster: must not be empty"),
        (etcd("username", json!("u")), "revocation_store.etcd.password: needed with username"),
        (
            etcd("password", json!("p")),
            "revocation_store.etcd.username: needed (and not empty) with password",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
    let old = err(json!({"revocation_feed": {"cluster": "issuer", "path": "/r"}})).to_string();
    assert_eq!(old, "revocation_feed: was replaced by revocation_store.etcd (see docs/configuration.md)");
    let unknown = err(json!({"revocation_store": {"redis": {}}})).to_string();
    assert!(unknown.contains("revocation_store"), "{unknown}");
}

#[test]
fn the_etcd_store_has_documented_defaults() {
    let e = config(json!({"revocation_store": {"etcd": {"cluster": "etcd"}}})).revocation_store.expect("set");
    assert_eq!((e.prefix.as_str(), e.timeout_ms, e.startup_wait_ms), ("/tokenguard/", 1000, 3000));
    assert_eq!((e.authority, e.credentials, e.max_staleness_seconds), (None, None, None));
}

#[test]
fn token_source_header_must_be_a_header_name() {
    for bad in ["bad header", ":authority", "x-token:", "x\ttoken"] {
        let e = err(json!({"token_source": {"header": bad}}));
        assert_eq!(e.to_string(), "token_source.header: is not a valid HTTP header name", "{bad:?}");
    }
    assert_eq!(
        err(json!({"token_source": {"header": ""}})).to_string(),
        "token_source.header: must not be empty"
    );
    let c = config(json!({"token_source": {"header": "X-Token", "prefix": ""}}));
    assert_eq!(c.token_source, TokenSource::Header { name: "x-token".into(), prefix: String::new() });
}
