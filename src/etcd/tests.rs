//! The messages against protobuf bytes worked out by hand from rpc.proto's field numbers
//! (tag byte = field << 3 | wire type), so a wrong tag or type cannot pass by agreeing with
//! itself.

use super::proto::*;
use super::*;
use prost::Message;

#[test]
fn prefix_end_bounds_the_prefix() {
    assert_eq!(prefix_end(b"/p/"), b"/p0");
    assert_eq!(prefix_end(&[0x61, 0xff]), [0x62]);
    assert_eq!(prefix_end(&[0xff, 0xff]), [0]);
    assert_eq!(prefix_end(b""), [0]);
}

#[test]
fn list_pages_are_ranges_under_the_prefix() {
    let first = list_page(b"/p/", None, 0, 500);
    // key "/p/", range_end "/p0", limit 500 (varint f4 03).
    assert_eq!(
        first.encode_to_vec(),
        [0x0a, 3, b'/', b'p', b'/', 0x12, 3, b'/', b'p', b'0', 0x18, 0xf4, 0x03]
    );
    let next = list_page(b"/p/", Some(b"/p/a"), 42, 2);
    assert_eq!((next.key.as_slice(), next.revision, next.limit), (&b"/p/a\0"[..], 42, 2));
    assert_eq!(next.encode_to_vec().get(..7), Some(&[0x0a, 5, b'/', b'p', b'/', b'a', 0][..]));
}

#[test]
fn a_watch_is_created_on_the_prefix() {
    let bytes = watch_prefix(b"/p/", 7).encode_to_vec();
    let create = [0x0a, 3, b'/', b'p', b'/', 0x12, 3, b'/', b'p', b'0', 0x18, 7, 0x20, 1];
    assert_eq!(bytes, [&[0x0a, 14][..], &create].concat());
}

#[test]
fn a_progress_request_is_field_3_and_empty() {
    assert_eq!(progress_request().encode_to_vec(), [0x1a, 0]);
}

#[test]
fn the_claim_creates_only_an_absent_key() {
    let bytes = create_if_absent(b"k", b"v", 7).encode_to_vec();
    // Compare: target CREATE (10 01), key "k", create_revision 0 (28 00: a oneof is sent
    // even at its default, so etcd sees the comparison with 0).
    let compare = [0x0a, 7, 0x10, 1, 0x1a, 1, b'k', 0x28, 0];
    // success: RequestOp.request_put (tag 2) = Put{key k, value v, lease 7}.
    let success = [0x12, 10, 0x12, 8, 0x0a, 1, b'k', 0x12, 1, b'v', 0x18, 7];
    // failure: RequestOp.request_range (tag 1) = Range{key k}.
    let failure = [0x1a, 5, 0x0a, 3, 0x0a, 1, b'k'];
    assert_eq!(bytes, [&compare[..], &success, &failure].concat());
}

#[test]
fn leases_and_authentication_encode() {
    assert_eq!(LeaseGrantRequest { ttl: 10, id: 0 }.encode_to_vec(), [0x08, 10]);
    assert_eq!(LeaseKeepAliveRequest { id: 0x1234 }.encode_to_vec(), [0x08, 0xb4, 0x24]);
    let auth = AuthenticateRequest { name: "u".into(), password: "p".into() };
    assert_eq!(auth.encode_to_vec(), [0x0a, 1, b'u', 0x12, 1, b'p']);
    let answer: AuthenticateResponse = decode(&[0x0a, 2, 0x18, 5, 0x12, 3, b't', b'o', b'k']).unwrap();
    assert_eq!((answer.token.as_str(), answer.header.map(|h| h.revision)), ("tok", Some(5)));
    let granted: LeaseGrantResponse = decode(&[0x10, 0xb4, 0x24, 0x18, 30]).unwrap();
    assert_eq!((granted.id, granted.ttl), (0x1234, 30));
}

fn kv_bytes() -> Vec<u8> {
    // key k, create_revision 2, mod_revision 3, version 1, value v, lease 7.
    vec![0x0a, 1, b'k', 0x10, 2, 0x18, 3, 0x20, 1, 0x2a, 1, b'v', 0x30, 7]
}

#[test]
fn range_answers_decode() {
    let bytes = [&[0x0a, 2, 0x18, 5, 0x12, 14][..], &kv_bytes(), &[0x18, 1, 0x20, 2]].concat();
    let r: RangeResponse = decode(&bytes).unwrap();
    assert_eq!(r.header.map(|h| h.revision), Some(5));
    assert!(r.more);
    assert_eq!(r.count, 2);
    let kv = KeyValue {
        key: b"k".to_vec(),
        create_revision: 2,
        mod_revision: 3,
        version: 1,
        value: b"v".to_vec(),
        lease: 7,
    };
    assert_eq!(r.kvs, [kv]);
}

#[test]
fn txn_answers_decode() {
    // succeeded false (absent), responses [ResponseOp.response_range{kvs [kv]}].
    let range = [&[0x12, 14][..], &kv_bytes()].concat();
    let op = [&[0x0a, range.len() as u8][..], &range].concat();
    let bytes = [&[0x1a, op.len() as u8][..], &op].concat();
    let t: TxnResponse = decode(&bytes).unwrap();
    assert!(!t.succeeded);
    match t.responses.first().and_then(|r| r.response.as_ref()) {
        Some(Response::Range(r)) => assert_eq!(r.kvs.first().map(|kv| kv.lease), Some(7)),
        other => panic!("expected a range answer, got {other:?}"),
    }
}

#[test]
fn watch_answers_decode_and_skip_unknown_fields() {
    // header revision 9, watch_id 1, event DELETE of k at revision 9, an unknown field 15.
    let bytes = [0x0a, 2, 0x18, 9, 0x10, 1, 0x5a, 9, 0x08, 1, 0x12, 5, 0x0a, 1, b'k', 0x18, 9, 0x78, 5];
    let w: WatchResponse = decode(&bytes).unwrap();
    assert_eq!((w.watch_id, w.created, w.canceled), (1, false, false));
    let e = w.events.first().unwrap();
    assert_eq!(e.r#type, EVENT_DELETE);
    assert_eq!(e.kv.as_ref().map(|kv| (kv.key.as_slice(), kv.mod_revision)), Some((&b"k"[..], 9)));
    // Cancelled by compaction: canceled, compact_revision 5, a reason.
    let c: WatchResponse = decode(&[0x20, 1, 0x28, 5, 0x32, 3, b'a', b'b', b'c']).unwrap();
    assert_eq!((c.canceled, c.compact_revision, c.cancel_reason.as_str()), (true, 5, "abc"));
}

#[test]
fn truncated_or_mistyped_answers_are_refused() {
    assert_eq!(decode::<WatchResponse>(&[0x0a, 5, 0x18]), None);
    // Field 2 (watch_id, a varint) sent as bytes.
    assert_eq!(decode::<WatchResponse>(&[0x12, 1, 0]), None);
    assert_eq!(decode::<RangeResponse>(&[0xff]), None);
}

#[test]
fn the_upstream_is_envoys_grpc_service_message() {
    // GrpcService.envoy_grpc (1) = EnvoyGrpc{cluster_name (1)}.
    assert_eq!(grpc_service("etcd", None), [0x0a, 6, 0x0a, 4, b'e', b't', b'c', b'd']);
    let with_authority = grpc_service("etcd", Some("etcd.test"));
    assert_eq!(with_authority.get(..4), Some(&[0x0a, 17, 0x0a, 4][..]));
    assert_eq!(with_authority.get(8..11), Some(&[0x12, 9, b'e'][..]));
}
