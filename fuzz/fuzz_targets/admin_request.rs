//! The admin API's untrusted inputs: the revoke body, the path and the presented admin token.
//! Invariants: nothing panics; a parsed body names exactly one target; answers have the
//! documented statuses; a token handed to the admin API is never echoed or logged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenguard::admin::{self, parse_revoke_body, Route};
use tokenguard_fuzz::{header_config, FakeHost, ADMIN_TOKEN, NOW};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_revoke_body(data);
    if let Ok(t) = &parsed {
        let shown = t.shown.as_object().expect("an object");
        assert_eq!(shown.len(), 1);
        assert_eq!(t.fingerprint.is_some(), shown.contains_key("token"));
    }
    let cfg = header_config();
    let Some(admin_cfg) = &cfg.admin else { return };
    let host = FakeHost::at(NOW);
    let answer = admin::handle(cfg, admin_cfg, &host, Route::Revoke, Some(ADMIN_TOKEN), data, None);
    assert!(answer.publish.is_none(), "no revocation feed configured, nothing to publish");
    let reply = answer.reply;
    assert!(matches!(reply.status, 200 | 400 | 413), "{} {}", reply.status, reply.body);
    assert_eq!(reply.status == 200, parsed.is_ok());
    // A plain token of 20+ characters cannot occur by chance in an answer or audit line.
    let token = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_owned));
    if let Some(t) =
        token.filter(|t| t.len() >= 20 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
    {
        assert!(!reply.body.contains(&t));
        assert!(host.lines.borrow().iter().all(|l| !l.contains(&t)));
    }
    let text = String::from_utf8_lossy(data);
    let _ = admin::route(admin_cfg, "POST", &text);
    let _ = admin::route(admin_cfg, "GET", &format!("/tokenguard/{text}"));
    assert_eq!(admin::authorized(admin_cfg, Some(&text)), text == ADMIN_TOKEN);
    let denied = admin::handle(cfg, admin_cfg, &host, Route::Stats, Some(&text), &[], None).reply;
    assert_eq!(denied.status == 401, text != ADMIN_TOKEN);
});
