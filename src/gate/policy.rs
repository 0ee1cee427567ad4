//! The route step, before any token is read: the RFC 9728 metadata document, public routes,
//! optional ones, and the rule whose requirements a token must meet; and, after the
//! decision, report-only mode turning refusals into forwards.

use crate::config::routes::{Policy, ResourceMetadata, Rule};
use crate::config::Config;
use crate::reject::LocalReply;
use crate::route;
use crate::verdict::{HoldReason, Verdict};

use super::upstream::forward_unverified;
use super::Request;

/// What the route step decided.
pub(super) enum Step<'c> {
    /// Answered without a token: the metadata document, or a public route going on.
    Done(Verdict),
    /// Check the token. `rule`: a rule with requirements to meet; `optional`: no token is
    /// fine.
    Check { rule: Option<&'c Rule>, optional: bool },
}

pub(super) fn route_step<'c>(cfg: &'c Config, req: &Request) -> Step<'c> {
    let routes = &cfg.routes;
    // Without rules or metadata no request is inspected: not even its path is read.
    if !routes.inspects_requests() {
        return Step::Check { rule: None, optional: false };
    }
    let path = req.meta.path().unwrap_or_default();
    let mut method = || req.meta.method().unwrap_or_default();
    if let Some(m) = &routes.resource_metadata {
        if route::without_query(&path) == m.path && method() == "GET" {
            return Step::Done(Verdict::Deny(metadata_reply(m)));
        }
    }
    match route::select(routes, &path, &mut method) {
        Some(rule) if rule.policy == Policy::Public => Step::Done(forward_unverified(cfg)),
        Some(rule) if rule.policy == Policy::Optional => Step::Check { rule: None, optional: true },
        Some(rule) if !rule.required_scopes.is_empty() || !rule.required_claims.is_empty() => {
            Step::Check { rule: Some(rule), optional: false }
        }
        _ => Step::Check { rule: None, optional: false },
    }
}

/// The RFC 9728 document, answered by the filter itself: never forwarded.
fn metadata_reply(m: &ResourceMetadata) -> LocalReply {
    LocalReply {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "max-age=3600".into()),
        ],
        body: m.document.clone(),
    }
}

/// Report-only: nothing is refused or held, every request goes on as it came (the refusal
/// itself was already counted and audited with `"enforced": false`).
pub(super) fn enforce(cfg: &Config, verdict: Verdict) -> Verdict {
    if !cfg.routes.report_only {
        return verdict;
    }
    match verdict {
        Verdict::Deny(_) | Verdict::Hold { reason: HoldReason::RevocationStore, .. } => {
            forward_unverified(cfg)
        }
        other => other,
    }
}
