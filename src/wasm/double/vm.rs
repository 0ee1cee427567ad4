//! The driver: calls the SDK's exports as Envoy does, and shows what the filter did.

use std::sync::{Arc, Mutex};

use super::{next_id, with, Call, Process, Reply, Stream, Worker};

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
            crate::wasm::_initialize();
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
            w.grpc.retain(|g| g.context != id);
        });
    }

    /// The root context's id: callouts it dispatches answer there.
    pub fn root(&self) -> u32 {
        self.root
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
        self.answer_with(token, status, &[], body);
    }

    /// Answers a callout with response headers besides `:status`.
    pub fn answer_with(&mut self, token: u32, status: Option<u16>, extra: &[(&str, &str)], body: &[u8]) {
        let headers: Option<Vec<(String, Vec<u8>)>> = status.map(|s| {
            let mut h = vec![(":status".to_string(), s.to_string().into_bytes())];
            h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())));
            h
        });
        let (count, body_len) =
            (headers.as_ref().map_or(0, Vec::len), if status.is_some() { body.len() } else { 0 });
        let call = with(|w| {
            let at = w.calls.iter().position(|c| c.token == token).expect("no such call");
            let call = w.calls.remove(at);
            w.answer = Some((headers.unwrap_or_default(), body.to_vec()));
            w.effective = call.context;
            call
        });
        unsafe { proxy_on_http_call_response(call.context, token, count, body_len, 0) };
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
