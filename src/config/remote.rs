//! `providers[].remote_jwks`: fetching a provider's keys from its key server, directly or
//! through OpenID Connect Discovery.

use serde::Deserialize;

use super::check::bounded;
use super::ConfigError;

/// Defaults and bounds of the `remote_jwks` keys (documented in docs/configuration.md).
pub const DEFAULT_JWKS_TIMEOUT_MS: u64 = 5000;
pub const DEFAULT_CACHE_SECONDS: u64 = 600;
pub const DEFAULT_MIN_REFETCH_SECONDS: u64 = 30;
pub const DEFAULT_MAX_STALE_SECONDS: u64 = 86_400;
pub const DEFAULT_KEYS_STARTUP_WAIT_MS: u64 = 3000;
/// `Cache-Control: max-age` and `cache_seconds` live in this range.
pub const MIN_CACHE_SECONDS: u64 = 60;
pub const MAX_CACHE_SECONDS: u64 = 86_400;
pub const MAX_MIN_REFETCH_SECONDS: u64 = 3600;
pub const MAX_STALE_SECONDS: u64 = 7 * 86_400;
pub const MAX_KEYS_STARTUP_WAIT_MS: u64 = 60_000;

/// An `http` or `https` URL split the way a callout needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host` or `host:port`, as written: the callout's `:authority`.
    pub authority: String,
    /// The path and query, at least `/`.
    pub path: String,
}

impl HttpUrl {
    /// `http(s)://authority[/path[?query]]`; no user info, no fragment, no whitespace or
    /// control characters (they would end up in a header).
    pub fn parse(url: &str) -> Option<HttpUrl> {
        let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
        if url.bytes().any(|b| !b.is_ascii_graphic()) || url.contains('#') {
            return None;
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
        Some(HttpUrl { authority: authority.to_owned(), path })
    }

    /// OpenID Connect Discovery 1.0 §4: the issuer with `/.well-known/openid-configuration`
    /// appended to its path (never a query).
    pub fn discovery(issuer: &str) -> Option<HttpUrl> {
        let base = HttpUrl::parse(issuer)?;
        if base.path.contains('?') {
            return None;
        }
        let path = format!("{}/.well-known/openid-configuration", base.path.trim_end_matches('/'));
        Some(HttpUrl { authority: base.authority, path })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    /// `None`: found through discovery from the issuer.
    pub uri: Option<HttpUrl>,
    /// The discovery document's location, when `uri` is absent.
    pub discovery: Option<HttpUrl>,
    pub timeout_ms: u64,
    pub cache_seconds: u64,
    pub min_refetch_seconds: u64,
    pub max_stale_seconds: u64,
    pub startup_wait_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemoteJwks {
    cluster: String,
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    cache_seconds: Option<u64>,
    #[serde(default)]
    min_refetch_seconds: Option<u64>,
    #[serde(default)]
    max_stale_seconds: Option<u64>,
    #[serde(default)]
    startup_wait_ms: Option<u64>,
}

impl RawRemoteJwks {
    /// `here` is `providers[i].remote_jwks`.
    pub(super) fn validate(self, issuer: &str, here: &str) -> Result<RemoteJwks, ConfigError> {
        let field = |name: &str| format!("{here}.{name}");
        if self.cluster.is_empty() {
            return Err(ConfigError::new(field("cluster"), "must not be empty"));
        }
        let uri = match &self.uri {
            Some(u) => Some(HttpUrl::parse(u).ok_or_else(|| {
                ConfigError::new(
                    field("uri"),
                    "must be an http:// or https:// URL without user info or fragment",
                )
            })?),
            None => None,
        };
        let discovery = match uri {
            Some(_) => None,
            None => Some(HttpUrl::discovery(issuer).ok_or_else(|| {
                ConfigError::new(
                    field("uri"),
                    "is required unless the issuer is an http:// or https:// URL without a query (discovery)",
                )
            })?),
        };
        let timeout_ms =
            bounded(&field("timeout_ms"), self.timeout_ms.unwrap_or(DEFAULT_JWKS_TIMEOUT_MS), 10, 60_000)?;
        let cache_seconds = bounded(
            &field("cache_seconds"),
            self.cache_seconds.unwrap_or(DEFAULT_CACHE_SECONDS),
            MIN_CACHE_SECONDS,
            MAX_CACHE_SECONDS,
        )?;
        let min_refetch_seconds = bounded(
            &field("min_refetch_seconds"),
            self.min_refetch_seconds.unwrap_or(DEFAULT_MIN_REFETCH_SECONDS),
            1,
            MAX_MIN_REFETCH_SECONDS,
        )?;
        let max_stale_seconds = bounded(
            &field("max_stale_seconds"),
            self.max_stale_seconds.unwrap_or(DEFAULT_MAX_STALE_SECONDS),
            0,
            MAX_STALE_SECONDS,
        )?;
        let startup_wait_ms = bounded(
            &field("startup_wait_ms"),
            self.startup_wait_ms.unwrap_or(DEFAULT_KEYS_STARTUP_WAIT_MS),
            0,
            MAX_KEYS_STARTUP_WAIT_MS,
        )?;
        Ok(RemoteJwks {
            cluster: self.cluster,
            uri,
            discovery,
            timeout_ms,
            cache_seconds,
            min_refetch_seconds,
            max_stale_seconds,
            startup_wait_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        let u = HttpUrl::parse("https://idp.example:8443/realms/main/certs?x=1").unwrap();
        assert_eq!((u.authority.as_str(), u.path.as_str()), ("idp.example:8443", "/realms/main/certs?x=1"));
        assert_eq!(HttpUrl::parse("http://idp").unwrap().path, "/");
        for bad in
            ["ftp://idp/x", "https://", "https://u:p@idp/x", "https://idp/a b", "https://idp/#f", "idp/x"]
        {
            assert!(HttpUrl::parse(bad).is_none(), "{bad}");
        }
        let d = HttpUrl::discovery("https://idp.example/realms/main/").unwrap();
        assert_eq!(d.path, "/realms/main/.well-known/openid-configuration");
        assert_eq!(
            HttpUrl::discovery("https://idp.example").unwrap().path,
            "/.well-known/openid-configuration"
        );
        assert!(HttpUrl::discovery("https://idp.example/?tenant=1").is_none());
    }
}
