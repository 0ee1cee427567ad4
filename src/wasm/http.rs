//! One HTTP stream: ask the gate, then either answer locally or pass the request on.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};
use std::rc::Rc;

use super::host::EnvoyHost;
use super::Shared;
use crate::gate::{self, Request, RequestMeta, Verdict};

pub struct Http {
    shared: Option<Rc<Shared>>,
    expires_in: Option<u64>,
}

impl Http {
    pub fn new(shared: Option<Rc<Shared>>) -> Http {
        Http { shared, expires_in: None }
    }
}

/// Reads a request header as bytes: header values may hold obs-text that is not UTF-8.
fn request_header(name: &str) -> Option<String> {
    match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name) {
        Ok(Some(bytes)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        _ => None,
    }
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

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            // Unreachable with a valid config (Envoy refuses to start otherwise): fail closed.
            let _ = hostcalls::send_http_response(500, vec![], Some(b"tokenguard is not configured"));
            return Action::Pause;
        };
        let host = EnvoyHost { metric_ids: &shared.metric_ids };
        let credential = request_header(gate::credential_header_name(&shared.cfg));
        let request = Request { credential_header: credential.as_deref(), meta: &EnvoyRequestMeta };
        match gate::check_request(&shared.cfg, &host, &shared.warnings, &request) {
            Verdict::Forward { expires_in } => {
                self.expires_in = expires_in;
                Action::Continue
            }
            Verdict::Deny(deny) => {
                let headers: Vec<(&str, &str)> =
                    deny.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let _ = hostcalls::send_http_response(deny.status, headers, Some(deny.body.as_bytes()));
                Action::Pause
            }
        }
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
