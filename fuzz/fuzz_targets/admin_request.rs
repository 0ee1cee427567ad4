//! The admin API's untrusted inputs: the revoke query, the path and the presented admin
//! token. Invariants: nothing panics; a parsed query names exactly one target; answers have
//! the documented statuses; a body is never read; a token fingerprint handed to the admin
//! API is shown only shortened.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenguard::admin::{self, parse_revoke_query, AdminRequest, Route};
use tokenguard_fuzz::{header_config, FakeHost, ADMIN_TOKEN, NOW};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_revoke_query(&text);
    if let Ok(t) = &parsed {
        let shown = t.shown.as_object().expect("an object");
        assert_eq!(shown.len(), 1);
        assert_eq!(t.fingerprint.is_some(), shown.contains_key("token"));
    }
    let cfg = header_config();
    let Some(admin_cfg) = &cfg.admin else { return };
    let host = FakeHost::at(NOW);
    let ask = |route, presented, has_body| AdminRequest {
        route,
        presented_token: presented,
        query: &text,
        has_body,
        request_id: None,
    };
    let answer = admin::handle(cfg, admin_cfg, &host, ask(Route::Revoke, Some(ADMIN_TOKEN), false));
    assert!(answer.publish.is_none(), "no revocation feed configured, nothing to publish");
    let reply = answer.reply;
    assert!(matches!(reply.status, 200 | 400), "{} {}", reply.status, reply.body);
    assert_eq!(reply.status == 200, parsed.is_ok());
    if let Ok(t) = &parsed {
        if let Some(fp) = t.fingerprint {
            assert!(!reply.body.contains(&fp.hex()), "the full fingerprint is echoed");
        }
    }
    let with_body = admin::handle(cfg, admin_cfg, &host, ask(Route::Revoke, Some(ADMIN_TOKEN), true)).reply;
    assert_eq!(with_body.status, 400);
    let _ = admin::route(admin_cfg, "POST", &text);
    let _ = admin::route(admin_cfg, "GET", &format!("/tokenguard/{text}"));
    assert_eq!(admin::authorized(admin_cfg, Some(&text)), text == ADMIN_TOKEN);
    let denied = admin::handle(cfg, admin_cfg, &host, ask(Route::Stats, Some(&text), false)).reply;
    assert_eq!(denied.status == 401, text != ADMIN_TOKEN);
});
