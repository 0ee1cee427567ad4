//! Proactive refresh: when a token is due, how the OAuth 2.0 refresh request looks
//! (RFC 6749 §6), and how the answer is read (§5.1 success, §5.2 error).
//!
//! Pure functions only; the gate decides when to call out and the proxy-wasm layer makes
//! the call.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

use crate::config::RefreshConfig;
use crate::reject::RejectCode;

/// Answers bigger than this are refused unread: a token endpoint's JSON is a few KiB.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Longest wait between attempts to refresh the same token after failures.
pub const MAX_BACKOFF_SECONDS: u64 = 60;

/// Due when the remaining lifetime is at or below min(`window_seconds`, `window_ratio` x
/// the token's lifetime). Without `iat` the lifetime is unknown and only `window_seconds`
/// applies.
pub fn is_due(cfg: &RefreshConfig, exp: u64, iat: Option<u64>, now: u64) -> bool {
    let remaining = exp.saturating_sub(now);
    (remaining as f64) <= window(cfg, exp, iat)
}

fn window(cfg: &RefreshConfig, exp: u64, iat: Option<u64>) -> f64 {
    match iat {
        Some(iat) => {
            let ratio_window = cfg.window_ratio * exp.saturating_sub(iat) as f64;
            (cfg.window_seconds as f64).min(ratio_window)
        }
        None => cfg.window_seconds as f64,
    }
}

/// The refresh window in whole seconds, rounded up: a token is never due while more than
/// this is left.
pub fn window_seconds(cfg: &RefreshConfig, exp: u64, iat: Option<u64>) -> u64 {
    // `as` saturates for floats (NaN gives 0); the window is at most `window_seconds`.
    window(cfg, exp, iat).max(0.0).ceil() as u64
}

/// 5 s after the first failure, doubling, at most a minute.
pub fn backoff_seconds(failures: u8) -> u64 {
    crate::backoff::doubling(5, u32::from(failures), MAX_BACKOFF_SECONDS)
}

/// An HTTP call for the host to make.
#[derive(Clone, PartialEq, Eq)]
pub struct Callout {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

impl std::fmt::Debug for Callout {
    /// The body holds a refresh token and the headers may hold the client secret: neither
    /// may reach a log through a Debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Callout {{ cluster: {:?}, body: {} bytes (redacted) }}", self.cluster, self.body.len())
    }
}

/// `application/x-www-form-urlencoded` (RFC 6749 appendix B): unreserved characters stay,
/// everything else is percent-encoded.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where a token request goes and how the client authenticates: shared by refresh (ingress)
/// and egress.
pub struct TokenEndpoint<'a> {
    pub cluster: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
    pub timeout_ms: u64,
    pub client_id: Option<&'a str>,
    pub client_secret: Option<&'a str>,
}

/// A POST of `form` (already encoded, without client credentials) to a token endpoint, with
/// RFC 6749 §2.3.1 client authentication: id and secret form-encoded, then HTTP Basic; an id
/// alone (a public client) goes in the body.
pub fn token_request(ep: &TokenEndpoint, form: String) -> Callout {
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), ep.path.to_string()),
        (":authority".to_string(), ep.authority.to_string()),
        ("content-type".to_string(), "application/x-www-form-urlencoded".to_string()),
        ("accept".to_string(), "application/json".to_string()),
    ];
    let mut body = form;
    match (ep.client_id, ep.client_secret) {
        (Some(id), Some(secret)) => {
            let basic = STANDARD.encode(format!("{}:{}", form_encode(id), form_encode(secret)));
            headers.push(("authorization".to_string(), format!("Basic {basic}")));
        }
        (Some(id), None) => body.push_str(&format!("&client_id={}", form_encode(id))),
        _ => {}
    }
    Callout { cluster: ep.cluster.to_string(), headers, body: body.into_bytes(), timeout_ms: ep.timeout_ms }
}

pub fn build_request(cfg: &RefreshConfig, refresh_token: &str) -> Callout {
    let ep = TokenEndpoint {
        cluster: &cfg.cluster,
        authority: &cfg.authority,
        path: &cfg.path,
        timeout_ms: cfg.timeout_ms,
        client_id: cfg.client_id.as_deref(),
        client_secret: cfg.client_secret.as_deref(),
    };
    token_request(&ep, format!("grant_type=refresh_token&refresh_token={}", form_encode(refresh_token)))
}

/// A successful refresh (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub access_token: String,
    /// Present when the server rotated the refresh token.
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
}

/// Why a refresh failed. `cause` is what audit lines and counters carry: it never holds a
/// token or a secret, and server-provided error codes are reduced to safe characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer within `timeout_ms` (or a 504).
    Timeout,
    /// The connection failed or was reset (or the cluster has no healthy endpoint).
    Unreachable,
    /// A non-2xx answer without an OAuth error body.
    Status(u16),
    /// An RFC 6749 §5.2 error (`invalid_grant`, ...).
    OAuth(String),
    /// The answer was not a usable §5.1 response.
    BadResponse(&'static str),
    TooLarge,
    /// The new access token fails validation.
    InvalidNewToken(RejectCode),
    /// The host refused to make the call.
    DispatchFailed,
}

/// Failure kinds, for per-cause counters.
pub const FAILURE_KINDS: [&str; 8] = [
    "timeout",
    "unreachable",
    "status",
    "oauth",
    "bad_response",
    "too_large",
    "invalid_new_token",
    "dispatch_failed",
];

impl Failure {
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Unreachable => "unreachable",
            Failure::Status(_) => "status",
            Failure::OAuth(_) => "oauth",
            Failure::BadResponse(_) => "bad_response",
            Failure::TooLarge => "too_large",
            Failure::InvalidNewToken(_) => "invalid_new_token",
            Failure::DispatchFailed => "dispatch_failed",
        }
    }

    pub fn cause(&self) -> String {
        match self {
            Failure::Timeout => "timeout".into(),
            Failure::Unreachable => "unreachable".into(),
            Failure::Status(s) => format!("status_{s}"),
            Failure::OAuth(code) => format!("oauth_{code}"),
            Failure::BadResponse(why) => format!("bad_response: {why}"),
            Failure::TooLarge => "response_too_large".into(),
            Failure::InvalidNewToken(code) => format!("invalid_new_token: {}", code.as_str()),
            Failure::DispatchFailed => "dispatch_failed".into(),
        }
    }
}

#[derive(Deserialize)]
struct SuccessBody {
    access_token: Option<String>,
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// Reads the token endpoint's answer. `status` is the `:status` pseudo-header.
pub fn parse_response(status: Option<u16>, body: &[u8]) -> Result<Grant, Failure> {
    let status = status.ok_or(Failure::Unreachable)?;
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(Failure::TooLarge);
    }
    if status == 504 {
        // Envoy answers its own call timeout with a local 504 (and so do gateways in front
        // of a slow token endpoint).
        return Err(Failure::Timeout);
    }
    if status != 200 {
        return Err(match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => Failure::OAuth(safe_code(&e.error)),
            Err(_) => Failure::Status(status),
        });
    }
    let ok: SuccessBody =
        serde_json::from_slice(body).map_err(|_| Failure::BadResponse("not a JSON token response"))?;
    let access_token =
        ok.access_token.filter(|t| !t.is_empty()).ok_or(Failure::BadResponse("no access_token"))?;
    if !ok.token_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
        return Err(Failure::BadResponse("token_type is not Bearer"));
    }
    let expires_in = match ok.expires_in {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or(Failure::BadResponse("expires_in is not a whole number"))?),
    };
    Ok(Grant { access_token, refresh_token: ok.refresh_token.filter(|t| !t.is_empty()), expires_in })
}

/// Server-chosen error codes end up in audit lines: keep them short and plain.
fn safe_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect()
}

/// A request held while its token is refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRefresh {
    pub callout: Callout,
    pub old: crate::token::Fingerprint,
    /// The old token's identity: the new one must name the same issuer, subject and session,
    /// and a failed refresh re-checks the old token's revocation by them.
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub jti: Option<String>,
    pub sid: Option<String>,
    pub iat: Option<u64>,
    pub exp: u64,
    /// The old token has already expired (`refresh_expired`): without a new one the request
    /// is refused rather than forwarded.
    pub expired: bool,
    /// The old token's session start: the new one inherits it.
    pub session_start: Option<u64>,
    /// SHA-256 of the refresh token spent: only its holder is handed the rotated one.
    pub spent_refresh: [u8; 32],
    /// The old token's claim headers, for the request should it go on with that token.
    pub upstream: crate::header::Edits,
}

#[cfg(test)]
mod tests;
