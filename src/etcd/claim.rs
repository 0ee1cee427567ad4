//! Refresh single flight across the fleet. Before calling the token endpoint, a replica
//! creates `<prefix>refresh/<fingerprint hex>` in etcd, only if absent, on a lease of its
//! own, short lease; a replica that finds the key taken by another process does not call
//! out (with refresh-token rotation and reuse detection, a second refresh of one token makes
//! the authorization server revoke the whole family). After a successful refresh the old
//! token is retired on every replica: a `token` revocation in force from the end of the
//! grace, on a lease of its own that lasts as long as the old token could be presented, and
//! no replica refreshes a token with a retirement pending. The claim itself only has to
//! outlive the refresh call and that retirement's journey: a claim left by a failed refresh
//! (a made-up refresh token, say) blocks nobody for long. Nothing secret is written: keys
//! name tokens by fingerprint.

use serde_json::json;

use super::proto::{decode, LeaseGrantRequest, Response, TxnRequest, TxnResponse};
use super::write::Write;
use super::{create_if_absent, store};
use crate::config::EtcdConfig;
use crate::registry::revocation::Kind;
use crate::token::Fingerprint;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub key: Vec<u8>,
    /// Who holds it: a process, so its own retry after a failed refresh is not refused.
    pub holder: u64,
    /// The claim's lease: the refresh call's deadline and ten seconds for the retirement to
    /// reach every replica.
    pub ttl_seconds: i64,
    /// The retirement's lease: until no replica could still be shown the old token (its
    /// expiry plus the grace and the leeway).
    retire_ttl: i64,
    retired_key: Vec<u8>,
}

/// The claim's lease TTL: see `Claim::ttl_seconds`.
pub fn lease_seconds(timeout_ms: u64) -> i64 {
    timeout_ms.div_ceil(1000).saturating_add(10) as i64
}

/// The retirement's lease TTL: see `Claim::retire_ttl`.
pub fn retirement_seconds(old_exp: u64, now: u64, grace: u64, leeway: u64) -> i64 {
    let life = old_exp.saturating_sub(now).saturating_add(grace).saturating_add(leeway);
    life.clamp(60, 366 * 86_400) as i64
}

impl Claim {
    pub fn new(
        etcd: &EtcdConfig,
        old: &Fingerprint,
        holder: u64,
        ttl_seconds: i64,
        retire_ttl: i64,
    ) -> Claim {
        let prefix = etcd.prefix_bytes();
        Claim {
            key: [prefix, b"refresh/", old.hex().as_bytes()].concat(),
            holder,
            ttl_seconds,
            retire_ttl,
            retired_key: store::key(prefix, Kind::Token, &old.hex()),
        }
    }

    pub fn grant(&self) -> LeaseGrantRequest {
        LeaseGrantRequest { ttl: self.ttl_seconds, id: 0 }
    }

    pub fn take(&self, lease: i64, now: u64) -> TxnRequest {
        let value = json!({"holder": self.holder.to_string(), "claimed_at": now}).to_string();
        create_if_absent(&self.key, value.as_bytes(), lease)
    }

    /// The old token's fleet-wide retirement, in force from `retire_at` (the grace's end),
    /// on a lease of its own.
    pub fn retirement(&self, retire_at: u64) -> Write {
        Write {
            key: self.retired_key.clone(),
            value: store::value(retire_at, Some("refreshed")),
            ttl_seconds: self.retire_ttl,
        }
    }

    /// Reads the `Txn` answer: `Ok(true)` when this process holds the claim (just created,
    /// or created by this process before), `Ok(false)` when another process does.
    pub fn taken_by_us(&self, answer: &[u8]) -> Result<bool, &'static str> {
        let txn: TxnResponse = decode(answer).ok_or("Txn answer undecodable")?;
        if txn.header.is_none() {
            return Err("Txn answer without header");
        }
        if txn.succeeded {
            return Ok(true);
        }
        let holder = txn
            .responses
            .iter()
            .filter_map(|r| match &r.response {
                Some(Response::Range(range)) => range.kvs.first(),
                _ => None,
            })
            .find_map(|kv| serde_json::from_slice::<serde_json::Value>(&kv.value).ok())
            .and_then(|v| v.get("holder").and_then(|h| h.as_str()).map(str::to_owned));
        Ok(holder.is_some_and(|h| h == self.holder.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::proto::{KeyValue, RangeResponse, ResponseHeader, ResponseOp};
    use prost::Message;

    fn etcd() -> EtcdConfig {
        crate::testkit::etcd_store("/tg/")
    }

    fn answer(succeeded: bool, existing: Option<&str>) -> Vec<u8> {
        let kvs: Vec<KeyValue> = existing
            .map(|v| KeyValue { value: v.as_bytes().to_vec(), ..Default::default() })
            .into_iter()
            .collect();
        TxnResponse {
            header: Some(ResponseHeader::default()),
            succeeded,
            responses: vec![ResponseOp {
                response: Some(Response::Range(RangeResponse { kvs, ..Default::default() })),
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn the_claim_names_the_token_by_fingerprint_and_says_who_holds_it() {
        let fp = Fingerprint([0xab; 32]);
        let c = Claim::new(&etcd(), &fp, 77, 40, 600);
        assert_eq!(c.key, [b"/tg/refresh/".as_slice(), "ab".repeat(32).as_bytes()].concat());
        let txn = c.take(5, 1000);
        let put = match txn.success.first().and_then(|op| op.request.clone()) {
            Some(crate::etcd::proto::Request::Put(p)) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(put.lease, 5);
        assert_eq!(String::from_utf8_lossy(&put.value), r#"{"claimed_at":1000,"holder":"77"}"#);
        assert_eq!(c.taken_by_us(&answer(true, None)), Ok(true));
        assert_eq!(c.taken_by_us(&answer(false, Some(r#"{"holder":"77"}"#))), Ok(true), "our own retry");
        assert_eq!(c.taken_by_us(&answer(false, Some(r#"{"holder":"78"}"#))), Ok(false));
        assert_eq!(c.taken_by_us(&answer(false, Some("garbage"))), Ok(false), "unknown holder: not ours");
        assert!(c.taken_by_us(&[0xff]).is_err());
        assert!(c.taken_by_us(&TxnResponse::default().encode_to_vec()).is_err(), "no header");
    }

    #[test]
    fn the_retirement_is_a_token_revocation_in_force_from_the_grace_end() {
        let fp = Fingerprint([1; 32]);
        let c = Claim::new(&etcd(), &fp, 1, 40, 600);
        let w = c.retirement(1030);
        let read = store::parse(b"/tg/", &w.key, &w.value, 600, 1000);
        let store::Entry::Revoked(r) = read else { panic!("{read:?}") };
        assert_eq!(
            (r.target.kind, r.target.hash, r.revoked_at, w.ttl_seconds),
            (Kind::Token, fp.0, 1030, 600)
        );
    }

    #[test]
    fn the_claim_is_short_and_the_retirement_outlives_the_old_token() {
        assert_eq!(lease_seconds(2000), 12, "the call and ten seconds");
        assert_eq!(retirement_seconds(1300, 1000, 30, 60), 390);
        assert_eq!(retirement_seconds(900, 1000, 0, 0), 60, "at least a minute");
    }
}
