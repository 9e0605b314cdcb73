//! Group and member ids: UUIDs in their hyphenated form, kept in lower case.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not an id we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a UUID in its 36-character hyphenated form")]
pub struct InvalidId(pub String);

macro_rules! scim_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Accepts a UUID in any letter case and keeps it in lower case.
            ///
            /// # Errors
            /// [`InvalidId`] for anything but the 36-character hyphenated form.
            pub fn parse(raw: &str) -> Result<Self, InvalidId> {
                if crate::config::is_uuid(raw) {
                    Ok(Self(raw.to_ascii_lowercase()))
                } else {
                    Err(InvalidId(raw.to_string()))
                }
            }

            /// An id as Genesys reported it: lower-cased, not validated, so
            /// that a member of an odd shape is still counted and compared.
            pub fn from_upstream(raw: &str) -> Self {
                Self(raw.trim().to_ascii_lowercase())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

scim_id!(
    /// A SCIM group's id.
    GroupId
);

scim_id!(
    /// A group member's id: a user's, or a nested group's.
    MemberId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_accepted_in_any_case_and_kept_in_lower_case() {
        let id = MemberId::parse("6F1C2A8E-0B7D-4C39-9A51-1D2E3F4A5B01").unwrap();
        assert_eq!(id.as_str(), "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b01");
    }

    #[test]
    fn only_the_hyphenated_form_is_an_id() {
        assert!(GroupId::parse("6f1c2a8e0b7d4c399a511d2e3f4a5b01").is_err());
        assert!(GroupId::parse("{6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b01}").is_err());
        assert!(GroupId::parse("not-a-uuid").is_err());
        assert!(GroupId::parse("").is_err());
    }
}
