//! Any bytes as the plugin configuration Envoy hands over: JSON text or a protobuf Struct.
//! Invariants: nothing panics; a refusal names what is wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenguard::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = Config::from_plugin_bytes(data) {
        assert!(!e.to_string().is_empty());
    }
});
