//! The proxy-wasm layer: translates between Envoy and the core, nothing more.
//!
//! Host calls go through `proxy_wasm::hostcalls` directly, never the SDK's trait helpers:
//! those `unwrap` host results (and `get_map_value` unwraps UTF-8), and a panic here kills
//! the worker's VM for every later request.

mod host;
mod http;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};
use std::rc::Rc;

use crate::config::Config;
use crate::metrics::Counter;
use crate::near_expiry::LocalWarnings;

/// How many near-expiry warnings one worker remembers until the shared registry takes over.
const LOCAL_WARNINGS_CAPACITY: usize = 16 * 1024;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { shared: None }) });
}}

/// Everything an HTTP context needs, built once per configuration.
pub(crate) struct Shared {
    pub cfg: Config,
    pub metric_ids: Vec<u32>,
    pub warnings: LocalWarnings,
}

struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => b,
            Ok(None) => Vec::new(),
            Err(status) => {
                host::log_error(&format!("tokenguard: cannot read plugin configuration: {status:?}"));
                return false;
            }
        };
        let cfg = match Config::from_plugin_bytes(&bytes) {
            Ok(c) => c,
            Err(e) => {
                // Returning false makes Envoy refuse the filter, so a bad config never serves.
                host::log_error(&format!("tokenguard: invalid configuration: {e}"));
                return false;
            }
        };
        let metric_ids = match host::define_counters(&Counter::all()) {
            Ok(ids) => ids,
            Err(name) => {
                host::log_error(&format!("tokenguard: cannot define metric {name}"));
                return false;
            }
        };
        self.shared =
            Some(Rc::new(Shared { cfg, metric_ids, warnings: LocalWarnings::new(LOCAL_WARNINGS_CAPACITY) }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(http::Http::new(self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
