//! End to end, issue 17: one real etcd and two Envoy processes (replicas, two workers each)
//! on `revocation_store.etcd`. Revocations are made as an operator would (etcdctl, on a
//! lease) or through one replica's admin API, and must be refused by every replica.
//! Propagation times are printed, never asserted: the deadlines below are liveness bounds.
//! Refresh single flight across the fleet: tests/etcd_filter.rs.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

use tokenguard_harness::envoy::Envoy;
use tokenguard_harness::etcd::Etcd;
use tokenguard_harness::fleet::{code, eventually, revoked, until_revoked, Fleet};
use tokenguard_harness::issuer::MintRequest;
use tokenguard_harness::keys::{now, token_sha256};

/// How long a revocation may take to reach a replica before the test calls it lost.
const REACH: Duration = Duration::from_secs(5);
/// The gauge of seconds since a replica last heard from etcd (public interface).
const CONTACT_AGE: &str = "wasmcustom.tokenguard.revocation_store.contact_age_seconds";
/// The audit events of an outage of the store and of its end, once each per process.
const OUTAGE_EVENT: &str = "revocation_store_unreachable";
const RECOVERY_EVENT: &str = "revocation_store_recovered";
/// The admin answer's member saying whether etcd committed the revocation.
const COMMITTED: &str = "committed";
/// Revocations a replica applied from etcd (a list page or watch events), and keys skipped.
const ENTRIES: &str = "wasmcustom.tokenguard.revocation_store.entries";
const MALFORMED: &str = "wasmcustom.tokenguard.revocation_store.malformed_keys";

fn ok() -> (u16, String) {
    (200, String::new())
}

fn mint(f: &Fleet, claims: &[(&str, Value)]) -> String {
    let mut req = MintRequest::new("ES256", 300);
    for (k, v) in claims {
        req = req.claim(k, v.clone());
    }
    f.mint(req)
}

/// Both replicas, several fresh connections each (both workers), answer `want`.
fn everywhere(f: &Fleet, token: &str, want: (u16, String)) {
    for (name, envoy) in [("A", f.a()), ("B", f.b())] {
        for _ in 0..4 {
            assert_eq!(code(envoy, token), want, "replica {name}");
        }
    }
}

fn events(envoy: &Envoy, event: &str) -> usize {
    envoy.audit_records().iter().filter(|a| a["event"] == event).count()
}

#[test]
fn an_admin_revocation_on_replica_a_is_refused_on_replica_b() {
    let f = Fleet::start(json!({}));
    let token = mint(&f, &[("jti", json!("jti-admin-fleet"))]);
    let bystander = mint(&f, &[]);
    everywhere(&f, &token, ok());
    let r = f.admin_revoke(f.a(), "jti", "jti-admin-fleet");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()[COMMITTED], true, "etcd committed the write: {}", r.body);
    assert_eq!(code(f.a(), &token), revoked(), "applied where it was made at once");
    let t = until_revoked(f.b(), &token, REACH);
    eprintln!("admin revocation on A reached B in {t:?}");
    everywhere(&f, &token, revoked());
    everywhere(&f, &bystander, ok());
    // Written to the documented key, with a revoked_at, on a lease etcd will expire by itself.
    let (value, lease) = f.stored("jti", "jti-admin-fleet").expect("the revocation is in etcd");
    let at = value["revoked_at"].as_u64().expect("revoked_at");
    assert!(at.abs_diff(now()) <= 60, "revoked_at is the write time: {value}");
    assert!(lease != 0, "the key is on a lease");
    assert!(f.lease_ttl(lease) > 0, "the lease is alive");
    // A token revoked by its hash through B: the key names the hash, never the token.
    let by_hash = mint(&f, &[]);
    let r = f.admin_revoke(f.b(), "token_sha256", &token_sha256(&by_hash));
    assert_eq!(r.status, 200, "{}", r.body);
    until_revoked(f.a(), &by_hash, REACH);
    assert!(f.stored("token", &token_sha256(&by_hash)).is_some(), "{:?}", f.stored_keys());
    assert!(f.stored_keys().iter().all(|k| !k.contains(&by_hash)), "a token was written to etcd");
}

#[test]
fn a_key_written_with_etcdctl_is_refused_on_both_replicas() {
    let f = Fleet::start(json!({}));
    let by_jti = mint(&f, &[("jti", json!("jti-ctl"))]);
    let by_sid = mint(&f, &[("sid", json!("sid-ctl"))]);
    let by_token = mint(&f, &[]);
    let by_bad_key = mint(&f, &[("sid", json!("sid-without-time"))]);
    let bystander = mint(&f, &[]);
    for t in [&by_jti, &by_sid, &by_token, &by_bad_key, &bystander] {
        everywhere(&f, t, ok());
    }
    // A sid without revoked_at breaks the documented format: skipped, never guessed at.
    f.revoke_with_etcdctl("sid", "sid-without-time", None);
    f.revoke_with_etcdctl("jti", "jti-ctl", None);
    f.revoke_with_etcdctl("sid", "sid-ctl", Some(now()));
    f.revoke_with_etcdctl("token", &token_sha256(&by_token), None);
    let written = Instant::now();
    for (name, envoy) in [("A", f.a()), ("B", f.b())] {
        for t in [&by_jti, &by_sid, &by_token] {
            until_revoked(envoy, t, REACH);
        }
        eprintln!("three etcdctl puts all refused on replica {name} {:?} after the last", written.elapsed());
    }
    // Events arrive in revision order: the malformed key, written first, has been read.
    everywhere(&f, &by_bad_key, ok());
    for envoy in [f.a(), f.b()] {
        assert!(envoy.stat(MALFORMED).unwrap_or(0) >= 1, "the malformed key is counted");
    }
    everywhere(&f, &bystander, ok());
    for t in [&by_jti, &by_sid, &by_token] {
        everywhere(&f, t, revoked());
    }
}

#[test]
fn a_sub_or_sid_revoked_with_revoked_at_spares_tokens_issued_later() {
    let f = Fleet::start(json!({}));
    let before = mint(&f, &[("sub", json!("mallory"))]);
    let session_before = mint(&f, &[("sid", json!("sess-kept-open"))]);
    let iat_before = now();
    // revoked_at before a token's iat spares it too (tokens issued at or before it only).
    let earlier = mint(&f, &[("sub", json!("trent"))]);
    everywhere(&f, &before, ok());
    f.revoke_with_etcdctl("sub", "mallory", Some(iat_before));
    f.revoke_with_etcdctl("sub", "trent", Some(iat_before - 60));
    f.revoke_with_etcdctl("sid", "sess-kept-open", Some(iat_before));
    for envoy in [f.a(), f.b()] {
        until_revoked(envoy, &before, REACH);
        until_revoked(envoy, &session_before, REACH);
    }
    // The next token's iat is a later second than revoked_at.
    tokenguard_harness::scenarios::sleep_until(iat_before + 1);
    let after = mint(&f, &[("sub", json!("mallory"))]);
    let session_after = mint(&f, &[("sid", json!("sess-kept-open"))]);
    everywhere(&f, &after, ok());
    everywhere(&f, &session_after, ok());
    everywhere(&f, &before, revoked());
    everywhere(&f, &earlier, ok());
}

#[test]
fn a_restarted_replica_refuses_a_revoked_token_from_its_first_request() {
    let mut f = Fleet::start(json!({}));
    let by_sid = mint(&f, &[("sid", json!("sid-gone"))]);
    let by_admin = mint(&f, &[("jti", json!("jti-gone"))]);
    let fine = mint(&f, &[]);
    f.revoke_with_etcdctl("sid", "sid-gone", Some(now()));
    let r = f.admin_revoke(f.a(), "jti", "jti-gone");
    assert_eq!(r.status, 200, "{}", r.body);
    until_revoked(f.b(), &by_sid, REACH);
    until_revoked(f.b(), &by_admin, REACH);
    // A brand-new process: empty shared data until its first list, which requests wait for.
    f.restart(1);
    assert_eq!(code(f.b(), &by_sid), revoked(), "the very first request");
    assert_eq!(code(f.b(), &by_admin), revoked(), "revoked through A's admin API before B started");
    assert_eq!(code(f.b(), &fine), ok());
    // And it follows the watch afterwards.
    let later = mint(&f, &[("jti", json!("jti-after-restart"))]);
    f.revoke_with_etcdctl("jti", "jti-after-restart", None);
    until_revoked(f.b(), &later, REACH);
}

/// Every request in `tokens` on both replicas: the expected outcome, and never a 5xx.
fn sweep(f: &Fleet, tokens: &[(&String, (u16, String))]) {
    for envoy in [f.a(), f.b()] {
        for (t, want) in tokens {
            let seen = code(envoy, t);
            assert!(seen.0 < 500, "a 5xx while etcd is away: {seen:?}");
            assert_eq!(&seen, want);
        }
    }
}

#[test]
fn with_etcd_stopped_replicas_serve_enforce_and_recover_what_was_written_meanwhile() {
    let f = Fleet::start(json!({}));
    let known = mint(&f, &[("jti", json!("jti-known"))]);
    let missed = mint(&f, &[("jti", json!("jti-missed"))]);
    let valid = mint(&f, &[]);
    f.revoke_with_etcdctl("jti", "jti-known", None);
    until_revoked(f.a(), &known, REACH);
    until_revoked(f.b(), &known, REACH);

    f.etcd.stop();
    let during = mint(&f, &[]);
    let expected = [(&known, revoked()), (&valid, ok()), (&during, ok()), (&missed, ok())];
    // Out of touch long enough for the gauge to show it; every answer meanwhile is right.
    eventually(Duration::from_secs(15), "the contact age gauge reaches 3 s on both", || {
        sweep(&f, &expected);
        let ages = [f.a().stat(CONTACT_AGE), f.b().stat(CONTACT_AGE)];
        ages.iter().all(|a| a.is_some_and(|a| a >= 3)).then_some(())
    });
    // New revocations cannot be made: the admin API says the store did not take it.
    let r = f.admin_revoke(f.a(), "jti", "jti-during-outage");
    assert!(r.status >= 500 || r.json()[COMMITTED] == false, "{} {}", r.status, r.body);

    // etcd comes back while the replicas are still cut off from it, a revocation is written,
    // then the link heals: the recovery applies it.
    f.link.cut();
    f.etcd.restart();
    f.revoke_with_etcdctl("jti", "jti-missed", None);
    sweep(&f, &expected);
    f.link.heal();
    let healed = Instant::now();
    for (name, envoy) in [("A", f.a()), ("B", f.b())] {
        until_revoked(envoy, &missed, Duration::from_secs(30));
        eprintln!(
            "written during the outage, refused on {name} {:?} after the link healed",
            healed.elapsed()
        );
    }
    sweep(&f, &[(&known, revoked()), (&valid, ok()), (&during, ok()), (&missed, revoked())]);
    for envoy in [f.a(), f.b()] {
        eventually(Duration::from_secs(10), "the contact age gauge falls back", || {
            envoy.stat(CONTACT_AGE).filter(|a| *a <= 2)
        });
        assert_eq!(events(envoy, OUTAGE_EVENT), 1, "the outage is audited once per process");
        let recovered = eventually(REACH, "the recovery audit line", || {
            Some(events(envoy, RECOVERY_EVENT)).filter(|n| *n > 0)
        });
        assert_eq!(recovered, 1, "the recovery is audited once per process");
    }
}

#[test]
fn a_watch_cancelled_by_compaction_recovers_with_a_fresh_list() {
    let f = Fleet::start(json!({}));
    let tokens: Vec<String> = (0..4).map(|i| mint(&f, &[("jti", json!(format!("jti-c{i}")))])).collect();
    // Compacting up to the present while the watch is live cancels nothing; writes flow on.
    f.revoke_with_etcdctl("jti", "jti-c0", None);
    let rev = f.put_with_etcdctl("/tokenguard/unrelated", "x");
    f.etcd.ctl(&["compact", &rev.to_string()]);
    f.revoke_with_etcdctl("jti", "jti-c1", None);
    for envoy in [f.a(), f.b()] {
        until_revoked(envoy, &tokens[0], REACH);
        until_revoked(envoy, &tokens[1], REACH);
    }
    // Partitioned: the replicas' watches stop at the last revision they saw. Writes made
    // meanwhile are compacted away, so resuming from that revision is cancelled by etcd
    // (compact_revision) and only a fresh list can bring them.
    f.link.cut();
    f.revoke_with_etcdctl("jti", "jti-c2", None);
    let rev = f.put_with_etcdctl("/tokenguard/unrelated", "y");
    f.etcd.ctl(&["compact", &rev.to_string()]);
    everywhere(&f, &tokens[2], ok());
    let entries_before: Vec<u64> = f.replicas.iter().map(|e| e.stat(ENTRIES).unwrap_or(0)).collect();
    f.link.heal();
    for (envoy, before) in f.replicas.iter().zip(entries_before) {
        until_revoked(envoy, &tokens[2], Duration::from_secs(30));
        // Resuming the watch could bring c2 alone; a fresh list brings c0, c1 and c2 again.
        let after = eventually(REACH, "the fresh list's entries are counted", || {
            envoy.stat(ENTRIES).filter(|n| *n >= before + 3)
        });
        eprintln!("after compaction: {} revocations applied again (a fresh list)", after - before);
    }
    // The fresh list was followed by a working watch.
    f.revoke_with_etcdctl("jti", "jti-c3", None);
    for envoy in [f.a(), f.b()] {
        until_revoked(envoy, &tokens[3], REACH);
    }
    everywhere(&f, &tokens[0], revoked());
}

/// With etcd's authentication on, the replicas log in (`username`/`password`), follow and
/// write through. etcd keeps its auth tokens in memory, so a restarted etcd has forgotten
/// them: the replicas must log in again, not retry with a token etcd no longer knows.
#[test]
fn with_etcd_authentication_replicas_follow_write_and_log_in_again_after_etcd_restarts() {
    const PASSWORD: &str = "tg-etcd-password-5f1c";
    let store = json!({"username": "tg", "password": PASSWORD});
    let f = Fleet::start_with(json!({}), store, 2, |etcd| {
        etcd.enable_auth("root-password-9a3e", "tg", PASSWORD, "/tokenguard/")
    });
    let tokens: Vec<String> = ["auth-ctl", "auth-admin", "auth-later", "auth-admin-later"]
        .iter()
        .map(|jti| mint(&f, &[("jti", json!(jti))]))
        .collect();
    everywhere(&f, &tokens[2], ok());
    f.revoke_with_etcdctl("jti", "auth-ctl", None);
    until_revoked(f.a(), &tokens[0], REACH);
    until_revoked(f.b(), &tokens[0], REACH);
    let r = f.admin_revoke(f.a(), "jti", "auth-admin");
    assert_eq!(r.json()[COMMITTED], true, "written with the replica's login: {}", r.body);
    until_revoked(f.b(), &tokens[1], REACH);

    // Quiet a moment first: a replica whose retries meet the restarted etcd only on the
    // watch (no list, no admin write) is the case that never logged in again.
    std::thread::sleep(Duration::from_secs(1));
    f.etcd.stop();
    f.etcd.restart();
    f.revoke_with_etcdctl("jti", "auth-later", None);
    let restarted = Instant::now();
    for (name, envoy) in [("A", f.a()), ("B", f.b())] {
        until_revoked(envoy, &tokens[2], Duration::from_secs(30));
        eprintln!("after etcd restarted, {name} followed again within {:?}", restarted.elapsed());
    }
    let r = f.admin_revoke(f.b(), "jti", "auth-admin-later");
    assert_eq!(r.json()[COMMITTED], true, "written after logging in again: {}", r.body);
    until_revoked(f.a(), &tokens[3], REACH);
    for envoy in [f.a(), f.b()] {
        assert!(!envoy.log().contains(PASSWORD), "the etcd password was logged");
    }
}

/// etcd forgets an auth token left unused for `--auth-token-ttl`; a watch stream, checked
/// once when it opened, goes on regardless. An admin write after that must still commit (a
/// replica logs in again when etcd says its token is invalid), at the latest on a retry.
#[test]
fn with_etcd_authentication_an_admin_write_commits_after_the_auth_token_expired() {
    const PASSWORD: &str = "tg-etcd-password-77d0";
    let store = json!({"username": "tg", "password": PASSWORD});
    let etcd = Etcd::start_with(&["--auth-token-ttl", "2"]);
    let f = Fleet::start_on(etcd, json!({}), store, 2, |etcd| {
        etcd.enable_auth("root-password-41bb", "tg", PASSWORD, "/tokenguard/")
    });
    let first = mint(&f, &[("jti", json!("ttl-first"))]);
    f.revoke_with_etcdctl("jti", "ttl-first", None);
    until_revoked(f.a(), &first, REACH);
    // Longer than the token's TTL with no unary call from the replicas.
    std::thread::sleep(Duration::from_secs(5));
    let mut attempts = 0;
    let token = eventually(Duration::from_secs(15), "an admin write commits again", || {
        attempts += 1;
        std::thread::sleep(Duration::from_millis(200));
        let jti = format!("ttl-admin-{attempts}");
        let r = f.admin_revoke(f.a(), "jti", &jti);
        (r.json()[COMMITTED] == true).then_some(jti)
    });
    eprintln!("the admin write committed at attempt {attempts}");
    assert!(f.stored("jti", &token).is_some());
    // Following still works too.
    let later = mint(&f, &[("jti", json!("ttl-later"))]);
    f.revoke_with_etcdctl("jti", "ttl-later", None);
    until_revoked(f.b(), &later, REACH);
}
