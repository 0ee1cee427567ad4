use serde_json::json;

use super::*;
use crate::config::Config;
use crate::testkit::*;

fn err(extra: serde_json::Value) -> ConfigError {
    match Config::from_json(config_json(extra)) {
        Ok(_) => panic!("configuration was accepted"),
        Err(e) => e,
    }
}

#[test]
fn the_issue_example_is_accepted_and_compiled() {
    let c = config(json!({
        "routes": [
            {"path_prefix": "/healthz", "policy": "public"},
            {"path_exact": "/login", "methods": ["GET", "POST"], "policy": "public"},
            {"path_prefix": "/catalog/", "methods": ["GET"], "policy": "optional"},
            {"path_prefix": "/admin/", "required_scopes": ["admin"]},
            {"path_prefix": "/orders/", "required_claims": {"tenant": ["acme", "globex"]}}
        ],
        "claims_to_headers": [{"claim": "sub", "header": "X-User-Id"},
                              {"claim": "realm_access.roles", "header": "x-user-roles"}],
        "forward_payload_header": "x-jwt-payload",
        "report_only": false,
        "resource_metadata": {"resource": "https://api.example.com",
                              "authorization_servers": ["https://idp.example/realms/main"],
                              "scopes_supported": ["read", "admin"]}
    }));
    let r = &c.routes;
    assert_eq!(r.rules.len(), 5);
    assert_eq!(r.rules[1].methods, vec!["GET", "POST"]);
    assert_eq!(r.rules[3].policy, Policy::Required);
    assert_eq!(r.rules[4].required_claims[0].claim, ClaimPath(vec!["tenant".into()]));
    assert_eq!(r.claim_headers[1].claim.0, vec!["realm_access", "roles"]);
    assert_eq!(r.managed_headers, vec!["x-user-id", "x-user-roles", "x-jwt-payload"]);
    assert!(r.needs_claims && !r.report_only);
    let m = r.resource_metadata.as_ref().unwrap();
    assert_eq!(m.path, "/.well-known/oauth-protected-resource");
    assert_eq!(m.url, "https://api.example.com/.well-known/oauth-protected-resource");
    let doc: Value = serde_json::from_str(&m.document).unwrap();
    assert_eq!(doc["resource"], "https://api.example.com");
    assert_eq!(doc["authorization_servers"], json!(["https://idp.example/realms/main"]));
    assert_eq!(doc["scopes_supported"], json!(["read", "admin"]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
}

#[test]
fn nothing_configured_inspects_nothing() {
    let r = config(json!({})).routes;
    assert!(!r.inspects_requests() && r.managed_headers.is_empty() && !r.needs_claims && !r.report_only);
}

#[test]
fn a_resource_with_a_path_gets_its_well_known_after_the_host() {
    let c = config(json!({"resource_metadata": {"resource": "https://api.example.com/v1/"}}));
    let m = c.routes.resource_metadata.unwrap();
    assert_eq!(m.path, "/.well-known/oauth-protected-resource/v1");
    assert_eq!(m.url, "https://api.example.com/.well-known/oauth-protected-resource/v1");
}

#[test]
fn bad_rules_are_refused_naming_the_field() {
    let cases = [
        (json!({"routes": [{"policy": "public"}]}), "routes[0]"),
        (json!({"routes": [{"path_prefix": "/a", "path_exact": "/a"}]}), "routes[0]"),
        (json!({"routes": [{"path_prefix": "a"}]}), "routes[0].path_prefix"),
        (json!({"routes": [{"path_exact": "/a/../b"}]}), "routes[0].path_exact"),
        (json!({"routes": [{"path_prefix": "/a%2f"}]}), "routes[0].path_prefix"),
        (json!({"routes": [{"path_prefix": "/a?x"}]}), "routes[0].path_prefix"),
        (json!({"routes": [{"path_prefix": "/a", "methods": []}]}), "routes[0].methods"),
        (json!({"routes": [{"path_prefix": "/a", "methods": ["get"]}]}), "routes[0].methods"),
        (json!({"routes": [{"path_prefix": "/a", "policy": "open"}]}), "routes[0].policy"),
        (
            json!({"routes": [{"path_prefix": "/a", "policy": "public", "required_scopes": ["x"]}]}),
            "routes[0].policy",
        ),
        (
            json!({"routes": [{"path_prefix": "/a", "policy": "optional", "required_claims": {"t": ["x"]}}]}),
            "routes[0].policy",
        ),
        (json!({"routes": [{"path_prefix": "/a", "required_scopes": ["a b"]}]}), "routes[0].required_scopes"),
        (
            json!({"routes": [{"path_prefix": "/a", "required_scopes": ["a\"b"]}]}),
            "routes[0].required_scopes",
        ),
        (
            json!({"routes": [{"path_prefix": "/a", "required_claims": {"t": []}}]}),
            "routes[0].required_claims.t",
        ),
        (
            json!({"routes": [{"path_prefix": "/a", "required_claims": {"t": "x"}}]}),
            "routes[0].required_claims.t",
        ),
        (
            json!({"routes": [{"path_prefix": "/a", "required_claims": {"t": [{"o": 1}]}}]}),
            "routes[0].required_claims.t",
        ),
        (
            json!({"routes": [{"path_prefix": "/a", "required_claims": {"a..b": ["x"]}}]}),
            "routes[0].required_claims.a..b",
        ),
        (json!({"routes": [{"path_prefix": "/a", "unknown": 1}]}), "routes[0]"),
    ];
    for (extra, field) in cases {
        let e = err(extra.clone());
        assert!(e.field.starts_with(field), "{extra}: {e}");
    }
}

#[test]
fn claim_headers_cannot_carry_credentials_or_collide() {
    let cases = [
        (
            json!({"claims_to_headers": [{"claim": "sub", "header": "authorization"}]}),
            "claims_to_headers[0].header",
        ),
        (json!({"claims_to_headers": [{"claim": "sub", "header": "Host"}]}), "claims_to_headers[0].header"),
        (
            json!({"claims_to_headers": [{"claim": "sub", "header": "x-admin-token"}]}),
            "claims_to_headers[0].header",
        ),
        (
            json!({"claims_to_headers": [{"claim": "sub", "header": "bad header"}]}),
            "claims_to_headers[0].header",
        ),
        (json!({"claims_to_headers": [{"claim": "", "header": "x-a"}]}), "claims_to_headers[0].claim"),
        (
            json!({"claims_to_headers": [{"claim": "sub", "header": "x-a"}, {"claim": "iss", "header": "X-A"}]}),
            "claims_to_headers[1].header",
        ),
        (
            json!({"claims_to_headers": [{"claim": "sub", "header": "x-a"}], "forward_payload_header": "x-a"}),
            "forward_payload_header",
        ),
        (json!({"claims_to_headers": [{"claim": "sub"}]}), "claims_to_headers[0]"),
        (
            json!({"token_source": {"header": "x-token", "prefix": ""}, "forward_payload_header": "x-token"}),
            "forward_payload_header",
        ),
    ];
    for (extra, field) in cases {
        let e = err(extra.clone());
        assert!(e.field.starts_with(field), "{extra}: {e}");
    }
}

#[test]
fn resource_metadata_is_checked() {
    for (extra, field) in [
        (json!({"resource_metadata": {"resource": "api.example.com"}}), "resource_metadata.resource"),
        (json!({"resource_metadata": {"resource": "https://a.example/?x=1"}}), "resource_metadata.resource"),
        (json!({"resource_metadata": {"resource": "https://a.example/\""}}), "resource_metadata.resource"),
        (json!({"resource_metadata": {"resource": "https:///x"}}), "resource_metadata.resource"),
        (
            json!({"resource_metadata": {"resource": "https://a.example", "authorization_servers": ["idp"]}}),
            "resource_metadata.authorization_servers[0]",
        ),
        (
            json!({"resource_metadata": {"resource": "https://a.example", "scopes_supported": [""]}}),
            "resource_metadata.scopes_supported",
        ),
        (json!({"resource_metadata": {"resource": "https://a.example", "extra": 1}}), "resource_metadata"),
        (json!({"report_only": "yes"}), "report_only"),
    ] {
        let e = err(extra.clone());
        assert!(e.field.starts_with(field), "{extra}: {e}");
    }
}

#[test]
fn egress_mode_refuses_every_route_key() {
    for key in ["routes", "claims_to_headers", "forward_payload_header", "report_only", "resource_metadata"] {
        let value = match key {
            "routes" | "claims_to_headers" => json!([]),
            "forward_payload_header" => json!("x-p"),
            "report_only" => json!(true),
            _ => json!({"resource": "https://a.example"}),
        };
        let cfg = json!({"mode": "egress", key: value, "egress": {
            "cluster": "idp", "authority": "idp", "path": "/token",
            "grant": "client_credentials", "client_id": "svc"}});
        let e = Config::from_json(cfg).err().expect("accepted");
        assert_eq!((e.field.as_str(), e.message.as_str()), (key, "only in ingress mode"));
    }
}
