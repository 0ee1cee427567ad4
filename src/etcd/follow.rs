//! What etcd's answers do to the process, host-agnostic: revocations read from it go into
//! the shared revocation set, every answer is a contact (the staleness clock and gauge), and
//! an outage and its end are audited once each, whichever worker sees them.

use super::store::Batch;
use crate::audit::{emit, Event, Record};
use crate::config::Config;
use crate::host::{Host, Level};
use crate::metrics::Counter;
use crate::registry::{Layout, Registry};

/// Applies revocations etcd sent (a list page or watch events) and records the contact.
/// `listed`: the whole list is now applied, so held requests may be decided. Returns false
/// when the shared revocation set could not take them: the caller treats it as a failure
/// and reads again, since etcd's revision must not move past what was not applied.
pub fn applied(cfg: &Config, host: &impl Host, batch: &Batch, listed: bool, revision: i64) -> bool {
    let now = host.now();
    let registry = Registry::new(host, Layout::of(cfg));
    let refused = if batch.revocations.is_empty() {
        0
    } else {
        match registry.revoke_many(&batch.revocations, now) {
            Ok(refused) => refused,
            Err(_) => {
                failed(cfg, host, "the shared revocation set could not be written");
                return false;
            }
        }
    };
    for _ in 0..batch.revocations.len().saturating_sub(refused) {
        host.count(Counter::StoreEntries);
    }
    for _ in 0..batch.skipped {
        host.count(Counter::StoreMalformed);
    }
    if refused > 0 || batch.skipped > 0 {
        host.log(
            Level::Warn,
            &format!(
                "tokenguard: from etcd, {refused} revocations refused (registry.max_revocations reached), {} malformed keys skipped",
                batch.skipped
            ),
        );
    }
    contact(cfg, host, listed, revision);
    true
}

/// etcd answered (anything: a page, an event, a progress answer).
pub fn contact(cfg: &Config, host: &impl Host, listed: bool, revision: i64) {
    let now = host.now();
    let registry = Registry::new(host, Layout::of(cfg));
    host.count(Counter::StoreUpdates);
    match registry.store_contact(now, listed, revision) {
        Ok(before) if before.failures > 0 => {
            let mut r = Record::new(Event::RevocationStoreRecovered, now);
            r.reason = Some(format!(
                "etcd answered again after {} failed calls; following from revision {revision}",
                before.failures
            ));
            emit(host, r);
        }
        Ok(_) => {}
        Err(_) => host.count(Counter::RegistryConflict),
    }
}

/// A call to etcd failed or its watch broke: counted always, audited and logged on the first
/// failure of an outage only (a flapping store must not flood the log).
pub fn failed(cfg: &Config, host: &impl Host, cause: &str) {
    let now = host.now();
    let registry = Registry::new(host, Layout::of(cfg));
    host.count(Counter::StoreFailures);
    let failures = registry.store_failed().unwrap_or(1);
    if failures != 1 {
        return;
    }
    let age = registry.store_state().age(now);
    let mut r = Record::new(Event::RevocationStoreUnreachable, now);
    r.reason = Some(format!(
        "{cause}; last answer {}; enforcing the revocations already known",
        age.map_or("never".to_string(), |a| format!("{a}s ago"))
    ));
    emit(host, r);
    host.log(Level::Warn, "tokenguard: etcd unreachable; retrying with backoff");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::host::Metrics;
    use crate::registry::revocation::{Kind, Revocation, Target, TokenFacts};
    use crate::testkit::*;

    fn cfg() -> Config {
        config(json!({"revocation_store": {"etcd": {"cluster": "etcd"}}}))
    }

    fn alice(revoked_at: u64) -> Revocation {
        Revocation { target: Target::new(Kind::Sub, "alice"), revoked_at, until: revoked_at + 600 }
    }

    #[test]
    fn a_full_list_revokes_and_syncs_the_process() {
        let (cfg, host) = (cfg(), FakeHost::at(NOW));
        let registry = Registry::new(&host, Layout::of(&cfg));
        let page = Batch { revocations: vec![alice(NOW - 1)], skipped: 1 };
        assert!(applied(&cfg, &host, &page, false, 7));
        assert!(!registry.store_state().synced, "more pages to come");
        assert!(applied(&cfg, &host, &Batch::default(), true, 7));
        let st = registry.store_state();
        assert!(st.synced && st.last_contact == NOW && st.revision == 7, "{st:?}");
        assert_eq!(host.value(Counter::StoreEntries), Some(1));
        assert_eq!(host.value(Counter::StoreMalformed), Some(1));
        let facts = TokenFacts { fp: &[0; 32], jti: None, sub: Some("alice"), sid: None, iat: Some(NOW - 5) };
        let set = registry.load_revocations(NOW).unwrap_or_default();
        assert!(set.len() == 1 && set[0].covers(&facts, NOW));
    }

    #[test]
    fn an_outage_and_its_end_are_audited_once_each() {
        let (cfg, host) = (cfg(), FakeHost::at(NOW));
        contact(&cfg, &host, true, 3);
        for _ in 0..3 {
            failed(&cfg, &host, "deadline exceeded");
        }
        contact(&cfg, &host, false, 4);
        contact(&cfg, &host, false, 5);
        let events: Vec<String> = host
            .audits()
            .into_iter()
            .map(|(_, a)| a["event"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(events, ["revocation_store_unreachable", "revocation_store_recovered"]);
        assert_eq!(host.value(Counter::StoreFailures), Some(3));
        let audits = host.audits();
        let unreachable = audits.first().map(|(_, a)| a["reason"].to_string()).unwrap_or_default();
        assert!(unreachable.contains("deadline exceeded") && unreachable.contains("0s ago"), "{unreachable}");
    }
}
