//! `session`: an absolute session lifetime no token, refreshed or not, can outlive.

use serde::Deserialize;

use super::check::bounded;
use super::ConfigError;
use crate::token::MAX_NUMERIC_DATE;

pub const DEFAULT_START_CLAIM: &str = "auth_time";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPolicy {
    pub max_lifetime_seconds: u64,
    pub start_claim: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSession {
    max_lifetime_seconds: u64,
    #[serde(default)]
    start_claim: Option<String>,
}

impl RawSession {
    pub(super) fn validate(self) -> Result<SessionPolicy, ConfigError> {
        // Session starts are NumericDates, so a longer lifetime could never run out.
        let max_lifetime_seconds =
            bounded("session.max_lifetime_seconds", self.max_lifetime_seconds, 1, MAX_NUMERIC_DATE)?;
        let start_claim = self.start_claim.unwrap_or_else(|| DEFAULT_START_CLAIM.into());
        if start_claim.is_empty() {
            return Err(ConfigError::new("session.start_claim", "must not be empty"));
        }
        Ok(SessionPolicy { max_lifetime_seconds, start_claim })
    }
}
