//! What the core needs from its host. The proxy-wasm layer implements these against Envoy;
//! tests implement them in memory. Later capabilities (shared data, callouts) join here.

use crate::metrics::Counter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warn,
    Error,
}

pub trait Clock {
    /// Unix time in whole seconds, from the host's clock.
    fn now(&self) -> u64;
}

pub trait Log {
    fn log(&self, level: Level, message: &str);
}

pub trait Metrics {
    fn count(&self, counter: Counter);
}

/// Everything a request handler needs from the host.
pub trait Host: Clock + Log + Metrics {}
impl<T: Clock + Log + Metrics> Host for T {}
