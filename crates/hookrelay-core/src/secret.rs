//! A secret string (AWS secret key, app API secret) that cannot leak by accident.

use std::fmt;

/// What every API response shows in place of a secret. A hook sent back with this value keeps the
/// secret already stored, so "get, append, update" round trips work (see `hook::input`).
pub const MASK: &str = "********";

/// A string whose `Debug` and `Display` print [`MASK`]; only [`Secret::expose`] gives the value.
/// It deliberately has no `Serialize`: the store encrypts it and the API masks it, both explicitly.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The clear value, for signing and for building AWS credentials only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), format!("{MASK} {MASK}"));
        assert_eq!(s.expose(), "hunter2");
    }
}
