//! Route policy on a request: which rule decides, whether the path is in normal form, and
//! whether a token's claims meet a rule's requirements.
//!
//! Rules are matched so that any doubt makes the answer stricter. A public or optional rule
//! is a hole in the filter by design, so it opens only for a path in normal form, matched
//! exactly as written. A required rule (with its scopes and claims) applies to every path an
//! upstream could read as one it covers: matched without regard to ASCII case, and also
//! against `normalized`, what decoding, dot-segment removal and `;` parameters make of it.

use serde_json::{Map, Value};

use crate::config::routes::{ClaimPath, PathMatch, Policy, RoutesConfig, Rule};

/// The rule deciding a request: the first whose path and methods match. `None`: no rule,
/// the default (`required`, no requirements).
///
/// Neither `/x/../admin/`, `/admin%2Fx`, `/%61dmin/`, `/ADMIN/` nor `/admin;x/` slips past a
/// required rule on `/admin/`, and none of them passes a public rule. `method` is asked
/// (a host call) only once a rule listing methods matches the path.
pub fn select<'c>(
    routes: &'c RoutesConfig,
    path: &str,
    method: &mut dyn FnMut() -> String,
) -> Option<&'c Rule> {
    let path = without_query(path);
    let normal = is_normal(path);
    // Only paths with something to decode or resolve pay for the allocation.
    let other = (!normal || path.contains(['%', ';'])).then(|| normalized(path));
    let mut known: Option<String> = None;
    routes.rules.iter().find(|rule| {
        let path_ok = match rule.policy {
            Policy::Required => {
                covers(&rule.path, path) || other.as_deref().is_some_and(|o| covers(&rule.path, o))
            }
            Policy::Optional | Policy::Public => normal && path_matches(&rule.path, path),
        };
        path_ok && (rule.methods.is_empty() || rule.methods.contains(known.get_or_insert_with(&mut *method)))
    })
}

/// What an upstream that decodes and normalises paths could make of this one: escapes of
/// unreserved characters and of `/`, `\`, `%`, `;` decoded (twice, for double encoding),
/// `\` read as `/`, `;` parameters dropped, empty and `.` segments dropped, `..` resolved.
pub fn normalized(path: &str) -> String {
    let decoded = decode_escapes(&decode_escapes(path)).replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg.split(';').next().unwrap_or(seg) {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            name => out.push(name),
        }
    }
    let trailing = decoded.ends_with('/') && !out.is_empty();
    let mut s = format!("/{}", out.join("/"));
    if trailing {
        s.push('/');
    }
    s
}

fn decode_escapes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(i) = rest.find('%') {
        out.push_str(rest.get(..i).unwrap_or_default());
        match rest.get(i + 1..i + 3).and_then(escaped) {
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

/// The character a two-hex-digit escape stands for, when it is one an upstream's decoding
/// could turn into another path: unreserved characters, `/`, `\`, `%` and `;`.
fn escaped(hex: &str) -> Option<char> {
    let c = char::from(u8::from_str_radix(hex, 16).ok()?);
    (c.is_ascii_alphanumeric() || "-._~/\\%;".contains(c)).then_some(c)
}

/// The path a rule is matched against: without query or fragment.
pub fn without_query(path: &str) -> &str {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

/// A relaxing rule's match: exactly as written.
fn path_matches(m: &PathMatch, path: &str) -> bool {
    match m {
        PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        PathMatch::Exact(p) => path == p,
    }
}

/// A required rule's match: without regard to ASCII case (some upstreams ignore it).
fn covers(m: &PathMatch, path: &str) -> bool {
    match m {
        PathMatch::Prefix(p) => path.get(..p.len()).is_some_and(|head| head.eq_ignore_ascii_case(p)),
        PathMatch::Exact(p) => path.eq_ignore_ascii_case(p),
    }
}

/// Whether a path (without query) is in the one form every reader agrees on: absolute, no
/// empty, `.` or `..` segment (also not `..;x`, which some servers read as `..`), no `\`,
/// and no escape that decoding could turn into part of another path (`%2e`, `%2f`, `%5c`,
/// `%25`, `%3b`, an escaped letter or digit, any case).
pub fn is_normal(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else { return false };
    if path.contains('\\') || has_meaningful_escape(path) {
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

fn has_meaningful_escape(path: &str) -> bool {
    path.match_indices('%').any(|(i, _)| path.get(i + 1..i + 3).and_then(escaped).is_some())
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
