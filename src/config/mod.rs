//! The plugin configuration: the public interface mesh teams write.
//!
//! Parsing is strict. Unknown keys and bad values are refused at load time with the exact
//! field path (`providers[0].jwks.keys[1].n: ...`), because a silently ignored typo in a
//! security filter is an outage or a hole found in production.

mod source;

use serde::Deserialize;
use std::fmt;

use crate::jwks::{Alg, JwkSet, KeySet};

pub use source::to_json;

/// A configuration error, naming the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Largest accepted `clock_skew_seconds`. Beyond ten minutes a "skew" is a broken clock, and
/// a leeway that large quietly extends every token's life.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 600;

pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 30;
pub const DEFAULT_NEAR_EXPIRY_WARNING_SECONDS: u64 = 60;
pub const DEFAULT_EXPIRES_IN_HEADER: &str = "x-token-expires-in";
pub const DEFAULT_START_CLAIM: &str = "auth_time";
pub const DEFAULT_REALM: &str = "tokenguard";
pub const DEFAULT_REGISTRY_CAPACITY: usize = 10_000;
pub const DEFAULT_MAX_REVOCATIONS: usize = 10_000;
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECONDS: u64 = 86_400;
/// Registry sizes beyond these would make one Envoy hold gigabytes of shared data.
pub const MAX_REGISTRY_CAPACITY: usize = 1_000_000;
pub const MAX_REVOCATIONS: usize = 1_000_000;
/// Shortest accepted admin token: it guards revocation, so it must not be guessable.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 16;

/// A validated configuration, with keys already turned into verifiers.
pub struct Config {
    pub mode: Mode,
    /// Present exactly in egress mode.
    pub egress: Option<EgressConfig>,
    pub providers: Vec<Provider>,
    pub token_source: TokenSource,
    pub clock_skew_seconds: u64,
    /// Always contains `exp`: a token that never expires has no lifecycle to guard.
    pub required_claims: Vec<String>,
    pub session: Option<SessionPolicy>,
    pub near_expiry_warning_seconds: u64,
    /// `None` when the operator disabled the header with `""`.
    pub expires_in_header: Option<String>,
    pub log_accepted: bool,
    pub realm: String,
    /// Longest accepted token lifetime (`exp` - `iat`). It bounds how long a revocation must
    /// be kept to cover every token it names.
    pub max_token_lifetime_seconds: u64,
    pub registry: RegistryConfig,
    pub admin: Option<AdminConfig>,
    pub refresh: Option<RefreshConfig>,
    pub revocation_feed: Option<FeedConfig>,
    /// Identifies this configuration (a hash of it). A registry record verified under another
    /// configuration is verified again.
    pub generation: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    pub capacity: usize,
    pub max_revocations: usize,
}

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

/// Ingress validates incoming tokens; egress keeps the service's own token fresh on its
/// outgoing requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ingress,
    Egress,
}

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

/// Polling an authorization server's revocation feed, so every replica learns revocations.
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Starts and ends with `/`.
    pub path_prefix: String,
    pub token: String,
}

impl Config {
    /// How long a revocation is kept: until no token it covers can still be valid.
    pub fn revocation_retention_seconds(&self) -> u64 {
        let session = self.session.as_ref().map_or(0, |s| s.max_lifetime_seconds);
        self.max_token_lifetime_seconds.max(session).saturating_add(self.clock_skew_seconds)
    }
}

pub struct Provider {
    pub issuer: String,
    pub audiences: Vec<String>,
    /// Accepted JOSE `typ` values, lower-cased, without an `application/` prefix. A token of
    /// another type from the same issuer (a logout token, a DPoP proof, a SET) is refused:
    /// RFC 8725 §3.11.
    pub token_types: Vec<String>,
    pub algorithms: Vec<Alg>,
    pub keys: KeySet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A header, lower-cased, and the prefix that must precede the token (matched without
    /// regard to case, as HTTP auth schemes are).
    Header {
        name: String,
        prefix: String,
    },
    Cookie {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPolicy {
    pub max_lifetime_seconds: u64,
    pub start_claim: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    egress: Option<RawEgress>,
    #[serde(default)]
    providers: Vec<RawProvider>,
    #[serde(default)]
    token_source: Option<RawTokenSource>,
    #[serde(default)]
    clock_skew_seconds: Option<u64>,
    #[serde(default)]
    required_claims: Option<Vec<String>>,
    #[serde(default)]
    session: Option<RawSession>,
    #[serde(default)]
    near_expiry_warning_seconds: Option<u64>,
    #[serde(default)]
    expires_in_header: Option<String>,
    #[serde(default)]
    audit: Option<RawAudit>,
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    max_token_lifetime_seconds: Option<u64>,
    #[serde(default)]
    registry: Option<RawRegistry>,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    refresh: Option<RawRefresh>,
    #[serde(default)]
    revocation_feed: Option<RawFeed>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    #[serde(default)]
    capacity: Option<usize>,
    #[serde(default)]
    max_revocations: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRefresh {
    cluster: String,
    authority: String,
    path: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    window_seconds: Option<u64>,
    #[serde(default, deserialize_with = "decimal")]
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgress {
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
    #[serde(default, deserialize_with = "decimal")]
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
    fn validate(self) -> Result<EgressConfig, ConfigError> {
        let f = |name: &str| format!("egress.{name}");
        let timeout_ms = check_endpoint(
            "egress",
            &self.cluster,
            &self.authority,
            &[("path", Some(&self.path))],
            self.timeout_ms,
        )?;
        let grant = match self.grant.as_str() {
            "client_credentials" => {
                if self.client_id.is_none() {
                    return Err(ConfigError::new(f("client_id"), "client_credentials needs client_id"));
                }
                EgressGrant::ClientCredentials { scope: self.scope, audience: self.audience }
            }
            "refresh_token" => match self.refresh_token {
                Some(t) if !t.is_empty() => EgressGrant::RefreshToken { refresh_token: t },
                _ => {
                    return Err(ConfigError::new(
                        f("refresh_token"),
                        "the refresh_token grant needs refresh_token",
                    ))
                }
            },
            other => {
                return Err(ConfigError::new(
                    f("grant"),
                    format!("unknown grant {other:?} (client_credentials or refresh_token)"),
                ))
            }
        };
        if self.client_secret.is_some() && self.client_id.is_none() {
            return Err(ConfigError::new(f("client_secret"), "needs client_id"));
        }
        let header = self.header.unwrap_or_else(|| "authorization".into());
        if !valid_header_name(&header) {
            return Err(ConfigError::new(f("header"), "is not a valid HTTP header name"));
        }
        let window_ratio = check_ratio("egress", self.window_ratio)?;
        let wait_ms = self.wait_ms.unwrap_or(2000);
        if wait_ms > 60_000 {
            return Err(ConfigError::new(f("wait_ms"), "must be at most 60000"));
        }
        let escalate_after_failures = self.escalate_after_failures.unwrap_or(3);
        if escalate_after_failures == 0 {
            return Err(ConfigError::new(f("escalate_after_failures"), "must be at least 1"));
        }
        Ok(EgressConfig {
            cluster: self.cluster,
            authority: self.authority,
            path: self.path,
            timeout_ms,
            grant,
            client_id: self.client_id,
            client_secret: self.client_secret,
            header: header.to_ascii_lowercase(),
            prefix: self.prefix.unwrap_or_else(|| "Bearer ".into()),
            window_seconds: self.window_seconds.unwrap_or(120),
            window_ratio,
            max_request_seconds: self.max_request_seconds.unwrap_or(0),
            wait_ms,
            escalate_after_failures,
            retry_seconds: self.retry_seconds.unwrap_or(5).clamp(1, 60),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
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
    fn validate(self) -> Result<FeedConfig, ConfigError> {
        let f = |name: &str| format!("revocation_feed.{name}");
        let paths = [("path", Some(&self.path)), ("publish_path", self.publish_path.as_ref())];
        let timeout_ms =
            check_endpoint("revocation_feed", &self.cluster, &self.authority, &paths, self.timeout_ms)?;
        let interval_seconds = self.interval_seconds.unwrap_or(5);
        if !(1..=3600).contains(&interval_seconds) {
            return Err(ConfigError::new(f("interval_seconds"), "must be between 1 and 3600"));
        }
        if let Some(m) = self.max_staleness_seconds {
            if m < interval_seconds {
                return Err(ConfigError::new(
                    f("max_staleness_seconds"),
                    "must be at least interval_seconds",
                ));
            }
        }
        let startup_wait_ms = self.startup_wait_ms.unwrap_or(3000);
        if startup_wait_ms > 60_000 {
            return Err(ConfigError::new(f("startup_wait_ms"), "must be at most 60000"));
        }
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    path_prefix: String,
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    token_types: Option<Vec<String>>,
    algorithms: Vec<String>,
    jwks: JwkSet,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenSource {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    max_lifetime_seconds: u64,
    #[serde(default)]
    start_claim: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default)]
    log_accepted: bool,
}

impl Config {
    /// Parses the bytes Envoy hands the plugin: JSON text (a `StringValue`) or a
    /// `google.protobuf.Struct` in protobuf encoding (plain YAML in Envoy's config).
    pub fn from_plugin_bytes(bytes: &[u8]) -> Result<Config, ConfigError> {
        Config::from_json(to_json(bytes)?)
    }

    pub fn from_json(value: serde_json::Value) -> Result<Config, ConfigError> {
        let digest = hmac_sha256::Hash::hash(value.to_string().as_bytes());
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { String::new() } else { path };
            ConfigError::new(field, e.into_inner().to_string())
        })?;
        let mut cfg = raw.validate()?;
        cfg.generation = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
        Ok(cfg)
    }
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let mode = match self.mode.as_deref() {
            None | Some("ingress") => Mode::Ingress,
            Some("egress") => Mode::Egress,
            Some(other) => {
                return Err(ConfigError::new("mode", format!("unknown mode {other:?} (ingress or egress)")))
            }
        };
        let egress = match (mode, self.egress) {
            (Mode::Egress, Some(e)) => Some(e.validate()?),
            (Mode::Egress, None) => {
                return Err(ConfigError::new("egress", "mode egress needs an egress block"))
            }
            (Mode::Ingress, Some(_)) => {
                return Err(ConfigError::new("egress", "only with \"mode\": \"egress\""))
            }
            (Mode::Ingress, None) => None,
        };
        if mode == Mode::Ingress && self.providers.is_empty() {
            return Err(ConfigError::new("providers", "at least one provider is required"));
        }
        let mut providers = Vec::with_capacity(self.providers.len());
        for (i, p) in self.providers.into_iter().enumerate() {
            let here = format!("providers[{i}]");
            if p.issuer.is_empty() {
                return Err(ConfigError::new(format!("{here}.issuer"), "must not be empty"));
            }
            if providers.iter().any(|q: &Provider| q.issuer == p.issuer) {
                return Err(ConfigError::new(format!("{here}.issuer"), "duplicate issuer"));
            }
            if p.algorithms.is_empty() {
                return Err(ConfigError::new(format!("{here}.algorithms"), "list at least one algorithm"));
            }
            let mut algorithms = Vec::new();
            for (j, name) in p.algorithms.iter().enumerate() {
                let alg = Alg::parse(name).ok_or_else(|| {
                    ConfigError::new(
                        format!("{here}.algorithms[{j}]"),
                        format!("unsupported algorithm {name:?} (supported: HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384, EdDSA)"),
                    )
                })?;
                if !algorithms.contains(&alg) {
                    algorithms.push(alg);
                }
            }
            let keys = KeySet::build(&p.jwks, &algorithms, &format!("{here}.jwks")).map_err(|m| {
                match m.split_once(": ") {
                    Some((field, msg)) => ConfigError::new(field, msg),
                    None => ConfigError::new(format!("{here}.jwks"), m),
                }
            })?;
            for alg in &algorithms {
                if !keys.entries.iter().any(|e| e.alg == *alg) {
                    return Err(ConfigError::new(
                        format!("{here}.algorithms"),
                        format!("{} has no matching key in jwks", alg.as_str()),
                    ));
                }
            }
            let token_types = token_types(p.token_types, &here)?;
            providers.push(Provider {
                issuer: p.issuer,
                audiences: p.audiences,
                token_types,
                algorithms,
                keys,
            });
        }

        let token_source = match self.token_source {
            None => TokenSource::Header { name: "authorization".into(), prefix: "Bearer ".into() },
            Some(RawTokenSource { header: Some(h), prefix, cookie: None }) => {
                if h.is_empty() {
                    return Err(ConfigError::new("token_source.header", "must not be empty"));
                }
                TokenSource::Header {
                    name: h.to_ascii_lowercase(),
                    prefix: prefix.unwrap_or_else(|| "Bearer ".into()),
                }
            }
            Some(RawTokenSource { header: None, prefix: None, cookie: Some(c) }) => {
                if c.is_empty() {
                    return Err(ConfigError::new("token_source.cookie", "must not be empty"));
                }
                TokenSource::Cookie { name: c }
            }
            Some(_) => {
                return Err(ConfigError::new(
                    "token_source",
                    "set either \"header\" (with an optional \"prefix\") or \"cookie\"",
                ))
            }
        };

        let clock_skew_seconds = self.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS);
        if clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
            return Err(ConfigError::new(
                "clock_skew_seconds",
                format!("must be at most {MAX_CLOCK_SKEW_SECONDS}"),
            ));
        }

        let mut required_claims = self.required_claims.unwrap_or_default();
        if let Some(j) = required_claims.iter().position(|c| c.is_empty()) {
            return Err(ConfigError::new(format!("required_claims[{j}]"), "must not be empty"));
        }
        if !required_claims.iter().any(|c| c == "exp") {
            required_claims.insert(0, "exp".into());
        }

        let session = match self.session {
            None => None,
            Some(s) => {
                if s.max_lifetime_seconds == 0 {
                    return Err(ConfigError::new("session.max_lifetime_seconds", "must be greater than 0"));
                }
                if s.max_lifetime_seconds > crate::token::MAX_NUMERIC_DATE {
                    return Err(ConfigError::new("session.max_lifetime_seconds", "is too large"));
                }
                let start_claim = s.start_claim.unwrap_or_else(|| DEFAULT_START_CLAIM.into());
                if start_claim.is_empty() {
                    return Err(ConfigError::new("session.start_claim", "must not be empty"));
                }
                Some(SessionPolicy { max_lifetime_seconds: s.max_lifetime_seconds, start_claim })
            }
        };

        let near_expiry_warning_seconds =
            self.near_expiry_warning_seconds.unwrap_or(DEFAULT_NEAR_EXPIRY_WARNING_SECONDS);
        if near_expiry_warning_seconds > crate::token::MAX_NUMERIC_DATE {
            return Err(ConfigError::new("near_expiry_warning_seconds", "is too large"));
        }

        let expires_in_header = match self.expires_in_header {
            None => Some(DEFAULT_EXPIRES_IN_HEADER.to_string()),
            Some(h) if h.is_empty() => None,
            Some(h) if valid_header_name(&h) => Some(h.to_ascii_lowercase()),
            Some(_) => return Err(ConfigError::new("expires_in_header", "is not a valid HTTP header name")),
        };

        let realm = self.realm.unwrap_or_else(|| DEFAULT_REALM.into());
        if realm.is_empty() || !realm.chars().all(|c| matches!(c, ' ' | '!' | '#'..='[' | ']'..='~')) {
            return Err(ConfigError::new("realm", "must be non-empty printable ASCII without '\"' or '\\'"));
        }

        let max_token_lifetime_seconds =
            self.max_token_lifetime_seconds.unwrap_or(DEFAULT_MAX_TOKEN_LIFETIME_SECONDS);
        if max_token_lifetime_seconds == 0 || max_token_lifetime_seconds > crate::token::MAX_NUMERIC_DATE {
            return Err(ConfigError::new("max_token_lifetime_seconds", "must be between 1 and 253402300799"));
        }

        let raw_registry = self.registry.unwrap_or(RawRegistry { capacity: None, max_revocations: None });
        let registry = RegistryConfig {
            capacity: raw_registry.capacity.unwrap_or(DEFAULT_REGISTRY_CAPACITY),
            max_revocations: raw_registry.max_revocations.unwrap_or(DEFAULT_MAX_REVOCATIONS),
        };
        if registry.capacity == 0 || registry.capacity > MAX_REGISTRY_CAPACITY {
            return Err(ConfigError::new(
                "registry.capacity",
                format!("must be between 1 and {MAX_REGISTRY_CAPACITY}"),
            ));
        }
        if registry.max_revocations == 0 || registry.max_revocations > MAX_REVOCATIONS {
            return Err(ConfigError::new(
                "registry.max_revocations",
                format!("must be between 1 and {MAX_REVOCATIONS}"),
            ));
        }

        let admin = match self.admin {
            None => None,
            Some(a) => {
                if !a.path_prefix.starts_with('/') || !a.path_prefix.ends_with('/') || a.path_prefix.len() < 2
                {
                    return Err(ConfigError::new(
                        "admin.path_prefix",
                        "must start and end with '/' and not be \"/\" alone",
                    ));
                }
                if a.token.len() < MIN_ADMIN_TOKEN_BYTES {
                    return Err(ConfigError::new(
                        "admin.token",
                        format!("must be at least {MIN_ADMIN_TOKEN_BYTES} bytes"),
                    ));
                }
                Some(AdminConfig { path_prefix: a.path_prefix, token: a.token })
            }
        };

        let refresh = match self.refresh {
            None => None,
            Some(r) => Some(r.validate()?),
        };

        let revocation_feed = match self.revocation_feed {
            None => None,
            Some(f) => Some(f.validate()?),
        };

        Ok(Config {
            mode,
            egress,
            revocation_feed,
            refresh,
            max_token_lifetime_seconds,
            registry,
            admin,
            generation: 0,
            providers,
            token_source,
            clock_skew_seconds,
            required_claims,
            session,
            near_expiry_warning_seconds,
            expires_in_header,
            log_accepted: self.audit.is_some_and(|a| a.log_accepted),
            realm,
        })
    }
}

/// The JOSE `typ` values access tokens carry: RFC 7519's `JWT` and RFC 9068's `at+jwt`.
/// Upper bound of `refresh.grace_seconds`.
pub const MAX_GRACE_SECONDS: u64 = 300;

pub const DEFAULT_TOKEN_TYPES: [&str; 2] = ["jwt", "at+jwt"];

/// A `typ` (or a configured token type) as compared: RFC 7515 §4.1.9 makes the
/// `application/` prefix optional and media types are case-insensitive.
pub fn normalize_token_type(typ: &str) -> String {
    let t = typ.trim().to_ascii_lowercase();
    match t.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => t,
    }
}

fn token_types(raw: Option<Vec<String>>, here: &str) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_TOKEN_TYPES.iter().map(|t| (*t).to_owned()).collect());
    };
    if raw.is_empty() {
        return Err(ConfigError::new(format!("{here}.token_types"), "list at least one token type"));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (j, t) in raw.iter().enumerate() {
        let n = normalize_token_type(t);
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::new(
                format!("{here}.token_types[{j}]"),
                "must be a media type such as \"at+jwt\"",
            ));
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// A decimal given as a JSON number or as a string holding one. Envoy's YAML loader hands
/// decimals in a `Struct` configuration to the plugin as strings ("0.2"), integers as numbers.
fn decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(f64),
        Text(String),
    }
    match Option::<NumberOrString>::deserialize(d)? {
        None => Ok(None),
        Some(NumberOrString::Number(n)) => Ok(Some(n)),
        Some(NumberOrString::Text(t)) => t
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a number"))),
    }
}

impl RawRefresh {
    fn validate(self) -> Result<RefreshConfig, ConfigError> {
        let f = |name: &str| format!("refresh.{name}");
        let timeout_ms = check_endpoint(
            "refresh",
            &self.cluster,
            &self.authority,
            &[("path", Some(&self.path))],
            self.timeout_ms,
        )?;
        let window_ratio = check_ratio("refresh", self.window_ratio)?;
        let refresh_token_source = match (self.refresh_token_header, self.refresh_token_cookie) {
            (Some(h), None) if valid_header_name(&h) => {
                TokenSource::Header { name: h.to_ascii_lowercase(), prefix: String::new() }
            }
            (None, Some(c)) if !c.is_empty() => TokenSource::Cookie { name: c },
            (None, None) => TokenSource::Header { name: "x-refresh-token".into(), prefix: String::new() },
            _ => {
                return Err(ConfigError::new(
                    "refresh",
                    "set either refresh_token_header (a header name) or refresh_token_cookie",
                ))
            }
        };
        let header = |name: &str, v: Option<String>, default: &str| -> Result<String, ConfigError> {
            let v = v.unwrap_or_else(|| default.into());
            if valid_header_name(&v) {
                Ok(v.to_ascii_lowercase())
            } else {
                Err(ConfigError::new(f(name), "is not a valid HTTP header name"))
            }
        };
        if self.client_secret.is_some() && self.client_id.is_none() {
            return Err(ConfigError::new(f("client_secret"), "needs client_id"));
        }
        let escalate_after_failures = self.escalate_after_failures.unwrap_or(3);
        if escalate_after_failures == 0 {
            return Err(ConfigError::new(f("escalate_after_failures"), "must be at least 1"));
        }
        // The old token keeps working (as the new one) this long: a bound keeps a leaked
        // token's extra life short.
        if self.grace_seconds.is_some_and(|g| g > MAX_GRACE_SECONDS) {
            return Err(ConfigError::new(f("grace_seconds"), format!("must be at most {MAX_GRACE_SECONDS}")));
        }
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
            access_token_response_header: header(
                "access_token_response_header",
                self.access_token_response_header,
                "x-new-access-token",
            )?,
            refresh_token_response_header: header(
                "refresh_token_response_header",
                self.refresh_token_response_header,
                "x-new-refresh-token",
            )?,
            grace_seconds: self.grace_seconds.unwrap_or(30).min(crate::token::MAX_NUMERIC_DATE),
            escalate_after_failures,
            refresh_expired: self.refresh_expired,
        })
    }
}

/// Checks a callout target (`cluster`, `authority`, the paths given) and returns its timeout
/// (default 1000 ms, 10..=60000).
fn check_endpoint(
    section: &str,
    cluster: &str,
    authority: &str,
    paths: &[(&str, Option<&String>)],
    timeout_ms: Option<u64>,
) -> Result<u64, ConfigError> {
    for (name, v) in [("cluster", cluster), ("authority", authority)] {
        if v.is_empty() {
            return Err(ConfigError::new(format!("{section}.{name}"), "must not be empty"));
        }
    }
    for (name, v) in paths {
        if v.is_some_and(|p| !p.starts_with('/')) {
            return Err(ConfigError::new(format!("{section}.{name}"), "must start with '/'"));
        }
    }
    let timeout_ms = timeout_ms.unwrap_or(1000);
    if !(10..=60_000).contains(&timeout_ms) {
        return Err(ConfigError::new(format!("{section}.timeout_ms"), "must be between 10 and 60000"));
    }
    Ok(timeout_ms)
}

/// A refresh window ratio: default 0.2, in (0, 1].
fn check_ratio(section: &str, ratio: Option<f64>) -> Result<f64, ConfigError> {
    let ratio = ratio.unwrap_or(0.2);
    if ratio > 0.0 && ratio <= 1.0 {
        Ok(ratio)
    } else {
        Err(ConfigError::new(format!("{section}.window_ratio"), "must be greater than 0 and at most 1"))
    }
}

/// RFC 9110 token characters, and not a pseudo-header.
fn valid_header_name(h: &str) -> bool {
    !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Config {
    pub fn provider(&self, issuer: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.issuer == issuer)
    }
}

#[cfg(test)]
mod tests;
