//! [`Secret`]: a password, key or credential-bearing URL that the JMX, CQL, storage and etcd settings all hold,
//! kept at the bottom of the crate so none of them depends on another for it.

use std::fmt;

/// A password or other secret: never printed, not even in debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
