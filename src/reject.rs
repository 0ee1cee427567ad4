//! Rejection codes and their RFC 6750 rendering.
//!
//! The codes are public interface: clients, dashboards and the audit trail key on them, so
//! they never change meaning. Descriptions are built only from fixed text and operator
//! configuration, never from token contents, so nothing a client sends is echoed back.

use std::fmt;

/// Why a token was refused. `as_str` is the stable wire name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCode {
    MalformedToken,
    InvalidSignature,
    UnsupportedAlgorithm,
    InvalidIssuer,
    InvalidAudience,
    MissingClaim,
    TokenExpired,
    TokenNotYetValid,
    SessionExpired,
    TokenRevoked,
    /// A valid token without a route's required scopes or claims: 403, not 401.
    InsufficientScope,
}

impl RejectCode {
    pub const ALL: [RejectCode; 11] = [
        RejectCode::MalformedToken,
        RejectCode::InvalidSignature,
        RejectCode::UnsupportedAlgorithm,
        RejectCode::InvalidIssuer,
        RejectCode::InvalidAudience,
        RejectCode::MissingClaim,
        RejectCode::TokenExpired,
        RejectCode::TokenNotYetValid,
        RejectCode::SessionExpired,
        RejectCode::TokenRevoked,
        RejectCode::InsufficientScope,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::MalformedToken => "malformed_token",
            RejectCode::InvalidSignature => "invalid_signature",
            RejectCode::UnsupportedAlgorithm => "unsupported_algorithm",
            RejectCode::InvalidIssuer => "invalid_issuer",
            RejectCode::InvalidAudience => "invalid_audience",
            RejectCode::MissingClaim => "missing_claim",
            RejectCode::TokenExpired => "token_expired",
            RejectCode::TokenNotYetValid => "token_not_yet_valid",
            RejectCode::SessionExpired => "session_expired",
            RejectCode::TokenRevoked => "token_revoked",
            RejectCode::InsufficientScope => "insufficient_scope",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused token: the code plus a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectCode,
    pub description: String,
}

impl Rejection {
    pub fn new(code: RejectCode, description: impl Into<String>) -> Self {
        Rejection { code, description: description.into() }
    }
}

/// The body code for a request that carried no bearer token at all. It is not an RFC 6750
/// error (§3.1 says such a challenge carries no error attribute), only a body hint.
pub const MISSING_TOKEN: &str = "missing_token";

/// A complete local reply: what the glue hands to `send_http_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// What every challenge of a listener starts with: its realm and, with RFC 9728 metadata
/// configured, where a client learns how to get a token.
#[derive(Debug, Clone, Copy)]
pub struct Challenge<'a> {
    pub realm: &'a str,
    pub resource_metadata: Option<&'a str>,
}

impl Challenge<'_> {
    fn render(&self, attributes: &str) -> String {
        let mut s = format!("Bearer realm=\"{}\"", quoted(self.realm));
        if let Some(url) = self.resource_metadata {
            s.push_str(&format!(", resource_metadata=\"{}\"", quoted(url)));
        }
        s.push_str(attributes);
        s
    }
}

/// 401 for a request with no token: bare challenge, per RFC 6750 §3.1.
pub fn missing_token_response(challenge: &Challenge) -> LocalReply {
    LocalReply {
        status: 401,
        headers: vec![
            ("www-authenticate".into(), challenge.render("")),
            ("content-type".into(), "application/json".into()),
        ],
        body: json_body(MISSING_TOKEN, "no bearer token in request"),
    }
}

/// 403 for a valid token without what the route requires (RFC 6750 §3.1): the scopes it
/// needs in the challenge (none when the route requires only claims).
pub fn insufficient_scope_response(challenge: &Challenge, scopes: &[String]) -> LocalReply {
    let mut attrs = String::from(", error=\"insufficient_scope\"");
    if !scopes.is_empty() {
        attrs.push_str(&format!(", scope=\"{}\"", quoted(&scopes.join(" "))));
    }
    LocalReply {
        status: 403,
        headers: vec![
            ("www-authenticate".into(), challenge.render(&attrs)),
            ("content-type".into(), "application/json".into()),
        ],
        body: json_body(
            RejectCode::InsufficientScope.as_str(),
            "the token lacks a scope or claim this route requires",
        ),
    }
}

/// 401 for a refused token: `error="invalid_token"` in the challenge, our precise code in the body.
pub fn invalid_token_response(challenge: &Challenge, rejection: &Rejection) -> LocalReply {
    let challenge = challenge.render(&format!(
        ", error=\"invalid_token\", error_description=\"{}\"",
        quoted(&rejection.description)
    ));
    LocalReply {
        status: 401,
        headers: vec![
            ("www-authenticate".into(), challenge),
            ("content-type".into(), "application/json".into()),
        ],
        body: json_body(rejection.code.as_str(), &rejection.description),
    }
}

/// 503 when the filter cannot decide safely (its revocation state is unreadable).
pub fn unavailable_response(description: &str) -> LocalReply {
    error_reply(503, "temporarily_unavailable", description)
}

/// Any local JSON error answer: `{"error": code, "error_description": description}`.
pub fn error_reply(status: u32, code: &str, description: &str) -> LocalReply {
    LocalReply {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: json_body(code, description),
    }
}

fn json_body(code: &str, description: &str) -> String {
    serde_json::json!({"error": code, "error_description": description}).to_string()
}

/// RFC 6750 §3 limits quoted attribute values to %x20-21 / %x23-5B / %x5D-7E: drop the rest
/// rather than let a realm or description break the header.
fn quoted(s: &str) -> String {
    s.chars().filter(|c| matches!(*c, ' ' | '!' | '#'..='[' | ']'..='~')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in RejectCode::ALL {
            assert!(seen.insert(c.as_str()));
            assert!(c.as_str().chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'));
        }
    }

    #[test]
    fn missing_token_has_no_error_attribute() {
        let r = missing_token_response(&Challenge { realm: "tokenguard", resource_metadata: None });
        assert_eq!(r.status, 401);
        assert_eq!(r.headers[0], ("www-authenticate".into(), "Bearer realm=\"tokenguard\"".into()));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "missing_token");
    }

    #[test]
    fn invalid_token_challenge_and_body() {
        let rej = Rejection::new(RejectCode::TokenExpired, "token expired");
        let r = invalid_token_response(&Challenge { realm: "tokenguard", resource_metadata: None }, &rej);
        assert_eq!(
            r.headers[0].1,
            "Bearer realm=\"tokenguard\", error=\"invalid_token\", error_description=\"token expired\""
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "token_expired");
        assert_eq!(body["error_description"], "token expired");
    }

    #[test]
    fn challenges_name_the_metadata_and_the_missing_scopes() {
        let c = Challenge { realm: "api", resource_metadata: Some("https://a.example/.well-known/x") };
        let r = missing_token_response(&c);
        assert_eq!(
            r.headers[0].1,
            "Bearer realm=\"api\", resource_metadata=\"https://a.example/.well-known/x\""
        );
        let r = insufficient_scope_response(&c, &["admin".into(), "write".into()]);
        assert_eq!(r.status, 403);
        assert_eq!(
            r.headers[0].1,
            "Bearer realm=\"api\", resource_metadata=\"https://a.example/.well-known/x\", \
             error=\"insufficient_scope\", scope=\"admin write\""
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "insufficient_scope");
    }

    #[test]
    fn quoting_drops_characters_outside_rfc6750() {
        assert_eq!(quoted("a\"b\\c\nd"), "abcd");
    }
}
