//! A stand-in for Envoy below the proxy-wasm ABI, so the glue in `src/wasm/` runs natively
//! in seconds. It defines the `proxy_*` host functions the SDK imports and drives the SDK's
//! exported `proxy_on_*` entry points the way Envoy does, copying the rules the filter
//! depends on (../shared/reference/proxy-wasm-in-envoy.md, proxy-wasm-cpp-host):
//! - shared data is one map per process, every write takes a fresh CAS number, a write with
//!   a stale CAS is `CasMismatch`, a write with CAS 0 or to an absent key always succeeds;
//! - a callout needs a known cluster and `:method`, `:path`, `:authority` (else
//!   `BadArgument`), its answer goes to the context that dispatched it, a failed call
//!   answers with no headers, and a stream's calls are cancelled when the stream goes;
//! - gRPC calls and streams (`grpc.rs`) need a `GrpcService` naming a known cluster, and
//!   answer to the context that opened them;
//! - an empty value comes back as a null pointer; metrics are process-wide, by name.
//!
//! One thread is one worker (its own VM: the SDK's dispatcher is thread-local); a `Process`
//! shared between threads is one Envoy process.

mod abi;
mod grpc;
mod vm;

pub use grpc::Grpc;
pub use vm::{Action, Vm};

use proxy_wasm::types::MetricType;
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
    /// Stats Envoy's stats matcher rejects: writes to them are lost and they read 0.
    rejected_stats: Mutex<Vec<String>>,
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
            rejected_stats: Mutex::new(Vec::new()),
        })
    }

    /// Makes a stat one Envoy does not keep (`stats_config.stats_matcher`), before any
    /// worker starts.
    pub fn reject_stat(&self, name: &str) {
        self.rejected_stats.lock().unwrap().push(name.to_string());
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
    /// gRPC calls and streams open, oldest first.
    grpc: Vec<Grpc>,
    /// The message being delivered while `on_grpc_receive` runs.
    grpc_answer: Option<Vec<u8>>,
    /// The status `proxy_get_status` reports (of the last gRPC failure delivered).
    grpc_status: (u32, String),
    logs: Vec<(u32, String)>,
}

/// Host calls made on this thread since the last `take_host_calls`, by name.
pub fn take_host_calls() -> Vec<(&'static str, u32)> {
    let mut v: Vec<(&'static str, u32)> = HOST_CALLS.with(|c| c.take().into_iter().collect());
    v.sort();
    v
}

fn count(name: &'static str) {
    HOST_CALLS.with(|c| *c.borrow_mut().entry(name).or_default() += 1);
}

thread_local! {
    static HOST_CALLS: RefCell<HashMap<&'static str, u32>> = RefCell::new(HashMap::new());
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
