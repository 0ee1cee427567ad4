use super::*;
use crate::config::TokenSource;

fn cfg() -> RefreshConfig {
    RefreshConfig {
        cluster: "issuer".into(),
        authority: "issuer.test".into(),
        path: "/oauth/token".into(),
        timeout_ms: 1000,
        window_seconds: 120,
        window_ratio: 0.2,
        refresh_token_source: TokenSource::Header { name: "x-refresh-token".into(), prefix: String::new() },
        client_id: Some("gate way".into()),
        client_secret: Some("s3cr:t".into()),
        access_token_response_header: "x-new-access-token".into(),
        refresh_token_response_header: "x-new-refresh-token".into(),
        grace_seconds: 30,
        escalate_after_failures: 3,
        refresh_expired: false,
    }
}

#[test]
fn window_is_the_lesser_of_seconds_and_ratio() {
    let c = cfg();
    // 1 h token: 20% is 720 s, so the 120 s window applies.
    assert!(!is_due(&c, 3600, Some(0), 3479));
    assert!(is_due(&c, 3600, Some(0), 3480));
    // 100 s token: 20% is 20 s.
    assert!(!is_due(&c, 100, Some(0), 79));
    assert!(is_due(&c, 100, Some(0), 80));
    // No iat: only window_seconds.
    assert!(is_due(&c, 1000, None, 880));
    assert!(!is_due(&c, 1000, None, 879));
}

#[test]
fn backoff_doubles_up_to_a_minute() {
    let got: Vec<u64> = (1..=8).map(backoff_seconds).collect();
    assert_eq!(got, vec![5, 10, 20, 40, 60, 60, 60, 60]);
    assert_eq!(backoff_seconds(0), 5);
}

#[test]
fn request_is_a_standard_refresh_grant() {
    let r = build_request(&cfg(), "rt/with+odd=chars");
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "grant_type=refresh_token&refresh_token=rt%2Fwith%2Bodd%3Dchars"
    );
    let h = |n: &str| r.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(h(":method").as_deref(), Some("POST"));
    assert_eq!(h(":path").as_deref(), Some("/oauth/token"));
    assert_eq!(h("content-type").as_deref(), Some("application/x-www-form-urlencoded"));
    // "gate%20way:s3cr%3At" in Basic.
    assert_eq!(h("authorization").as_deref(), Some("Basic Z2F0ZSUyMHdheTpzM2NyJTNBdA=="));
    let mut public = cfg();
    public.client_secret = None;
    let r = build_request(&public, "rt");
    assert!(String::from_utf8(r.body).unwrap().ends_with("&client_id=gate%20way"));
    assert!(!r.headers.iter().any(|(k, _)| k == "authorization"));
}

#[test]
fn parses_success_and_errors() {
    let ok =
        br#"{"access_token":"new","token_type":"bearer","expires_in":300,"refresh_token":"rt2","scope":"x"}"#;
    assert_eq!(
        parse_response(Some(200), ok),
        Ok(Grant { access_token: "new".into(), refresh_token: Some("rt2".into()), expires_in: Some(300) })
    );
    let no_rotation = br#"{"access_token":"new","token_type":"Bearer"}"#;
    assert_eq!(parse_response(Some(200), no_rotation).unwrap().refresh_token, None);
    assert_eq!(
        parse_response(Some(400), br#"{"error":"invalid_grant","error_description":"reused"}"#),
        Err(Failure::OAuth("invalid_grant".into()))
    );
    assert_eq!(parse_response(Some(503), b"upstream down"), Err(Failure::Status(503)));
    assert_eq!(parse_response(Some(504), b"upstream request timeout"), Err(Failure::Timeout));
    assert_eq!(parse_response(None, b""), Err(Failure::Unreachable));
    assert_eq!(parse_response(Some(200), b"<html>"), Err(Failure::BadResponse("not a JSON token response")));
    assert_eq!(
        parse_response(Some(200), br#"{"token_type":"Bearer"}"#),
        Err(Failure::BadResponse("no access_token"))
    );
    assert_eq!(
        parse_response(Some(200), br#"{"access_token":"a","token_type":"mac"}"#),
        Err(Failure::BadResponse("token_type is not Bearer"))
    );
    assert_eq!(
        parse_response(Some(200), br#"{"access_token":"a","token_type":"Bearer","expires_in":"soon"}"#),
        Err(Failure::BadResponse("expires_in is not a whole number"))
    );
    assert_eq!(parse_response(Some(200), &vec![b' '; MAX_RESPONSE_BYTES + 1]), Err(Failure::TooLarge));
    // A hostile error code cannot inject into audit lines.
    assert_eq!(
        parse_response(Some(400), br#"{"error":"bad\"}, {\"x\": 1"}"#),
        Err(Failure::OAuth("badx1".into()))
    );
}
