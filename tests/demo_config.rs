//! The configurations we tell people to copy must work as written.

use serde_json::json;
use std::time::Duration;

use tokenguard_harness::envoy::repo_root;
use tokenguard_harness::http::Client;
use tokenguard_harness::issuer::MintRequest;
use tokenguard_harness::stack::Stack;

/// `envoy/envoy.yaml` as committed, with only its ports and the .wasm path moved so the
/// test cannot collide with a running `make run`.
#[test]
fn the_committed_envoy_yaml_validates_tokens() {
    let Stack { issuer, upstream, envoy, .. } = Stack::start_demo();
    let c = Client::new();
    let good = issuer.mint(&MintRequest::new("RS256", 300));
    let r = c.get(&envoy.url("/hello"), &[("authorization", &format!("Bearer {good}"))]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("x-token-expires-in").is_some());
    assert_eq!(upstream.received().len(), 1);

    let expired = issuer.mint(&MintRequest::new("ES256", -60));
    let r = c.get(&envoy.url("/hello"), &[("authorization", &format!("Bearer {expired}"))]);
    assert_eq!((r.status, r.json()["error"].clone()), (401, json!("token_expired")));
    // HS256 is not in the demo's allowlist.
    let hs = issuer.mint(&MintRequest::new("HS256", 300));
    let r = c.get(&envoy.url("/hello"), &[("authorization", &format!("Bearer {hs}"))]);
    assert_eq!(r.json()["error"], "unsupported_algorithm");
    std::thread::sleep(Duration::from_millis(50));
    assert!(envoy.audit_records().iter().any(|a| a["reason"] == "token_expired"));

    // Refresh through the demo issuer: a 1 s token is due at once (20% of 1 s), and valid
    // within the 30 s leeway after its exp.
    let login: serde_json::Value = c
        .post(&format!("{}/oauth/login", issuer.url()), &[], r#"{"sub":"bob","alg":"ES256","ttl":1}"#)
        .json();
    std::thread::sleep(Duration::from_millis(1100));
    let at = login["access_token"].as_str().unwrap();
    let rt = login["refresh_token"].as_str().unwrap();
    let r =
        c.get(&envoy.url("/hello"), &[("authorization", &format!("Bearer {at}")), ("x-refresh-token", rt)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("x-new-access-token").is_some() && r.header("x-new-refresh-token").is_some());
    assert_eq!(issuer.counter("token_calls"), 1);

    // The revoke line `make run` prints works as written.
    let admin = [("x-admin-token", "demo-admin-token-change-me")];
    let r = c.post(&envoy.url("/tokenguard/revoke?sub=alice"), &admin, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = c.get(&envoy.url("/hello"), &[("authorization", &format!("Bearer {good}"))]);
    assert_eq!(r.json()["error"], "token_revoked");
    let st = c.get(&envoy.url("/tokenguard/stats"), &admin).json();
    assert_eq!(st["revocations"], 1);
    assert_eq!(upstream.received().len(), 2, "admin requests never reach the upstream");

    // Keys come by discovery; the rotation line `make run` prints works as written: a token
    // under the new key is accepted at first sight.
    assert_eq!(issuer.counter("discovery"), 1);
    let r = c.post(&format!("{}/control", issuer.url()), &[], r#"{"rotate_key":true}"#);
    let kid = r.json()["kid"].as_str().unwrap().to_owned();
    let rotated = c.get(&format!("{}/mint?alg=ES256&ttl=300&sub=carol", issuer.url()), &[]).body;
    assert!(rotated.starts_with("ey"), "{rotated}");
    let r = c.get(&envoy.url("/hello"), &[("authorization", &format!("Bearer {rotated}"))]);
    assert_eq!(r.status, 200, "{}", r.body);
    std::thread::sleep(Duration::from_millis(50));
    let audit = envoy.audit_records().into_iter().find(|a| a["event"] == "keys_rotated").unwrap();
    assert!(audit["reason"].as_str().unwrap().contains(&kid), "{audit}");
}

/// The Istio manifest carries the same plugin configuration as envoy.yaml, key for key.
#[test]
fn the_istio_manifest_matches_envoy_yaml() {
    let block = |file: &str, start: &str, end: &str| -> Vec<String> {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        let from = text.find(start).unwrap_or_else(|| panic!("{file}: no {start}"));
        let rest = &text[from..];
        let to = rest.find(end).unwrap_or(rest.len());
        rest[..to].lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
    };
    let envoy = block("envoy/envoy.yaml", "providers:", "- name: envoy.filters.http.router");
    let istio = block("envoy/istio-wasmplugin.yaml", "providers:", "\n\n");
    assert_eq!(envoy, istio);
}

/// A committed YAML file, parsed (as JSON values, to compare and index them alike).
fn yaml(file: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::to_value(v).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The tokenguard entry of an Envoy config's first listener.
fn wasm_filter(envoy: &serde_json::Value) -> serde_json::Value {
    let filters = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    let f =
        filters.as_array().unwrap().iter().find(|f| f["name"] == "tokenguard").expect("a tokenguard filter");
    f["typed_config"]["config"].clone()
}

/// Every way we ship the plugin (envoy/envoy.yaml, the remote-code config, the Istio
/// WasmPlugin, the Envoy Gateway policy) parses as YAML and hands the plugin the same
/// configuration, value for value; each points at this version's artifact.
#[test]
fn every_manifest_carries_envoy_yaml_plugin_configuration() {
    let version = env!("CARGO_PKG_VERSION");
    let local = wasm_filter(&yaml("envoy/envoy.yaml"));
    let plugin = &local["configuration"]["value"];
    assert!(plugin["providers"].is_array() && plugin["admin"].is_object(), "{plugin}");

    let remote_envoy = yaml("envoy/envoy-remote.yaml");
    let remote = wasm_filter(&remote_envoy);
    assert_eq!(&remote["configuration"]["value"], plugin, "envoy-remote.yaml");
    for key in ["name", "root_id", "failure_policy"] {
        assert_eq!(remote[key], local[key], "envoy-remote.yaml {key}");
    }
    assert_eq!(remote["vm_config"]["vm_id"], local["vm_config"]["vm_id"]);
    let code = &remote["vm_config"]["code"]["remote"];
    assert_eq!(code["http_uri"]["uri"], format!("http://127.0.0.1:9103/tokenguard-{version}.wasm"));
    assert!(code["http_uri"]["timeout"].is_string() && code["sha256"].is_string(), "{code}");
    let clusters = remote_envoy["static_resources"]["clusters"].as_array().unwrap();
    assert!(clusters.iter().any(|c| c["name"] == code["http_uri"]["cluster"]), "the fetch cluster exists");

    let istio = yaml("envoy/istio-wasmplugin.yaml");
    assert_eq!(istio["kind"], "WasmPlugin");
    let spec = &istio["spec"];
    assert_eq!(&spec["pluginConfig"], plugin, "istio-wasmplugin.yaml");
    assert_eq!(spec["url"], format!("oci://registry.example.com/tokenguard-wasm:{version}"));
    assert_eq!((&spec["phase"], &spec["failStrategy"]), (&json!("AUTHN"), &json!("FAIL_CLOSE")));
    assert!(spec["selector"]["matchLabels"].is_object(), "{spec}");

    let eg = yaml("envoy/envoy-gateway.yaml");
    assert_eq!(
        (&eg["apiVersion"], &eg["kind"]),
        (&json!("gateway.envoyproxy.io/v1alpha1"), &json!("EnvoyExtensionPolicy"))
    );
    let wasm = &eg["spec"]["wasm"][0];
    assert_eq!(&wasm["config"], plugin, "envoy-gateway.yaml");
    assert_eq!(wasm["rootID"], local["root_id"]);
    assert_eq!(wasm["code"]["type"], "Image");
    assert_eq!(wasm["code"]["image"]["url"], format!("registry.example.com/tokenguard-wasm:{version}"));
    assert_eq!(wasm["failOpen"], false);
    assert!(eg["spec"]["targetRefs"].as_array().is_some_and(|t| !t.is_empty()), "{eg}");
}

/// envoy/envoy-remote.yaml is envoy/envoy.yaml, line for line, but for the code source and
/// the cluster Envoy fetches it from: a fix to one is made to the other.
#[test]
fn the_remote_config_is_envoy_yaml_with_only_the_code_source_changed() {
    let body = |file: &str| -> Vec<String> {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        text.lines().skip_while(|l| l.starts_with('#') || l.trim().is_empty()).map(String::from).collect()
    };
    let (local, remote) = (body("envoy/envoy.yaml"), body("envoy/envoy-remote.yaml"));
    let only_in = |a: &[String], b: &[String]| -> Vec<String> {
        let mut rest = b.to_vec();
        a.iter()
            .filter(|l| match rest.iter().position(|r| r == *l) {
                Some(i) => {
                    rest.remove(i);
                    false
                }
                None => true,
            })
            .map(|l| l.trim().to_string())
            .collect()
    };
    assert_eq!(
        only_in(&local, &remote),
        [
            "local:",
            "# Relative to Envoy's working directory; `make wasm` builds it.",
            "filename: target/wasm32-wasip1/release/tokenguard.wasm"
        ]
    );
    let added = only_in(&remote, &local);
    assert!(
        added.iter().any(|l| l == "remote:") && added.iter().any(|l| l == "- name: plugin_server"),
        "{added:?}"
    );
    assert!(
        added.iter().all(|l| l.starts_with('#')
            || [
                "remote:",
                "http_uri:",
                "uri:",
                "cluster:",
                "timeout:",
                "sha256:",
                "- name: plugin_server",
                "type: STATIC",
                "connect_timeout:",
                "load_assignment:",
                "cluster_name: plugin_server",
                "endpoints:",
                "- lb_endpoints:",
                "- endpoint:",
                "address:",
                "socket_address: { address: 127.0.0.1, port_value: 9103 }"
            ]
            .iter()
            .any(|p| l.starts_with(p))),
        "envoy-remote.yaml adds more than the code source and its cluster: {added:?}"
    );
}
