//! Changes to request headers: decided by the core, made by the host layer.

use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Set the header to this value (replacing every copy); `None` removes it.
    Set(String, Option<String>),
}

/// A request's header edits, shared: the hot path hands out the edits it made for a token
/// without copying them, and no edit at all costs nothing. (`Arc`: the configuration holds
/// one and must be `Sync`.)
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Edits(Option<Arc<[HeaderEdit]>>);

impl Edits {
    pub fn new(edits: Vec<HeaderEdit>) -> Edits {
        Edits((!edits.is_empty()).then(|| edits.into()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &HeaderEdit> {
        self.0.iter().flat_map(|e| e.iter())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}
