//! A stand-in for Envoy below the proxy-wasm ABI, so the glue in `src/wasm/` runs natively
//! in seconds. It defines the `proxy_*` host functions the SDK imports and drives the SDK's
//! exported `proxy_on_*` entry points the way Envoy does, copying the rules the filter
//! depends on (../shared/reference/proxy-wasm-in-envoy.md, proxy-wasm-cpp-host):
//! - shared data is one map per process, every write takes a fresh CAS number, a write with
//!   a stale CAS is `CasMismatch`, a write with CAS 0 or to an absent key always succeeds;
//! - a callout needs a known cluster and `:method`, `:path`, `:authority` (else
//!   `BadArgument`), its answer goes to the context that dispatched it, a failed call
//!   answers with no headers, and a stream's calls are cancelled when the stream goes;
//! - an empty value comes back as a null pointer; metrics are process-wide, by name.
//!
//! One thread is one worker (its own VM: the SDK's dispatcher is thread-local); a `Process`
//! shared between threads is one Envoy process.

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status, StreamType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What one Envoy process holds for every worker.
pub struct Process {
    shared: Mutex<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: AtomicU32,
    metrics: Mutex<Vec<(String, MetricType, u64)>>,
    clock_ns: AtomicU64,
    clusters: Vec<String>,
}

impl Process {
    /// A process whose clock reads `now` (Unix seconds) and whose clusters are `clusters`.
    pub fn new(now: u64, clusters: &[&str]) -> Arc<Process> {
        Arc::new(Process {
            shared: Mutex::new(HashMap::new()),
            next_cas: AtomicU32::new(1),
            metrics: Mutex::new(Vec::new()),
            clock_ns: AtomicU64::new(now * 1_000_000_000),
            clusters: clusters.iter().map(|c| c.to_string()).collect(),
        })
    }

    pub fn advance_ms(&self, ms: u64) {
        self.clock_ns.fetch_add(ms * 1_000_000, Ordering::SeqCst);
    }

    /// A metric's value by its full name (as Envoy's admin `/stats` would show it).
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.metrics.lock().unwrap().iter().find(|(n, _, _)| n == name).map(|(_, _, v)| *v)
    }
}

/// A local reply the filter sent on a stream.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A callout the filter dispatched and that has not been answered.
#[derive(Clone, Debug)]
pub struct Call {
    pub token: u32,
    pub context: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A header map as the host keeps it: values are bytes (obs-text is not UTF-8).
type Headers = Vec<(String, Vec<u8>)>;

#[derive(Default)]
pub struct Stream {
    pub request: Headers,
    pub response: Headers,
    pub reply: Option<Reply>,
    pub resumed: u32,
}

#[derive(Default)]
struct Worker {
    process: Option<Arc<Process>>,
    plugin_config: Vec<u8>,
    effective: u32,
    root: u32,
    tick_ms: u32,
    streams: HashMap<u32, Stream>,
    calls: Vec<Call>,
    next_token: u32,
    /// The answer being delivered (headers, body) while `on_http_call_response` runs.
    answer: Option<(Headers, Vec<u8>)>,
    logs: Vec<(u32, String)>,
}

thread_local! {
    static WORKER: RefCell<Worker> = RefCell::new(Worker::default());
    /// Context ids are never reused on a thread: the SDK's dispatcher outlives a `Vm`.
    static NEXT_ID: std::cell::Cell<u32> = const { std::cell::Cell::new(1) };
}

fn next_id() -> u32 {
    NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    })
}

fn with<R>(f: impl FnOnce(&mut Worker) -> R) -> R {
    WORKER.with(|w| f(&mut w.borrow_mut()))
}

fn process() -> Arc<Process> {
    with(|w| w.process.clone()).expect("the worker is attached to a process")
}

unsafe fn bytes<'a>(data: *const u8, size: usize) -> &'a [u8] {
    if data.is_null() || size == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(data, size)
    }
}

unsafe fn text(data: *const u8, size: usize) -> String {
    String::from_utf8_lossy(bytes(data, size)).into_owned()
}

/// Hands bytes to the VM as the host does: memory the SDK frees, null when empty.
unsafe fn give(value: &[u8], data: *mut *mut u8, size: *mut usize) {
    if value.is_empty() {
        *data = std::ptr::null_mut();
        *size = 0;
        return;
    }
    let boxed: Box<[u8]> = value.into();
    *size = boxed.len();
    *data = Box::into_raw(boxed) as *mut u8;
}

/// proxy-wasm's map encoding: count, (key length, value length) pairs, then NUL-ended data.
fn decode_map(raw: &[u8]) -> Vec<(String, String)> {
    let word = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().unwrap()) as usize;
    if raw.len() < 4 {
        return Vec::new();
    }
    let n = word(0);
    let mut at = 4 + 8 * n;
    (0..n)
        .map(|i| {
            let (k, v) = (word(4 + 8 * i), word(8 + 8 * i));
            let key = String::from_utf8_lossy(&raw[at..at + k]).into_owned();
            at += k + 1;
            let value = String::from_utf8_lossy(&raw[at..at + v]).into_owned();
            at += v + 1;
            (key, value)
        })
        .collect()
}

fn headers_of(w: &mut Worker, map: MapType) -> Option<&mut Headers> {
    match map {
        MapType::HttpCallResponseHeaders => w.answer.as_mut().map(|(h, _)| h),
        MapType::HttpRequestHeaders => w.streams.get_mut(&w.effective).map(|s| &mut s.request),
        MapType::HttpResponseHeaders => w.streams.get_mut(&w.effective).map(|s| &mut s.response),
        _ => None,
    }
}

#[no_mangle]
unsafe extern "C" fn proxy_log(level: LogLevel, data: *const u8, size: usize) -> Status {
    let message = text(data, size);
    if level as u32 >= LogLevel::Error as u32 {
        eprintln!("[envoy double] {message}"); // panics reach here through the SDK's hook
    }
    with(|w| w.logs.push((level as u32, message)));
    Status::Ok
}

#[no_mangle]
unsafe extern "C" fn proxy_get_log_level(level: *mut LogLevel) -> Status {
    *level = LogLevel::Info;
    Status::Ok
}

#[no_mangle]
unsafe extern "C" fn proxy_get_current_time_nanoseconds(time: *mut u64) -> Status {
    *time = process().clock_ns.load(Ordering::SeqCst);
    Status::Ok
}

#[no_mangle]
extern "C" fn proxy_set_tick_period_milliseconds(period: u32) -> Status {
    with(|w| w.tick_ms = period);
    Status::Ok
}

#[no_mangle]
unsafe extern "C" fn proxy_get_buffer_bytes(
    buffer: BufferType,
    start: usize,
    max: usize,
    data: *mut *mut u8,
    size: *mut usize,
) -> Status {
    let value = with(|w| match buffer {
        BufferType::PluginConfiguration => Some(w.plugin_config.clone()),
        BufferType::HttpCallResponseBody => w.answer.as_ref().map(|(_, b)| b.clone()),
        _ => None,
    });
    let Some(value) = value else { return Status::NotFound };
    let end = start.saturating_add(max).min(value.len());
    give(value.get(start.min(end)..end).unwrap_or_default(), data, size);
    Status::Ok
}

#[no_mangle]
unsafe extern "C" fn proxy_get_header_map_value(
    map: MapType,
    key: *const u8,
    key_size: usize,
    data: *mut *mut u8,
    size: *mut usize,
) -> Status {
    let key = text(key, key_size);
    let value =
        with(|w| headers_of(w, map).and_then(|h| h.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())));
    match value {
        Some(v) => {
            give(&v, data, size);
            Status::Ok
        }
        None => Status::NotFound,
    }
}

#[no_mangle]
unsafe extern "C" fn proxy_remove_header_map_value(map: MapType, key: *const u8, key_size: usize) -> Status {
    let key = text(key, key_size);
    with(|w| headers_of(w, map).map(|h| h.retain(|(k, _)| *k != key)));
    Status::Ok
}

#[no_mangle]
unsafe extern "C" fn proxy_replace_header_map_value(
    map: MapType,
    key: *const u8,
    key_size: usize,
    value: *const u8,
    value_size: usize,
) -> Status {
    let (key, value) = (text(key, key_size), bytes(value, value_size).to_vec());
    with(|w| {
        if let Some(h) = headers_of(w, map) {
            h.retain(|(k, _)| *k != key);
            h.push((key, value));
        }
    });
    Status::Ok
}

#[no_mangle]
unsafe extern "C" fn proxy_add_header_map_value(
    map: MapType,
    key: *const u8,
    key_size: usize,
    value: *const u8,
    value_size: usize,
) -> Status {
    let (key, value) = (text(key, key_size), bytes(value, value_size).to_vec());
    with(|w| headers_of(w, map).map(|h| h.push((key, value))));
    Status::Ok
}

#[no_mangle]
unsafe extern "C" fn proxy_get_shared_data(
    key: *const u8,
    key_size: usize,
    data: *mut *mut u8,
    size: *mut usize,
    cas: *mut u32,
) -> Status {
    let key = text(key, key_size);
    let found = process().shared.lock().unwrap().get(&key).cloned();
    let Some((value, c)) = found else { return Status::NotFound };
    give(&value, data, size);
    *cas = c;
    Status::Ok
}

#[no_mangle]
unsafe extern "C" fn proxy_set_shared_data(
    key: *const u8,
    key_size: usize,
    value: *const u8,
    value_size: usize,
    cas: u32,
) -> Status {
    let (key, value) = (text(key, key_size), bytes(value, value_size).to_vec());
    let p = process();
    let mut map = p.shared.lock().unwrap();
    if let Some((_, current)) = map.get(&key) {
        if cas != 0 && cas != *current {
            return Status::CasMismatch;
        }
    }
    let fresh = p.next_cas.fetch_add(1, Ordering::SeqCst);
    map.insert(key, (value, fresh));
    Status::Ok
}

#[no_mangle]
extern "C" fn proxy_continue_stream(stream: StreamType) -> Status {
    with(|w| match (stream, w.streams.get_mut(&w.effective)) {
        (StreamType::HttpRequest, Some(s)) => {
            s.resumed += 1;
            Status::Ok
        }
        _ => Status::BadArgument,
    })
}

#[no_mangle]
unsafe extern "C" fn proxy_send_local_response(
    status: u32,
    _details: *const u8,
    _details_size: usize,
    body: *const u8,
    body_size: usize,
    headers: *const u8,
    headers_size: usize,
    _grpc_status: i32,
) -> Status {
    let reply = Reply {
        status,
        headers: decode_map(bytes(headers, headers_size)),
        body: bytes(body, body_size).to_vec(),
    };
    with(|w| match w.streams.get_mut(&w.effective) {
        Some(s) if s.reply.is_none() => {
            s.reply = Some(reply);
            Status::Ok
        }
        _ => Status::BadArgument,
    })
}

#[no_mangle]
unsafe extern "C" fn proxy_http_call(
    cluster: *const u8,
    cluster_size: usize,
    headers: *const u8,
    headers_size: usize,
    body: *const u8,
    body_size: usize,
    _trailers: *const u8,
    _trailers_size: usize,
    _timeout_ms: u32,
    token: *mut u32,
) -> Status {
    let cluster = text(cluster, cluster_size);
    let headers = decode_map(bytes(headers, headers_size));
    let lacks = |name: &str| !headers.iter().any(|(k, v)| k == name && !v.is_empty());
    if !process().clusters.contains(&cluster) || lacks(":method") || lacks(":path") || lacks(":authority") {
        return Status::BadArgument;
    }
    with(|w| {
        w.next_token += 1;
        *token = w.next_token;
        let body = bytes(body, body_size).to_vec();
        w.calls.push(Call { token: w.next_token, context: w.effective, cluster, headers, body });
    });
    Status::Ok
}

#[no_mangle]
extern "C" fn proxy_set_effective_context(context: u32) -> Status {
    with(|w| {
        if context == w.root || w.streams.contains_key(&context) {
            w.effective = context;
            Status::Ok
        } else {
            Status::BadArgument
        }
    })
}

#[no_mangle]
unsafe extern "C" fn proxy_define_metric(
    kind: MetricType,
    name: *const u8,
    size: usize,
    id: *mut u32,
) -> Status {
    let name = text(name, size);
    let p = process();
    let mut metrics = p.metrics.lock().unwrap();
    let at = match metrics.iter().position(|(n, _, _)| *n == name) {
        Some(at) => at,
        None => {
            metrics.push((name, kind, 0));
            metrics.len() - 1
        }
    };
    *id = at as u32;
    Status::Ok
}

fn metric(id: u32, f: impl FnOnce(&mut (String, MetricType, u64))) -> Status {
    let p = process();
    let mut metrics = p.metrics.lock().unwrap();
    match metrics.get_mut(id as usize) {
        Some(m) => {
            f(m);
            Status::Ok
        }
        None => Status::NotFound,
    }
}

#[no_mangle]
unsafe extern "C" fn proxy_get_metric(id: u32, value: *mut u64) -> Status {
    metric(id, |m| *value = m.2)
}

#[no_mangle]
extern "C" fn proxy_record_metric(id: u32, value: u64) -> Status {
    metric(id, |m| m.2 = value)
}

#[no_mangle]
extern "C" fn proxy_increment_metric(id: u32, offset: i64) -> Status {
    metric(id, |m| m.2 = m.2.saturating_add_signed(offset))
}

// The SDK's exports: the entry points Envoy calls.
extern "C" {
    fn proxy_on_context_create(context_id: u32, root_context_id: u32);
    fn proxy_on_vm_start(context_id: u32, size: usize) -> bool;
    fn proxy_on_configure(context_id: u32, size: usize) -> bool;
    fn proxy_on_tick(context_id: u32);
    fn proxy_on_request_headers(context_id: u32, headers: usize, end_of_stream: bool) -> u32;
    fn proxy_on_response_headers(context_id: u32, headers: usize, end_of_stream: bool) -> u32;
    fn proxy_on_done(context_id: u32) -> bool;
    fn proxy_on_delete(context_id: u32);
    fn proxy_on_http_call_response(context_id: u32, token: u32, headers: usize, body: usize, trailers: usize);
}

/// What `on_http_request_headers` answered: go on, or stop (answered locally or held).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// One worker's VM, loaded with the filter and configured, on the current thread (the
/// latest `Vm` started on a thread is the one in use).
pub struct Vm {
    root: u32,
}

impl Vm {
    /// Loads the filter as Envoy does (`_initialize`, root context, `on_vm_start`,
    /// `on_configure`). Err: the filter refused the configuration; the logs it wrote.
    pub fn start(process: &Arc<Process>, config: &serde_json::Value) -> Result<Vm, Vec<String>> {
        let root = next_id();
        with(|w| {
            *w = Worker { process: Some(process.clone()), root, effective: root, ..Worker::default() };
            w.plugin_config = config.to_string().into_bytes();
        });
        // The SDK installs its logger once per process, unguarded against a race: one worker
        // at a time, as Envoy starts them.
        static STARTING: Mutex<()> = Mutex::new(());
        {
            let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
            super::_initialize();
        }
        let configured = unsafe {
            proxy_on_context_create(root, 0);
            proxy_on_vm_start(root, 0) && proxy_on_configure(root, with(|w| w.plugin_config.len()))
        };
        if !configured {
            return Err(with(|w| w.logs.iter().map(|(_, m)| m.clone()).collect()));
        }
        Ok(Vm { root })
    }

    /// A request's headers reach the filter. Returns the stream's id and what the filter did.
    pub fn request(&mut self, headers: &[(&str, &str)]) -> (u32, Action) {
        let id = next_id();
        let request = headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
        with(|w| {
            w.streams.insert(id, Stream { request, ..Stream::default() });
            w.effective = id;
        });
        let action = unsafe {
            proxy_on_context_create(id, self.root);
            proxy_on_request_headers(id, headers.len(), true)
        };
        (id, if action == 0 { Action::Continue } else { Action::Pause })
    }

    /// The upstream's response headers reach the filter; returns them as the client gets them.
    pub fn respond(&mut self, id: u32, headers: &[(&str, &str)]) -> Vec<(String, String)> {
        with(|w| {
            w.effective = id;
            if let Some(s) = w.streams.get_mut(&id) {
                s.response = headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
            }
        });
        unsafe { proxy_on_response_headers(id, headers.len(), true) };
        self.stream(id, |s| {
            s.response.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned())).collect()
        })
    }

    /// The stream ends (Envoy's `on_done` then `on_delete`); its callouts are cancelled.
    pub fn end(&mut self, id: u32) {
        with(|w| w.effective = id);
        unsafe {
            proxy_on_done(id);
            proxy_on_delete(id);
        }
        with(|w| {
            w.streams.remove(&id);
            w.calls.retain(|c| c.context != id);
        });
    }

    pub fn tick(&mut self) {
        with(|w| w.effective = self.root);
        unsafe { proxy_on_tick(self.root) };
    }

    /// Callouts dispatched and not yet answered, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        with(|w| w.calls.clone())
    }

    /// Answers a callout; `status` None: the call failed (Envoy reports no headers).
    pub fn answer(&mut self, token: u32, status: Option<u16>, body: &[u8]) {
        let call = with(|w| {
            let at = w.calls.iter().position(|c| c.token == token).expect("no such call");
            let call = w.calls.remove(at);
            let headers = status.map(|s| vec![(":status".to_string(), s.to_string().into_bytes())]);
            w.answer = Some((headers.clone().unwrap_or_default(), body.to_vec()));
            w.effective = call.context;
            (call, headers.map_or(0, |h| h.len()))
        });
        let ((call, headers), body_len) = (call, if status.is_some() { body.len() } else { 0 });
        unsafe { proxy_on_http_call_response(call.context, token, headers, body_len, 0) };
        with(|w| w.answer = None);
    }

    pub fn stream<R>(&self, id: u32, f: impl FnOnce(&Stream) -> R) -> R {
        with(|w| f(w.streams.get(&id).expect("no such stream")))
    }

    pub fn reply(&self, id: u32) -> Option<Reply> {
        self.stream(id, |s| s.reply.clone())
    }

    /// A request header as the upstream would see it.
    pub fn upstream_header(&self, id: u32, name: &str) -> Option<String> {
        self.stream(id, |s| {
            s.request.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        })
    }

    pub fn resumed(&self, id: u32) -> u32 {
        self.stream(id, |s| s.resumed)
    }

    pub fn tick_period_ms(&self) -> u32 {
        with(|w| w.tick_ms)
    }

    pub fn logs(&self) -> Vec<String> {
        with(|w| w.logs.iter().map(|(_, m)| m.clone()).collect())
    }

    /// Audit lines (the JSON the filter logs), parsed.
    pub fn audits(&self) -> Vec<serde_json::Value> {
        let lines = self.logs();
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(crate::audit::PREFIX))
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect()
    }
}

/// Host functions the SDK links against and the filter never calls: each tells the caller
/// it is not provided (the SDK would panic on that, which a test would show at once).
macro_rules! not_provided {
    ($($name:ident($($arg:ty),*);)*) => {$(
        #[no_mangle]
        extern "C" fn $name($(_: $arg),*) -> Status {
            Status::InternalFailure
        }
    )*};
}

not_provided! {
    proxy_set_buffer_bytes(BufferType, usize, usize, *const u8, usize);
    proxy_get_header_map_pairs(MapType, *mut *mut u8, *mut usize);
    proxy_set_header_map_pairs(MapType, *const u8, usize);
    proxy_get_property(*const u8, usize, *mut *mut u8, *mut usize);
    proxy_set_property(*const u8, usize, *const u8, usize);
    proxy_register_shared_queue(*const u8, usize, *mut u32);
    proxy_resolve_shared_queue(*const u8, usize, *const u8, usize, *mut u32);
    proxy_dequeue_shared_queue(u32, *mut *mut u8, *mut usize);
    proxy_enqueue_shared_queue(u32, *const u8, usize);
    proxy_close_stream(StreamType);
    proxy_grpc_call(*const u8, usize, *const u8, usize, *const u8, usize, *const u8, usize, *const u8, usize, u32, *mut u32);
    proxy_grpc_stream(*const u8, usize, *const u8, usize, *const u8, usize, *const u8, usize, *mut u32);
    proxy_grpc_send(u32, *const u8, usize, bool);
    proxy_grpc_cancel(u32);
    proxy_grpc_close(u32);
    proxy_get_status(*mut u32, *mut *mut u8, *mut usize);
    proxy_call_foreign_function(*const u8, usize, *const u8, usize, *mut *mut u8, *mut usize);
    proxy_done();
}
