//! A minimal threaded HTTP/1.1 server for the test services.
//!
//! Written here rather than taken from a crate because the tests need full control of the
//! wire (delays, oversized or broken answers, closing mid-response) and one thread per
//! connection, so no request ever waits behind another.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (a slow server).
    pub delay: Option<Duration>,
    /// Close the connection instead of answering (a crashing server).
    pub hang_up: bool,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
            delay: None,
            hang_up: false,
        }
    }

    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response::new(status, "application/json", v.to_string())
    }

    pub fn text(status: u16, t: &str) -> Response {
        Response::new(status, "text/plain", t)
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;
/// Called with each request as soon as its headers are in (its body still empty), so a
/// request that never completes (its body held back, the connection reset) is seen too.
pub type HeadersHook = Arc<dyn Fn(&Request) + Send + Sync>;

/// A running server; stops accepting when dropped.
pub struct Server {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(addr: &str, handler: Handler) -> Server {
        Self::start_with_hook(addr, handler, None)
    }

    /// Like `start`, calling `on_headers` as each request's headers arrive.
    pub fn start_with_hook(addr: &str, handler: Handler, on_headers: Option<HeadersHook>) -> Server {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = conn {
                    let (h, hook) = (handler.clone(), on_headers.clone());
                    std::thread::spawn(move || serve(stream, h, hook));
                }
            }
        });
        Server { port, stop, thread: Some(thread) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, handler: Handler, on_headers: Option<HeadersHook>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    // Without this, Nagle's algorithm holds small answers for the peer's delayed ACK (40 ms).
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader, on_headers.as_ref()) {
        let close = req.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let resp = handler(&req);
        if let Some(d) = resp.delay {
            std::thread::sleep(d);
        }
        if resp.hang_up {
            break;
        }
        let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
        for (k, v) in &resp.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", resp.body.len()));
        let mut wire = head.into_bytes();
        wire.extend_from_slice(&resp.body);
        if writer.write_all(&wire).is_err() || close {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

/// One line, lossily decoded: header values may hold bytes that are not UTF-8 (obs-text),
/// and Envoy forwards them as they came.
fn read_line(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut raw = Vec::new();
    if r.read_until(b'\n', &mut raw).ok()? == 0 {
        return None;
    }
    Some(String::from_utf8_lossy(&raw).into_owned())
}

fn read_request(r: &mut BufReader<TcpStream>, on_headers: Option<&HeadersHook>) -> Option<Request> {
    let line = read_line(r)?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let h = read_line(r)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    if let Some(hook) = on_headers {
        hook(&Request {
            method: method.clone(),
            target: target.clone(),
            headers: headers.clone(),
            body: vec![],
        });
    }
    let find = |name: &str| {
        headers.iter().find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let size = read_line(r)?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = find("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body = vec![0; len];
        r.read_exact(&mut body).ok()?;
    }
    Some(Request { method, target, headers, body })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
