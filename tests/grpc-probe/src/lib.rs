//! A request names an etcd key in `x-etcd-key`. Without `x-etcd-watch-from` the probe makes
//! a unary `KV.Range` call and answers 200 with the value (404 if none) and the store's
//! revision in `x-etcd-revision`. With `x-etcd-watch-from: <revision>` it opens a `Watch`
//! stream from that revision and answers with the first event's value. Any failure answers
//! 502 with what Envoy reported in `x-probe-error`. Test code, kept small.

#[path = "../../../src/etcd/proto.rs"]
#[allow(dead_code)]
mod proto;

use prost::Message;
use proto::{
    RangeRequest, RangeResponse, WatchCreateRequest, WatchRequest, WatchRequestUnion, WatchResponse,
};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;
impl Context for Root {}
impl RootContext for Root {
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe { answered: false }))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    answered: bool,
}

impl Probe {
    fn answer(&mut self, status: u32, headers: Vec<(&str, &str)>, body: &[u8]) {
        if !self.answered {
            self.answered = true;
            self.send_http_response(status, headers, Some(body));
        }
    }

    fn fail(&mut self, what: &str) {
        self.answer(502, vec![("x-probe-error", what)], b"");
    }

    fn start(&mut self, key: Vec<u8>, watch_from: Option<i64>) -> Result<(), String> {
        let service = proto::grpc_service("etcd", None);
        // The SDK takes the upstream as &str; the message is ASCII for a short cluster name.
        let upstream = std::str::from_utf8(&service).map_err(|e| e.to_string())?;
        match watch_from {
            None => {
                let req = RangeRequest { key, ..Default::default() }.encode_to_vec();
                let timeout = Duration::from_secs(5);
                self.dispatch_grpc_call(upstream, "etcdserverpb.KV", "Range", vec![], Some(&req), timeout)
                    .map_err(|s| format!("dispatch_grpc_call: {s:?}"))?;
            }
            Some(from) => {
                let token = self
                    .open_grpc_stream(upstream, "etcdserverpb.Watch", "Watch", vec![])
                    .map_err(|s| format!("open_grpc_stream: {s:?}"))?;
                let create = WatchCreateRequest { key, start_revision: from, ..Default::default() };
                let req = WatchRequest { request_union: Some(WatchRequestUnion::Create(create)) };
                self.send_grpc_stream_message(token, Some(&req.encode_to_vec()), false);
            }
        }
        Ok(())
    }
}

impl Context for Probe {
    fn on_grpc_call_response(&mut self, _token: u32, status: u32, size: usize) {
        if status != 0 {
            let (code, message) = self.get_grpc_status();
            return self.fail(&format!("grpc status {code} {}", message.unwrap_or_default()));
        }
        let body = self.get_grpc_call_response_body(0, size).unwrap_or_default();
        let Ok(r) = RangeResponse::decode(body.as_slice()) else {
            return self.fail("undecodable RangeResponse");
        };
        let revision = r.header.map(|h| h.revision).unwrap_or_default().to_string();
        match r.kvs.first() {
            Some(kv) => self.answer(200, vec![("x-etcd-revision", &revision)], &kv.value.clone()),
            None => self.answer(404, vec![("x-etcd-revision", &revision)], b""),
        }
    }

    fn on_grpc_stream_message(&mut self, token: u32, size: usize) {
        let body = self.get_grpc_stream_message(0, size).unwrap_or_default();
        let Ok(w) = WatchResponse::decode(body.as_slice()) else {
            return self.fail("undecodable WatchResponse");
        };
        let Some(event) = w.events.first() else { return }; // the `created` answer
        let value = event.kv.as_ref().map(|kv| kv.value.clone()).unwrap_or_default();
        let revision = event.kv.as_ref().map(|kv| kv.mod_revision).unwrap_or_default().to_string();
        self.answer(
            200,
            vec![("x-etcd-revision", &revision), ("x-etcd-watch-id", &w.watch_id.to_string())],
            &value,
        );
        self.cancel_grpc_stream(token);
    }

    fn on_grpc_stream_close(&mut self, _token: u32, status: u32) {
        self.fail(&format!("stream closed with grpc status {status}"));
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let Some(key) = self.get_http_request_header("x-etcd-key") else {
            self.answer(400, vec![], b"x-etcd-key is required");
            return Action::Pause;
        };
        let from = self.get_http_request_header("x-etcd-watch-from").and_then(|v| v.parse().ok());
        if let Err(e) = self.start(key.into_bytes(), from) {
            self.fail(&e);
        }
        Action::Pause
    }
}
