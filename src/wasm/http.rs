//! One HTTP stream: admin requests are answered here; every other request asks the gate,
//! then is answered locally, passed on, or held while its token is refreshed.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;

use super::{Outcome, Shared};
use crate::admin::{self, Route};
use crate::config::TokenSource;
use crate::gate::{self, PendingRefresh, Request, RequestMeta, Swap, Verdict};
use crate::refresh::{Failure, MAX_RESPONSE_BYTES};
use crate::reject::DenyResponse;

pub struct Http {
    id: u32,
    shared: Option<Rc<Shared>>,
    /// An admin request waiting for its body.
    admin_pending: Option<PendingAdmin>,
    /// An admin reply held until the revocation has been published to the feed.
    publish_reply: Option<DenyResponse>,
}

/// What an admin request needs once its body is in. Headers are captured up front: the SDK
/// panics when a header getter is called outside the header phase (the host answers with a
/// status the SDK does not expect).
#[derive(Clone)]
struct PendingAdmin {
    route: Route,
    presented_token: Option<String>,
    request_id: Option<String>,
}

impl Http {
    pub fn new(id: u32, shared: Option<Rc<Shared>>) -> Http {
        Http { id, shared, admin_pending: None, publish_reply: None }
    }
}

/// Reads a request header as bytes: header values may hold obs-text that is not UTF-8.
fn request_header(name: &str) -> Option<String> {
    match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name) {
        Ok(Some(bytes)) => Some(
            String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
        _ => None,
    }
}

pub(super) fn send(reply: &DenyResponse) {
    let headers: Vec<(&str, &str)> = reply.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let _ = hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes()));
}

struct EnvoyRequestMeta;

impl RequestMeta for EnvoyRequestMeta {
    fn request_id(&self) -> Option<String> {
        request_header("x-request-id")
    }
    fn path(&self) -> Option<String> {
        request_header(":path")
    }
    fn header(&self, name: &str) -> Option<String> {
        request_header(name)
    }
}

impl Http {
    /// Answers an admin request, first publishing a revocation to the feed when configured
    /// (the reply then waits for the publish call and says whether it worked).
    fn answer_admin(&mut self, shared: &Shared, pending: PendingAdmin, body: &[u8]) {
        let Some(admin_cfg) = &shared.cfg.admin else { return };
        let answer = admin::handle(
            &shared.cfg,
            admin_cfg,
            &shared.host(),
            pending.route,
            pending.presented_token.as_deref(),
            body,
            pending.request_id,
        );
        if let Some(call) = answer.publish {
            if super::host::dispatch(&call).is_ok() {
                self.publish_reply = Some(answer.reply);
                return;
            }
            self.publish_done(shared, answer.reply, false);
            return;
        }
        send(&answer.reply);
    }

    fn publish_done(&self, shared: &Shared, reply: DenyResponse, published: bool) {
        use crate::host::Metrics;
        let host = shared.host();
        if published {
            host.count(crate::metrics::Counter::RevocationPublished);
        } else {
            host.count(crate::metrics::Counter::RevocationPublishFailed);
            let now = crate::host::Clock::now(&host);
            let mut r = crate::audit::Record::new(crate::audit::Event::RevocationPublishFailed, now);
            r.reason = Some(
                "the revocation feed did not accept the revocation; it holds on this replica only".into(),
            );
            gate::emit(&host, r);
        }
        send(&admin::with_published(reply, published));
    }
}

/// Carries out a verdict on the stream whose context is in effect. Returns whether the
/// request may continue (false: answered locally, or still held).
pub(super) fn apply(shared: &Shared, id: u32, verdict: Verdict, resume: bool) -> Action {
    if !matches!(verdict, Verdict::Hold { .. }) {
        take(&shared.held, id);
    }
    match verdict {
        Verdict::Forward { expires_in, swap } => {
            if let Some(swap) = &swap {
                let name = gate::credential_header_name(&shared.cfg).to_string();
                let current = request_header(&name);
                let value = gate::rewrite_credential(
                    &shared.cfg.token_source,
                    current.as_deref(),
                    &swap.access_token,
                );
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, &name, Some(&value));
            }
            // Refresh tokens are for the token endpoint, not for the upstream.
            if let Some(TokenSource::Header { name, .. }) =
                shared.cfg.refresh.as_ref().map(|r| &r.refresh_token_source)
            {
                let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
            }
            // Only what the response has to carry; most requests leave nothing behind.
            if expires_in.is_some() || swap.is_some() {
                if let Ok(mut outcomes) = shared.outcomes.try_borrow_mut() {
                    outcomes.insert(id, Outcome { expires_in, swap });
                }
            }
            if resume {
                let _ = hostcalls::resume_http_request();
            }
            Action::Continue
        }
        Verdict::Deny(deny) => {
            send(&deny);
            Action::Pause
        }
        Verdict::Refresh(plan) => start_refresh(shared, id, plan),
        Verdict::Hold { wait_ms, reason } => {
            if let Ok(mut held) = shared.held.try_borrow_mut() {
                // A re-check that holds again keeps the first deadline.
                held.entry(id).or_insert((super::now_ms().saturating_add(wait_ms), reason));
            }
            Action::Pause
        }
        Verdict::Inject { name, value } => {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, &name, Some(&value.0));
            if resume {
                let _ = hostcalls::resume_http_request();
            }
            Action::Continue
        }
    }
}

/// Runs the gate on the stream in effect and carries out its verdict.
pub(super) fn check(shared: &Shared, id: u32, resume: bool) -> Action {
    let mut verdict = if let Some(egress) = &shared.cfg.egress {
        crate::egress::check(egress, &shared.host(), crate::host::Clock::now(&shared.host()))
    } else {
        let credential = request_header(gate::credential_header_name(&shared.cfg));
        let request = Request { credential_header: credential.as_deref(), meta: &EnvoyRequestMeta };
        gate::check_request(&shared.cfg, &shared.host(), &shared.worker, &request)
    };
    if resume {
        if let Verdict::Refresh(plan) = &verdict {
            // Re-checked from the root context (after the first feed sync): a call made here
            // would answer the root, not this stream. The token is still valid, so the
            // request goes on; the lease lapses and a later request refreshes.
            let remaining = plan.exp.saturating_sub(crate::host::Clock::now(&shared.host()));
            verdict = Verdict::Forward { expires_in: Some(remaining), swap: None };
        }
    }
    apply(shared, id, verdict, resume)
}

fn start_refresh(shared: &Shared, id: u32, plan: PendingRefresh) -> Action {
    let c = &plan.callout;
    match super::host::dispatch(c) {
        Ok(_) => {
            // Envoy's own timeout does not fire in every failure (no healthy endpoint), so
            // the root context's tick enforces the deadline too.
            let deadline = super::now_ms().saturating_add(c.timeout_ms);
            if let Ok(mut pending) = shared.pending.try_borrow_mut() {
                pending.insert(id, super::Pending { plan, deadline_ms: deadline });
            }
            Action::Pause
        }
        Err(_) => {
            let verdict =
                gate::complete_refresh(&shared.cfg, &shared.host(), &plan, Err(Failure::DispatchFailed));
            apply(shared, id, verdict, false)
        }
    }
}

fn call_response(num_headers: usize, body_size: usize) -> Result<(Option<u16>, Vec<u8>), Failure> {
    call_response_limited(num_headers, body_size, MAX_RESPONSE_BYTES)
}

/// A callout's `:status` and body, refusing bodies over `limit` unread.
pub(super) fn call_response_limited(
    num_headers: usize,
    body_size: usize,
    limit: usize,
) -> Result<(Option<u16>, Vec<u8>), Failure> {
    if num_headers == 0 {
        return Err(Failure::Unreachable); // Envoy reports a failed call with no headers
    }
    if body_size > limit {
        return Err(Failure::TooLarge);
    }
    let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| String::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok());
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
        .ok()
        .flatten()
        .unwrap_or_default();
    Ok((status, body))
}

impl Context for Http {
    fn on_http_call_response(&mut self, _token: u32, num_headers: usize, body_size: usize, _trailers: usize) {
        let Some(shared) = self.shared.clone() else { return };
        if let Some(reply) = self.publish_reply.take() {
            let published = call_response(num_headers, 0)
                .ok()
                .and_then(|(status, _)| status)
                .is_some_and(|s| (200..300).contains(&s));
            self.publish_done(&shared, reply, published);
            return;
        }
        let pending = take(&shared.pending, self.id);
        // None: the deadline passed first and the request has already moved on.
        if let Some(p) = pending {
            let answer = call_response(num_headers, body_size);
            let verdict = gate::complete_refresh(&shared.cfg, &shared.host(), &p.plan, answer);
            apply(&shared, self.id, verdict, true);
        }
    }

    fn on_done(&mut self) -> bool {
        if let Some(shared) = &self.shared {
            take(&shared.pending, self.id);
            take(&shared.outcomes, self.id);
            take(&shared.held, self.id);
        }
        true
    }
}

/// Takes a stream's entry out of one of the per-worker maps. Most of them are empty on most
/// requests, and then hashing is skipped.
fn take<V>(map: &std::cell::RefCell<std::collections::HashMap<u32, V>>, id: u32) -> Option<V> {
    let mut m = map.try_borrow_mut().ok()?;
    if m.is_empty() {
        return None;
    }
    m.remove(&id)
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            // Unreachable with a valid config (Envoy refuses to start otherwise): fail closed.
            let _ = hostcalls::send_http_response(500, vec![], Some(b"tokenguard is not configured"));
            return Action::Pause;
        };
        if let (Some(admin_cfg), None) = (&shared.cfg.admin, &shared.cfg.egress) {
            // Only requests under the prefix pay for reading the method too.
            let path = request_header(":path").unwrap_or_default();
            let route = if path.starts_with(admin_cfg.path_prefix.as_str()) {
                admin::route(admin_cfg, &request_header(":method").unwrap_or_default(), &path)
            } else {
                None
            };
            if let Some(route) = route {
                let pending = PendingAdmin {
                    route,
                    presented_token: request_header(admin::ADMIN_TOKEN_HEADER),
                    request_id: request_header("x-request-id"),
                };
                let authorized = admin::authorized(admin_cfg, pending.presented_token.as_deref());
                if route == Route::Revoke && !end_of_stream && authorized {
                    // proxy-wasm hosts turn a paused header callback into "pause everything",
                    // so the body would never arrive: let the headers go on and answer once
                    // the body is in. envoy.yaml puts a buffer filter after tokenguard on the
                    // admin route, so the headers stop there and never reach the router.
                    self.admin_pending = Some(pending);
                    return Action::Continue;
                }
                self.answer_admin(&shared, pending, &[]);
                return Action::Pause;
            }
        }
        check(&shared, self.id, false)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(pending), Some(shared)) = (self.admin_pending.clone(), self.shared.clone()) else {
            return Action::Continue;
        };
        if body_size > admin::MAX_BODY_BYTES {
            self.admin_pending = None;
            send(&DenyResponse {
                status: 413,
                headers: vec![("content-type".into(), "application/json".into())],
                body: r#"{"error":"invalid_request","error_description":"body too large"}"#.into(),
            });
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause; // Envoy buffers until the whole body is in
        }
        self.admin_pending = None;
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.answer_admin(&shared, pending, &body);
        Action::Pause
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.as_ref() else { return Action::Continue };
        let outcome = take(&shared.outcomes, self.id);
        let Some(Outcome { expires_in, swap }) = outcome else { return Action::Continue };
        if let (Some(seconds), Some(name)) = (expires_in, &shared.cfg.expires_in_header) {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(&seconds.to_string()));
        }
        if let (Some(Swap { access_token, refresh_token }), Some(r)) = (swap, &shared.cfg.refresh) {
            let _ = hostcalls::set_map_value(
                MapType::HttpResponseHeaders,
                &r.access_token_response_header,
                Some(&access_token),
            );
            if let Some(rt) = refresh_token {
                let _ = hostcalls::set_map_value(
                    MapType::HttpResponseHeaders,
                    &r.refresh_token_response_header,
                    Some(&rt),
                );
            }
        }
        Action::Continue
    }
}
