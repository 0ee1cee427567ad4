//! The compose harness runs what `envoy/envoy.yaml` says: its Envoy config is that file with
//! only addresses and the .wasm path changed, plus its own marked blocks (the fleet's etcd
//! revocation store), and the scenarios' picture of the plugin configuration
//! (`Profile::demo`) is that file's.

use tokenguard_harness::envoy::repo_root;
use tokenguard_harness::profile::Profile;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The file without its leading comment block (which says what the file is for).
fn body(text: &str) -> String {
    let lines: Vec<&str> = text.lines().skip_while(|l| l.starts_with('#') || l.trim().is_empty()).collect();
    lines.join("\n")
}

/// The compose copy's own blocks ("# compose only" to "# end compose only"), and the rest.
fn compose_only(text: &str) -> (Vec<String>, String) {
    let (mut blocks, mut rest, mut current) = (Vec::new(), Vec::new(), None::<Vec<&str>>);
    for line in text.lines() {
        match (&mut current, line.trim()) {
            (None, t) if t.starts_with("# compose only") => current = Some(vec![line]),
            (Some(block), "# end compose only") => {
                block.push(line);
                blocks.push(block.join("\n"));
                current = None;
            }
            (Some(block), _) => block.push(line),
            (None, _) => rest.push(line),
        }
    }
    assert!(current.is_none(), "a \"# compose only\" block is not closed");
    (blocks, rest.join("\n"))
}

/// Every allowed difference, with how many times it occurs in envoy/envoy.yaml.
const COMPOSE_CHANGES: &[(&str, &str, usize)] = &[
    (
        "socket_address: { address: 127.0.0.1, port_value: 9901 }",
        "socket_address: { address: 0.0.0.0, port_value: 9901 }",
        1,
    ),
    (
        "socket_address: { address: 127.0.0.1, port_value: 10000 }",
        "socket_address: { address: 0.0.0.0, port_value: 10000 }",
        1,
    ),
    (
        "socket_address: { address: 127.0.0.1, port_value: 9102 }",
        "socket_address: { address: upstream, port_value: 9102 }",
        1,
    ),
    (
        "socket_address: { address: 127.0.0.1, port_value: 9101 }",
        "socket_address: { address: issuer, port_value: 9101 }",
        1,
    ),
    // A service name is not an IP address: those clusters resolve it by DNS.
    ("type: STATIC", "type: STRICT_DNS", 2),
    (
        "# Relative to Envoy's working directory; `make wasm` builds it.",
        "# Mounted by envoy/docker-compose.yml; `make wasm` builds it.",
        1,
    ),
    (
        "filename: target/wasm32-wasip1/release/tokenguard.wasm",
        "filename: /etc/tokenguard/tokenguard.wasm",
        1,
    ),
];

#[test]
fn the_compose_envoy_config_is_envoy_yaml_with_only_addresses_and_the_wasm_path_changed() {
    let mut expected = body(&read("envoy/envoy.yaml"));
    for (from, to, times) in COMPOSE_CHANGES {
        assert_eq!(
            expected.matches(from).count(),
            *times,
            "envoy/envoy.yaml no longer has {from:?} {times}x"
        );
        expected = expected.replace(from, to);
    }
    assert!(!expected.contains("127.0.0.1"), "an address the compose copy does not move");
    let (own, compose) = compose_only(&body(&read("envoy/compose/envoy.yaml")));
    assert_eq!(own.len(), 2, "the store's configuration and its etcd cluster");
    assert!(own[0].contains("revocation_store:") && own[0].contains("cluster: etcd"), "{}", own[0]);
    assert!(own[1].contains("- name: etcd") && own[1].contains("http2_protocol_options"), "{}", own[1]);
    let (want, got): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), compose.lines().collect());
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(g, w, "envoy/compose/envoy.yaml differs from envoy/envoy.yaml at body line {}", i + 1);
    }
    assert_eq!(got.len(), want.len(), "envoy/compose/envoy.yaml and envoy/envoy.yaml differ in length");
}

#[test]
fn docker_compose_mounts_what_the_compose_config_names() {
    let compose = read("envoy/docker-compose.yml");
    for line in [
        "image: ${ENVOY_IMAGE:-envoyproxy/envoy:v1.40.0}",
        "- ./compose/envoy.yaml:/etc/tokenguard/envoy.yaml:ro",
        "- ../target/wasm32-wasip1/release/tokenguard.wasm:/etc/tokenguard/tokenguard.wasm:ro",
        "- /etc/tokenguard/envoy.yaml",
        "- ./demo/issuer-keys.json:/etc/tokenguard/issuer-keys.json:ro",
        "- 0.0.0.0:9101",
        "- 0.0.0.0:9102",
        "- \"127.0.0.1:18000:10000\"",
        "- \"127.0.0.1:18901:9901\"",
        "- \"127.0.0.1:18101:9101\"",
        "- \"127.0.0.1:18102:9102\"",
        // The fleet: a second replica on the same files, and etcd built offline.
        "envoy-b:",
        "- \"127.0.0.1:18001:10000\"",
        "- \"127.0.0.1:18902:9901\"",
        "image: ${ETCD_IMAGE:-tokenguard/etcd:local}",
        "- \"127.0.0.1:18379:2379\"",
    ] {
        assert!(compose.lines().any(|l| l.trim() == line), "envoy/docker-compose.yml lacks {line:?}");
    }
    let mounts = |line: &str| compose.lines().filter(|l| l.trim() == line).count();
    assert_eq!(
        mounts("- ./compose/envoy.yaml:/etc/tokenguard/envoy.yaml:ro"),
        2,
        "both replicas run the same config"
    );
    // Published on loopback only: the stack carries TEST-ONLY keys and an admin token.
    for l in compose.lines().filter(|l| l.trim().starts_with("- \"") && l.contains(':')) {
        assert!(l.trim().starts_with("- \"127.0.0.1:"), "published beyond loopback: {l}");
    }
}

/// `Profile::demo()`, which the compose suite runs under, says what envoy/envoy.yaml says.
#[test]
fn the_demo_profile_matches_envoy_yaml() {
    let text = read("envoy/envoy.yaml");
    // The value of `key:` on its line, without a trailing comment.
    let value = |key: &str| -> String {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.trim_start_matches("- ").starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("envoy.yaml has no {key}"));
        let v = line.trim_start_matches("- ").trim_start_matches(&format!("{key}:"));
        v.split(" #").next().unwrap_or_default().trim().to_string()
    };
    let p = Profile::demo();
    assert_eq!(value("algorithms"), format!("[{}]", p.algorithms.join(", ")));
    assert_eq!(value("required_claims"), format!("[{}]", p.required_claims.join(", ")));
    assert_eq!(value("clock_skew_seconds"), p.clock_skew.to_string());
    assert_eq!(value("near_expiry_warning_seconds"), p.near_expiry.to_string());
    let session = p.session.expect("a session limit");
    assert_eq!(value("max_lifetime_seconds"), session.max_lifetime.to_string());
    assert_eq!(value("start_claim"), session.start_claim);
    assert_eq!(value("max_token_lifetime_seconds"), p.max_token_lifetime.to_string());
    assert_eq!(value("expires_in_header"), p.expires_in_header);
    assert_eq!(value("capacity"), p.registry_capacity.to_string());
    let admin = p.admin.expect("the admin API");
    assert_eq!(value("path_prefix"), admin.prefix);
    assert_eq!(value("token"), admin.token);
    assert_eq!(Some(value("min_refetch_seconds").parse::<u64>().unwrap()), p.remote_min_refetch);
    assert_eq!(Some(value("resource")), p.resource, "the route scenarios' resource_metadata");
    assert!(p.routes && text.contains("forward_payload_header: x-jwt-payload"));
}
