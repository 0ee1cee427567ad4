//! `make oci`'s image is what Istio and Envoy Gateway load: exactly one layer, holding only
//! `plugin.wasm`, byte-identical to dist's .wasm.
//!
//! It needs the image, so `make oci-test` builds it and runs this with `--ignored`; `make
//! test` leaves it out. No Docker engine is a failure saying so; TOKENGUARD_SKIP_COMPOSE=1
//! (the switch the compose harness uses) skips it, saying so.

use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

use tokenguard_harness::envoy::repo_root;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn sha256_hex(bytes: &[u8]) -> String {
    hmac_sha256::Hash::hash(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The entries of a tar archive, by name: (type flag, contents). Long names (PAX or GNU
/// headers) are refused rather than guessed: neither `docker save` nor a one-file layer
/// needs them.
fn untar(bytes: &[u8]) -> Vec<(String, u8, Vec<u8>)> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 512 <= bytes.len() {
        let header = &bytes[at..at + 512];
        if header.iter().all(|b| *b == 0) {
            break; // the end-of-archive blocks
        }
        let field = |from: usize, to: usize| {
            let f = &header[from..to];
            String::from_utf8_lossy(&f[..f.iter().position(|b| *b == 0).unwrap_or(f.len())]).into_owned()
        };
        let (name, prefix, kind) = (field(0, 100), field(345, 500), header[156]);
        assert!(!matches!(kind, b'x' | b'g' | b'L' | b'K'), "unexpected long-name header for {name}");
        let size = usize::from_str_radix(field(124, 136).trim(), 8).expect("tar size");
        let name = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let data = bytes[at + 512..at + 512 + size].to_vec();
        entries.push((name, kind, data));
        at += 512 + size.div_ceil(512) * 512;
    }
    entries
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap_or_else(|e| {
        panic!("the docker CLI is not usable ({e}); set TOKENGUARD_SKIP_COMPOSE=1 to skip")
    })
}

#[test]
#[ignore = "needs Docker and the image: run by `make oci-test`"]
fn the_oci_image_holds_exactly_one_layer_whose_plugin_wasm_is_the_dist_file() {
    if std::env::var("TOKENGUARD_SKIP_COMPOSE").is_ok_and(|v| v != "0") {
        eprintln!("oci: SKIPPED (TOKENGUARD_SKIP_COMPOSE is set): the OCI image was not checked");
        return;
    }
    let info = docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        info.status.success(),
        "no Docker engine answers ({}): start it, or set TOKENGUARD_SKIP_COMPOSE=1 to skip",
        String::from_utf8_lossy(&info.stderr).trim()
    );
    let dist_path = repo_root().join(format!("dist/tokenguard-{VERSION}.wasm"));
    let dist =
        std::fs::read(&dist_path).unwrap_or_else(|e| panic!("{}: {e} (run make dist)", dist_path.display()));

    let image = format!("tokenguard-wasm:{VERSION}");
    let saved = docker(&["save", &image]);
    assert!(saved.status.success(), "docker save {image}: {}", String::from_utf8_lossy(&saved.stderr));
    let files: BTreeMap<String, Vec<u8>> =
        untar(&saved.stdout).into_iter().map(|(name, _, data)| (name, data)).collect();
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let images = manifest.as_array().unwrap();
    assert_eq!(images.len(), 1, "{manifest}");
    assert_eq!(images[0]["RepoTags"], serde_json::json!([image]));
    let layers = images[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "exactly one layer: {manifest}");

    // The config names that one layer (its diff_id is the layer tar's SHA-256), and its own
    // digest is the image ID `make oci` prints.
    let config_name = images[0]["Config"].as_str().unwrap();
    let config_bytes = &files[config_name];
    let config: Value = serde_json::from_slice(config_bytes).unwrap();
    let layer = &files[layers[0].as_str().unwrap()];
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!([format!("sha256:{}", sha256_hex(layer))]));
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert_eq!(String::from_utf8_lossy(&id.stdout).trim(), format!("sha256:{}", sha256_hex(config_bytes)));

    let entries = untar(layer);
    let names: Vec<(&str, u8)> = entries.iter().map(|(n, k, _)| (n.as_str(), *k)).collect();
    assert_eq!(names, vec![("plugin.wasm", b'0')], "the layer holds plugin.wasm and nothing else");
    assert!(entries[0].2 == dist, "plugin.wasm differs from {}", dist_path.display());
    eprintln!("oci: {image} sha256:{} holds plugin.wasm ({} bytes)", sha256_hex(config_bytes), dist.len());
}
