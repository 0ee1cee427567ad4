//! Writing a revocation made through the admin API to etcd, so every replica learns it:
//! first a lease that outlives every token the revocation can name (etcd then forgets the key
//! by itself), then the key on that lease. Two unary calls; the proxy-wasm layer makes them
//! and reports the answers here.

use super::proto::{decode, LeaseGrantRequest, LeaseGrantResponse, PutRequest, PutResponse};
use super::{store, Rpc, LEASE_GRANT, PUT};
use crate::config::EtcdConfig;
use crate::registry::revocation::Revocation;
use prost::Message;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub ttl_seconds: i64,
}

impl Write {
    /// `name` is what the key names: the claim, or for a token its fingerprint's hex.
    pub fn revocation(etcd: &EtcdConfig, rev: &Revocation, name: &str, retention: u64) -> Write {
        Write {
            key: store::key(etcd.prefix_bytes(), rev.target.kind, name),
            value: store::value(rev.revoked_at, Some("admin")),
            // etcd refuses TTLs it cannot hold; a year is far beyond any token lifetime.
            ttl_seconds: retention.clamp(60, 366 * 86_400) as i64,
        }
    }

    pub fn grant(&self) -> LeaseGrantRequest {
        LeaseGrantRequest { ttl: self.ttl_seconds, id: 0 }
    }

    pub fn put(&self, lease: i64) -> PutRequest {
        PutRequest { key: self.key.clone(), value: self.value.clone(), lease }
    }

    /// The call to make next: the lease, or once `lease` is granted the key on it.
    pub fn call(&self, lease: Option<i64>) -> (Rpc, Vec<u8>) {
        match lease {
            None => (LEASE_GRANT, self.grant().encode_to_vec()),
            Some(id) => (PUT, self.put(id).encode_to_vec()),
        }
    }
}

/// What a write's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The lease is granted: put the key on it.
    Put(i64),
    /// Over: whether etcd committed the key.
    Done(bool),
}

/// Reads the answer (gRPC `status`, message) to the call `Write::call(lease)` made.
pub fn next(lease: Option<i64>, status: u32, answer: &[u8]) -> Next {
    match (status, lease) {
        (0, None) => granted(answer).map_or(Next::Done(false), Next::Put),
        (0, Some(_)) => Next::Done(committed(answer)),
        _ => Next::Done(false),
    }
}

/// The lease a `LeaseGrant` answer granted.
pub fn granted(answer: &[u8]) -> Result<i64, &'static str> {
    let r: LeaseGrantResponse = decode(answer).ok_or("LeaseGrant answer undecodable")?;
    if !r.error.is_empty() || r.id == 0 {
        return Err("etcd granted no lease");
    }
    Ok(r.id)
}

/// Whether a `Put` answer says the write was committed (it carries the store's header).
pub fn committed(answer: &[u8]) -> bool {
    decode::<PutResponse>(answer).is_some_and(|r| r.header.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::proto::ResponseHeader;
    use crate::registry::revocation::{Kind, Target};
    use prost::Message;
    use serde_json::{json, Value};

    fn etcd() -> EtcdConfig {
        crate::testkit::etcd_store("/tg/")
    }

    #[test]
    fn a_revocation_is_written_in_the_documented_form_on_a_lease() {
        let rev = Revocation { target: Target::new(Kind::Sub, "alice"), revoked_at: 1000, until: 1600 };
        let w = Write::revocation(&etcd(), &rev, "alice", 600);
        assert_eq!(w.key, b"/tg/revoked/sub/alice");
        let v: Value = serde_json::from_slice(&w.value).unwrap_or_default();
        assert_eq!(v, json!({"revoked_at": 1000, "reason": "admin"}));
        assert_eq!((w.grant().ttl, w.put(42).lease), (600, 42));
        // What this replica writes, every replica reads back as the same revocation.
        let read = store::parse(b"/tg/", &w.key, &w.value, 600, 1001);
        assert_eq!(read, store::Entry::Revoked(rev));
        assert_eq!(Write::revocation(&etcd(), &rev, "alice", 5).ttl_seconds, 60);
    }

    #[test]
    fn answers_are_read_strictly() {
        let grant = |id, error: &str| LeaseGrantResponse { header: None, id, ttl: 60, error: error.into() };
        assert_eq!(granted(&grant(7, "").encode_to_vec()), Ok(7));
        assert!(granted(&grant(0, "").encode_to_vec()).is_err());
        assert!(granted(&grant(7, "too many leases").encode_to_vec()).is_err());
        assert!(granted(&[0xff, 0xff]).is_err());
        let put = PutResponse { header: Some(ResponseHeader { revision: 3, ..Default::default() }) };
        assert!(committed(&put.encode_to_vec()));
        assert!(!committed(&[]), "no header: nothing says it was stored");
        assert_eq!(next(None, 0, &grant(7, "").encode_to_vec()), Next::Put(7));
        assert_eq!(next(None, 0, &grant(0, "").encode_to_vec()), Next::Done(false));
        assert_eq!(next(Some(7), 0, &put.encode_to_vec()), Next::Done(true));
        assert_eq!(
            next(Some(7), 14, &put.encode_to_vec()),
            Next::Done(false),
            "a failed call commits nothing"
        );
    }
}
