//! `revocation_feed`: polling an authorization server's revocation feed, so every replica
//! learns revocations.

use serde::Deserialize;

use super::check::{bounded, check_endpoint};
use super::ConfigError;

/// Bounds of `revocation_feed.interval_seconds`.
pub const MIN_FEED_INTERVAL_SECONDS: u64 = 1;
pub const MAX_FEED_INTERVAL_SECONDS: u64 = 3600;
/// Upper bound of `revocation_feed.startup_wait_ms`.
pub const MAX_STARTUP_WAIT_MS: u64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedConfig {
    pub cluster: String,
    pub authority: String,
    /// `GET {path}?cursor=...`: the feed.
    pub path: String,
    /// `POST {publish_path}`: where admin-API revocations are published. `None`: not published.
    pub publish_path: Option<String>,
    pub interval_seconds: u64,
    pub timeout_ms: u64,
    /// Refuse requests (503) once the last successful sync is older than this.
    pub max_staleness_seconds: Option<u64>,
    /// How long a request on a fresh process may wait for the first sync before a 503.
    pub startup_wait_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFeed {
    cluster: String,
    authority: String,
    path: String,
    #[serde(default)]
    publish_path: Option<String>,
    #[serde(default)]
    interval_seconds: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    max_staleness_seconds: Option<u64>,
    #[serde(default)]
    startup_wait_ms: Option<u64>,
}

impl RawFeed {
    pub(super) fn validate(self) -> Result<FeedConfig, ConfigError> {
        let paths = [("path", Some(&self.path)), ("publish_path", self.publish_path.as_ref())];
        let timeout_ms =
            check_endpoint("revocation_feed", &self.cluster, &self.authority, &paths, self.timeout_ms)?;
        let interval_seconds = bounded(
            "revocation_feed.interval_seconds",
            self.interval_seconds.unwrap_or(5),
            MIN_FEED_INTERVAL_SECONDS,
            MAX_FEED_INTERVAL_SECONDS,
        )?;
        // A staleness limit below the polling interval would refuse requests between polls.
        if self.max_staleness_seconds.is_some_and(|m| m < interval_seconds) {
            return Err(ConfigError::new(
                "revocation_feed.max_staleness_seconds",
                "must be at least interval_seconds",
            ));
        }
        let startup_wait_ms = bounded(
            "revocation_feed.startup_wait_ms",
            self.startup_wait_ms.unwrap_or(3000),
            0,
            MAX_STARTUP_WAIT_MS,
        )?;
        Ok(FeedConfig {
            cluster: self.cluster,
            authority: self.authority,
            path: self.path,
            publish_path: self.publish_path,
            interval_seconds,
            timeout_ms,
            max_staleness_seconds: self.max_staleness_seconds,
            startup_wait_ms,
        })
    }
}
