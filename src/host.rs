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
    /// The counter's current value, process-wide (for the stats endpoint).
    fn value(&self, counter: Counter) -> Option<u64>;
}

/// Why a shared-data write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// Someone wrote the key since we read it: read again and retry.
    CasMismatch,
    /// The host refused the write for another reason.
    Failed,
}

/// Envoy's process-wide key-value store (one per `vm_id`), shared by every worker.
///
/// The rules the core relies on, copied exactly by the test fake: every write gets a fresh
/// CAS number; a write with `cas: None` is unconditional; a write with a stale CAS fails
/// with `CasMismatch`; a write to a key that does not exist succeeds whatever its CAS; keys
/// can never be deleted (an "empty" value is still a key).
pub trait SharedData {
    /// The value and its CAS, or `(None, None)` for a key never written.
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError>;

    /// A process-wide count of the changes announced with `note_change`, far cheaper to read
    /// than a shared-data key; `None` when the host keeps none, and readers read the data.
    fn change_count(&self) -> Option<u64> {
        None
    }

    /// Announces a change, once the shared data that carries it is written.
    fn note_change(&self) {}
}

/// Everything a request handler needs from the host.
pub trait Host: Clock + Log + Metrics + SharedData {}
impl<T: Clock + Log + Metrics + SharedData> Host for T {}
