//! A gRPC relay for end-to-end tests: each HTTP request names a gRPC method of the `etcd`
//! cluster and carries one request message; the probe sends it through Envoy's gRPC client,
//! as the filter will, and answers with what came back. The tests build and read the
//! messages with tokenguard's own `src/etcd`, so this proves them against a real etcd.
//!
//! Request headers: `x-grpc-service`, `x-grpc-method`, `x-grpc-message` (the serialized
//! request, hex), optionally `x-grpc-token` (sent as the `token` metadata etcd reads) and
//! `x-grpc-stream: <n>` (open a stream, send the message, answer after `n` messages).
//! Answer: 200 with the response messages in hex, comma-separated; or 502 with what Envoy
//! reported in `x-probe-error`. Test code, kept small.

#[path = "../../../src/etcd/proto.rs"]
#[allow(dead_code)]
mod proto;

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
        Some(Box::new(Probe::default()))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

#[derive(Default)]
struct Probe {
    answered: bool,
    /// Stream mode: how many messages to collect before answering.
    wanted: usize,
    received: Vec<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
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

    fn header(&self, name: &str) -> Result<String, String> {
        self.get_http_request_header(name).ok_or(format!("{name} is required"))
    }

    fn start(&mut self) -> Result<(), String> {
        let (service, method) = (self.header("x-grpc-service")?, self.header("x-grpc-method")?);
        let message = unhex(&self.header("x-grpc-message")?).ok_or("x-grpc-message is not hex")?;
        let token = self.get_http_request_header("x-grpc-token");
        let metadata: Vec<(&str, &[u8])> = token.iter().map(|t| ("token", t.as_bytes())).collect();
        let upstream = proto::grpc_service("etcd", None);
        // The SDK takes the upstream as &str; the message is ASCII for a short cluster name.
        let upstream = std::str::from_utf8(&upstream).map_err(|e| e.to_string())?;
        match self.get_http_request_header("x-grpc-stream").and_then(|n| n.parse().ok()) {
            None => {
                let timeout = Duration::from_secs(5);
                self.dispatch_grpc_call(upstream, &service, &method, metadata, Some(&message), timeout)
                    .map_err(|s| format!("dispatch_grpc_call: {s:?}"))?;
            }
            Some(n) => {
                self.wanted = n;
                let id = self
                    .open_grpc_stream(upstream, &service, &method, metadata)
                    .map_err(|s| format!("open_grpc_stream: {s:?}"))?;
                self.send_grpc_stream_message(id, Some(&message), false);
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
        self.answer(200, vec![], hex(&body).as_bytes());
    }

    fn on_grpc_stream_message(&mut self, token: u32, size: usize) {
        let body = self.get_grpc_stream_message(0, size).unwrap_or_default();
        self.received.push(hex(&body));
        if self.received.len() >= self.wanted {
            let all = self.received.join(",");
            self.answer(200, vec![], all.as_bytes());
            self.cancel_grpc_stream(token);
        }
    }

    fn on_grpc_stream_close(&mut self, _token: u32, status: u32) {
        let (_, message) = self.get_grpc_status();
        self.fail(&format!("stream closed with grpc status {status} {}", message.unwrap_or_default()));
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if let Err(e) = self.start() {
            self.fail(&e);
        }
        Action::Pause
    }
}
