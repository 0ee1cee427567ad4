//! `revocation_store`: where the fleet keeps its revocations, so that every replica refuses
//! what any of them (or any tool) revoked. etcd, through its v3 gRPC API, is the one store.

use serde::Deserialize;

use super::check::bounded;
use super::ConfigError;

/// Upper bound of `revocation_store.etcd.startup_wait_ms`.
pub const MAX_STARTUP_WAIT_MS: u64 = 60_000;
/// How often the process checks that etcd still answers when nothing changes: etcd's own
/// progress notifications come every ten minutes, far too rarely to notice an outage.
pub const CONTACT_INTERVAL_SECONDS: u64 = 2;
/// The smallest `max_staleness_seconds`: a few contact intervals, so one slow answer does not
/// refuse traffic.
pub const MIN_STALENESS_SECONDS: u64 = 3 * CONTACT_INTERVAL_SECONDS;
const MAX_PREFIX_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// The Envoy cluster to etcd's client port; it must speak HTTP/2.
    pub cluster: String,
    /// `:authority` of the gRPC calls; `None` lets Envoy use the cluster name.
    pub authority: Option<String>,
    pub prefix: String,
    pub timeout_ms: u64,
    /// etcd authentication: (username, password).
    pub credentials: Option<(String, String)>,
    /// Refuse requests (503) once etcd has not answered for this long.
    pub max_staleness_seconds: Option<u64>,
    /// How long a request on a fresh process may wait for the first full list before a 503.
    pub startup_wait_ms: u64,
    /// Which store this is (cluster, authority and prefix, hashed): the process keeps its
    /// follow state per store, so a configuration naming another one lists it afresh.
    pub id: u64,
}

impl EtcdConfig {
    pub fn prefix_bytes(&self) -> &[u8] {
        self.prefix.as_bytes()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    etcd: RawEtcd,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcd {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    max_staleness_seconds: Option<u64>,
    #[serde(default)]
    startup_wait_ms: Option<u64>,
}

const SECTION: &str = "revocation_store.etcd";

fn field(name: &str) -> String {
    format!("{SECTION}.{name}")
}

impl RawStore {
    pub(super) fn validate(self) -> Result<EtcdConfig, ConfigError> {
        let e = self.etcd;
        if e.cluster.is_empty() {
            return Err(ConfigError::new(field("cluster"), "must not be empty"));
        }
        if e.authority.as_ref().is_some_and(|a| a.is_empty()) {
            return Err(ConfigError::new(field("authority"), "must not be empty when given"));
        }
        let prefix = e.prefix.unwrap_or_else(|| "/tokenguard/".into());
        // A prefix not ending in '/' would also cover its siblings' keys ("/tg" and "/tg2/").
        if prefix.is_empty() || !prefix.ends_with('/') || prefix.len() > MAX_PREFIX_BYTES {
            return Err(ConfigError::new(
                field("prefix"),
                format!("must end with '/' and be at most {MAX_PREFIX_BYTES} bytes"),
            ));
        }
        let credentials = match (e.username, e.password) {
            (Some(u), Some(p)) if !u.is_empty() => Some((u, p)),
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::new(field("password"), "needed with username")),
            _ => return Err(ConfigError::new(field("username"), "needed (and not empty) with password")),
        };
        let timeout_ms = bounded(&field("timeout_ms"), e.timeout_ms.unwrap_or(1000), 10, 60_000)?;
        // Silence is noticed a contact interval plus a call deadline after it starts: a
        // smaller limit would refuse traffic while etcd is merely quiet.
        let min_staleness =
            MIN_STALENESS_SECONDS.max(CONTACT_INTERVAL_SECONDS + timeout_ms.div_ceil(1000) + 1);
        let max_staleness_seconds = e
            .max_staleness_seconds
            .map(|s| bounded(&field("max_staleness_seconds"), s, min_staleness, 86_400))
            .transpose()?;
        let startup_wait_ms =
            bounded(&field("startup_wait_ms"), e.startup_wait_ms.unwrap_or(3000), 0, MAX_STARTUP_WAIT_MS)?;
        let named = format!("{}\n{}\n{}", e.cluster, e.authority.as_deref().unwrap_or_default(), prefix);
        let digest = hmac_sha256::Hash::hash(named.as_bytes());
        let id = digest.iter().take(8).fold(0u64, |id, b| (id << 8) | u64::from(*b));
        Ok(EtcdConfig {
            cluster: e.cluster,
            authority: e.authority,
            id,
            prefix,
            timeout_ms,
            credentials,
            max_staleness_seconds,
            startup_wait_ms,
        })
    }
}
