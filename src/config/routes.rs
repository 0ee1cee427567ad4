//! Route policy: `routes`, `claims_to_headers`, `forward_payload_header`, `report_only` and
//! `resource_metadata`, validated and compiled once here so that a request only compares
//! strings (`crate::route` does the matching).

use serde::Deserialize;
use serde_json::Value;

use super::check::header_name;
use super::{ConfigError, TokenSource};

/// Most rules a listener may list: matching is a linear scan on every request.
pub const MAX_ROUTES: usize = 256;
/// Most `claims_to_headers` entries.
pub const MAX_CLAIM_HEADERS: usize = 32;
/// Where RFC 9728 puts the metadata document, before the resource's own path.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// Headers a claim must never be written to: the request's framing, its routing, and the
/// filter's own credentials.
const RESERVED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "cookie",
    "authorization",
    crate::admin::ADMIN_TOKEN_HEADER,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Required,
    Optional,
    Public,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
}

/// A claim named by a dotted path into nested objects (`realm_access.roles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(pub Vec<String>);

#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequirement {
    pub claim: ClaimPath,
    /// The claim must equal one of these (or, a list claim, contain one).
    pub values: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub path: PathMatch,
    /// Empty: any method.
    pub methods: Vec<String>,
    pub policy: Policy,
    pub required_scopes: Vec<String>,
    pub required_claims: Vec<ClaimRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    pub claim: ClaimPath,
    /// Lower-cased.
    pub header: String,
}

/// RFC 9728 protected resource metadata, rendered once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceMetadata {
    /// The local path the document is answered at.
    pub path: String,
    /// Its URL, for the `resource_metadata` challenge attribute.
    pub url: String,
    /// The JSON document.
    pub document: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoutesConfig {
    pub rules: Vec<Rule>,
    pub claim_headers: Vec<ClaimHeader>,
    pub payload_header: Option<String>,
    pub report_only: bool,
    pub resource_metadata: Option<ResourceMetadata>,
    /// Every configured upstream header: removed from each request before anything else.
    pub managed_headers: Vec<String>,
    /// Their removal, built once.
    pub cleared: crate::header::Edits,
    /// Some rule needs the token's claims (scopes or claims): the hot path keeps them.
    pub needs_claims: bool,
}

impl RoutesConfig {
    /// Whether requests must be matched against rules or the metadata path at all.
    pub fn inspects_requests(&self) -> bool {
        !self.rules.is_empty() || self.resource_metadata.is_some()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(default)]
    path_prefix: Option<String>,
    #[serde(default)]
    path_exact: Option<String>,
    #[serde(default)]
    methods: Option<Vec<String>>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    required_scopes: Option<Vec<String>>,
    #[serde(default)]
    required_claims: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaimHeader {
    claim: String,
    header: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResourceMetadata {
    resource: String,
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default)]
    scopes_supported: Option<Vec<String>>,
}

/// The section's keys as they came from the top level of the configuration.
pub(super) struct RawRoutes {
    pub routes: Option<Vec<RawRule>>,
    pub claims_to_headers: Option<Vec<RawClaimHeader>>,
    pub forward_payload_header: Option<String>,
    pub report_only: Option<bool>,
    pub resource_metadata: Option<RawResourceMetadata>,
}

pub(super) fn validate(raw: RawRoutes, source: &TokenSource) -> Result<RoutesConfig, ConfigError> {
    let raw_rules = raw.routes.unwrap_or_default();
    if raw_rules.len() > MAX_ROUTES {
        return Err(ConfigError::new("routes", format!("at most {MAX_ROUTES} rules")));
    }
    let rules = raw_rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.validate(&format!("routes[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let (claim_headers, payload_header, managed_headers) =
        upstream_headers(raw.claims_to_headers.unwrap_or_default(), raw.forward_payload_header, source)?;
    let resource_metadata = raw.resource_metadata.map(|m| m.validate(source)).transpose()?;
    let cleared = crate::header::Edits::new(
        managed_headers.iter().map(|h| crate::header::HeaderEdit::Set(h.clone(), None)).collect(),
    );
    let needs_claims = rules.iter().any(|r| !r.required_scopes.is_empty() || !r.required_claims.is_empty());
    Ok(RoutesConfig {
        rules,
        claim_headers,
        payload_header,
        report_only: raw.report_only.unwrap_or(false),
        resource_metadata,
        managed_headers,
        cleared,
        needs_claims,
    })
}

impl RawRule {
    fn validate(self, field: &str) -> Result<Rule, ConfigError> {
        let path = match (self.path_prefix, self.path_exact) {
            (Some(p), None) => PathMatch::Prefix(rule_path(&format!("{field}.path_prefix"), p)?),
            (None, Some(p)) => PathMatch::Exact(rule_path(&format!("{field}.path_exact"), p)?),
            _ => {
                return Err(ConfigError::new(field, "set exactly one of \"path_prefix\" and \"path_exact\""))
            }
        };
        let methods = match self.methods {
            None => Vec::new(),
            Some(m) if m.is_empty() => {
                return Err(ConfigError::new(
                    format!("{field}.methods"),
                    "must not be empty (omit it for any)",
                ))
            }
            Some(m) => m
                .into_iter()
                .map(|name| method(&format!("{field}.methods"), name))
                .collect::<Result<_, _>>()?,
        };
        let policy = match self.policy.as_deref() {
            None | Some("required") => Policy::Required,
            Some("optional") => Policy::Optional,
            Some("public") => Policy::Public,
            Some(other) => {
                return Err(ConfigError::new(
                    format!("{field}.policy"),
                    format!("unknown policy {other:?} (required, optional or public)"),
                ))
            }
        };
        let required_scopes = scopes(&format!("{field}.required_scopes"), self.required_scopes)?;
        let required_claims = requirements(&format!("{field}.required_claims"), self.required_claims)?;
        // A public rule reads no token and an optional one may have none: a requirement there
        // would look enforced and never be.
        if policy != Policy::Required && (!required_scopes.is_empty() || !required_claims.is_empty()) {
            return Err(ConfigError::new(
                format!("{field}.policy"),
                "required_scopes and required_claims need policy \"required\"",
            ));
        }
        Ok(Rule { path, methods, policy, required_scopes, required_claims })
    }
}

/// A rule's path: absolute and itself in normal form (a rule no normal path can match is
/// a typo, and one for a non-normal path would be matched by nothing public anyway).
fn rule_path(field: &str, p: String) -> Result<String, ConfigError> {
    if !p.starts_with('/') {
        return Err(ConfigError::new(field, "must start with '/'"));
    }
    if p.contains(['?', '#']) || !crate::route::is_normal(&p) {
        return Err(ConfigError::new(
            field,
            "must be a plain path: no query, dot segments, '//', '\\', or escapes of '/', '\\', '%', ';' or unreserved characters",
        ));
    }
    Ok(p)
}

/// Methods are case-sensitive: a lower-case `get` would silently never match, and a
/// requirement that never matches is a hole.
fn method(field: &str, name: String) -> Result<String, ConfigError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_') {
        return Err(ConfigError::new(field, format!("{name:?} is not an upper-case HTTP method")));
    }
    Ok(name)
}

/// Scopes as RFC 6749 §3.3 defines them; they are also echoed in the quoted `scope`
/// attribute of the 403 challenge, so `"` and `\` are out.
fn scopes(field: &str, raw: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let list = raw.unwrap_or_default();
    for s in &list {
        if s.is_empty() || !s.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)) {
            return Err(ConfigError::new(field, format!("{s:?} is not a scope (RFC 6749 scope-token)")));
        }
    }
    Ok(list)
}

fn requirements(
    field: &str,
    raw: Option<serde_json::Map<String, Value>>,
) -> Result<Vec<ClaimRequirement>, ConfigError> {
    let mut out = Vec::new();
    for (name, values) in raw.unwrap_or_default() {
        let f = format!("{field}.{name}");
        let claim = claim_path(&f, &name)?;
        let values = match values {
            Value::Array(v) if !v.is_empty() => v,
            _ => return Err(ConfigError::new(f, "must be a non-empty list of accepted values")),
        };
        if !values.iter().all(|v| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))) {
            return Err(ConfigError::new(f, "values must be strings, numbers or booleans"));
        }
        out.push(ClaimRequirement { claim, values });
    }
    Ok(out)
}

fn claim_path(field: &str, name: &str) -> Result<ClaimPath, ConfigError> {
    let parts: Vec<String> = name.split('.').map(str::to_owned).collect();
    if parts.iter().any(String::is_empty) {
        return Err(ConfigError::new(field, "must be a claim name or a dotted path of them"));
    }
    Ok(ClaimPath(parts))
}

type UpstreamHeaders = (Vec<ClaimHeader>, Option<String>, Vec<String>);

fn upstream_headers(
    raw: Vec<RawClaimHeader>,
    payload: Option<String>,
    source: &TokenSource,
) -> Result<UpstreamHeaders, ConfigError> {
    if raw.len() > MAX_CLAIM_HEADERS {
        return Err(ConfigError::new("claims_to_headers", format!("at most {MAX_CLAIM_HEADERS} entries")));
    }
    let mut managed: Vec<String> = Vec::new();
    let mut take = |field: &str, name: &str| -> Result<String, ConfigError> {
        let h = header_name(field, name)?;
        let credential = matches!(source, TokenSource::Header { name, .. } if *name == h);
        if credential || RESERVED_HEADERS.contains(&h.as_str()) {
            return Err(ConfigError::new(field, format!("{h:?} is reserved")));
        }
        if managed.contains(&h) {
            return Err(ConfigError::new(field, format!("{h:?} is configured twice")));
        }
        managed.push(h.clone());
        Ok(h)
    };
    let mut claim_headers = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let header = take(&format!("claims_to_headers[{i}].header"), &r.header)?;
        let claim = claim_path(&format!("claims_to_headers[{i}].claim"), &r.claim)?;
        claim_headers.push(ClaimHeader { claim, header });
    }
    let payload_header = payload.map(|p| take("forward_payload_header", &p)).transpose()?;
    Ok((claim_headers, payload_header, managed))
}

impl RawResourceMetadata {
    fn validate(self, source: &TokenSource) -> Result<ResourceMetadata, ConfigError> {
        let (origin, path) = split_url("resource_metadata.resource", &self.resource)?;
        for (i, s) in self.authorization_servers.iter().enumerate() {
            split_url(&format!("resource_metadata.authorization_servers[{i}]"), s)?;
        }
        let scopes = scopes("resource_metadata.scopes_supported", self.scopes_supported)?;
        // RFC 9728 §3.1: the well-known segment goes between the host and the resource's path.
        let path = format!("{WELL_KNOWN}{}", path.trim_end_matches('/'));
        let methods: &[&str] = match source {
            TokenSource::Header { name, prefix }
                if name == "authorization" && prefix.eq_ignore_ascii_case("bearer ") =>
            {
                &["header"]
            }
            _ => &[],
        };
        let mut doc = serde_json::json!({
            "resource": self.resource,
            "authorization_servers": self.authorization_servers,
            "bearer_methods_supported": methods,
        });
        if let (Some(o), false) = (doc.as_object_mut(), scopes.is_empty()) {
            o.insert("scopes_supported".into(), serde_json::json!(scopes));
        }
        Ok(ResourceMetadata { url: format!("{origin}{path}"), path, document: doc.to_string() })
    }
}

/// An `https` (or `http`) URL without query or fragment, whose characters can stand in a
/// quoted challenge attribute: its origin and its path.
fn split_url<'u>(field: &str, url: &'u str) -> Result<(&'u str, &'u str), ConfigError> {
    let bad = || ConfigError::new(field, "must be an http(s) URL without query, fragment, '\"' or '\\'");
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or_else(bad)?;
    if url.contains(['?', '#', '"', '\\']) || !url.bytes().all(|b| (0x21..0x7F).contains(&b)) {
        return Err(bad());
    }
    let host_end = rest.find('/').unwrap_or(rest.len());
    if host_end == 0 {
        return Err(bad());
    }
    let split = url.len() - rest.len() + host_end;
    Ok((url.get(..split).ok_or_else(bad)?, url.get(split..).ok_or_else(bad)?))
}

#[cfg(test)]
mod tests;
