//! gRPC as Envoy's async client gives it to a plugin: unary calls and streams on a
//! `GrpcService` naming a known cluster (anything else is `BadArgument`, which the SDK does
//! not expect: a test doing that sees the panic a real VM would die of), answers delivered
//! to the context that dispatched, cancelled calls never answered.

use prost::Message;
use proxy_wasm::types::Status;

use super::abi::{bytes, decode_map, give, text};
use super::{process, with};
use crate::etcd::proto::GrpcService;

/// A gRPC call or stream the filter opened and that is not over.
#[derive(Clone, Debug)]
pub struct Grpc {
    pub token: u32,
    pub context: u32,
    pub cluster: String,
    pub service: String,
    pub method: String,
    pub metadata: Vec<(String, String)>,
    /// The unary request, or every message sent on the stream.
    pub sent: Vec<Vec<u8>>,
    pub stream: bool,
}

/// The raw arguments both `proxy_grpc_call` and `proxy_grpc_stream` start with.
struct Target(*const u8, usize, *const u8, usize, *const u8, usize, *const u8, usize);

unsafe fn open(t: Target, first: Option<Vec<u8>>, token: *mut u32) -> Status {
    let cluster = GrpcService::decode(bytes(t.0, t.1))
        .ok()
        .and_then(|g| g.envoy_grpc)
        .map(|e| e.cluster_name)
        .filter(|c| process().clusters.contains(c));
    let Some(cluster) = cluster else { return Status::BadArgument };
    with(|w| {
        w.next_token += 1;
        *token = w.next_token;
        w.grpc.push(Grpc {
            token: w.next_token,
            context: w.effective,
            cluster,
            service: text(t.2, t.3),
            method: text(t.4, t.5),
            metadata: decode_map(bytes(t.6, t.7)),
            stream: first.is_none(),
            sent: first.into_iter().collect(),
        });
    });
    Status::Ok
}

#[no_mangle]
unsafe extern "C" fn proxy_grpc_call(
    upstream: *const u8,
    upstream_size: usize,
    service: *const u8,
    service_size: usize,
    method: *const u8,
    method_size: usize,
    metadata: *const u8,
    metadata_size: usize,
    message: *const u8,
    message_size: usize,
    _timeout_ms: u32,
    token: *mut u32,
) -> Status {
    super::count("proxy_grpc_call");
    let first = Some(bytes(message, message_size).to_vec());
    let t =
        Target(upstream, upstream_size, service, service_size, method, method_size, metadata, metadata_size);
    open(t, first, token)
}

#[no_mangle]
unsafe extern "C" fn proxy_grpc_stream(
    upstream: *const u8,
    upstream_size: usize,
    service: *const u8,
    service_size: usize,
    method: *const u8,
    method_size: usize,
    metadata: *const u8,
    metadata_size: usize,
    token: *mut u32,
) -> Status {
    super::count("proxy_grpc_stream");
    let t =
        Target(upstream, upstream_size, service, service_size, method, method_size, metadata, metadata_size);
    open(t, None, token)
}

#[no_mangle]
unsafe extern "C" fn proxy_grpc_send(token: u32, message: *const u8, size: usize, _end: bool) -> Status {
    super::count("proxy_grpc_send");
    let message = bytes(message, size).to_vec();
    with(|w| match w.grpc.iter_mut().find(|g| g.token == token && g.stream) {
        Some(g) => {
            g.sent.push(message);
            Status::Ok
        }
        None => Status::NotFound,
    })
}

fn forget(token: u32) -> Status {
    with(|w| match w.grpc.iter().position(|g| g.token == token) {
        Some(at) => {
            w.grpc.remove(at);
            Status::Ok
        }
        None => Status::NotFound,
    })
}

#[no_mangle]
extern "C" fn proxy_grpc_cancel(token: u32) -> Status {
    super::count("proxy_grpc_cancel");
    forget(token)
}

#[no_mangle]
extern "C" fn proxy_grpc_close(token: u32) -> Status {
    super::count("proxy_grpc_close");
    forget(token)
}

#[no_mangle]
unsafe extern "C" fn proxy_get_status(code: *mut u32, message: *mut *mut u8, size: *mut usize) -> Status {
    super::count("proxy_get_status");
    let (c, m) = with(|w| w.grpc_status.clone());
    *code = c;
    give(m.as_bytes(), message, size);
    Status::Ok
}

extern "C" {
    fn proxy_on_grpc_receive(context_id: u32, token: u32, size: usize);
    fn proxy_on_grpc_close(context_id: u32, token: u32, status: u32);
}

/// Delivers a message (`Ok`) or the end of a call or stream (`Err(status)`).
fn deliver(token: u32, answer: Result<&[u8], u32>, keep_open: bool) {
    let context = with(|w| {
        let at = w.grpc.iter().position(|g| g.token == token).expect("no such gRPC call");
        let context = match (keep_open && answer.is_ok(), w.grpc.get(at)) {
            (true, Some(g)) => g.context,
            _ => w.grpc.remove(at).context,
        };
        w.effective = context;
        match answer {
            Ok(m) => w.grpc_answer = Some(m.to_vec()),
            Err(status) => w.grpc_status = (status, format!("status {status} from the double")),
        }
        context
    });
    match answer {
        Ok(m) => unsafe { proxy_on_grpc_receive(context, token, m.len()) },
        Err(status) => unsafe { proxy_on_grpc_close(context, token, status) },
    }
    with(|w| w.grpc_answer = None);
}

impl super::Vm {
    /// gRPC calls and streams open, oldest first.
    pub fn grpc(&self) -> Vec<Grpc> {
        with(|w| w.grpc.clone())
    }

    /// Answers a unary call: `Ok(message)`, or `Err(status)` (a gRPC failure).
    pub fn grpc_answer(&mut self, token: u32, answer: Result<&[u8], u32>) {
        deliver(token, answer, false);
    }

    /// A message on an open stream.
    pub fn grpc_message(&mut self, token: u32, message: &[u8]) {
        deliver(token, Ok(message), true);
    }

    /// The server ends a stream with `status`.
    pub fn grpc_end(&mut self, token: u32, status: u32) {
        deliver(token, Err(status), false);
    }
}
