//! One HTTP stream: admin requests are answered here; every other request asks the gate,
//! then is either answered locally or passed on.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;

use super::Shared;
use crate::admin::{self, Route};
use crate::gate::{self, Request, RequestMeta, Verdict};
use crate::reject::DenyResponse;

pub struct Http {
    shared: Option<Rc<Shared>>,
    expires_in: Option<u64>,
    /// An admin request waiting for its body.
    admin_pending: Option<PendingAdmin>,
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
    pub fn new(shared: Option<Rc<Shared>>) -> Http {
        Http { shared, expires_in: None, admin_pending: None }
    }
}

/// Reads a request header as bytes: header values may hold obs-text that is not UTF-8.
fn request_header(name: &str) -> Option<String> {
    match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name) {
        Ok(Some(bytes)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        _ => None,
    }
}

fn send(reply: &DenyResponse) {
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
}

fn answer_admin(shared: &Shared, pending: PendingAdmin, body: &[u8]) {
    if let Some(admin_cfg) = &shared.cfg.admin {
        let reply = admin::handle(
            &shared.cfg,
            admin_cfg,
            &shared.host(),
            pending.route,
            pending.presented_token.as_deref(),
            body,
            pending.request_id,
        );
        send(&reply);
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            // Unreachable with a valid config (Envoy refuses to start otherwise): fail closed.
            let _ = hostcalls::send_http_response(500, vec![], Some(b"tokenguard is not configured"));
            return Action::Pause;
        };
        if let Some(admin_cfg) = &shared.cfg.admin {
            let path = request_header(":path").unwrap_or_default();
            let method = request_header(":method").unwrap_or_default();
            if let Some(route) = admin::route(admin_cfg, &method, &path) {
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
                answer_admin(&shared, pending, &[]);
                return Action::Pause;
            }
        }
        let credential = request_header(gate::credential_header_name(&shared.cfg));
        let request = Request { credential_header: credential.as_deref(), meta: &EnvoyRequestMeta };
        match gate::check_request(&shared.cfg, &shared.host(), &shared.worker, &request) {
            Verdict::Forward { expires_in } => {
                self.expires_in = expires_in;
                Action::Continue
            }
            Verdict::Deny(deny) => {
                send(&deny);
                Action::Pause
            }
        }
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
        answer_admin(&shared, pending, &body);
        Action::Pause
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if let (Some(seconds), Some(shared)) = (self.expires_in, self.shared.as_ref()) {
            if let Some(name) = &shared.cfg.expires_in_header {
                let _ =
                    hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(&seconds.to_string()));
            }
        }
        Action::Continue
    }
}
