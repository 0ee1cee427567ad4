//! What the upstream learns about the caller: the configured claims of the verified token,
//! each in its header, and the token's payload. Incoming copies of every configured header
//! are removed on every forwarded request, so a client can never forge one.

use serde_json::{Map, Value};

use crate::config::Config;
use crate::header::{Edits, HeaderEdit};
use crate::route::claim_at;
use crate::verdict::Verdict;

/// Removes every configured header: a request forwarded without a verified token.
pub fn cleared(cfg: &Config) -> Edits {
    cfg.routes.cleared.clone()
}

/// A request forwarded without a verified token (public route, optional route without one,
/// report-only): nothing but the removals.
pub fn forward_unverified(cfg: &Config) -> Verdict {
    Verdict::Forward { expires_in: None, swap: None, headers: cleared(cfg) }
}

/// The edits for a request going on with `token` (verified, with these claims): each
/// configured header set to its value, or removed when it has none. (Setting a header
/// replaces every incoming copy, so one host call per header is enough.) The hot path keeps
/// them with the token.
pub fn for_claims(cfg: &Config, token: &str, claims: &Map<String, Value>) -> Edits {
    let routes = &cfg.routes;
    if routes.managed_headers.is_empty() {
        return Edits::default();
    }
    let mut edits: Vec<HeaderEdit> = routes
        .claim_headers
        .iter()
        .map(|c| HeaderEdit::Set(c.header.clone(), claim_at(claims, &c.claim).and_then(header_value)))
        .collect();
    if let Some(h) = &routes.payload_header {
        edits.push(HeaderEdit::Set(h.clone(), token.split('.').nth(1).map(str::to_owned)));
    }
    Edits::new(edits)
}

/// The edits for a verified token whose claims are not at hand (a refresh's replacement):
/// decoded again, on these rare paths only.
pub fn for_token(cfg: &Config, token: &str) -> Edits {
    if cfg.routes.managed_headers.is_empty() {
        return Edits::default();
    }
    match crate::token::decode(token) {
        Ok(d) => for_claims(cfg, token, &d.claims.all),
        Err(_) => cleared(cfg),
    }
}

/// Strings as they are, numbers and booleans as JSON text, lists comma-separated (their
/// strings as they are), objects as JSON. `None` for a value no header can carry (control
/// characters would let a claim split the request): it is not written.
fn header_value(v: &Value) -> Option<String> {
    let text = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(item).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    };
    text.chars().all(|c| c == '\t' || !c.is_control()).then_some(text)
}

fn item(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_render_as_documented() {
        assert_eq!(header_value(&json!("alice")).as_deref(), Some("alice"));
        assert_eq!(header_value(&json!(42)).as_deref(), Some("42"));
        assert_eq!(header_value(&json!(true)).as_deref(), Some("true"));
        assert_eq!(header_value(&json!(["a", "b", 3])).as_deref(), Some("a,b,3"));
        assert_eq!(header_value(&json!({"k": "v"})).as_deref(), Some("{\"k\":\"v\"}"));
        assert_eq!(header_value(&json!(null)), None);
        assert_eq!(header_value(&json!("jos\u{e9}")).as_deref(), Some("jos\u{e9}"));
    }

    #[test]
    fn a_claim_that_would_split_the_request_is_not_written() {
        for bad in ["a\r\nx-admin: 1", "a\nb", "a\0b", "a\u{7f}"] {
            assert_eq!(header_value(&json!(bad)), None, "{bad:?}");
        }
        assert_eq!(header_value(&json!(["ok", "a\r\nb"])), None);
    }
}
