//! An in-memory `SharedData` with Envoy's CAS rules, for native tests.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::host::{SharedData, WriteError};

#[derive(Default)]
pub struct FakeShared {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    /// Writes to fail with `CasMismatch` before honouring them (simulates other writers).
    pub forced_conflicts: Cell<u32>,
    /// The change count, as Envoy keeps it in a process-wide gauge.
    changes: Cell<u64>,
    /// A host without the count (or whose gauge Envoy does not keep).
    pub no_change_count: Cell<bool>,
    /// Changes made without announcing them (a count that failed to move).
    pub silent_changes: Cell<bool>,
}

impl FakeShared {
    pub fn keys(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn bytes(&self) -> usize {
        self.map.borrow().iter().map(|(k, (v, _))| k.len() + v.len()).sum()
    }
}

impl SharedData for FakeShared {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.map.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        if self.forced_conflicts.get() > 0 {
            self.forced_conflicts.set(self.forced_conflicts.get() - 1);
            return Err(WriteError::CasMismatch);
        }
        let mut map = self.map.borrow_mut();
        if let (Some((_, current)), Some(cas)) = (map.get(key), cas) {
            if *current != cas {
                return Err(WriteError::CasMismatch);
            }
        }
        self.next_cas.set(self.next_cas.get().wrapping_add(1).max(1));
        map.insert(key.to_string(), (value.to_vec(), self.next_cas.get()));
        Ok(())
    }

    fn change_count(&self) -> Option<u64> {
        (!self.no_change_count.get()).then(|| self.changes.get())
    }

    fn note_change(&self) {
        if !self.silent_changes.get() {
            self.changes.set(self.changes.get().wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_envoy_cas_rules() {
        let s = FakeShared::default();
        assert_eq!(s.get("k"), (None, None));
        s.set("k", b"a", Some(77)).unwrap(); // absent key: any CAS inserts
        let (v, cas1) = s.get("k");
        assert_eq!(v.as_deref(), Some(&b"a"[..]));
        s.set("k", b"b", cas1).unwrap();
        assert_eq!(s.set("k", b"c", cas1), Err(WriteError::CasMismatch)); // stale
        let (_, cas2) = s.get("k");
        assert_ne!(cas1, cas2);
        s.set("k", b"d", None).unwrap(); // unconditional
        assert_eq!(s.get("k").0.as_deref(), Some(&b"d"[..]));
    }
}
