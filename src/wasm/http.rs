//! One HTTP stream: admin requests are answered here; every other request asks the gate,
//! then is answered locally, passed on, or held while its token is refreshed.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;

use super::{Outcome, Shared};
use crate::admin::{self, Route};
use crate::gate::{self, Request, RequestMeta};
use crate::refresh::PendingRefresh;
use crate::refresh::{Failure, MAX_RESPONSE_BYTES};
use crate::reject::LocalReply;
use crate::verdict::Verdict;

pub struct Http {
    id: u32,
    shared: Option<Rc<Shared>>,
}

impl Http {
    pub fn new(id: u32, shared: Option<Rc<Shared>>) -> Http {
        Http { id, shared }
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

pub(super) fn send(reply: &LocalReply) {
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
    fn method(&self) -> Option<String> {
        request_header(":method")
    }
    fn header(&self, name: &str) -> Option<String> {
        request_header(name)
    }
}

/// Answers an admin request at its headers: it is never let on towards the upstream, and
/// its admin token is removed before any other filter sees the request. A revocation to
/// write through to etcd holds the reply until etcd answers or the deadline passes.
fn answer_admin(
    shared: &Shared,
    id: u32,
    admin_cfg: &crate::config::AdminConfig,
    route: Route,
    end_of_stream: bool,
) {
    let presented = request_header(admin::ADMIN_TOKEN_HEADER);
    let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, admin::ADMIN_TOKEN_HEADER);
    let path = request_header(":path").unwrap_or_default();
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let request = admin::AdminRequest {
        route,
        presented_token: presented.as_deref(),
        query,
        has_body: !end_of_stream,
        request_id: request_header("x-request-id"),
    };
    let answer = admin::handle(&shared.cfg, admin_cfg, &shared.host(), request);
    match answer.publish {
        Some(write) => super::publish::start(shared, id, write, answer.reply),
        None => send(&answer.reply),
    }
}

/// Sends the admin reply once the write to etcd is over (`committed`: etcd said so).
pub(super) fn publish_done(shared: &Shared, reply: LocalReply, committed: bool) {
    send(&admin::publish_finished(&shared.host(), reply, committed));
}

/// Carries out a verdict on the stream whose context is in effect. Returns whether the
/// request may continue (false: answered locally, or still held).
/// `resume`: the stream is paused (asked again from the root context's tick, or after a
/// callout): resume it when the request may go on.
pub(super) fn apply(shared: &Shared, id: u32, verdict: Verdict, resume: bool) -> Action {
    if !matches!(verdict, Verdict::Hold { .. }) {
        take(&shared.held, id);
    }
    match verdict {
        Verdict::Forward { expires_in, swap, headers } => {
            for gate::credential::HeaderEdit::Set(name, value) in headers.iter() {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value.as_deref());
            }
            if let Some(swap) = &swap {
                let name = gate::credential::credential_header_name(&shared.cfg).to_string();
                let current = request_header(&name);
                let value = gate::credential::rewrite_credential(
                    &shared.cfg.token_source,
                    current.as_deref(),
                    &swap.access_token,
                );
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, &name, Some(&value));
            }
            strip_refresh_token(shared);
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
        Verdict::Refresh(plan) => match shared.cfg.revocation_store {
            Some(_) => super::claim::start(shared, id, *plan, resume),
            None => call_token_endpoint(shared, id, *plan, resume, resume, None),
        },
        Verdict::Hold { wait_ms, reason, verified } => {
            if let Ok(mut held) = shared.held.try_borrow_mut() {
                // A re-check that holds again keeps the first deadline.
                held.entry(id).or_insert(super::Held {
                    deadline_ms: super::now_ms().saturating_add(wait_ms),
                    reason,
                    verified,
                });
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

/// Refresh tokens are for the token endpoint, not for the upstream.
fn strip_refresh_token(shared: &Shared) {
    let edit = gate::credential::strip_refresh_token(&shared.cfg, || request_header("cookie"));
    if let Some(gate::credential::HeaderEdit::Set(name, value)) = edit {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, &name, value.as_deref());
    }
}

/// Runs the gate on the stream in effect and carries out its verdict. `resume`: asked again
/// from the root context for a held request.
pub(super) fn check(shared: &Shared, id: u32, resume: bool) -> Action {
    let verdict = if let Some(egress) = &shared.cfg.egress {
        crate::egress::check(egress, &shared.host(), crate::host::Clock::now(&shared.host()))
    } else {
        let credential = request_header(gate::credential::credential_header_name(&shared.cfg));
        let verified = if resume {
            shared.held.try_borrow().ok().and_then(|h| h.get(&id).and_then(|e| e.verified))
        } else {
            None
        };
        let request = Request { credential_header: credential.as_deref(), meta: &EnvoyRequestMeta, verified };
        gate::check_request(&shared.cfg, &shared.host(), &shared.worker, &request)
    };
    apply(shared, id, verdict, resume)
}

/// Calls the token endpoint for a held request. `from_root`: dispatched from the root
/// context's tick (a request released once etcd's list was applied, or a claim past its
/// deadline), whose answer arrives at the root, which hands it to this stream. `resume`:
/// the stream is paused already (a later callback, not its request headers). `fleet`: the
/// etcd claim this process holds on the token, to retire the old token fleet-wide after.
pub(super) fn call_token_endpoint(
    shared: &Shared,
    id: u32,
    plan: PendingRefresh,
    from_root: bool,
    resume: bool,
    fleet: Option<crate::etcd::claim::Claim>,
) -> Action {
    let c = &plan.callout;
    match super::host::dispatch(c) {
        Ok(token) => {
            if from_root {
                if let Ok(mut calls) = shared.root_refreshes.try_borrow_mut() {
                    calls.insert(token, id);
                }
            }
            // Envoy's own timeout does not fire in every failure (no healthy endpoint), so
            // the root context's tick enforces the deadline too.
            let deadline = super::now_ms().saturating_add(c.timeout_ms);
            if let Ok(mut pending) = shared.pending.try_borrow_mut() {
                pending.insert(id, super::Pending { plan, deadline_ms: deadline, fleet });
            }
            Action::Pause
        }
        Err(_) => {
            let verdict = gate::complete_refresh(
                &shared.cfg,
                &shared.host(),
                &shared.worker,
                &plan,
                Err(Failure::DispatchFailed),
            );
            apply(shared, id, verdict, resume)
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
        finish_refresh(&shared, self.id, num_headers, body_size);
    }

    fn on_grpc_call_response(&mut self, _token: u32, status: u32, size: usize) {
        if let Some(shared) = self.shared.clone() {
            if !super::claim::answered(&shared, self.id, status, size) {
                super::publish::answered(&shared, self.id, status, size);
            }
        }
    }

    fn on_done(&mut self) -> bool {
        if let Some(shared) = &self.shared {
            take(&shared.pending, self.id);
            take(&shared.outcomes, self.id);
            take(&shared.held, self.id);
            take(&shared.publishing, self.id);
            take(&shared.claims, self.id);
            for calls in [&shared.root_refreshes, &shared.root_claims] {
                if let Ok(mut calls) = calls.try_borrow_mut() {
                    if !calls.is_empty() {
                        calls.retain(|_, stream| *stream != self.id);
                    }
                }
            }
        }
        true
    }
}

/// The token endpoint answered for stream `id` (whose context is in effect).
pub(super) fn finish_refresh(shared: &Shared, id: u32, num_headers: usize, body_size: usize) {
    // None: the deadline passed first and the request has already moved on.
    if let Some(p) = take(&shared.pending, id) {
        let answer = call_response(num_headers, body_size);
        let verdict = gate::complete_refresh(&shared.cfg, &shared.host(), &shared.worker, &p.plan, answer);
        if let (Verdict::Forward { swap: Some(_), .. }, Some(fleet)) = (&verdict, &p.fleet) {
            super::claim::retire(shared, fleet);
        }
        apply(shared, id, verdict, true);
    }
}

/// Takes a stream's entry out of one of the per-worker maps. Most of them are empty on most
/// requests, and then hashing is skipped.
pub(super) fn take<V>(map: &std::cell::RefCell<std::collections::HashMap<u32, V>>, id: u32) -> Option<V> {
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
                answer_admin(&shared, self.id, admin_cfg, route, end_of_stream);
                return Action::Pause;
            }
            // The admin token is the operator's secret: it never travels on, whatever path a
            // client sent it to.
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, admin::ADMIN_TOKEN_HEADER);
        }
        check(&shared, self.id, false)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.as_ref() else { return Action::Continue };
        let outcome = take(&shared.outcomes, self.id);
        let Some(Outcome { expires_in, swap }) = outcome else { return Action::Continue };
        for (name, value) in gate::credential::response_headers(&shared.cfg, expires_in, swap) {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(&value));
        }
        Action::Continue
    }
}
