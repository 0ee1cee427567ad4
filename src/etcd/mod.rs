//! etcd as the fleet's revocation store (issue 17): the v3 gRPC calls tokenguard makes, built
//! and read here, host-agnostic; the proxy-wasm layer only carries the bytes.
//!
//! Envoy frames gRPC messages itself (proxy-wasm's `grpc_call` and `grpc_stream` take the
//! serialized message; Envoy's async client adds the 5-byte length prefix), so nothing here
//! knows about framing.

pub mod claim;
pub mod follow;
pub mod proto;
pub mod store;
pub mod sync;
pub mod write;

#[cfg(test)]
mod tests;

use proto::{
    Compare, CompareValue, PutRequest, RangeRequest, Request, RequestOp, TxnRequest, WatchCreateRequest,
    WatchRequest, WatchRequestUnion, COMPARE_EQUAL, TARGET_CREATE,
};

/// A gRPC method: the service's full name and the method's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rpc {
    pub service: &'static str,
    pub method: &'static str,
}

pub const RANGE: Rpc = Rpc { service: "etcdserverpb.KV", method: "Range" };
pub const PUT: Rpc = Rpc { service: "etcdserverpb.KV", method: "Put" };
pub const TXN: Rpc = Rpc { service: "etcdserverpb.KV", method: "Txn" };
/// A bidirectional stream: one create request, then watch responses as changes come.
pub const WATCH: Rpc = Rpc { service: "etcdserverpb.Watch", method: "Watch" };
pub const LEASE_GRANT: Rpc = Rpc { service: "etcdserverpb.Lease", method: "LeaseGrant" };
/// A bidirectional stream: one request per renewal.
pub const LEASE_KEEP_ALIVE: Rpc = Rpc { service: "etcdserverpb.Lease", method: "LeaseKeepAlive" };
pub const AUTHENTICATE: Rpc = Rpc { service: "etcdserverpb.Auth", method: "Authenticate" };

/// The gRPC metadata key carrying the token `Authenticate` returned (what etcd reads).
pub const TOKEN_METADATA: &str = "token";

/// The `range_end` that makes a range (or a watch) cover every key starting with `prefix`:
/// the prefix with its last byte that is not 0xff incremented, the rest cut. A prefix of
/// only 0xff bytes (or none) has no such bound: `[0]` is etcd's "every key from `key` on".
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// One page of the list under `prefix`: from `after` (exclusive: the last key of the previous
/// page) or the start, pinned to `revision` (0 on the first page, then the first page's, so
/// every page reads the same snapshot).
pub fn list_page(prefix: &[u8], after: Option<&[u8]>, revision: i64, limit: i64) -> RangeRequest {
    let key = match after {
        // The smallest key after `a`: `a` followed by a zero byte.
        Some(a) => a.iter().copied().chain([0]).collect(),
        None => prefix.to_vec(),
    };
    RangeRequest { key, range_end: prefix_end(prefix), limit, revision, keys_only: false, count_only: false }
}

/// The request that opens a watch on every key under `prefix`, from `start_revision` on.
pub fn watch_prefix(prefix: &[u8], start_revision: i64) -> WatchRequest {
    WatchRequest {
        request_union: Some(WatchRequestUnion::Create(WatchCreateRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            start_revision,
            progress_notify: true,
        })),
    }
}

/// Asks the watch stream for a progress answer: etcd answers at once with its revision, so
/// a stream that stays silent past the call deadline is dead, whatever TCP believes.
pub fn progress_request() -> WatchRequest {
    WatchRequest { request_union: Some(WatchRequestUnion::Progress(proto::WatchProgressRequest {})) }
}

/// Creates `key` with `value` on `lease` only if it does not exist; otherwise reads it, so
/// the loser learns who holds it. `succeeded` in the answer says which happened.
pub fn create_if_absent(key: &[u8], value: &[u8], lease: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: COMPARE_EQUAL,
            target: TARGET_CREATE,
            key: key.to_vec(),
            target_union: Some(CompareValue::CreateRevision(0)),
        }],
        success: vec![RequestOp {
            request: Some(Request::Put(PutRequest { key: key.to_vec(), value: value.to_vec(), lease })),
        }],
        failure: vec![RequestOp {
            request: Some(Request::Range(RangeRequest { key: key.to_vec(), ..Default::default() })),
        }],
    }
}
