//! `token_source` (where the token is read), and turning the plugin configuration bytes
//! into JSON.
//!
//! Envoy hands a plugin the `configuration` Any's payload: for a `StringValue` the string
//! itself (what Istio's WasmPlugin and Envoy Gateway send), for any other message its
//! protobuf encoding. Mesh teams writing plain YAML get a `google.protobuf.Struct`, so both
//! forms are accepted and converge on one JSON value.

use prost::Message;
use prost_types::value::Kind;
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use super::check::header_name;
use super::ConfigError;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenSource {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
}

/// `token_source`; absent means `authorization: Bearer ...`.
pub(super) fn validate(raw: Option<RawTokenSource>) -> Result<TokenSource, ConfigError> {
    match raw {
        None => Ok(TokenSource::Header { name: "authorization".into(), prefix: "Bearer ".into() }),
        Some(RawTokenSource { header: Some(h), prefix, cookie: None }) => {
            if h.is_empty() {
                return Err(ConfigError::new("token_source.header", "must not be empty"));
            }
            Ok(TokenSource::Header {
                name: header_name("token_source.header", &h)?,
                prefix: prefix.unwrap_or_else(|| "Bearer ".into()),
            })
        }
        Some(RawTokenSource { header: None, prefix: None, cookie: Some(c) }) => {
            if c.is_empty() {
                return Err(ConfigError::new("token_source.cookie", "must not be empty"));
            }
            Ok(TokenSource::Cookie { name: c })
        }
        Some(_) => Err(ConfigError::new(
            "token_source",
            "set either \"header\" (with an optional \"prefix\") or \"cookie\"",
        )),
    }
}

/// JSON text is recognised by its first non-blank byte. A protobuf `Struct` cannot start
/// with `{`: its first byte is a field tag, 0x0a for `fields`.
pub fn to_json(bytes: &[u8]) -> Result<Value, ConfigError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => Err(ConfigError::new("", "plugin configuration is empty")),
        Some(b'{') => serde_json::from_slice(bytes)
            .map_err(|e| ConfigError::new("", format!("configuration is not valid JSON: {e}"))),
        Some(_) => {
            let s = prost_types::Struct::decode(bytes).map_err(|e| {
                ConfigError::new(
                    "",
                    format!("configuration is neither JSON text nor a google.protobuf.Struct: {e}"),
                )
            })?;
            struct_to_json(s)
        }
    }
}

fn struct_to_json(s: prost_types::Struct) -> Result<Value, ConfigError> {
    let mut map = Map::new();
    for (k, v) in s.fields {
        map.insert(k, value_to_json(v)?);
    }
    Ok(Value::Object(map))
}

fn value_to_json(v: prost_types::Value) -> Result<Value, ConfigError> {
    Ok(match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::NumberValue(n)) => number(n)?,
        Some(Kind::StructValue(s)) => struct_to_json(s)?,
        Some(Kind::ListValue(l)) => {
            Value::Array(l.values.into_iter().map(value_to_json).collect::<Result<_, _>>()?)
        }
    })
}

/// Struct numbers are doubles; YAML `30` must still reach a `u64` field, so whole numbers
/// in the exactly-representable range become JSON integers.
fn number(n: f64) -> Result<Value, ConfigError> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.is_finite() && n.fract() == 0.0 && n.abs() <= EXACT {
        #[allow(clippy::cast_possible_truncation)]
        let i = n as i64;
        return Ok(Value::Number(Number::from(i)));
    }
    Number::from_f64(n)
        .map(Value::Number)
        .ok_or_else(|| ConfigError::new("", "configuration holds a non-finite number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::{ListValue, Struct, Value as PValue};

    fn s(fields: Vec<(&str, Kind)>) -> Struct {
        Struct {
            fields: fields.into_iter().map(|(k, v)| (k.to_string(), PValue { kind: Some(v) })).collect(),
        }
    }

    #[test]
    fn json_text_is_parsed() {
        assert_eq!(to_json(b"  {\"a\": 1}").unwrap(), serde_json::json!({"a": 1}));
    }

    #[test]
    fn struct_bytes_become_json_with_integers() {
        let inner = s(vec![("header", Kind::StringValue("authorization".into()))]);
        let msg = s(vec![
            ("clock_skew_seconds", Kind::NumberValue(30.0)),
            ("ratio", Kind::NumberValue(0.2)),
            ("flag", Kind::BoolValue(true)),
            ("token_source", Kind::StructValue(inner)),
            (
                "list",
                Kind::ListValue(ListValue {
                    values: vec![PValue { kind: Some(Kind::StringValue("exp".into())) }],
                }),
            ),
        ]);
        let v = to_json(&msg.encode_to_vec()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"clock_skew_seconds": 30, "ratio": 0.2, "flag": true,
                               "token_source": {"header": "authorization"}, "list": ["exp"]})
        );
        assert!(v["clock_skew_seconds"].is_u64());
    }

    #[test]
    fn empty_and_garbage_are_refused() {
        assert_eq!(to_json(b"").unwrap_err().message, "plugin configuration is empty");
        assert!(to_json(b"{not json").unwrap_err().message.starts_with("configuration is not valid JSON"));
        assert!(to_json(&[0xff, 0xff, 0xff]).unwrap_err().message.contains("neither JSON"));
    }
}
