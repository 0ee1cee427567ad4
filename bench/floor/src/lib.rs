//! Reads `authorization` on every request, like any token filter must, and continues.
//!
//! Its configuration may name host calls to add on every request (a JSON list of strings),
//! so a bench run prices each host call tokenguard's hot path makes in the same run:
//! - `clock`: the current time;
//! - `shared`: one small shared-data read (tokenguard's revocation epoch is one);
//! - `metric`: one gauge read (a process-wide number, copied without an allocation);
//! - `path`: the `:path` header (route rules and the admin prefix read it);
//! - `set`: one request header written (a claim header);
//! - `remove`: one request header removed (the admin token);
//! - `response`: one response header written (`x-token-expires-in`).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { calls: Rc::new(Vec::new()), gauge: 0 }) });
}}

#[derive(Clone, Copy, PartialEq)]
enum Call {
    Clock,
    Shared,
    Metric,
    Path,
    Set,
    Remove,
    Response,
}

fn parse(config: &[u8]) -> Vec<Call> {
    let text = String::from_utf8_lossy(config);
    let names = ["clock", "shared", "metric", "path", "set", "remove", "response"];
    let calls =
        [Call::Clock, Call::Shared, Call::Metric, Call::Path, Call::Set, Call::Remove, Call::Response];
    // Good enough for a bench fixture: every quoted name in the list, in order.
    text.split('"')
        .filter_map(|word| names.iter().position(|n| *n == word).and_then(|i| calls.get(i).copied()))
        .collect()
}

struct Root {
    calls: Rc<Vec<Call>>,
    gauge: u32,
}

impl Context for Root {}
impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = hostcalls::get_buffer(proxy_wasm::types::BufferType::PluginConfiguration, 0, usize::MAX);
        self.calls = Rc::new(parse(&config.ok().flatten().unwrap_or_default()));
        if self.calls.contains(&Call::Shared) {
            let _ = hostcalls::set_shared_data("floor.epoch", Some(&7u64.to_le_bytes()), None);
        }
        if self.calls.contains(&Call::Metric) {
            self.gauge =
                hostcalls::define_metric(proxy_wasm::types::MetricType::Gauge, "floor.epoch").unwrap_or(0);
            let _ = hostcalls::increment_metric(self.gauge, 1);
        }
        true
    }
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor { calls: self.calls.clone(), gauge: self.gauge }))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Floor {
    calls: Rc<Vec<Call>>,
    gauge: u32,
}

impl Context for Floor {}
impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let _ = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "authorization");
        for call in self.calls.iter() {
            match call {
                Call::Clock => {
                    let _ = hostcalls::get_current_time();
                }
                Call::Shared => {
                    let _ = hostcalls::get_shared_data("floor.epoch");
                }
                Call::Metric => {
                    let _ = hostcalls::get_metric(self.gauge);
                }
                Call::Path => {
                    let _ = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, ":path");
                }
                Call::Set => {
                    let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-floor", Some("1"));
                }
                Call::Remove => {
                    let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, "x-floor-secret");
                }
                Call::Response => {}
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if self.calls.contains(&Call::Response) {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, "x-floor-expires-in", Some("300"));
        }
        Action::Continue
    }
}
