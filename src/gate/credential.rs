//! Where a request's token is read from, and how the credential headers are rewritten when
//! a refresh swaps the token or a refresh token must not travel on.

use crate::config::{Config, TokenSource};
use crate::reject::{RejectCode, Rejection};
use crate::verdict::Swap;

use super::Request;

/// The header a request's credential is read from.
pub fn credential_header_name(cfg: &Config) -> &str {
    match &cfg.token_source {
        TokenSource::Header { name, .. } => name,
        TokenSource::Cookie { .. } => "cookie",
    }
}

/// Pulls the token out of the credential header. `None` means the request carries no token
/// in the configured form (no header, another auth scheme, no such cookie).
pub fn extract_token<'a>(source: &TokenSource, header: &'a str) -> Option<&'a str> {
    match source {
        TokenSource::Header { prefix, .. } => {
            let head = header.get(..prefix.len())?;
            if !head.eq_ignore_ascii_case(prefix) {
                return None;
            }
            header.get(prefix.len()..).map(str::trim)
        }
        TokenSource::Cookie { name } => cookie_values(header, name).next(),
    }
}

/// The `cookie` header without the cookies called `name`; `None` when there are none (the
/// header stays as it is). An empty result means no cookie is left.
pub fn without_cookie(header: &str, name: &str) -> Option<String> {
    cookie_values(header, name).next()?;
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').is_none_or(|(k, _)| k.trim() != name))
        .collect();
    Some(kept.join("; "))
}

/// The credential header's new value, carrying `new_token` in place of the old one.
/// `current` is the header's present value (needed to keep other cookies).
pub fn rewrite_credential(source: &TokenSource, current: Option<&str>, new_token: &str) -> String {
    match source {
        TokenSource::Header { prefix, .. } => format!("{prefix}{new_token}"),
        TokenSource::Cookie { name } => {
            let mut replaced = false;
            let mut parts: Vec<String> = current
                .unwrap_or_default()
                .split(';')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.trim() == name => {
                        replaced = true;
                        format!("{name}={new_token}")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            if !replaced {
                parts.push(format!("{name}={new_token}"));
            }
            parts.join("; ")
        }
    }
}

/// The request's token. Two candidates (two cookies of the configured name, or a cookie
/// beside a bearer header) are refused: picking one lets whoever planted the other decide
/// which identity is checked and which is forwarded.
pub(super) fn read_credential<'r>(cfg: &Config, req: &'r Request) -> Result<Option<&'r str>, Rejection> {
    let Some(header) = req.credential_header else { return Ok(None) };
    let ambiguous = || Rejection::new(RejectCode::MalformedToken, "request carries more than one credential");
    if let TokenSource::Cookie { name } = &cfg.token_source {
        if cookie_values(header, name).nth(1).is_some() {
            return Err(ambiguous());
        }
        let token = extract_token(&cfg.token_source, header);
        let bearer = req.meta.header("authorization");
        let scheme =
            |b: &str| b.split_ascii_whitespace().next().is_some_and(|s| s.eq_ignore_ascii_case("bearer"));
        if token.is_some() && bearer.as_deref().is_some_and(scheme) {
            return Err(ambiguous());
        }
        return Ok(token);
    }
    Ok(extract_token(&cfg.token_source, header))
}

pub use crate::verdict::HeaderEdit;

/// Refresh tokens are for the token endpoint, not for the upstream: the edit that removes
/// the request's refresh token (its header, or its cookie from the `cookie` header).
/// `cookie` reads the request's `cookie` header, only when the source is a cookie.
pub fn strip_refresh_token(cfg: &Config, cookie: impl FnOnce() -> Option<String>) -> Option<HeaderEdit> {
    match &cfg.refresh.as_ref()?.refresh_token_source {
        TokenSource::Header { name, .. } => Some(HeaderEdit::Set(name.clone(), None)),
        TokenSource::Cookie { name } => {
            let kept = without_cookie(&cookie()?, name)?;
            Some(HeaderEdit::Set("cookie".into(), Some(kept).filter(|k| !k.is_empty())))
        }
    }
}

/// The values of every cookie called `name` in a `cookie` header.
pub fn cookie_values<'h, 'n>(header: &'h str, name: &'n str) -> impl Iterator<Item = &'h str> + use<'h, 'n> {
    header.split(';').filter_map(move |pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The headers a forwarded request's response gains: the seconds its token has left, and,
/// after a refresh, the new tokens for the client (the refresh token only when the gate
/// handed it to this request).
pub fn response_headers(cfg: &Config, expires_in: Option<u64>, swap: Option<Swap>) -> Vec<(&str, String)> {
    let mut headers = Vec::new();
    if let (Some(seconds), Some(name)) = (expires_in, &cfg.expires_in_header) {
        headers.push((name.as_str(), seconds.to_string()));
    }
    if let (Some(Swap { access_token, refresh_token }), Some(r)) = (swap, &cfg.refresh) {
        headers.push((r.access_token_response_header.as_str(), access_token));
        if let Some(rt) = refresh_token {
            headers.push((r.refresh_token_response_header.as_str(), rt));
        }
    }
    headers
}
