//! Route policy on a request: which rule decides, whether the path is in normal form, and
//! whether a token's claims meet a rule's requirements.
//!
//! A public or optional rule is a hole in the filter by design, so it only opens for paths
//! every server reads the same way. Anything an upstream might decode or normalise into
//! another path (dot segments, `//`, `\`, percent-encoded `/`, `\`, `.` or `%`) falls to
//! `required`, whatever rule its text matches.

use serde_json::{Map, Value};

use crate::config::routes::{ClaimPath, PathMatch, Policy, RoutesConfig, Rule};

/// The rule deciding a request: the first whose path and methods match. `None`: no rule,
/// the default (`required`, no requirements).
///
/// A path not in normal form matches no public or optional rule, and matches a required
/// rule by its text or by the path an upstream could make of it (`normalized`): neither
/// `/x/../admin/` nor `/admin%2Fx` slips past a rule on `/admin/`.
pub fn select<'c>(routes: &'c RoutesConfig, method: &str, path: &str) -> Option<&'c Rule> {
    let path = without_query(path);
    let method_ok = |rule: &Rule| rule.methods.is_empty() || rule.methods.iter().any(|m| m == method);
    if is_normal(path) {
        return routes.rules.iter().find(|rule| path_matches(&rule.path, path) && method_ok(rule));
    }
    let other = normalized(path);
    routes.rules.iter().find(|rule| {
        rule.policy == Policy::Required
            && method_ok(rule)
            && (path_matches(&rule.path, path) || path_matches(&rule.path, &other))
    })
}

/// What an upstream that decodes and normalises paths could make of this one: `%2e`, `%2f`,
/// `%5c` and `%25` decoded (twice, for double encoding), `\` read as `/`, empty and `.`
/// segments dropped, `..` resolved. Only used to find the rules a non-normal path must meet.
pub fn normalized(path: &str) -> String {
    let decoded = decode_separators(&decode_separators(path)).replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg.split(';').next().unwrap_or(seg) {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(seg),
        }
    }
    let trailing = decoded.ends_with('/') && !out.is_empty();
    let mut s = format!("/{}", out.join("/"));
    if trailing {
        s.push('/');
    }
    s
}

fn decode_separators(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(i) = rest.find('%') {
        out.push_str(rest.get(..i).unwrap_or_default());
        let code = rest.get(i + 1..i + 3).map(str::to_ascii_lowercase);
        let c = match code.as_deref() {
            Some("2e") => Some('.'),
            Some("2f") => Some('/'),
            Some("5c") => Some('\\'),
            Some("25") => Some('%'),
            _ => None,
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = rest.get(i + 3..).unwrap_or_default();
            }
            None => {
                out.push('%');
                rest = rest.get(i + 1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

/// The path a rule is matched against: without query or fragment.
pub fn without_query(path: &str) -> &str {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

fn path_matches(m: &PathMatch, path: &str) -> bool {
    match m {
        PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        PathMatch::Exact(p) => path == p,
    }
}

/// Whether a path (without query) is in the one form every reader agrees on: absolute, no
/// empty, `.` or `..` segment (also not `..;x`, which some servers read as `..`), no `\`,
/// and no percent-encoded `/`, `\`, `.` or `%` (decoded once or twice by an upstream, any of
/// them can turn into one of the others).
pub fn is_normal(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else { return false };
    if path.contains('\\') || has_encoded_separator(path) {
        return false;
    }
    // The last segment may be empty ("/", "/catalog/"); no other may.
    let mut segments = rest.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        let name = seg.split(';').next().unwrap_or(seg);
        if (seg.is_empty() && !last) || name == "." || name == ".." {
            return false;
        }
    }
    true
}

fn has_encoded_separator(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| match w {
        [b'%', hi, lo] => matches!((*hi, lo.to_ascii_lowercase()), (b'2', b'e' | b'f' | b'5') | (b'5', b'c')),
        _ => false,
    })
}

/// A claim by dotted path: each step but the last must be an object.
pub fn claim_at<'a>(claims: &'a Map<String, Value>, path: &ClaimPath) -> Option<&'a Value> {
    let (first, rest) = path.0.split_first()?;
    let mut v = claims.get(first)?;
    for step in rest {
        v = v.as_object()?.get(step)?;
    }
    Some(v).filter(|v| !v.is_null())
}

/// Whether the token's claims meet the rule: every required scope in `scope` (a
/// space-separated string) or `scp` (a list of strings), and every required claim equal to
/// one of its values or, a list, containing one.
pub fn satisfied(rule: &Rule, claims: &Map<String, Value>) -> bool {
    let scopes_ok = rule.required_scopes.iter().all(|want| has_scope(claims, want));
    scopes_ok
        && rule.required_claims.iter().all(|req| match claim_at(claims, &req.claim) {
            Some(Value::Array(items)) => items.iter().any(|i| req.values.contains(i)),
            Some(v) => req.values.contains(v),
            None => false,
        })
}

fn has_scope(claims: &Map<String, Value>, want: &str) -> bool {
    let in_scope =
        claims.get("scope").and_then(Value::as_str).is_some_and(|s| s.split(' ').any(|s| s == want));
    // `scp` is a list in most issuers and a space-separated string in Entra ID.
    let in_scp = match claims.get("scp") {
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(want)),
        Some(Value::String(s)) => s.split(' ').any(|s| s == want),
        _ => false,
    };
    in_scope || in_scp
}

#[cfg(test)]
mod tests;
