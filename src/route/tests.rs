use serde_json::json;

use super::*;
use crate::testkit::*;

fn routes(rules: serde_json::Value) -> RoutesConfig {
    config(json!({ "routes": rules })).routes
}

fn sel<'c>(r: &'c RoutesConfig, method: &str, path: &str) -> Option<&'c Rule> {
    select(r, path, &mut || method.to_owned())
}

fn policy_of(r: &RoutesConfig, method: &str, path: &str) -> Option<Policy> {
    sel(r, method, path).map(|rule| rule.policy)
}

#[test]
fn normal_paths() {
    for ok in [
        "/",
        "/healthz",
        "/catalog/",
        "/a/b.c/d",
        "/a/..b/c",
        "/a/%20b",
        "/a/%C3%A9",
        "/x;v=1",
        "/a/.well-known/x",
    ] {
        assert!(is_normal(ok), "{ok}");
    }
    for bad in [
        "",
        "healthz",
        "//admin",
        "/healthz//admin",
        "/healthz/../admin",
        "/healthz/./admin",
        "/healthz/..",
        "/healthz/.",
        "/healthz/..;/admin",
        "/healthz/.;x/admin",
        "/healthz%2Fadmin",
        "/healthz%2fadmin",
        "/healthz/%2e%2e/admin",
        "/healthz/%2E%2E/admin",
        "/healthz/.%2e/admin",
        "/healthz%5cadmin",
        "/healthz%5Cadmin",
        "/healthz\\..\\admin",
        "/healthz%252e%252e/admin",
        "/%61dmin",
        "/admin%3bx",
        "/a%7e",
    ] {
        assert!(!is_normal(bad), "{bad}");
    }
}

#[test]
fn normalising_shows_what_an_upstream_could_read() {
    assert_eq!(normalized("/healthz/../admin/x"), "/admin/x");
    assert_eq!(normalized("//admin/"), "/admin/");
    assert_eq!(normalized("/healthz%2F..%2Fadmin/"), "/admin/");
    assert_eq!(normalized("/healthz/%252e%252e/admin/"), "/admin/");
    assert_eq!(normalized("/a\\..\\admin/"), "/admin/");
    assert_eq!(normalized("/../../"), "/");
    assert_eq!(normalized("/a%zz/%"), "/a%zz/%");
    assert_eq!(normalized("/%61dmin;jsessionid=x/users"), "/admin/users");
    assert_eq!(normalized("/a/%20b"), "/a/%20b", "escapes an upstream cannot route on stay");
}

#[test]
fn the_first_matching_rule_decides_on_the_path_without_query() {
    let r = routes(json!([
        {"path_prefix": "/healthz", "policy": "public"},
        {"path_exact": "/login", "methods": ["GET", "POST"], "policy": "public"},
        {"path_prefix": "/catalog/", "methods": ["GET"], "policy": "optional"},
        {"path_prefix": "/catalog/", "policy": "public"},
        {"path_prefix": "/admin/", "required_scopes": ["admin"]},
    ]));
    assert_eq!(policy_of(&r, "GET", "/healthz"), Some(Policy::Public));
    assert_eq!(policy_of(&r, "GET", "/healthz/live?verbose=1"), Some(Policy::Public));
    assert_eq!(policy_of(&r, "POST", "/login"), Some(Policy::Public));
    assert_eq!(policy_of(&r, "POST", "/login?next=/x"), Some(Policy::Public));
    assert_eq!(policy_of(&r, "DELETE", "/login"), None, "method not listed");
    assert_eq!(policy_of(&r, "GET", "/login/x"), None, "exact means exact");
    assert_eq!(policy_of(&r, "GET", "/catalog/1"), Some(Policy::Optional), "first match wins");
    assert_eq!(policy_of(&r, "POST", "/catalog/1"), Some(Policy::Public));
    assert_eq!(policy_of(&r, "GET", "/x?/healthz"), None, "the query is not the path");
    assert_eq!(policy_of(&r, "GET", "/admin/users"), Some(Policy::Required));
}

#[test]
fn a_path_not_in_normal_form_never_matches_a_public_or_optional_rule() {
    let r = routes(json!([
        {"path_prefix": "/healthz", "policy": "public"},
        {"path_prefix": "/catalog/", "policy": "optional"},
    ]));
    for trick in [
        "/healthz/../admin",
        "/healthz/%2e%2e/admin",
        "/healthz%2Fadmin",
        "/healthz/..;/admin",
        "/healthz\\admin",
        "/catalog/../admin",
        "/catalog//admin",
    ] {
        assert_eq!(policy_of(&r, "GET", trick), None, "{trick}");
    }
    // `//admin` does not start with any rule's text and is not normal either.
    assert_eq!(policy_of(&r, "GET", "//admin"), None);
}

#[test]
fn a_path_trick_cannot_skip_a_required_rule() {
    let r = routes(json!([
        {"path_prefix": "/public/", "policy": "public"},
        {"path_prefix": "/admin/", "required_scopes": ["admin"]},
    ]));
    for trick in [
        "/public/../admin/x",
        "//admin/x",
        "/x/%2e%2e/admin/x",
        "/public%2F..%2Fadmin/x",
        "/admin//x",
        "/%61dmin/x",
        "/ADMIN/x",
        "/Admin/x",
        "/admin;x/users",
        "/public/%2e%2e/%41DMIN/x",
    ] {
        let rule = sel(&r, "GET", trick).unwrap_or_else(|| panic!("{trick} escaped the admin rule"));
        assert_eq!(rule.required_scopes, vec!["admin"], "{trick}");
    }
}

fn claims(v: serde_json::Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[test]
fn the_method_is_read_only_for_a_rule_that_lists_methods() {
    let r = routes(json!([
        {"path_prefix": "/a/", "methods": ["GET"], "policy": "public"},
        {"path_prefix": "/b/", "policy": "public"},
    ]));
    let mut asked = 0;
    assert!(select(&r, "/b/x", &mut || {
        asked += 1;
        "GET".into()
    })
    .is_some());
    assert_eq!(asked, 0);
    assert!(select(&r, "/a/x", &mut || {
        asked += 1;
        "GET".into()
    })
    .is_some());
    assert_eq!(asked, 1);
}

#[test]
fn relaxing_rules_match_as_written_only() {
    let r = routes(json!([{"path_prefix": "/healthz", "policy": "public"}]));
    for other in ["/HEALTHZ", "/Healthz", "/%68ealthz", "/healthz/%2e%2e/x"] {
        assert_eq!(policy_of(&r, "GET", other), None, "{other}");
    }
    assert_eq!(policy_of(&r, "GET", "/healthz;v=1"), Some(Policy::Public), "a parameter changes nothing");
}

#[test]
fn scopes_come_from_scope_or_scp() {
    let r = routes(json!([{"path_prefix": "/", "required_scopes": ["admin", "write"]}]));
    let rule = &r.rules[0];
    assert!(satisfied(rule, &claims(json!({"scope": "read admin write"}))));
    assert!(satisfied(rule, &claims(json!({"scp": ["write", "admin"]}))));
    assert!(satisfied(rule, &claims(json!({"scp": "admin write"}))));
    assert!(!satisfied(rule, &claims(json!({"scope": "admin"}))), "every scope is needed");
    assert!(!satisfied(rule, &claims(json!({"scope": "administrator write"}))), "whole words only");
    assert!(!satisfied(rule, &claims(json!({"scope": ["admin", "write"]}))), "scope is a string");
    assert!(!satisfied(rule, &claims(json!({}))));
}

#[test]
fn claims_match_by_dotted_path_value_or_list_member() {
    let r = routes(json!([{"path_prefix": "/", "required_claims": {
        "tenant": ["acme", "globex"], "realm_access.roles": ["ops"], "level": [3, true]
    }}]));
    let rule = &r.rules[0];
    let good = json!({"tenant": "acme", "realm_access": {"roles": ["dev", "ops"]}, "level": 3});
    assert!(satisfied(rule, &claims(good.clone())));
    let mut other_tenant = good.clone();
    other_tenant["tenant"] = json!("initech");
    assert!(!satisfied(rule, &claims(other_tenant)));
    let mut flat = good.clone();
    flat.as_object_mut().unwrap().remove("realm_access");
    flat["realm_access.roles"] = json!(["ops"]);
    assert!(!satisfied(rule, &claims(flat)), "a dotted path walks objects, not a dotted name");
    let mut string_level = good.clone();
    string_level["level"] = json!("3");
    assert!(!satisfied(rule, &claims(string_level)), "JSON types must agree");
    let mut nested_list = good;
    nested_list["tenant"] = json!([["acme"]]);
    assert!(!satisfied(rule, &claims(nested_list)), "one level of list only");
}

#[test]
fn claim_at_walks_objects_only() {
    let c = claims(json!({"a": {"b": {"c": 1}}, "n": null, "l": [{"b": 2}]}));
    let path = |s: &str| ClaimPath(s.split('.').map(str::to_owned).collect());
    assert_eq!(claim_at(&c, &path("a.b.c")), Some(&json!(1)));
    assert_eq!(claim_at(&c, &path("a.x")), None);
    assert_eq!(claim_at(&c, &path("n")), None, "null is absent");
    assert_eq!(claim_at(&c, &path("l.b")), None);
}

/// Every path built from up to five pieces an attacker would combine: a public or optional
/// rule only decides a normal path, and whatever an upstream could read as `/staff/...` is
/// held to the `/staff/` rule. (The fuzz target `route_path` checks the same on any input.)
#[test]
fn no_combination_of_tricks_escapes_the_rules() {
    let r = routes(json!([
        {"path_prefix": "/healthz", "policy": "public"},
        {"path_prefix": "/catalog/", "methods": ["GET"], "policy": "optional"},
        {"path_prefix": "/staff/", "required_scopes": ["admin"]},
    ]));
    let pieces = [
        "/", "staff", "STAFF", "%73taff", "..", ".", "%2e%2e", "%2f", "%2F", "\\", ";x", "healthz",
        "catalog", "%252e",
    ];
    let mut paths = vec![String::new()];
    for _ in 0..5 {
        let longer: Vec<String> =
            paths.iter().flat_map(|p| pieces.iter().map(move |piece| format!("{p}{piece}"))).collect();
        paths.extend(longer.into_iter().filter(|p| p.starts_with('/')));
        paths.dedup();
    }
    let staff = |p: &str| p.get(..7).is_some_and(|h| h.eq_ignore_ascii_case("/staff/"));
    for path in paths.iter().filter(|p| !p.is_empty()) {
        let rule = sel(&r, "GET", path);
        if let Some(rule) = rule.filter(|r| r.policy != Policy::Required) {
            assert!(is_normal(path), "{path:?} passed a {:?} rule", rule.policy);
        }
        if staff(path) || staff(&normalized(path)) {
            assert!(rule.is_some_and(|r| !r.required_scopes.is_empty()), "{path:?} escaped the /staff/ rule");
        }
    }
}
