//! Checks more than one section needs, written once so that the same kind of value is
//! refused the same way (and with the same words) wherever it appears.

use serde::Deserialize;

use super::ConfigError;

/// RFC 9110 token characters, which also rules out pseudo-headers (`:` is not one).
pub fn valid_header_name(h: &str) -> bool {
    !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A configured header name, lower-cased as Envoy hands header maps to the plugin.
pub fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    if valid_header_name(name) {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(ConfigError::new(field, "is not a valid HTTP header name"))
    }
}

/// An integer that must lie in `min..=max`. Out-of-range values are refused, never clamped:
/// a clamped value is one the operator did not write and will not look for.
pub fn bounded(field: &str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(field, format!("must be between {min} and {max}")))
    }
}

/// A callout target: `section.cluster`, `section.authority` and the given paths, and its
/// timeout, which is returned (default 1000 ms, 10..=60000).
pub fn check_endpoint(
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
    bounded(&format!("{section}.timeout_ms"), timeout_ms.unwrap_or(1000), 10, 60_000)
}

/// A refresh window ratio: default 0.2, in (0, 1].
pub fn check_ratio(section: &str, ratio: Option<f64>) -> Result<f64, ConfigError> {
    let ratio = ratio.unwrap_or(0.2);
    if ratio > 0.0 && ratio <= 1.0 {
        Ok(ratio)
    } else {
        Err(ConfigError::new(format!("{section}.window_ratio"), "must be greater than 0 and at most 1"))
    }
}

/// Client authentication to a token endpoint: a secret alone would authenticate no one.
pub fn check_client(section: &str, id: Option<&String>, secret: Option<&String>) -> Result<(), ConfigError> {
    if secret.is_some() && id.is_none() {
        return Err(ConfigError::new(format!("{section}.client_secret"), "needs client_id"));
    }
    Ok(())
}

/// `escalate_after_failures`: default 3; 0 would escalate before anything failed.
pub fn escalate_after_failures(section: &str, v: Option<u32>) -> Result<u32, ConfigError> {
    let v = v.unwrap_or(3);
    if v == 0 {
        return Err(ConfigError::new(format!("{section}.escalate_after_failures"), "must be at least 1"));
    }
    Ok(v)
}

/// A decimal given as a JSON number or as a string holding one. Envoy's YAML loader hands
/// decimals in a `Struct` configuration to the plugin as strings ("0.2"), integers as numbers.
pub fn decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_refuses_outside_and_names_the_range() {
        assert_eq!(bounded("a.b", 5, 1, 60), Ok(5));
        assert_eq!(bounded("a.b", 1, 1, 60), Ok(1));
        assert_eq!(bounded("a.b", 60, 1, 60), Ok(60));
        let e = bounded("a.b", 61, 1, 60).unwrap_err();
        assert_eq!(e.to_string(), "a.b: must be between 1 and 60");
        assert_eq!(bounded("a.b", 0, 1, 60).unwrap_err().field, "a.b");
    }

    #[test]
    fn header_names_are_tokens_and_lower_cased() {
        assert_eq!(header_name("h", "X-Token").as_deref(), Ok("x-token"));
        for bad in ["", "bad header", ":authority", "a\u{e9}", "a:b"] {
            assert_eq!(
                header_name("h", bad).unwrap_err().message,
                "is not a valid HTTP header name",
                "{bad:?}"
            );
        }
    }
}
