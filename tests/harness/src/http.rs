//! A small blocking HTTP client for scenarios: every status is returned, never raised.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// One agent keeps one pooled connection per host, so a scenario that must stay on one
/// Envoy worker uses one `Client`.
pub struct Client {
    agent: ureq::Agent,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    pub fn new() -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Client { agent }
    }

    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Response {
        self.try_get(url, headers).unwrap_or_else(|| panic!("GET {url} failed"))
    }

    /// `None` when no HTTP answer came (connection refused or reset, timeout).
    pub fn try_get(&self, url: &str, headers: &[(&str, &str)]) -> Option<Response> {
        let mut req = self.agent.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match req.call() {
            Ok(r) => Some(convert(r)),
            Err(e) => {
                eprintln!("GET {url}: {e}");
                None
            }
        }
    }

    pub fn post(&self, url: &str, headers: &[(&str, &str)], body: &str) -> Response {
        let mut req = self.agent.post(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        convert(req.send(body.as_bytes()).unwrap_or_else(|e| panic!("POST {url}: {e}")))
    }
}

fn convert(mut resp: ureq::http::Response<ureq::Body>) -> Response {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Response { status, headers, body }
}
