//! The plugin's version: in the start-up log line and the admin `stats` answer, so an
//! operator can tell which build a proxy runs after fetching it by URL or image tag.

use crate::host::{Level, Log, SharedData};

/// The crate's version, which also names the artifacts `make dist` and `make oci` build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Which version last announced itself in this Envoy process (shared data, per `vm_id`).
const KEY_ANNOUNCED: &str = "tokenguard/version";

/// Logs `tokenguard <version>` unless a VM of this process already did for this version.
/// Every worker starts its own VM (and the main thread two): one line per process says it
/// all. Envoy starts the main thread's VMs before the workers', so the first writer is
/// always that thread; a plugin update to another version logs again.
pub fn announce(host: &(impl SharedData + Log)) -> bool {
    let (value, cas) = host.get(KEY_ANNOUNCED);
    if value.as_deref() == Some(VERSION.as_bytes()) {
        return false;
    }
    // A CAS mismatch means another VM announced meanwhile.
    if host.set(KEY_ANNOUNCED, VERSION.as_bytes(), cas).is_err() {
        return false;
    }
    host.log(Level::Info, &format!("tokenguard {VERSION}"));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::FakeHost;

    #[test]
    fn announces_once_per_process_and_again_for_another_version() {
        let host = FakeHost::at(0);
        assert!(announce(&host));
        assert!(!announce(&host), "a second VM of the same process stays quiet");
        let lines = host.lines.borrow().clone();
        assert_eq!(lines, vec![(Level::Info, format!("tokenguard {}", env!("CARGO_PKG_VERSION")))]);

        // Shared data outlives a plugin update: the previous version's mark is replaced.
        host.set(KEY_ANNOUNCED, b"0.0.1", None).unwrap();
        assert!(announce(&host));
        assert_eq!(host.lines.borrow().len(), 2);
    }
}
