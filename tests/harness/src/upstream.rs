//! The upstream: answers every request with a JSON echo of what it received and keeps a
//! log of them, so a scenario can assert what actually crossed Envoy.

use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

use crate::server::{HeadersHook, Request, Response, Server};

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

    /// Parses one entry of the report served at `REPORT_PATH`.
    pub fn from_json(v: &Value) -> Option<Received> {
        let headers = v["headers"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        Some(Received {
            method: v["method"].as_str()?.to_string(),
            path: v["path"].as_str()?.to_string(),
            headers,
        })
    }

    fn to_json(&self) -> Value {
        let headers: serde_json::Map<String, Value> =
            self.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone()))).collect();
        json!({"method": self.method, "path": self.path, "headers": headers})
    }
}

pub struct Upstream {
    pub port: u16,
    _server: Server,
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Mutex<Vec<Received>>>,
}

impl Upstream {
    pub fn start(addr: &str) -> Upstream {
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let arrived = Arc::new(Mutex::new(Vec::new()));
        let heads = arrived.clone();
        let on_headers: HeadersHook = Arc::new(move |req: &Request| {
            if req.target != REPORT_PATH {
                if let Ok(mut l) = heads.lock() {
                    l.push(Received {
                        method: req.method.clone(),
                        path: req.target.clone(),
                        headers: req.headers.clone(),
                    });
                }
            }
        });
        let server = Server::start_with_hook(
            addr,
            Arc::new(move |req: &Request| {
                let r = Received {
                    method: req.method.clone(),
                    path: req.target.clone(),
                    headers: req.headers.clone(),
                };
                if r.path == REPORT_PATH {
                    let all = log
                        .lock()
                        .map(|l| l.iter().map(Received::to_json).collect::<Vec<_>>())
                        .unwrap_or_default();
                    return Response::json(200, &Value::Array(all));
                }
                let echo = json!({"received": r.to_json()});
                if let Ok(mut l) = log.lock() {
                    l.push(r);
                }
                Response::json(200, &echo)
            }),
            Some(on_headers),
        );
        Upstream { port: server.port, _server: server, received, arrived }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Every request whose headers reached the upstream, in order of arrival, including
    /// those that never completed (a body that never came, a reset): what leaked, even when
    /// it was not answered.
    pub fn arrived(&self) -> Vec<Received> {
        self.arrived.lock().map(|l| l.clone()).unwrap_or_default()
    }
}
