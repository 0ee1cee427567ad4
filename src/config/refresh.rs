//! `refresh`: proactive refresh of incoming tokens through an OAuth 2.0 token endpoint.

use serde::Deserialize;

use super::check::{
    bounded, check_client, check_endpoint, check_ratio, escalate_after_failures, header_name,
};
use super::{ConfigError, TokenSource};

/// Upper bound of `refresh.grace_seconds`. The old token keeps working (as the new one) this
/// long: a bound keeps a leaked token's extra life short.
pub const MAX_GRACE_SECONDS: u64 = 300;

/// Proactive refresh through an OAuth 2.0 token endpoint (RFC 6749 §6).
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshConfig {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub window_seconds: u64,
    pub window_ratio: f64,
    pub refresh_token_source: TokenSource,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub access_token_response_header: String,
    pub refresh_token_response_header: String,
    pub grace_seconds: u64,
    pub escalate_after_failures: u32,
    pub refresh_expired: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRefresh {
    cluster: String,
    authority: String,
    path: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    window_seconds: Option<u64>,
    #[serde(default, deserialize_with = "super::check::decimal")]
    window_ratio: Option<f64>,
    #[serde(default)]
    refresh_token_header: Option<String>,
    #[serde(default)]
    refresh_token_cookie: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    access_token_response_header: Option<String>,
    #[serde(default)]
    refresh_token_response_header: Option<String>,
    #[serde(default)]
    grace_seconds: Option<u64>,
    #[serde(default)]
    escalate_after_failures: Option<u32>,
    #[serde(default)]
    refresh_expired: bool,
}

impl RawRefresh {
    pub(super) fn validate(self) -> Result<RefreshConfig, ConfigError> {
        let paths = [("path", Some(&self.path))];
        let timeout_ms = check_endpoint("refresh", &self.cluster, &self.authority, &paths, self.timeout_ms)?;
        let window_ratio = check_ratio("refresh", self.window_ratio)?;
        let refresh_token_source =
            refresh_token_source(self.refresh_token_header, self.refresh_token_cookie)?;
        let access_token_response_header = header_name(
            "refresh.access_token_response_header",
            self.access_token_response_header.as_deref().unwrap_or("x-new-access-token"),
        )?;
        let refresh_token_response_header = header_name(
            "refresh.refresh_token_response_header",
            self.refresh_token_response_header.as_deref().unwrap_or("x-new-refresh-token"),
        )?;
        check_client("refresh", self.client_id.as_ref(), self.client_secret.as_ref())?;
        let escalate_after_failures = escalate_after_failures("refresh", self.escalate_after_failures)?;
        let grace_seconds =
            bounded("refresh.grace_seconds", self.grace_seconds.unwrap_or(30), 0, MAX_GRACE_SECONDS)?;
        Ok(RefreshConfig {
            cluster: self.cluster,
            authority: self.authority,
            path: self.path,
            timeout_ms,
            window_seconds: self.window_seconds.unwrap_or(120),
            window_ratio,
            refresh_token_source,
            client_id: self.client_id,
            client_secret: self.client_secret,
            access_token_response_header,
            refresh_token_response_header,
            grace_seconds,
            escalate_after_failures,
            refresh_expired: self.refresh_expired,
        })
    }
}

/// Where the client sends its refresh token: a header (default `x-refresh-token`) or a cookie.
fn refresh_token_source(header: Option<String>, cookie: Option<String>) -> Result<TokenSource, ConfigError> {
    match (header, cookie) {
        (Some(h), None) if super::check::valid_header_name(&h) => {
            Ok(TokenSource::Header { name: h.to_ascii_lowercase(), prefix: String::new() })
        }
        (None, Some(c)) if !c.is_empty() => Ok(TokenSource::Cookie { name: c }),
        (None, None) => Ok(TokenSource::Header { name: "x-refresh-token".into(), prefix: String::new() }),
        _ => Err(ConfigError::new(
            "refresh",
            "set either refresh_token_header (a header name) or refresh_token_cookie",
        )),
    }
}
