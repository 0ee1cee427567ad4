//! The host functions: what the SDK imports from Envoy, as Envoy answers them.

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status, StreamType};
use std::sync::atomic::Ordering;

use super::{process, with, Call, Headers, Reply, Worker};

pub(super) unsafe fn bytes<'a>(data: *const u8, size: usize) -> &'a [u8] {
    if data.is_null() || size == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(data, size)
    }
}

pub(super) unsafe fn text(data: *const u8, size: usize) -> String {
    String::from_utf8_lossy(bytes(data, size)).into_owned()
}

/// Hands bytes to the VM as the host does: memory the SDK frees, null when empty.
pub(super) unsafe fn give(value: &[u8], data: *mut *mut u8, size: *mut usize) {
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
pub(super) fn decode_map(raw: &[u8]) -> Vec<(String, String)> {
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
    super::count("proxy_log");
    let message = text(data, size);
    if level as u32 >= LogLevel::Error as u32 {
        eprintln!("[envoy double] {message}"); // panics reach here through the SDK's hook
    }
    with(|w| w.logs.push((level as u32, message)));
    Status::Ok
}

#[no_mangle]
unsafe extern "C" fn proxy_get_log_level(level: *mut LogLevel) -> Status {
    super::count("proxy_get_log_level");
    *level = LogLevel::Info;
    Status::Ok
}

#[no_mangle]
unsafe extern "C" fn proxy_get_current_time_nanoseconds(time: *mut u64) -> Status {
    super::count("proxy_get_current_time_nanoseconds");
    *time = process().clock_ns.load(Ordering::SeqCst);
    Status::Ok
}

#[no_mangle]
extern "C" fn proxy_set_tick_period_milliseconds(period: u32) -> Status {
    super::count("proxy_set_tick_period_milliseconds");
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
    super::count("proxy_get_buffer_bytes");
    let value = with(|w| match buffer {
        BufferType::PluginConfiguration => Some(w.plugin_config.clone()),
        BufferType::HttpCallResponseBody => w.answer.as_ref().map(|(_, b)| b.clone()),
        BufferType::GrpcReceiveBuffer => w.grpc_answer.clone(),
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
    super::count("proxy_get_header_map_value");
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
    super::count("proxy_remove_header_map_value");
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
    super::count("proxy_replace_header_map_value");
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
    super::count("proxy_add_header_map_value");
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
    super::count("proxy_get_shared_data");
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
    super::count("proxy_set_shared_data");
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
    super::count("proxy_continue_stream");
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
    super::count("proxy_send_local_response");
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
    super::count("proxy_http_call");
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
    super::count("proxy_set_effective_context");
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
    super::count("proxy_define_metric");
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
    let rejected = p.rejected_stats.lock().unwrap().clone();
    let mut metrics = p.metrics.lock().unwrap();
    match metrics.get_mut(id as usize) {
        Some(m) => {
            f(m);
            if rejected.contains(&m.0) {
                m.2 = 0;
            }
            Status::Ok
        }
        None => Status::NotFound,
    }
}

#[no_mangle]
unsafe extern "C" fn proxy_get_metric(id: u32, value: *mut u64) -> Status {
    super::count("proxy_get_metric");
    metric(id, |m| *value = m.2)
}

#[no_mangle]
extern "C" fn proxy_record_metric(id: u32, value: u64) -> Status {
    super::count("proxy_record_metric");
    metric(id, |m| m.2 = value)
}

#[no_mangle]
extern "C" fn proxy_increment_metric(id: u32, offset: i64) -> Status {
    super::count("proxy_increment_metric");
    metric(id, |m| m.2 = m.2.saturating_add_signed(offset))
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
    proxy_call_foreign_function(*const u8, usize, *const u8, usize, *mut *mut u8, *mut usize);
    proxy_done();
}
