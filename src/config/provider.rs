//! `providers`: the issuers this filter trusts, with their keys turned into verifiers.

use serde::Deserialize;

use super::remote::{RawRemoteJwks, RemoteJwks};
use super::ConfigError;
use crate::jwks::{Alg, JwkSet, KeySet};

/// The JOSE `typ` values access tokens carry: RFC 7519's `JWT` and RFC 9068's `at+jwt`.
pub const DEFAULT_TOKEN_TYPES: [&str; 2] = ["jwt", "at+jwt"];

pub struct Provider {
    pub issuer: String,
    pub audiences: Vec<String>,
    /// Accepted JOSE `typ` values, lower-cased, without an `application/` prefix. A token of
    /// another type from the same issuer (a logout token, a DPoP proof, a SET) is refused:
    /// RFC 8725 §3.11.
    pub token_types: Vec<String>,
    pub algorithms: Vec<Alg>,
    /// The inline keys (`jwks`), always trusted; empty without them.
    pub keys: KeySet,
    /// Keys fetched from the provider's key server, on top of the inline ones.
    pub remote: Option<RemoteJwks>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    token_types: Option<Vec<String>>,
    algorithms: Vec<String>,
    #[serde(default)]
    jwks: Option<JwkSet>,
    #[serde(default)]
    remote_jwks: Option<RawRemoteJwks>,
}

/// The `providers` list of an ingress configuration: at least one, issuers unique.
pub(super) fn validate(raw: Option<Vec<RawProvider>>) -> Result<Vec<Provider>, ConfigError> {
    let raw = raw.unwrap_or_default();
    if raw.is_empty() {
        return Err(ConfigError::new("providers", "at least one provider is required"));
    }
    let mut providers: Vec<Provider> = Vec::with_capacity(raw.len());
    for (i, p) in raw.into_iter().enumerate() {
        let here = format!("providers[{i}]");
        if providers.iter().any(|q| q.issuer == p.issuer) {
            return Err(ConfigError::new(format!("{here}.issuer"), "duplicate issuer"));
        }
        providers.push(p.validate(&here)?);
    }
    Ok(providers)
}

impl RawProvider {
    fn validate(self, here: &str) -> Result<Provider, ConfigError> {
        if self.issuer.is_empty() {
            return Err(ConfigError::new(format!("{here}.issuer"), "must not be empty"));
        }
        let algorithms = algorithms(&self.algorithms, here)?;
        let remote = match self.remote_jwks {
            Some(r) => Some(r.validate(&self.issuer, &format!("{here}.remote_jwks"))?),
            None => None,
        };
        let keys = match (&self.jwks, &remote) {
            (Some(jwks), _) => keys(jwks, &algorithms, remote.is_some(), here)?,
            (None, Some(_)) => KeySet::default(),
            (None, None) => {
                return Err(ConfigError::new(here, "needs jwks (inline keys), remote_jwks, or both"))
            }
        };
        if remote.is_some() {
            no_remote_secrets(&algorithms, &keys, here)?;
        }
        let token_types = token_types(self.token_types, here)?;
        Ok(Provider { issuer: self.issuer, audiences: self.audiences, token_types, algorithms, keys, remote })
    }
}

/// The algorithm allowlist, parsed and de-duplicated in the order given.
fn algorithms(names: &[String], here: &str) -> Result<Vec<Alg>, ConfigError> {
    if names.is_empty() {
        return Err(ConfigError::new(format!("{here}.algorithms"), "list at least one algorithm"));
    }
    let mut algorithms = Vec::new();
    for (j, name) in names.iter().enumerate() {
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
    Ok(algorithms)
}

/// The key set, with every allowed algorithm backed by a key: an algorithm without one would
/// only ever refuse, which is a configuration mistake rather than a policy. With remote keys
/// too, the remote set may be the one that backs an algorithm.
fn keys(jwks: &JwkSet, algorithms: &[Alg], with_remote: bool, here: &str) -> Result<KeySet, ConfigError> {
    let keys =
        KeySet::build(jwks, algorithms, &format!("{here}.jwks")).map_err(|m| match m.split_once(": ") {
            Some((field, msg)) => ConfigError::new(field, msg),
            None => ConfigError::new(format!("{here}.jwks"), m),
        })?;
    if with_remote {
        return Ok(keys);
    }
    if let Some(alg) = algorithms.iter().find(|alg| !keys.entries.iter().any(|e| e.alg == **alg)) {
        return Err(ConfigError::new(
            format!("{here}.algorithms"),
            format!("{} has no matching key in jwks", alg.as_str()),
        ));
    }
    Ok(keys)
}

/// A published key set is public: an HMAC secret in it would let anyone sign tokens, so
/// remote sets never yield HS* verifiers, and an HS* algorithm needs an inline key.
fn no_remote_secrets(algorithms: &[Alg], keys: &KeySet, here: &str) -> Result<(), ConfigError> {
    let hmac = [Alg::HS256, Alg::HS384, Alg::HS512];
    match algorithms.iter().find(|a| hmac.contains(a) && !keys.entries.iter().any(|e| e.alg == **a)) {
        Some(alg) => Err(ConfigError::new(
            format!("{here}.algorithms"),
            format!("{} needs an inline key in jwks: remote key sets never carry HMAC secrets", alg.as_str()),
        )),
        None => Ok(()),
    }
}

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
