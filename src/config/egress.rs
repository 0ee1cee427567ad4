//! `egress`: the block of egress mode, which keeps the service's own token fresh on its
//! outgoing requests.

use serde::Deserialize;

use super::check::{
    bounded, check_client, check_endpoint, check_ratio, escalate_after_failures, header_name,
};
use super::ConfigError;

/// Bounds of `egress.retry_seconds`: at least a second between fetches, and the first delay
/// no longer than the longest backoff it doubles towards.
pub const MIN_RETRY_SECONDS: u64 = 1;
pub const MAX_RETRY_SECONDS: u64 = crate::refresh::MAX_BACKOFF_SECONDS;
/// Upper bound of `egress.wait_ms`.
pub const MAX_WAIT_MS: u64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressGrant {
    ClientCredentials {
        scope: Option<String>,
        audience: Option<String>,
    },
    /// The configured refresh token; rotated ones replace it in shared data.
    RefreshToken {
        refresh_token: String,
    },
}

/// Egress mode: one current token per process, renewed ahead of its expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct EgressConfig {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub grant: EgressGrant,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// The header the token is put in, lower-cased, and what precedes it.
    pub header: String,
    pub prefix: String,
    pub window_seconds: u64,
    pub window_ratio: f64,
    /// A token must stay valid this long after a request starts.
    pub max_request_seconds: u64,
    /// How long a request may wait for a usable token before a 503.
    pub wait_ms: u64,
    pub escalate_after_failures: u32,
    /// First retry delay after a failed fetch; doubles per failure, at most 60 s.
    pub retry_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEgress {
    cluster: String,
    authority: String,
    path: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
    grant: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    window_seconds: Option<u64>,
    #[serde(default, deserialize_with = "super::check::decimal")]
    window_ratio: Option<f64>,
    #[serde(default)]
    max_request_seconds: Option<u64>,
    #[serde(default)]
    wait_ms: Option<u64>,
    #[serde(default)]
    escalate_after_failures: Option<u32>,
    #[serde(default)]
    retry_seconds: Option<u64>,
}

impl RawEgress {
    pub(super) fn validate(self) -> Result<EgressConfig, ConfigError> {
        let paths = [("path", Some(&self.path))];
        let timeout_ms = check_endpoint("egress", &self.cluster, &self.authority, &paths, self.timeout_ms)?;
        let grant =
            grant(&self.grant, self.client_id.is_some(), self.scope, self.audience, self.refresh_token)?;
        check_client("egress", self.client_id.as_ref(), self.client_secret.as_ref())?;
        let header = header_name("egress.header", self.header.as_deref().unwrap_or("authorization"))?;
        let window_ratio = check_ratio("egress", self.window_ratio)?;
        let wait_ms = bounded("egress.wait_ms", self.wait_ms.unwrap_or(2000), 0, MAX_WAIT_MS)?;
        let escalate_after_failures = escalate_after_failures("egress", self.escalate_after_failures)?;
        let retry_seconds = bounded(
            "egress.retry_seconds",
            self.retry_seconds.unwrap_or(5),
            MIN_RETRY_SECONDS,
            MAX_RETRY_SECONDS,
        )?;
        Ok(EgressConfig {
            cluster: self.cluster,
            authority: self.authority,
            path: self.path,
            timeout_ms,
            grant,
            client_id: self.client_id,
            client_secret: self.client_secret,
            header,
            prefix: self.prefix.unwrap_or_else(|| "Bearer ".into()),
            window_seconds: self.window_seconds.unwrap_or(120),
            window_ratio,
            max_request_seconds: self.max_request_seconds.unwrap_or(0),
            wait_ms,
            escalate_after_failures,
            retry_seconds,
        })
    }
}

fn grant(
    name: &str,
    has_client_id: bool,
    scope: Option<String>,
    audience: Option<String>,
    refresh_token: Option<String>,
) -> Result<EgressGrant, ConfigError> {
    match name {
        "client_credentials" if has_client_id => Ok(EgressGrant::ClientCredentials { scope, audience }),
        "client_credentials" => {
            Err(ConfigError::new("egress.client_id", "client_credentials needs client_id"))
        }
        "refresh_token" => match refresh_token {
            Some(t) if !t.is_empty() => Ok(EgressGrant::RefreshToken { refresh_token: t }),
            _ => Err(ConfigError::new("egress.refresh_token", "the refresh_token grant needs refresh_token")),
        },
        other => Err(ConfigError::new(
            "egress.grant",
            format!("unknown grant {other:?} (client_credentials or refresh_token)"),
        )),
    }
}
