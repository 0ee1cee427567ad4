//! List, then watch: how one process keeps its revocations in step with etcd, as a state
//! machine the proxy-wasm layer drives (it makes the calls `call` names and reports what came
//! back). Host-agnostic and not yet wired into the filter.
//!
//! It lists every key under the prefix in pages pinned to the first page's revision (one
//! snapshot), then watches from the revision after it. A watch cancelled because its start
//! was compacted away starts a fresh list; a broken stream resumes from the revision after
//! the last one applied, after a jittered, doubling wait. A list that fails starts again from
//! the first page: its pinned revision may be compacted by the time it is retried.

use super::proto::{RangeRequest, RangeResponse, WatchRequest, WatchResponse};
use super::store::{self, Batch};
use super::{list_page, watch_prefix};

/// Keys per list page: about 100 bytes each, so a page stays far below gRPC's 4 MiB default.
pub const PAGE_LIMIT: i64 = 1000;
/// Reconnection waits double from 1 s up to this.
pub const MAX_BACKOFF_SECONDS: u64 = 30;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// `pinned` 0 until the first page answered; `after` the last key read.
    Listing { pinned: i64, after: Option<Vec<u8>> },
    /// Every change up to `from - 1` is applied.
    Watching { from: i64 },
}

/// The call to make next.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// A unary `KV.Range`.
    Range(RangeRequest),
    /// Open a `Watch` stream and send this request on it.
    Watch(WatchRequest),
}

/// What a watch answer means for the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// Keep the stream; apply these (possibly none).
    Apply(Batch),
    /// The stream is over: close it and make `call()` again (a fresh list after compaction).
    Restart,
}

/// An answer that cannot be trusted (no header, or a page that claims more but has no key):
/// treated like a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken(pub &'static str);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sync {
    prefix: Vec<u8>,
    state: State,
    failures: u32,
    /// The etcd cluster answering (its header's `cluster_id`): another one (a rebuilt or
    /// restored store) means what was applied says nothing about where it is now.
    cluster: Option<u64>,
    /// A whole list has been applied once: requests need no longer wait for start-up.
    pub listed: bool,
}

impl Sync {
    pub fn new(prefix: &[u8]) -> Sync {
        Sync { prefix: prefix.to_vec(), state: fresh_list(), failures: 0, cluster: None, listed: false }
    }

    pub fn call(&self) -> Call {
        match &self.state {
            State::Listing { pinned, after } => {
                Call::Range(list_page(&self.prefix, after.as_deref(), *pinned, PAGE_LIMIT))
            }
            State::Watching { from } => Call::Watch(watch_prefix(&self.prefix, *from)),
        }
    }

    /// Whether the list is complete and changes come from the watch.
    pub fn watching(&self) -> bool {
        matches!(self.state, State::Watching { .. })
    }

    /// Reads a list page; the next `call()` is the following page or the watch.
    pub fn on_page(&mut self, page: &RangeResponse, retention: u64, now: u64) -> Result<Batch, Broken> {
        let State::Listing { pinned, after } = &mut self.state else { return Err(Broken("not listing")) };
        let header = page.header.as_ref().ok_or(Broken("answer without header"))?;
        if self.cluster.replace(header.cluster_id).is_some_and(|c| c != header.cluster_id) {
            return Err(Broken("another etcd cluster answered"));
        }
        let revision = header.revision;
        let last = page.kvs.last().map(|kv| kv.key.clone());
        if page.more && last.is_none() {
            return Err(Broken("more keys announced, none sent"));
        }
        if *pinned == 0 {
            *pinned = revision;
        }
        if page.more {
            *after = last;
        } else {
            self.state = State::Watching { from: pinned.saturating_add(1) };
            self.listed = true;
        }
        self.failures = 0;
        Ok(store::from_kvs(&self.prefix, &page.kvs, retention, now))
    }

    /// Reads one answer on the watch stream.
    pub fn on_watch(&mut self, answer: &WatchResponse, retention: u64, now: u64) -> Watched {
        let State::Watching { from } = &mut self.state else { return Watched::Restart };
        if let Some(h) = &answer.header {
            // etcd's revision never goes back, nor does its cluster change, unless the store
            // was rebuilt or restored from an older snapshot: then the revisions applied name
            // other changes, and only a fresh list is trustworthy.
            let other = self.cluster.replace(h.cluster_id).is_some_and(|c| c != h.cluster_id);
            if other || h.revision.saturating_add(1) < *from {
                self.state = fresh_list();
                return Watched::Restart;
            }
        }
        if answer.canceled {
            if answer.compact_revision > 0 {
                self.state = fresh_list();
            }
            return Watched::Restart;
        }
        self.failures = 0;
        let last_event = answer.events.iter().filter_map(|e| e.kv.as_ref()).map(|kv| kv.mod_revision).max();
        // Events come in revision order, each revision whole (no fragments are asked for). A
        // progress answer (no events) vouches for its header's revision; the `created` one
        // does not: a watch from the past replays its events after it.
        let progress = || answer.header.as_ref().filter(|_| !answer.created).map(|h| h.revision);
        let seen = last_event.or_else(progress).unwrap_or_default();
        *from = (*from).max(seen.saturating_add(1));
        Watched::Apply(store::from_events(&self.prefix, &answer.events, retention, now))
    }

    /// A call failed or a stream broke. Returns how long to wait (ms) before `call()` again;
    /// `jitter` in 0..=1000 spreads the replicas' retries over the second half of the wait.
    pub fn on_failure(&mut self, jitter: u64) -> u64 {
        self.failures = self.failures.saturating_add(1);
        if let State::Listing { .. } = self.state {
            self.state = fresh_list();
        }
        let full = crate::backoff::doubling(1, self.failures, MAX_BACKOFF_SECONDS).saturating_mul(1000);
        full / 2 + full / 2 * jitter.min(1000) / 1000
    }

    /// What was read could not be applied: the next call lists afresh (watching on would
    /// skip it). Failures still count, for the backoff.
    pub fn relist(&mut self) {
        self.state = fresh_list();
    }

    /// Every change up to this revision is applied (0 before the first full list).
    pub fn applied_revision(&self) -> i64 {
        match self.state {
            State::Watching { from } => from.saturating_sub(1),
            State::Listing { .. } => 0,
        }
    }
}

fn fresh_list() -> State {
    State::Listing { pinned: 0, after: None }
}

#[cfg(test)]
mod tests;
