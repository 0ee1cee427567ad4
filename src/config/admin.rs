//! `admin`: the admin API the filter answers itself, and the token that guards it.

use serde::Deserialize;

use super::ConfigError;

/// Shortest accepted admin token: it guards revocation, so it must not be guessable.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Starts and ends with `/`.
    pub path_prefix: String,
    pub token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    path_prefix: String,
    token: String,
}

impl RawAdmin {
    pub(super) fn validate(self) -> Result<AdminConfig, ConfigError> {
        // "/" alone would make every request an admin request.
        let p = &self.path_prefix;
        if !p.starts_with('/') || !p.ends_with('/') || p.len() < 2 {
            return Err(ConfigError::new(
                "admin.path_prefix",
                "must start and end with '/' and not be \"/\" alone",
            ));
        }
        if self.token.len() < MIN_ADMIN_TOKEN_BYTES {
            return Err(ConfigError::new(
                "admin.token",
                format!("must be at least {MIN_ADMIN_TOKEN_BYTES} bytes"),
            ));
        }
        Ok(AdminConfig { path_prefix: self.path_prefix, token: self.token })
    }
}
