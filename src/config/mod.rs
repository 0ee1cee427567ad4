//! The plugin configuration: the public interface mesh teams write.
//!
//! Parsing is strict. Unknown keys and bad values are refused at load time with the exact
//! field path (`providers[0].jwks.keys[1].n: ...`), because a silently ignored typo in a
//! security filter is an outage or a hole found in production. For the same reason a value
//! out of its range is refused, never clamped, and egress mode refuses the keys only
//! ingress mode reads.
//!
//! Each section parses and validates its own part and owns its public type; this module
//! ties them together. Shared checks live in `check`.

mod admin;
mod check;
mod egress;
mod provider;
mod refresh;
mod registry;
mod remote;
pub mod routes;
mod session;
mod source;
mod store;
mod time;

use serde::Deserialize;
use std::fmt;

pub use admin::{AdminConfig, MIN_ADMIN_TOKEN_BYTES};
pub use egress::{EgressConfig, EgressGrant, MAX_RETRY_SECONDS, MAX_WAIT_MS, MIN_RETRY_SECONDS};
pub use provider::{normalize_token_type, Provider, DEFAULT_TOKEN_TYPES};
pub use refresh::{RefreshConfig, MAX_GRACE_SECONDS};
pub use registry::{
    RegistryConfig, DEFAULT_MAX_REVOCATIONS, DEFAULT_REGISTRY_CAPACITY, MAX_REGISTRY_CAPACITY,
    MAX_REVOCATIONS,
};
pub use remote::{HttpUrl, RemoteJwks, MAX_CACHE_SECONDS, MIN_CACHE_SECONDS};
pub use session::{SessionPolicy, DEFAULT_START_CLAIM};
pub use source::{to_json, TokenSource};
pub use store::{EtcdConfig, CONTACT_INTERVAL_SECONDS, MAX_STARTUP_WAIT_MS, MIN_STALENESS_SECONDS};
pub use time::{
    DEFAULT_CLOCK_SKEW_SECONDS, DEFAULT_EXPIRES_IN_HEADER, DEFAULT_MAX_TOKEN_LIFETIME_SECONDS,
    DEFAULT_NEAR_EXPIRY_WARNING_SECONDS, MAX_CLOCK_SKEW_SECONDS,
};

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

pub const DEFAULT_REALM: &str = "tokenguard";

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
    /// `revocation_store.etcd`: the fleet's revocations.
    pub revocation_store: Option<EtcdConfig>,
    /// Route rules, claims for the upstream, report-only, RFC 9728 metadata.
    pub routes: routes::RoutesConfig,
    /// Identifies this configuration (a hash of it). A registry record verified under another
    /// configuration is verified again.
    pub generation: u32,
    /// This worker's count of remote key removals (see `keys::WorkerKeys`): mixed into
    /// `cache_generation`, so a token verified before a key was withdrawn is verified again.
    /// Atomic only so that a `Config` can live in a `static` (fuzz, bench); each worker's VM
    /// has its own.
    pub key_epoch: std::sync::atomic::AtomicU32,
}

/// Ingress validates incoming tokens; egress keeps the service's own token fresh on its
/// outgoing requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ingress,
    Egress,
}

impl Config {
    /// How long a revocation is kept: until no token it covers can still be valid.
    pub fn revocation_retention_seconds(&self) -> u64 {
        let session = self.session.as_ref().map_or(0, |s| s.max_lifetime_seconds);
        self.max_token_lifetime_seconds.max(session).saturating_add(self.clock_skew_seconds)
    }

    /// What a cached verification (registry record, hot path, handoff) must have been made
    /// under to be trusted: this configuration and these remote key removals.
    pub fn cache_generation(&self) -> u32 {
        let epoch = self.key_epoch.load(std::sync::atomic::Ordering::Relaxed);
        self.generation ^ epoch.wrapping_mul(0x9E37_79B9)
    }

    /// Some provider fetches its keys (`remote_jwks`).
    pub fn has_remote_keys(&self) -> bool {
        self.providers.iter().any(|p| p.remote.is_some())
    }

    /// The start of every challenge this listener sends.
    pub fn challenge(&self) -> crate::reject::Challenge<'_> {
        crate::reject::Challenge {
            realm: &self.realm,
            resource_metadata: self.routes.resource_metadata.as_ref().map(|m| m.url.as_str()),
        }
    }

    pub fn provider(&self, issuer: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.issuer == issuer)
    }

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    egress: Option<egress::RawEgress>,
    #[serde(default)]
    providers: Option<Vec<provider::RawProvider>>,
    #[serde(default)]
    token_source: Option<source::RawTokenSource>,
    #[serde(default)]
    clock_skew_seconds: Option<u64>,
    #[serde(default)]
    required_claims: Option<Vec<String>>,
    #[serde(default)]
    session: Option<session::RawSession>,
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
    registry: Option<registry::RawRegistry>,
    #[serde(default)]
    admin: Option<admin::RawAdmin>,
    #[serde(default)]
    refresh: Option<refresh::RawRefresh>,
    #[serde(default)]
    revocation_store: Option<store::RawStore>,
    /// Replaced by `revocation_store`: refused with a pointer to it, not as an unknown key.
    #[serde(default)]
    revocation_feed: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    routes: Option<Vec<routes::RawRule>>,
    #[serde(default)]
    claims_to_headers: Option<Vec<routes::RawClaimHeader>>,
    #[serde(default)]
    forward_payload_header: Option<String>,
    #[serde(default)]
    report_only: Option<bool>,
    #[serde(default)]
    resource_metadata: Option<routes::RawResourceMetadata>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default)]
    log_accepted: bool,
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let mode = mode(self.mode.as_deref())?;
        if self.revocation_feed.is_some() {
            return Err(ConfigError::new(
                "revocation_feed",
                "was replaced by revocation_store.etcd (see docs/configuration.md)",
            ));
        }
        if mode == Mode::Egress {
            refuse_ingress_keys(&self.ingress_keys())?;
        }
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
        // In egress mode every section below is absent, so each yields its default.
        let providers = match mode {
            Mode::Ingress => provider::validate(self.providers)?,
            Mode::Egress => Vec::new(),
        };
        let token_source = source::validate(self.token_source)?;
        let routes = routes::validate(
            routes::RawRoutes {
                routes: self.routes,
                claims_to_headers: self.claims_to_headers,
                forward_payload_header: self.forward_payload_header,
                report_only: self.report_only,
                resource_metadata: self.resource_metadata,
            },
            &token_source,
        )?;
        let time = time::validate(time::RawTime {
            clock_skew_seconds: self.clock_skew_seconds,
            required_claims: self.required_claims,
            near_expiry_warning_seconds: self.near_expiry_warning_seconds,
            expires_in_header: self.expires_in_header,
            max_token_lifetime_seconds: self.max_token_lifetime_seconds,
        })?;
        Ok(Config {
            mode,
            egress,
            providers,
            token_source,
            clock_skew_seconds: time.clock_skew_seconds,
            required_claims: time.required_claims,
            session: self.session.map(session::RawSession::validate).transpose()?,
            near_expiry_warning_seconds: time.near_expiry_warning_seconds,
            expires_in_header: time.expires_in_header,
            log_accepted: self.audit.is_some_and(|a| a.log_accepted),
            realm: realm(self.realm)?,
            max_token_lifetime_seconds: time.max_token_lifetime_seconds,
            registry: registry::validate(self.registry)?,
            admin: self.admin.map(admin::RawAdmin::validate).transpose()?,
            refresh: self.refresh.map(refresh::RawRefresh::validate).transpose()?,
            revocation_store: self.revocation_store.map(store::RawStore::validate).transpose()?,
            routes,
            generation: 0,
            key_epoch: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// Every key but `mode` and `egress` concerns incoming tokens: which of them are set.
    fn ingress_keys(&self) -> [(&'static str, bool); 19] {
        [
            ("providers", self.providers.is_some()),
            ("token_source", self.token_source.is_some()),
            ("clock_skew_seconds", self.clock_skew_seconds.is_some()),
            ("required_claims", self.required_claims.is_some()),
            ("session", self.session.is_some()),
            ("near_expiry_warning_seconds", self.near_expiry_warning_seconds.is_some()),
            ("expires_in_header", self.expires_in_header.is_some()),
            ("audit", self.audit.is_some()),
            ("realm", self.realm.is_some()),
            ("max_token_lifetime_seconds", self.max_token_lifetime_seconds.is_some()),
            ("registry", self.registry.is_some()),
            ("admin", self.admin.is_some()),
            ("refresh", self.refresh.is_some()),
            ("revocation_store", self.revocation_store.is_some()),
            ("routes", self.routes.is_some()),
            ("claims_to_headers", self.claims_to_headers.is_some()),
            ("forward_payload_header", self.forward_payload_header.is_some()),
            ("report_only", self.report_only.is_some()),
            ("resource_metadata", self.resource_metadata.is_some()),
        ]
    }
}

fn mode(raw: Option<&str>) -> Result<Mode, ConfigError> {
    match raw {
        None | Some("ingress") => Ok(Mode::Ingress),
        Some("egress") => Ok(Mode::Egress),
        Some(other) => Err(ConfigError::new("mode", format!("unknown mode {other:?} (ingress or egress)"))),
    }
}

/// Egress mode reads none of the ingress keys; one set there would be silently ignored,
/// so it is refused.
fn refuse_ingress_keys(keys: &[(&'static str, bool)]) -> Result<(), ConfigError> {
    match keys.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(ConfigError::new(*key, "only in ingress mode")),
        None => Ok(()),
    }
}

/// The `realm` of `WWW-Authenticate` challenges: a quoted-string without anything to escape.
fn realm(raw: Option<String>) -> Result<String, ConfigError> {
    let realm = raw.unwrap_or_else(|| DEFAULT_REALM.into());
    if realm.is_empty() || !realm.chars().all(|c| matches!(c, ' ' | '!' | '#'..='[' | ']'..='~')) {
        return Err(ConfigError::new("realm", "must be non-empty printable ASCII without '\"' or '\\'"));
    }
    Ok(realm)
}

#[cfg(test)]
mod tests;
