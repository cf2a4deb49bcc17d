//! Pure types and rules of the lab. Values are parsed once at the boundary (a form, a JSON
//! body, a database row) and trusted afterwards.

pub mod account;
pub mod booking;
pub mod calendar;
pub mod campaign;
pub mod fit;
pub mod job;
pub mod machine;
pub mod panel;
pub mod status_list;
pub mod training;

pub use account::{CredentialKind, Lang, NewUser, Role, Secret, User, UserId, UserPatch, Username};
pub use machine::{
    Connection, Machine, MachineId, MachineInput, MachineKind, MachineProfile, MachineState,
};

/// Why a value sent by a person was refused. `field` names the form field or JSON member;
/// `code` is stable and translated by the web layer (`invalid.<code>` in the catalogue).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {code}")]
pub struct Invalid {
    pub field: &'static str,
    pub code: &'static str,
}

impl Invalid {
    pub fn new(field: &'static str, code: &'static str) -> Self {
        Self { field, code }
    }
}

/// Declares a closed set of words stored as text, with parsing and display in one place.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($text => Ok($name::$variant),)+ _ => Err(()) }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;
