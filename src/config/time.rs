//! The time rules a token is judged by: clock skew, required claims, the longest accepted
//! lifetime, and what the client is told about expiry (the near-expiry warning and the
//! `expires_in_header`). These keys sit at the top level of the configuration, so
//! `RawConfig` parses them and hands them over in a `RawTime`.

use super::check::{bounded, header_name};
use super::ConfigError;
use crate::token::MAX_NUMERIC_DATE;

/// Largest accepted `clock_skew_seconds`. Beyond ten minutes a "skew" is a broken clock, and
/// a leeway that large quietly extends every token's life.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 600;

pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 30;
pub const DEFAULT_NEAR_EXPIRY_WARNING_SECONDS: u64 = 60;
pub const DEFAULT_EXPIRES_IN_HEADER: &str = "x-token-expires-in";
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECONDS: u64 = 86_400;

pub(super) struct RawTime {
    pub clock_skew_seconds: Option<u64>,
    pub required_claims: Option<Vec<String>>,
    pub near_expiry_warning_seconds: Option<u64>,
    pub expires_in_header: Option<String>,
    pub max_token_lifetime_seconds: Option<u64>,
}

pub(super) struct Time {
    pub clock_skew_seconds: u64,
    pub required_claims: Vec<String>,
    pub near_expiry_warning_seconds: u64,
    pub expires_in_header: Option<String>,
    pub max_token_lifetime_seconds: u64,
}

pub(super) fn validate(raw: RawTime) -> Result<Time, ConfigError> {
    let clock_skew_seconds = bounded(
        "clock_skew_seconds",
        raw.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS),
        0,
        MAX_CLOCK_SKEW_SECONDS,
    )?;
    let required_claims = required_claims(raw.required_claims)?;
    // Token times are at most MAX_NUMERIC_DATE, so no larger warning can mean anything.
    let near_expiry_warning_seconds = bounded(
        "near_expiry_warning_seconds",
        raw.near_expiry_warning_seconds.unwrap_or(DEFAULT_NEAR_EXPIRY_WARNING_SECONDS),
        0,
        MAX_NUMERIC_DATE,
    )?;
    let expires_in_header = match raw.expires_in_header {
        None => Some(DEFAULT_EXPIRES_IN_HEADER.to_string()),
        Some(h) if h.is_empty() => None,
        Some(h) => Some(header_name("expires_in_header", &h)?),
    };
    let max_token_lifetime_seconds = bounded(
        "max_token_lifetime_seconds",
        raw.max_token_lifetime_seconds.unwrap_or(DEFAULT_MAX_TOKEN_LIFETIME_SECONDS),
        1,
        MAX_NUMERIC_DATE,
    )?;
    Ok(Time {
        clock_skew_seconds,
        required_claims,
        near_expiry_warning_seconds,
        expires_in_header,
        max_token_lifetime_seconds,
    })
}

/// `exp` is always among them: a token that never expires has no lifecycle to guard.
fn required_claims(raw: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let mut claims = raw.unwrap_or_default();
    if let Some(j) = claims.iter().position(|c| c.is_empty()) {
        return Err(ConfigError::new(format!("required_claims[{j}]"), "must not be empty"));
    }
    if !claims.iter().any(|c| c == "exp") {
        claims.insert(0, "exp".into());
    }
    Ok(claims)
}
