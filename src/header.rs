//! A change to a request header: decided by the core, made by the host layer.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Set the header to this value; `None` removes it.
    Set(String, Option<String>),
}
