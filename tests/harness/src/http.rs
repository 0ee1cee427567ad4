//! A small blocking HTTP client for scenarios: every status is returned, never raised.

use std::io::{Read, Write};
use std::net::TcpStream;
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

/// Percent-encodes a query parameter value: unreserved characters (RFC 3986 §2.3) stay,
/// every other byte becomes `%XX`.
pub fn query_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The admin API's revoke URL: `POST {base}{prefix}revoke?{key}={value}`, the value
/// percent-encoded. `key` is one of `jti`, `sub`, `sid`, `token_sha256`.
pub fn revoke_url(base: &str, prefix: &str, key: &str, value: &str) -> String {
    format!("{base}{prefix}revoke?{key}={}", query_encode(value))
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
        self.try_post(url, headers, body).unwrap_or_else(|| panic!("POST {url} failed"))
    }

    /// `None` when no HTTP answer came.
    pub fn try_post(&self, url: &str, headers: &[(&str, &str)], body: &str) -> Option<Response> {
        let mut req = self.agent.post(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match req.send(body.as_bytes()) {
            Ok(r) => Some(convert(r)),
            Err(e) => {
                eprintln!("POST {url}: {e}");
                None
            }
        }
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

/// Sends `request` exactly as given (any bytes, including ones no HTTP library would put in
/// a header) on a fresh connection and reads the answer until the server closes it. The
/// request should carry `connection: close`.
pub fn raw_exchange(port: u16, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    stream.write_all(request).expect("write request");
    let mut wire = Vec::new();
    let _ = stream.read_to_end(&mut wire);
    parse_response(&wire).unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&wire)))
}

/// An HTTP/1.1 answer with a content-length body (what Envoy's local replies are).
fn parse_response(wire: &[u8]) -> Option<Response> {
    let split = wire.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&wire[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = wire[split + 4..].to_vec();
    if let Some(len) = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()) {
        body.truncate(len);
    }
    Some(Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}
