//! The harness's etcd (tests/harness/src/etcd.rs): a real etcd 3.4 on loopback that the
//! fleet tests of issue 17 write revocations to, with etcdctl as an operator would, and the
//! relay they partition the replicas from it with.

use tokenguard_harness::etcd::{Etcd, Gateway};
use tokenguard_harness::link::Link;

#[test]
fn etcdctl_and_the_gateway_see_the_same_store() {
    let etcd = Etcd::start();
    etcd.ctl(&["put", "/tokenguard/revoked/sub/alice", r#"{"revoked_at": 1796300000}"#]);
    assert_eq!(etcd.get("/tokenguard/revoked/sub/alice").as_deref(), Some(r#"{"revoked_at": 1796300000}"#));
    let rev = etcd.put("/tokenguard/revoked/jti/j1", "{}", 0);
    assert!(rev >= 3, "a second write has a later revision than the first: {rev}");
    let got = etcd.ctl(&["get", "--prefix", "/tokenguard/revoked/", "--keys-only"]);
    let keys: Vec<&str> = got.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(keys, ["/tokenguard/revoked/jti/j1", "/tokenguard/revoked/sub/alice"]);
    assert_eq!(etcd.get("/tokenguard/revoked/sid/none"), None);
}

#[test]
fn a_key_on_a_lease_is_forgotten_when_the_lease_is_revoked() {
    let etcd = Etcd::start();
    let lease = etcd.grant(60);
    etcd.put("/tokenguard/revoked/jti/j2", "{}", lease);
    let ttl = etcd.ctl(&["lease", "timetolive", &format!("{lease:x}"), "--keys"]);
    assert!(ttl.contains("/tokenguard/revoked/jti/j2"), "the key is attached to the lease: {ttl}");
    etcd.ctl(&["lease", "revoke", &format!("{lease:x}")]);
    assert_eq!(etcd.get("/tokenguard/revoked/jti/j2"), None);
}

#[test]
fn a_restarted_etcd_keeps_its_data() {
    let etcd = Etcd::start();
    etcd.put("/tokenguard/revoked/sid/fam-1", "{}", 0);
    etcd.stop();
    assert!(
        !etcd.try_ctl(&["get", "x", "--command-timeout", "1s"]).status.success(),
        "stopped means unreachable"
    );
    etcd.restart();
    assert_eq!(etcd.get("/tokenguard/revoked/sid/fam-1").as_deref(), Some("{}"));
}

/// The fleet tests partition replicas from etcd with this relay (tests/harness/src/link.rs):
/// cut, etcd is unreachable through it while still up; healed, it is reachable again.
#[test]
fn a_cut_link_partitions_and_a_healed_one_relays_again() {
    let etcd = Etcd::start();
    let link = Link::start(etcd.client_port);
    let through = Gateway::new(&format!("http://127.0.0.1:{}", link.port));
    assert!(through.healthy());
    through.put("/tokenguard/revoked/jti/via-link", "{}", 0);
    link.cut();
    assert!(!through.healthy(), "cut: nothing gets through");
    assert!(etcd.gateway().healthy(), "etcd itself is up");
    etcd.put("/tokenguard/revoked/jti/while-cut", "{}", 0);
    link.heal();
    assert_eq!(through.get("/tokenguard/revoked/jti/while-cut").as_deref(), Some("{}"));
    assert_eq!(etcd.get("/tokenguard/revoked/jti/via-link").as_deref(), Some("{}"));
}
