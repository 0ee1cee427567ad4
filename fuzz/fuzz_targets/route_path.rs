//! Route matching on untrusted paths. Invariants: nothing panics; a public or optional rule
//! only ever decides a path in normal form that its text matches exactly; a path an upstream
//! could decode or normalise into `/staff/...` (any case) is always held to the `/staff/`
//! rule's scope, whatever rule its text matches.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tokenguard::config::routes::Policy;
use tokenguard::config::Config;
use tokenguard::route::{is_normal, normalized, select, without_query};
use tokenguard_fuzz::config_json;

fn routes() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| {
        Config::from_json(config_json(json!({"routes": [
            {"path_prefix": "/healthz", "policy": "public"},
            {"path_exact": "/login", "methods": ["GET", "POST"], "policy": "public"},
            {"path_prefix": "/catalog/", "methods": ["GET"], "policy": "optional"},
            {"path_prefix": "/staff/", "required_scopes": ["admin"]},
        ]})))
        .expect("config")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    let cfg = routes();
    let bare = without_query(path);
    let other = normalized(bare);
    for method in ["GET", "POST"] {
        let rule = select(&cfg.routes, path, &mut || method.to_owned());
        if let Some(r) = rule.filter(|r| r.policy != Policy::Required) {
            assert!(is_normal(bare), "{path:?} passed a {:?} rule", r.policy);
        }
        let staff = |p: &str| p.get(..7).is_some_and(|h| h.eq_ignore_ascii_case("/staff/"));
        if staff(bare) || staff(&other) {
            assert!(
                rule.is_some_and(|r| r.required_scopes == ["admin"]),
                "{path:?} (read as {other:?}) escaped the /staff/ rule"
            );
        }
    }
});
