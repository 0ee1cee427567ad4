//! The upstream: answers every request with a JSON echo of what it received and keeps a
//! log of them, so a scenario can assert what actually crossed Envoy.

use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Requests under this path are answered by the upstream itself (for harnesses that cannot
/// reach its memory, such as compose) and are not recorded.
pub const REPORT_PATH: &str = "/__upstream/received";

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn to_json(&self) -> Value {
        let headers: serde_json::Map<String, Value> =
            self.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone()))).collect();
        json!({"method": self.method, "path": self.path, "headers": headers})
    }
}

pub struct Upstream {
    pub port: u16,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Upstream {
    pub fn start(addr: &str) -> Upstream {
        let server = Arc::new(tiny_http::Server::http(addr).unwrap_or_else(|e| panic!("upstream bind {addr}: {e}")));
        let port = server.server_addr().to_ip().map(|a| a.port()).unwrap_or(0);
        let received = Arc::new(Mutex::new(Vec::new()));
        let (s, log) = (server.clone(), received.clone());
        let thread = std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let mut sink = Vec::new();
                let _ = req.as_reader().read_to_end(&mut sink);
                let r = Received {
                    method: req.method().as_str().to_string(),
                    path: req.url().to_string(),
                    headers: req.headers().iter().map(|h| (h.field.as_str().as_str().to_string(), h.value.as_str().to_string())).collect(),
                };
                let body = if r.path == REPORT_PATH {
                    let all = log.lock().map(|l| l.iter().map(Received::to_json).collect::<Vec<_>>()).unwrap_or_default();
                    Value::Array(all).to_string()
                } else {
                    let echo = json!({"received": r.to_json()}).to_string();
                    if let Ok(mut l) = log.lock() {
                        l.push(r);
                    }
                    echo
                };
                let header = tiny_http::Header::from_bytes("content-type", "application/json").expect("static header");
                let _ = req.respond(tiny_http::Response::from_string(body).with_header(header));
            }
        });
        Upstream { port, server, thread: Some(thread), received }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
