//! `registry`: the sizes of the process-wide token registry in Envoy's shared data.

use serde::Deserialize;

use super::check::bounded;
use super::ConfigError;

pub const DEFAULT_REGISTRY_CAPACITY: usize = 10_000;
pub const DEFAULT_MAX_REVOCATIONS: usize = 10_000;
/// Registry sizes beyond these would make one Envoy hold gigabytes of shared data.
pub const MAX_REGISTRY_CAPACITY: usize = 1_000_000;
pub const MAX_REVOCATIONS: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    pub capacity: usize,
    pub max_revocations: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistry {
    #[serde(default)]
    capacity: Option<usize>,
    #[serde(default)]
    max_revocations: Option<usize>,
}

/// `registry`; absent means the defaults.
pub(super) fn validate(raw: Option<RawRegistry>) -> Result<RegistryConfig, ConfigError> {
    let raw = raw.unwrap_or(RawRegistry { capacity: None, max_revocations: None });
    Ok(RegistryConfig {
        capacity: size("registry.capacity", raw.capacity, DEFAULT_REGISTRY_CAPACITY, MAX_REGISTRY_CAPACITY)?,
        max_revocations: size(
            "registry.max_revocations",
            raw.max_revocations,
            DEFAULT_MAX_REVOCATIONS,
            MAX_REVOCATIONS,
        )?,
    })
}

fn size(field: &str, v: Option<usize>, default: usize, max: usize) -> Result<usize, ConfigError> {
    let v = v.unwrap_or(default);
    // `usize` is at most 64 bits on every target, so the round trip through u64 is exact.
    bounded(field, v as u64, 1, max as u64)?;
    Ok(v)
}
